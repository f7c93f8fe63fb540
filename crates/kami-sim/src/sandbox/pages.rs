//! The sandbox buyer's pay page (`GET /sim/sandbox/pay/{trade_no}?<signed order>`) and its Pay
//! button (`POST`, with the notification test control), as HTML or, for `Accept:
//! application/json`, JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kami_pay::sandbox::{field, parse_form};
use minijinja::context;

use super::{NotifyMode, Order, SandboxSim, Status, Trade, NOTIFY_MODES};
use crate::common::html::{self, wants_json, web_url, Look};

const LOOK: Look = Look {
    site: "kami sandbox gateway",
    css: "body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.2rem;padding:.5rem 2rem}",
    footer: "kami sandbox gateway — test payments only, no real money moves.",
};

/// A refusal of the pay page, as HTML or JSON.
#[derive(Debug)]
pub(super) struct PageError {
    pub(super) status: StatusCode,
    code: &'static str,
    message: String,
}

impl PageError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> PageError {
        PageError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn expired() -> PageError {
        PageError::new(StatusCode::GONE, "EXPIRED", "The payment link has expired.")
    }

    pub(super) fn closed() -> PageError {
        PageError::new(StatusCode::CONFLICT, "TRADE_CLOSED", "The trade is closed.")
    }

    fn respond(self, json: bool) -> Response {
        if json {
            let body = serde_json::json!({"error": self.code, "message": self.message});
            (self.status, Json(body)).into_response()
        } else {
            html::message(self.status, &LOOK, "Payment refused", &self.message, None)
        }
    }
}

/// The pay page in one of its states: open (with the form posting to `action`), already
/// paid, or just paid (with `gateway_trade_no`).
fn render(
    title: &str,
    trade_no: &str,
    order: &Order,
    action: Option<&str>,
    paid: bool,
    gateway_trade_no: Option<&str>,
) -> Response {
    html::page(
        StatusCode::OK,
        &LOOK,
        "sandbox/pay.html",
        title,
        context! {
            subject => order.subject,
            amount => order.amount.to_major_string(),
            currency => order.amount.currency().code(),
            trade_no => trade_no,
            gateway_trade_no => gateway_trade_no,
            paid => paid,
            action => action,
            return_url => (paid || gateway_trade_no.is_some())
                .then(|| web_url(&order.return_url))
                .flatten(),
        },
    )
}

pub(super) async fn pay_page(
    State(sim): State<Arc<SandboxSim>>,
    Path(trade_no): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    let query = query.unwrap_or_default();
    let order = match sim.check_pay_url(&trade_no, &query) {
        Ok(o) => o,
        Err(e) => return e.respond(json),
    };
    let existing = {
        let mut trades = sim.lock();
        match trades.get(&trade_no).map(|t| t.status) {
            Some(Status::Paid | Status::Refunded) => trades
                .get(&trade_no)
                .and_then(|t| t.payment.as_ref())
                .map(|p| p.gateway_trade_no.clone()),
            Some(Status::Closed) => return PageError::closed().respond(json),
            _ if sim.now_ms() > order.expires_at => return PageError::expired().respond(json),
            Some(Status::Waiting) => {
                if let Some(t) = trades.get_mut(&trade_no) {
                    t.order = Some(order.clone());
                }
                None
            }
            None => {
                trades.insert(
                    trade_no.clone(),
                    Trade::new(Status::Waiting, Some(order.clone())),
                );
                None
            }
        }
    };
    if json {
        let body = match &existing {
            Some(g) => {
                serde_json::json!({"trade_no": trade_no, "gateway_trade_no": g, "status": "paid"})
            }
            None => serde_json::json!({"trade_no": trade_no, "status": "waiting"}),
        };
        return Json(body).into_response();
    }
    if existing.is_some() {
        return render("Already paid", &trade_no, &order, None, true, None);
    }
    let action = format!("/sim/sandbox/pay/{trade_no}?{query}");
    render(
        "Sandbox payment",
        &trade_no,
        &order,
        Some(&action),
        false,
        None,
    )
}

/// The Pay form's notification control.
fn notify_mode(body: &[u8]) -> Result<NotifyMode, PageError> {
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m);
    let form = parse_form(body).map_err(|e| bad(e.to_string()))?;
    let notify = field(&form, "notify").unwrap_or("");
    NotifyMode::parse(notify, Duration::ZERO, &NOTIFY_MODES)
        .ok_or_else(|| bad("notify must be normal, drop or duplicate".into()))
}

pub(super) async fn pay_submit(
    State(sim): State<Arc<SandboxSim>>,
    Path(trade_no): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let (order, mode) = match sim
        .check_pay_url(&trade_no, query.as_deref().unwrap_or_default())
        .and_then(|order| Ok((order, notify_mode(&body)?)))
    {
        Ok(paying) => paying,
        Err(e) => return e.respond(json),
    };
    // Decide under the lock; deliver after releasing it.
    let (gateway_trade_no, delivery) = match sim.pay(&trade_no, &order, mode) {
        Ok(paid) => paid,
        Err(e) => return e.respond(json),
    };
    if let Some(body) = delivery {
        tokio::spawn(Arc::clone(&sim).deliver(
            trade_no.clone(),
            order.notify_url.clone(),
            body,
            mode,
        ));
    }
    if json {
        return Json(serde_json::json!({
            "trade_no": trade_no,
            "gateway_trade_no": gateway_trade_no,
            "status": "paid",
        }))
        .into_response();
    }
    render(
        "Payment done",
        &trade_no,
        &order,
        None,
        false,
        Some(&gateway_trade_no),
    )
}
