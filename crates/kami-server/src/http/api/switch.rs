//! `POST /api/v1/orders/{order_no}/switch` `{"method", "device"?}` with the order's access
//! token (bearer, or `?token=`): the buyer pays a pending order with another method
//! (`services::switch`). `200` with the new payment; `409 order_paid` when closing the open
//! trade found it paid (the payment is applied, nothing switched).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_pay::Device;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bearer, AppJson, ClientIp};
use crate::services::checkout::guess_device;
use crate::services::switch::{switch_method, SwitchInput, Switched};
use crate::state::AppState;
use crate::time::rfc3339;

#[derive(Deserialize)]
pub struct SwitchBody {
    method: String,
    device: Option<String>,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

pub async fn switch(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    ClientIp(client_ip): ClientIp,
    AppJson(b): AppJson<SwitchBody>,
) -> ApiResult<impl IntoResponse> {
    let token = bearer(&headers)
        .or(q.token.as_deref())
        .ok_or_else(ApiError::unauthorized)?
        .to_owned();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let device = match b.device.as_deref() {
        None => guess_device(user_agent.as_deref()),
        Some("pc") => Device::Pc,
        Some("mobile") => Device::Mobile,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_device",
                "device must be \"pc\" or \"mobile\"",
            ))
        }
    };
    let switched = switch_method(
        &state,
        SwitchInput {
            order_no,
            token,
            method: b.method,
            device,
            user_agent,
            client_ip,
        },
    )
    .await?;
    match switched {
        Switched::AlreadyPaid { order_no } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_paid",
            format!("order {order_no} was paid before its payment could be closed; nothing was switched"),
        )),
        Switched::Switched {
            order_no,
            channel_id,
            method,
            action,
            expires_at,
        } => {
            let payment =
                crate::services::payer::action_json(&channel_id, method.as_str(), &action);
            Ok((
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({
                    "order_no": order_no.as_str(),
                    "status": "pending",
                    "method": method.as_str(),
                    "expires_at": rfc3339(expires_at),
                    "payment": payment,
                })),
            ))
        }
    }
}
