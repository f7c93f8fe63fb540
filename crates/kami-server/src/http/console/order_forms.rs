//! The actions on the order page, each a POST form with the session's form token (checked
//! before anything happens) and a confirmation in the browser: refund, fulfil, deliver an
//! exception order, check the payment at the channel, cancel, resend the mail. Each calls
//! its service as `user:NAME` and goes back to the order page with a flash message.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use kami_core::{Money, OrderNo};

use super::guard;
use super::order_page::actions_for;
use super::orders::actor;
use super::{field, form_fields, see_other};
use crate::http::web::request::Ctx;
use crate::services::refunds::RefundInput;
use crate::services::{fulfilment, order_actions, refunds, ServiceError};
use crate::state::AppState;

pub const FLASH_COOKIE: &str = "kami_flash";

/// The flash message left by the last action (`ok:` + a message key and detail, or `err:` +
/// the service's message), and whether it must be cleared.
pub fn take_flash(ctx: &Ctx) -> (Option<minijinja::Value>, bool) {
    let raw = guard::cookie_value(ctx, FLASH_COOKIE);
    if raw.is_empty() {
        return (None, false);
    }
    let text: String = url::form_urlencoded::parse(format!("m={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let flash = match text.split_once(':') {
        Some(("ok", rest)) => {
            let (key, detail) = rest.split_once(':').unwrap_or((rest, ""));
            minijinja::context! { ok => true, key => key, detail => detail }
        }
        Some((_, message)) => minijinja::context! { ok => false, detail => message },
        None => return (None, true),
    };
    (Some(flash), true)
}

fn back(state: &AppState, no: &str, flash: &str) -> Response {
    let mut resp = see_other(&format!("/admin/orders/{no}"));
    let value: String = url::form_urlencoded::byte_serialize(flash.as_bytes()).collect();
    guard::set_cookie(state, &mut resp, FLASH_COOKIE, &value, 120);
    resp
}

fn failure(e: &ServiceError) -> String {
    match e {
        ServiceError::Internal(_)
        | ServiceError::Store(
            kami_store::StoreError::Database(_)
            | kami_store::StoreError::Corrupt(_)
            | kami_store::StoreError::Key(_)
            | kami_store::StoreError::UnknownKey(_),
        ) => {
            tracing::error!("console order action: {e}");
            "err:the action could not be completed; try again".to_owned()
        }
        other => format!("err:{other}"),
    }
}

/// Run `action` on order `no` after the form token checks out and the order's status
/// offers it.
pub async fn act(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path((no, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if let Err(resp) = guard::check_post(&state, &ctx, Some(&admin), &admin.csrf, &fields) {
        return resp;
    }
    let Ok(no) = OrderNo::parse(&no) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    let order = match state.store.order(&no).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return super::message(
                &state,
                &ctx,
                Some(&admin),
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
            )
        }
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e.into()),
    };
    let action = action.replace('-', "_");
    if !actions_for(order.status).contains(&action.as_str()) {
        let msg = format!(
            "err:{action} is not possible for an order that is {}",
            order.status.as_str()
        );
        return back(&state, no.as_str(), &msg);
    }
    let who = actor(&admin, &ctx);
    let flash = match action.as_str() {
        "refund" => {
            let amount = field(&fields, "amount").trim();
            let amount = if amount.is_empty() {
                Ok(None)
            } else {
                Money::from_major_str(amount, order.amount.currency())
                    .map(|m| Some(m.minor()))
                    .map_err(|e| format!("err:amount: {e}"))
            };
            match amount {
                Err(msg) => msg,
                Ok(amount) => {
                    let reason = field(&fields, "reason").trim();
                    let input = RefundInput {
                        amount,
                        reason: (!reason.is_empty()).then(|| reason.to_owned()),
                        refund_no: None,
                    };
                    match refunds::refund(&state, &no, input, &who).await {
                        Ok(done) => format!(
                            "ok:refund:{} {}",
                            done.call.refund.amount,
                            done.call.refund.status.as_str()
                        ),
                        Err(e) => failure(&e),
                    }
                }
            }
        }
        "fulfil" => match fulfilment::fulfil(&state, &no, field(&fields, "content"), &who).await {
            Ok(_) => "ok:fulfil:".to_owned(),
            Err(e) => failure(&e),
        },
        "deliver" => match fulfilment::deliver_exception(&state, &no, &who).await {
            Ok(_) => "ok:deliver:".to_owned(),
            Err(e) => failure(&e),
        },
        "check_payment" => match order_actions::check_payment(&state, &no, &who).await {
            Ok((_, answers)) => {
                let said: Vec<String> = answers
                    .iter()
                    .map(|a| {
                        let mut s = format!("{} {}: {}", a.channel, a.trade_no, a.answer);
                        if let Some(o) = a.outcome {
                            s.push_str(&format!(" ({o})"));
                        }
                        if let Some(d) = &a.detail {
                            s.push_str(&format!(" — {d}"));
                        }
                        s
                    })
                    .collect();
                format!("ok:check_payment:{}", said.join("; "))
            }
            Err(e) => failure(&e),
        },
        "cancel" => match order_actions::cancel(&state, &no, &who).await {
            Ok(_) => "ok:cancel:".to_owned(),
            Err(e) => failure(&e),
        },
        "resend_mail" => match order_actions::resend_mail(&state, &no, &who).await {
            Ok(()) => "ok:resend_mail:".to_owned(),
            Err(e) => failure(&e),
        },
        _ => "err:unknown action".to_owned(),
    };
    back(&state, no.as_str(), &flash)
}
