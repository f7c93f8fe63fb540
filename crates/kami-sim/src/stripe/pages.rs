//! The hosted checkout page (`c/pay/{id}`): what the buyer sees and pays on, with the test
//! controls (how the payment goes, how its webhooks are sent) and the simulator-wide controls.
//! `Accept: application/json` gets JSON instead of HTML (tests, kami-bench).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kami_core::Currency;
use kami_pay::form::parse_form;
use minijinja::context;
use serde_json::json;

use super::{NotifyMode, Outcome, PayOptions, Status, StripeSim};
use crate::common::faults::form_value;
use crate::common::html::{self, wants_json, web_url, Look};

const LOOK: Look = Look {
    site: "Stripe Checkout simulator",
    css: "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#30313d}\
          h1{color:#635bff}.amount{font-size:2rem;font-weight:bold}button{font-size:1.1rem;padding:.5rem 2rem;background:#635bff;color:#fff;border:0;border-radius:6px}\
          fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}",
    footer: "kami Stripe Checkout simulator — test payments only, no real money moves.",
};

const NOTIFY_MODES: [&str; 6] = ["normal", "drop", "duplicate", "delay", "hold", "reorder"];
const UNKNOWN: &str = "No such checkout session.";

fn page_error(json: bool, status: StatusCode, msg: &str) -> Response {
    if json {
        (status, Json(json!({"error": {"message": msg}}))).into_response()
    } else {
        html::message(status, &LOOK, "Checkout", msg, Some("error"))
    }
}

impl StripeSim {
    fn render(&self, id: &str, action: &str, notice: Option<&str>) -> Option<Response> {
        let st = self.lock();
        let s = st.sessions.get(id)?;
        let code = s.amount.currency().code();
        let success = s.success_url.replace("{CHECKOUT_SESSION_ID}", &s.id);
        Some(html::page(
            StatusCode::OK,
            &LOOK,
            "stripe/checkout.html",
            "Checkout",
            context! {
                notice => notice,
                name => s.product_name,
                amount => s.amount.to_major_string(),
                minor => s.amount.minor(),
                currency => code,
                currency_code => code.to_ascii_lowercase(),
                id => s.id,
                reference => s.client_reference_id.as_deref().unwrap_or(""),
                status => s.status.name(),
                payment_status => if s.paid { "paid" } else { "unpaid" },
                action => action,
                success_url => web_url(&success).map(str::to_owned),
                cancel_url => web_url(&s.cancel_url).map(str::to_owned),
            },
        ))
    }

    fn page_json(&self, id: &str, result: &str) -> Response {
        let st = self.lock();
        match st.sessions.get(id) {
            Some(s) => Json(json!({
                "result": result,
                "id": s.id,
                "client_reference_id": s.client_reference_id,
                "status": s.status.name(),
                "payment_status": if s.paid { "paid" } else { "unpaid" },
                "payment_intent": s.payment_intent,
            }))
            .into_response(),
            None => page_error(true, StatusCode::NOT_FOUND, UNKNOWN),
        }
    }
}

pub(super) async fn checkout(
    State(sim): State<Arc<StripeSim>>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    sim.expire_due(&id);
    if wants_json(&headers) {
        return sim.page_json(&id, "");
    }
    sim.render(&id, uri.path(), None)
        .unwrap_or_else(|| page_error(false, StatusCode::NOT_FOUND, UNKNOWN))
}

fn pay_options(form: &[(String, String)]) -> Result<PayOptions, String> {
    let outcome = match form_value(form, "outcome").unwrap_or("paid") {
        "paid" => Outcome::Paid,
        "async_succeeded" => Outcome::AsyncSucceeded,
        "async_failed" => Outcome::AsyncFailed,
        _ => return Err("outcome must be paid, async_succeeded or async_failed".into()),
    };
    let mode = form_value(form, "notify").unwrap_or("normal");
    let delay_ms = match form_value(form, "delay_ms") {
        None => 3000,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| "delay_ms must be a whole number".to_owned())?
            .min(3_600_000),
    };
    let notify = NotifyMode::parse(mode, Duration::from_millis(delay_ms), &NOTIFY_MODES)
        .ok_or("notify must be normal, drop, duplicate, delay, hold or reorder")?;
    let amount = form_value(form, "amount")
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| "amount must be whole minor units")
        })
        .transpose()?;
    let currency = form_value(form, "currency")
        .map(|c| Currency::parse(&c.to_ascii_uppercase()).map_err(|_| "unknown currency"))
        .transpose()?;
    Ok(PayOptions {
        outcome,
        notify,
        amount,
        currency,
        delay: Duration::ZERO,
    })
}

fn apply_controls(sim: &StripeSim, form: &[(String, String)]) -> Result<(), String> {
    let num = |k: &str| -> Result<u64, String> {
        form_value(form, k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{k} must be a whole number"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    sim.fail_next_creates(u32::try_from(num("fail_creates")?).unwrap_or(u32::MAX));
    sim.set_create_delay(Duration::from_millis(num("create_delay_ms")?.min(600_000)));
    Ok(())
}

pub(super) async fn submit(
    State(sim): State<Arc<StripeSim>>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return page_error(json, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if !sim.lock().sessions.contains_key(&id) {
        return page_error(json, StatusCode::NOT_FOUND, UNKNOWN);
    }
    let done = |msg: &str| -> Response {
        if json {
            return sim.page_json(&id, msg);
        }
        sim.render(&id, uri.path(), Some(msg))
            .unwrap_or_else(|| page_error(false, StatusCode::NOT_FOUND, UNKNOWN))
    };
    match form_value(&form, "action").unwrap_or("pay") {
        "pay" => {
            let opts = match pay_options(&form) {
                Ok(o) => o,
                Err(m) => return page_error(json, StatusCode::BAD_REQUEST, &m),
            };
            match sim.pay(&id, opts) {
                Ok(_) => done("Payment done."),
                Err(m) => {
                    let status = match sim.lock().sessions.get(&id).map(|s| s.status) {
                        Some(Status::Open) | None => StatusCode::BAD_REQUEST,
                        Some(_) => StatusCode::CONFLICT,
                    };
                    page_error(json, status, &m)
                }
            }
        }
        "release" => {
            let n = sim.release_held(false);
            done(&format!("Released {n} held session(s)."))
        }
        "controls" => match apply_controls(&sim, &form) {
            Ok(()) => done("Simulator controls applied."),
            Err(m) => page_error(json, StatusCode::BAD_REQUEST, &m),
        },
        _ => page_error(json, StatusCode::BAD_REQUEST, "Unknown action."),
    }
}
