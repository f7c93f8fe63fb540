//! The buyer's approval page, `/sim/paypal/checkoutnow?token=ORDER`: the order, "Pay Now"
//! with the test controls, and after approval the redirect to the shop's `return_url` with
//! `token` and `PayerID` appended, as PayPal does. JSON for `Accept: application/json`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use minijinja::context;
use serde_json::json;

use super::{random_id, CaptureMode, NotifyMode, PaypalSim, PREFIX};
use crate::common::faults::{form_millis, form_value};
use crate::common::html::{self, wants_json, web_url, Look};

const LOOK: Look = Look {
    site: "PayPal simulator",
    css: "body{font-family:sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.1rem;padding:.4rem 1.5rem}\
          fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}",
    footer: "kami PayPal simulator — test payments only, no real money moves.",
};

const NOTIFY_MODES: [&str; 4] = ["normal", "drop", "duplicate", "delay"];

fn token(q: &HashMap<String, String>) -> String {
    q.get("token").cloned().unwrap_or_default()
}

/// `url` with `token` and `PayerID` added to its query.
fn with_params(url: &str, order_id: &str, payer_id: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={order_id}&PayerID={payer_id}")
}

pub(super) async fn approve_page(
    State(sim): State<Arc<PaypalSim>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = token(&q);
    let Some(o) = sim.lock().orders.get(&id).cloned() else {
        return refused(
            wants_json(&headers),
            StatusCode::NOT_FOUND,
            "Unknown order.",
        );
    };
    let capture_status = o.capture.as_ref().map(|c| c.status);
    if wants_json(&headers) {
        return Json(
            json!({"order_id": o.id, "status": o.status, "capture_status": capture_status,
                           "custom_id": o.custom_id, "value": o.amount.to_major_string(),
                           "currency": o.amount.currency().code()}),
        )
        .into_response();
    }
    let back = if o.status == "PAYER_ACTION_REQUIRED" {
        o.cancel_url.clone()
    } else {
        o.return_url.clone()
    };
    html::page(
        StatusCode::OK,
        &LOOK,
        "paypal/approve.html",
        "Pay with PayPal",
        context! {
            description => o.description,
            value => o.amount.to_major_string(),
            currency => o.amount.currency().code(),
            order_id => o.id,
            status => o.status,
            capture_status => capture_status,
            approvable => o.status == "PAYER_ACTION_REQUIRED",
            pending => capture_status == Some("PENDING"),
            action => format!("{PREFIX}/checkoutnow?token={id}"),
            return_url => web_url(&back),
        },
    )
}

fn refused(json: bool, status: StatusCode, message: &str) -> Response {
    if json {
        (
            status,
            Json(json!({"error": status.as_u16(), "message": message})),
        )
            .into_response()
    } else {
        html::message(status, &LOOK, "Payment refused", message, Some("error"))
    }
}

pub(super) async fn approve_submit(
    State(sim): State<Arc<PaypalSim>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_out = wants_json(&headers);
    let id = token(&q);
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    match form_value(&form, "action").unwrap_or("approve") {
        "complete" => {
            if sim.complete_pending(&id) {
                html::message(
                    StatusCode::OK,
                    &LOOK,
                    "Completed",
                    "The pending capture completed.",
                    None,
                )
            } else {
                refused(json_out, StatusCode::CONFLICT, "No pending capture.")
            }
        }
        "approve" => approve(&sim, &id, &form, json_out),
        _ => refused(json_out, StatusCode::BAD_REQUEST, "Unknown action."),
    }
}

fn approve(sim: &Arc<PaypalSim>, id: &str, form: &[(String, String)], json_out: bool) -> Response {
    let Ok(delay) = form_millis(form, "delay_ms", 600_000) else {
        return refused(
            json_out,
            StatusCode::BAD_REQUEST,
            "delay_ms must be milliseconds.",
        );
    };
    let notify = match NotifyMode::parse(
        form_value(form, "notify").unwrap_or(""),
        delay.unwrap_or(Duration::from_secs(3)),
        &NOTIFY_MODES,
    ) {
        Some(m) => m,
        None => return refused(json_out, StatusCode::BAD_REQUEST, "Unknown webhook mode."),
    };
    let capture_mode = match form_value(form, "capture").unwrap_or("completed") {
        "completed" => CaptureMode::Completed,
        "pending" => CaptureMode::Pending,
        "declined" => CaptureMode::Declined,
        _ => {
            return refused(
                json_out,
                StatusCode::BAD_REQUEST,
                "Unknown capture outcome.",
            )
        }
    };
    let (order, event) = {
        let mut inner = sim.lock();
        let Some(o) = inner.orders.get_mut(id) else {
            return refused(json_out, StatusCode::NOT_FOUND, "Unknown order.");
        };
        if o.status != "PAYER_ACTION_REQUIRED" {
            return refused(
                json_out,
                StatusCode::CONFLICT,
                "This order can no longer be approved.",
            );
        }
        o.status = "APPROVED";
        o.payer_id = Some(random_id(13));
        o.capture_mode = capture_mode;
        o.notify = notify;
        let o = o.clone();
        let resource = sim.order_json(&o);
        (
            o,
            sim.event("CHECKOUT.ORDER.APPROVED", "checkout-order", resource),
        )
    };
    sim.send_event(&order.id, event, order.notify);
    let back = with_params(
        &order.return_url,
        &order.id,
        order.payer_id.as_deref().unwrap_or(""),
    );
    if json_out {
        return Json(json!({"order_id": order.id, "status": "APPROVED", "return_url": back}))
            .into_response();
    }
    match web_url(&back) {
        Some(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_owned())]).into_response(),
        None => html::message(StatusCode::OK, &LOOK, "Approved", "Payment approved.", None),
    }
}
