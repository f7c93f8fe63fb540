//! The WeChat Pay buyer pages: `/sim/wechatpay/scan/{TOKEN}` (the "phone" that scans a
//! `code_url`) and `/sim/wechatpay/h5/{TOKEN}` (the H5 cashier, whose `redirect_url` becomes
//! the "return to shop" link). Both show the order, a Pay button with the [`PayOptions`] test
//! controls, and the simulator-wide controls; JSON for `Accept: application/json`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use minijinja::context;
use serde_json::json;

use super::{yuan, Kind, NotifyMode, Paid, PayOptions, ResponseFault, WechatSim, PREFIX};
use crate::common::faults::form_value;
use crate::common::html::{self, wants_json, web_url, Look};

const LOOK: Look = Look {
    site: "WeChat Pay simulator",
    css: "body{font-family:sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.1rem;padding:.4rem 1.5rem}\
          fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}",
    footer: "kami WeChat Pay simulator — test payments only, no real money moves.",
};

/// The `notify` values the pay form offers.
const NOTIFY_MODES: [&str; 5] = ["normal", "drop", "duplicate", "delay", "hold"];

const UNKNOWN_CODE: &str = "Unknown or expired payment code.";

/// What a buyer page shows of a trade.
struct PageView {
    out_trade_no: String,
    description: String,
    total: i64,
    state: &'static str,
    paid: Option<Paid>,
    kind: Kind,
}

impl WechatSim {
    fn view(&self, token: &str) -> Option<PageView> {
        let inner = self.lock();
        let no = inner.tokens.get(token)?;
        let t = inner.trades.get(no)?;
        Some(PageView {
            out_trade_no: t.out_trade_no.clone(),
            description: t.description.clone(),
            total: t.total,
            state: t.state,
            paid: t.paid.clone(),
            kind: t.kind,
        })
    }
}

fn page_error(json: bool, status: StatusCode, message: &str) -> Response {
    if json {
        (
            status,
            Json(json!({"error": status.as_u16(), "message": message})),
        )
            .into_response()
    } else {
        html::message(status, &LOOK, "Payment refused", message, None)
    }
}

/// The "return to shop" URL of an H5 page (`redirect_url`, http(s) only).
fn redirect_url(query: Option<&str>) -> Option<String> {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    let (_, url) = params.iter().find(|(k, _)| k == "redirect_url")?;
    web_url(url).map(str::to_owned)
}

fn render_page(v: &PageView, action: &str, query: Option<&str>, notice: Option<&str>) -> Response {
    let title = match v.kind {
        Kind::Native => "WeChat Pay — scan",
        Kind::H5 => "WeChat Pay — H5 cashier",
        Kind::Jsapi => "WeChat Pay — JSAPI",
    };
    html::page(
        StatusCode::OK,
        &LOOK,
        "wechatpay/pay.html",
        title,
        context! {
            notice => notice,
            description => v.description,
            amount => yuan(v.total),
            total => v.total,
            out_trade_no => v.out_trade_no,
            state => v.state,
            paid => v.paid.is_some(),
            paid_amount => v.paid.as_ref().map(|p| yuan(p.total)),
            transaction_id => v.paid.as_ref().map(|p| p.transaction_id.clone()),
            return_url => (v.kind == Kind::H5).then(|| redirect_url(query)).flatten(),
            payable => matches!(v.state, "NOTPAY" | "USERPAYING" | "PAYERROR"),
            action => action,
        },
    )
}

pub(super) async fn scan_page(
    State(sim): State<Arc<WechatSim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    show_page(
        &sim,
        &token,
        &headers,
        None,
        &format!("{PREFIX}/scan/{token}"),
    )
}

pub(super) async fn h5_page(
    State(sim): State<Arc<WechatSim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let action = match &q {
        Some(q) => format!("{PREFIX}/h5/{token}?{q}"),
        None => format!("{PREFIX}/h5/{token}"),
    };
    show_page(&sim, &token, &headers, q.as_deref(), &action)
}

fn show_page(
    sim: &WechatSim,
    token: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    action: &str,
) -> Response {
    let json = wants_json(headers);
    let Some(v) = sim.view(token) else {
        return page_error(json, StatusCode::NOT_FOUND, UNKNOWN_CODE);
    };
    if json {
        return Json(json!({
            "out_trade_no": v.out_trade_no, "trade_state": v.state, "total": v.total,
            "transaction_id": v.paid.as_ref().map(|p| p.transaction_id.clone()),
        }))
        .into_response();
    }
    render_page(&v, action, query, None)
}

fn form_u64(form: &[(String, String)], key: &str) -> Result<Option<u64>, String> {
    match form_value(form, key) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} must be a whole number")),
    }
}

/// Parse the pay form's test controls.
fn pay_options(form: &[(String, String)]) -> Result<PayOptions, String> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let amount = form_u64(form, "amount")?
        .map(|a| i64::try_from(a).map_err(|_| "amount is too large".to_owned()))
        .transpose()?;
    let mode = get("notify").unwrap_or("normal");
    let delay = if mode == "delay" {
        Duration::from_millis(form_u64(form, "delay_ms")?.unwrap_or(3000).min(3_600_000))
    } else {
        Duration::ZERO
    };
    let notify = NotifyMode::parse(mode, delay, &NOTIFY_MODES)
        .ok_or("notify must be normal, drop, duplicate, delay or hold")?;
    let flag = |k: &str| get(k).is_some_and(|v| !v.is_empty() && v != "0");
    Ok(PayOptions {
        amount,
        notify,
        signtest_probe: flag("signtest"),
        stale_first: flag("stale"),
    })
}

/// The simulator-wide controls form.
fn apply_controls(sim: &WechatSim, form: &[(String, String)]) -> Result<(), String> {
    let fail = form_u64(form, "fail_creates")?.unwrap_or(0);
    let delay = form_u64(form, "create_delay_ms")?.unwrap_or(0);
    let polls = form_u64(form, "refund_polls")?.unwrap_or(1);
    let fault = form
        .iter()
        .find(|(k, _)| k == "response_fault")
        .map_or(Some(ResponseFault::None), |(_, v)| ResponseFault::parse(v))
        .ok_or("unknown response_fault")?;
    sim.fail_next_creates(u32::try_from(fail).unwrap_or(u32::MAX));
    sim.set_create_delay(Duration::from_millis(delay.min(600_000)));
    sim.set_refund_processing_polls(u32::try_from(polls).unwrap_or(u32::MAX));
    sim.set_response_fault(fault);
    Ok(())
}

pub(super) async fn page_submit(
    State(sim): State<Arc<WechatSim>>,
    Path(token): Path<String>,
    OriginalUri(uri): OriginalUri,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return page_error(json, StatusCode::BAD_REQUEST, "The form is not valid.");
    };
    let Some(v) = sim.view(&token) else {
        return page_error(json, StatusCode::NOT_FOUND, UNKNOWN_CODE);
    };
    let action_url = uri.to_string();
    let done = |sim: &WechatSim, msg: &str| -> Response {
        let v = sim.view(&token);
        if json {
            return Json(json!({
                "result": msg,
                "out_trade_no": v.as_ref().map(|v| v.out_trade_no.clone()),
                "trade_state": v.as_ref().map(|v| v.state),
                "transaction_id": v.and_then(|v| v.paid.map(|p| p.transaction_id)),
            }))
            .into_response();
        }
        match v {
            Some(v) => render_page(&v, &action_url, q.as_deref(), Some(msg)),
            None => page_error(false, StatusCode::NOT_FOUND, UNKNOWN_CODE),
        }
    };
    let action = form
        .iter()
        .find(|(k, _)| k == "action")
        .map_or("pay", |(_, v)| v.as_str());
    match action {
        "pay" => {
            let opts = match pay_options(&form) {
                Ok(o) => o,
                Err(m) => return page_error(json, StatusCode::BAD_REQUEST, &m),
            };
            match sim.pay(&v.out_trade_no, opts) {
                Ok(_) => done(&sim, "Payment done."),
                Err(e) => page_error(json, e.status(), e.message()),
            }
        }
        "release" => {
            let n = sim.release_held();
            done(&sim, &format!("Released {n} held notification(s)."))
        }
        "controls" => match apply_controls(&sim, &form) {
            Ok(()) => done(&sim, "Simulator controls applied."),
            Err(m) => page_error(json, StatusCode::BAD_REQUEST, &m),
        },
        _ => page_error(json, StatusCode::BAD_REQUEST, "Unknown action."),
    }
}
