//! `/admin/orders/{no}`: every fact of one order, its delivered keys (revealed on click),
//! a timeline of everything that happened to it, and the actions its status allows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kami_core::{OrderNo, OrderStatus};
use minijinja::{context, Value};

use super::{guard, render};
use crate::http::web::request::Ctx;
use crate::services::order_detail;
use crate::state::AppState;
use crate::time::rfc3339;

/// The actions the console offers for an order in this status (the services check again).
pub fn actions_for(status: OrderStatus) -> Vec<&'static str> {
    use OrderStatus as S;
    let mut out = Vec::new();
    if matches!(status, S::Pending | S::Expired) {
        out.push("check_payment");
    }
    if status == S::Pending {
        out.push("cancel");
    }
    if status == S::AwaitingFulfilment {
        out.push("fulfil");
    }
    if status == S::Exception {
        out.push("deliver");
    }
    if matches!(status, S::Delivered | S::Fulfilled) {
        out.push("resend_mail");
    }
    if matches!(
        status,
        S::Paid
            | S::Delivered
            | S::AwaitingFulfilment
            | S::Fulfilled
            | S::Exception
            | S::PartiallyRefunded
    ) {
        out.push("refund");
    }
    out
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(no): Path<String>,
) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let Ok(no) = OrderNo::parse(&no) else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    let d = match order_detail::load(&state, &no).await {
        Ok(d) => d,
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let o = &d.order;
    let payments: Vec<Value> = d
        .payments
        .iter()
        .map(|p| {
            context! {
                channel => p.channel_id.as_str(),
                trade_no => p.trade_no.as_str(),
                gateway_trade_no => p.gateway_trade_no.as_deref(),
                amount => p.amount.to_major_string(),
                currency => p.amount.currency().code(),
                coin_amount => p.coin_amount.as_deref(),
                charge_basis => p.charge_basis.as_deref(),
                status => p.status.as_str(),
            }
        })
        .collect();
    let timeline: Vec<Value> = d
        .timeline
        .iter()
        .map(|e| {
            context! {
                at => rfc3339(e.at),
                kind => e.kind,
                summary => e.summary.as_str(),
                detail => e.detail.as_deref(),
                verified => e.verified,
                raw => e.raw.as_ref().map(|r| context! {
                    method => r.method.as_str(),
                    query => r.query.as_str(),
                    headers => r.headers.as_str(),
                    body => r.body.as_str(),
                }),
            }
        })
        .collect();
    let fields: Vec<Value> = o
        .fields
        .iter()
        .map(|(k, v)| context! { name => k.as_str(), value => v.as_str() })
        .collect();
    let (flash, clear) = super::order_forms::take_flash(&ctx);
    let mut resp = render(
        &state,
        &ctx,
        Some(&admin),
        StatusCode::OK,
        "console/order.html",
        "orders",
        context! {
            o => context! {
                no => o.order_no.as_str(),
                status => o.status.as_str(),
                product => o.product_title.as_str(),
                slug => o.product_slug.as_str(),
                quantity => o.quantity,
                amount => o.amount.minor(),
                currency => o.amount.currency().code(),
                charge => o.charge.map(crate::theme::format_money),
                email => o.email.as_str(),
                method => o.method.as_str(),
                channel => o.channel_id.as_str(),
                created => rfc3339(o.created_at),
                paid => o.paid_at.map(rfc3339),
                delivered => o.delivered_at.map(rfc3339),
                note => o.note.as_deref(),
                cards => o.cards.clone(),
                fulfilment => o.fulfilment.as_deref(),
                fields => fields,
            },
            payments => payments,
            timeline => timeline,
            actions => actions_for(o.status),
            flash => flash,
        },
    );
    if clear {
        guard::set_cookie(&state, &mut resp, super::order_forms::FLASH_COOKIE, "", 0);
    }
    resp
}
