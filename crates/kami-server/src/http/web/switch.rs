//! `POST /orders/{no}/switch` (form `t`, `method`): the buyer pays a pending order with
//! another method from the order page (`services::switch`), then back to the order page,
//! which shows the new method's QR code or payment link. Needs the order's token; refused
//! from another site's page.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kami_pay::{Device, PaymentAction};
use serde::Deserialize;

use super::pages::{internal, not_found, open_order, refused};
use super::request::Ctx;
use crate::services::switch::{switch_method as switch, SwitchInput, Switched};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
struct SwitchForm {
    t: String,
    method: String,
}

pub async fn switch_method(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    Path(order_no): Path<String>,
    body: Bytes,
) -> Response {
    if ctx.cross_site {
        return refused(&state, &ctx, StatusCode::FORBIDDEN, "cross_site");
    }
    let form: SwitchForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let presented = Some(form.t.as_str()).filter(|t| !t.is_empty());
    let token = match open_order(&state, &ctx, &order_no, presented).await {
        Ok(Some((_, Some(t)))) => t,
        Ok(_) => return not_found(&state, &ctx),
        Err(e) => return internal(&state, &ctx, e),
    };
    let input = SwitchInput {
        order_no: order_no.clone(),
        token: token.clone(),
        method: form.method,
        device: if ctx.mobile {
            Device::Mobile
        } else {
            Device::Pc
        },
        user_agent: Some(ctx.user_agent.clone()),
        client_ip: ctx.ip,
    };
    // The wallet's sign-in first (WeChat OAuth before JSAPI), in this window, as a new
    // order's: it comes back to the order page.
    let mut sign_in = None;
    let failed = match switch(&state, input).await {
        Ok(Switched::Switched {
            order_no, action, ..
        }) => {
            let (kind, target) = crate::services::payer::stored_action(&action);
            if let Err(e) = state.store.set_pay_action(&order_no, kind, &target).await {
                tracing::error!(order = %order_no, "saving the payment action: {e}");
            }
            if let PaymentAction::Authorize { url } = action {
                sign_in = Some(url);
            }
            false
        }
        Ok(Switched::AlreadyPaid { .. }) => false,
        Err(e) => {
            tracing::info!(order = %order_no, "buyer's method switch: {e}");
            true
        }
    };
    let t: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let suffix = if failed { "&switch=failed" } else { "" };
    let location = sign_in.unwrap_or_else(|| format!("/orders/{order_no}?t={t}{suffix}"));
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
