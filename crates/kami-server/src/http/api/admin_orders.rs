//! Admin API: the seller's actions on one order that reach the payment channel or the
//! buyer's mailbox — check the payment now (补单), cancel, resend the mail.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::admin::order_no_or_404;
use super::buyer::order_json;
use super::seller::actor;
use crate::http::error::ApiResult;
use crate::http::extract::{AdminAuth, ClientIp};
use crate::services::order_actions;
use crate::state::AppState;

/// `POST /api/v1/admin/orders/{order_no}/check-payment`: ask the channel now and apply what it
/// confirms through the normal path → the order (as `GET` shows it) with `"checked":
/// [{"channel", "trade_no", "answer", "detail"?, "outcome"?}]`, what each trade's channel said.
pub async fn check_payment(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let no = order_no_or_404(&order_no)?;
    let (order, answers) = order_actions::check_payment(&state, &no, &actor(&admin, ip)).await?;
    let mut v = order_json(&order, true);
    v["checked"] = json!(answers);
    Ok(Json(v))
}

/// `POST /api/v1/admin/orders/{order_no}/cancel`: a pending order, its trade closed at the
/// channel first → the order (`expired`, note "cancelled by the seller").
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let no = order_no_or_404(&order_no)?;
    let order = order_actions::cancel(&state, &no, &actor(&admin, ip)).await?;
    Ok(Json(order_json(&order, true)))
}

/// `POST /api/v1/admin/orders/{order_no}/resend-mail` → `202 {"queued": true}`.
pub async fn resend_mail(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let no = order_no_or_404(&order_no)?;
    order_actions::resend_mail(&state, &no, &actor(&admin, ip)).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(json!({ "queued": true })),
    ))
}
