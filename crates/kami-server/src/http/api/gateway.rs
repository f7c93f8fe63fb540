//! Gateway endpoints: asynchronous notifications and the browser return page.
//!
//! A notification is logged raw, verified by its channel, applied by the order engine in the
//! same commit, and only then acknowledged with the protocol's exact success reply.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kami_pay::{Ack, NotifyVerdict, RawNotification};
use kami_store::{RawEvent, Verdict};
use serde::Deserialize;

use crate::http::extract::ClientIp;
use crate::services::order_actions::buyer_check;
use crate::services::payer::{payer_returned, Returning};
use crate::services::payments::record_notification;
use crate::services::ServiceError;
use crate::state::AppState;

/// Largest notification body accepted (real gateways send a few KiB).
const MAX_NOTIFY_BYTES: usize = 64 * 1024;

pub async fn notify(
    State(state): State<Arc<AppState>>,
    Path(channel_id): Path<String>,
    ClientIp(client): ClientIp,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channel) = state.channels.get(&channel_id) else {
        return (StatusCode::NOT_FOUND, "unknown channel").into_response();
    };
    let reply = |ack: Ack| {
        let r = channel.ack(ack);
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, r.content_type)], r.body).into_response()
    };
    if body.len() > MAX_NOTIFY_BYTES {
        state.metrics.notification("too_large");
        return reply(Ack::Failure);
    }
    let raw = RawNotification {
        method: method.to_string(),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    // Any I/O verification needs (PayPal: its signing certificate) before the pure check.
    channel.prepare_notification(&raw).await;
    // A channel that is paid only once kami acts (PayPal: capture after approval) is asked
    // at once about the trade an authentic non-payment event names.
    let mut ask_now = None;
    let verdict = match channel.verify_notification(&raw) {
        Ok(NotifyVerdict::Paid(c)) => Verdict::Paid {
            trade_no: c.trade_no,
            gateway_trade_no: c.gateway_trade_no,
            amount: c.amount,
            gateway_paid_at: c.paid_at,
            coin_amount: c.coin_amount,
        },
        Ok(NotifyVerdict::NotPaid { trade_no, status }) => {
            if channel.check_on_return() {
                ask_now = kami_core::OrderNo::parse(
                    trade_no.get(..kami_core::OrderNo::LEN).unwrap_or(""),
                )
                .ok();
            }
            Verdict::NotPaid { trade_no, status }
        }
        Err(e) => {
            state.metrics.verification_failure(&channel_id, e.code());
            Verdict::Rejected {
                reason: e.to_string(),
            }
        }
    };
    let headers_json = serde_json::Value::Object(
        raw.headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string();
    let event = RawEvent {
        channel_id: channel_id.clone(),
        http_method: raw.method,
        query: raw.query,
        headers: headers_json,
        body: raw.body,
        received_at: state.now_ms(),
    };
    match record_notification(&state, client, event, verdict).await {
        Ok(outcome) => {
            if let Some(no) = ask_now {
                check_now(&state, &channel_id, &no).await;
            }
            reply(if outcome.acknowledge() {
                Ack::Success
            } else {
                Ack::Failure
            })
        }
        Err(e) => {
            // Nothing was committed: the gateway must resend.
            tracing::error!(channel = %channel_id, "recording notification failed: {e}");
            reply(Ack::Failure)
        }
    }
}

#[derive(Deserialize)]
pub struct ReturnQuery {
    order_no: Option<String>,
}

/// Ask the order's channel about its payment now, through the buyer's check (rate-limited
/// per order, applies only what the channel confirms).
async fn check_now(state: &AppState, channel_id: &str, no: &kami_core::OrderNo) {
    if let Err(e) = buyer_check(state, no).await {
        tracing::info!(channel = %channel_id, order = %no, "payment check on the gateway's signal: {e}");
    }
}

/// The browser comes back here after paying, or from the wallet's sign-in (WeChat OAuth
/// before JSAPI: `code` and `state` added by WeChat, see `services/payer.rs`). It never marks
/// anything paid: it sends the buyer to the order page, which shows the status (and the keys
/// only to a browser that holds the order's token). For a channel that is paid only once kami
/// acts on the buyer's approval (PayPal: the capture), the channel is asked first, through the
/// same check as the buyer's "I have paid".
pub async fn return_page(
    State(state): State<Arc<AppState>>,
    Path(channel_id): Path<String>,
    Query(q): Query<ReturnQuery>,
    uri: Uri,
    headers: HeaderMap,
    ClientIp(client_ip): ClientIp,
) -> Response {
    let Some(no) = q
        .order_no
        .as_deref()
        .and_then(|n| kami_core::OrderNo::parse(n).ok())
    else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "unknown order; open your order from the shop's lookup page",
        )
            .into_response();
    };
    if state
        .channels
        .get(&channel_id)
        .is_some_and(|c| c.check_on_return())
    {
        check_now(&state, &channel_id, &no).await;
    }
    let returning = Returning {
        channel_id,
        order_no: no.to_string(),
        query: uri.query().unwrap_or("").to_owned(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect()),
        client_ip,
    };
    match payer_returned(&state, returning).await {
        // Prepared, an ordinary return, or nothing left to prepare: the order page says which.
        Ok(_)
        | Err(ServiceError::Conflict {
            code: "payer_known" | "order_not_pending",
            ..
        }) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, format!("/orders/{no}")),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        Err(e) => {
            let e = crate::http::error::ApiError::from(e);
            (
                e.status,
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                format!("{}\n\nYour order: /orders/{no}", e.message),
            )
                .into_response()
        }
    }
}
