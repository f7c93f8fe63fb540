//! The 易支付 buyer pages: `submit.php` / `api/pay/submit` (verify, create, show the
//! cashier), the cashier `pay/{trade_no}` with its Pay button and test controls, and the
//! simulator's `control` page (creation failures and delays, mapi reply kind, held
//! notifications).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kami_pay::epay::{field, parse_form};
use minijinja::context;

use super::{
    cny, merged, EpaySim, MapiReply, NotifyMode, Params, PayOptions, Status, NOTIFY_MODES,
};
use crate::common::faults::{form_millis, form_value};
use crate::common::html::{self, wants_json, web_url, Look};

const LOOK: Look = Look {
    site: "易支付 simulator",
    css: "body{font-family:sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.2rem;padding:.5rem 2rem}\
          fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}",
    footer: "kami 易支付 (Epay) simulator — test payments only, no real money moves.",
};

fn html_error(status: StatusCode, msg: &str) -> Response {
    html::message(
        status,
        &LOOK,
        "支付失败 / Payment refused",
        msg,
        Some("error"),
    )
}

fn page_error(json: bool, status: StatusCode, msg: &str) -> Response {
    if json {
        (status, Json(serde_json::json!({"code": -1, "msg": msg}))).into_response()
    } else {
        html_error(status, msg)
    }
}

impl EpaySim {
    /// The return URL with the signed notification parameters appended (G.3), if it is a
    /// web URL.
    fn return_url(&self, out_trade_no: &str) -> Option<String> {
        let return_url = self.lock().trades.get(out_trade_no)?.return_url.clone();
        web_url(&return_url)?;
        let (_, params) = self.notification(out_trade_no)?;
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        let sep = if return_url.contains('?') { '&' } else { '?' };
        Some(format!("{return_url}{sep}{query}"))
    }

    /// The cashier page of a trade.
    fn cashier_page(&self, trade_no: &str) -> Option<Response> {
        let st = self.lock();
        let out = st.by_trade_no.get(trade_no)?;
        let t = st.trades.get(out)?;
        let state = match t.status {
            Status::Paid | Status::Refunded => "paid",
            Status::Closed => "closed",
            Status::Waiting => "waiting",
        };
        Some(html::page(
            StatusCode::OK,
            &LOOK,
            "epay/cashier.html",
            "易支付收银台",
            context! {
                name => t.name,
                money => t.money.to_major_string(),
                pay_type => t.pay_type,
                trade_no => t.trade_no,
                out_trade_no => t.out_trade_no,
                state => state,
            },
        ))
    }
}

async fn submit_common(sim: Arc<EpaySim>, params: Result<Params, String>, v2: bool) -> Response {
    let params = match params {
        Ok(p) => p,
        Err(e) => return html_error(StatusCode::BAD_REQUEST, &e),
    };
    if let Err(e) = sim.verify_request(&params, v2) {
        return html_error(StatusCode::BAD_REQUEST, &e);
    }
    if let Err(e) = sim.creation_controls().await {
        return html_error(StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    match sim.create_trade(&params, true) {
        Ok((trade_no, _)) => sim
            .cashier_page(&trade_no)
            .unwrap_or_else(|| html_error(StatusCode::INTERNAL_SERVER_ERROR, "lost trade")),
        Err(e) => html_error(StatusCode::BAD_REQUEST, &e),
    }
}

/// `submit.php` (v1) and `api/pay/submit` (v2).
pub(super) async fn submit<const V2: bool>(
    State(sim): State<Arc<EpaySim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    submit_common(sim, merged(query.as_deref(), &body), V2).await
}

pub(super) async fn cashier(
    State(sim): State<Arc<EpaySim>>,
    Path(trade_no): Path<String>,
    headers: HeaderMap,
) -> Response {
    if wants_json(&headers) {
        let st = sim.lock();
        let Some(t) = st.by_trade_no.get(&trade_no).and_then(|o| st.trades.get(o)) else {
            return page_error(true, StatusCode::NOT_FOUND, "订单号不存在 (unknown trade)");
        };
        return Json(serde_json::json!({
            "trade_no": t.trade_no, "out_trade_no": t.out_trade_no,
            "money": t.money.to_major_string(), "status": t.status.name(),
        }))
        .into_response();
    }
    sim.cashier_page(&trade_no)
        .unwrap_or_else(|| html_error(StatusCode::NOT_FOUND, "订单号不存在 (unknown trade)"))
}

/// The cashier form's test controls.
fn pay_options(form: &[(String, String)]) -> Result<PayOptions, &'static str> {
    let amount = match form_value(form, "amount") {
        None => None,
        Some(a) => Some(
            cny(a).map_err(|_| "金额格式错误 (money must be a decimal with at most 2 digits)")?,
        ),
    };
    let notify = field(form, "notify").unwrap_or("");
    let notify = NotifyMode::parse(notify, Duration::ZERO, &NOTIFY_MODES)
        .ok_or("notify must be normal, drop, duplicate or hold")?;
    let delay = form_millis(form, "delay_ms", 3_600_000)
        .map_err(|_| "delay_ms must be 0-3600000")?
        .unwrap_or_default();
    Ok(PayOptions {
        amount,
        notify,
        delay,
    })
}

pub(super) async fn pay_form(
    State(sim): State<Arc<EpaySim>>,
    Path(trade_no): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return page_error(json, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(out) = sim.lock().by_trade_no.get(&trade_no).cloned() else {
        return page_error(json, StatusCode::NOT_FOUND, "订单号不存在 (unknown trade)");
    };
    let opts = match pay_options(&form) {
        Ok(o) => o,
        Err(e) => return page_error(json, StatusCode::BAD_REQUEST, e),
    };
    match sim.pay(&out, opts) {
        Ok(trade_no) => {
            if json {
                return Json(serde_json::json!({
                    "code": 1, "trade_no": trade_no, "out_trade_no": out, "status": "PAID",
                }))
                .into_response();
            }
            let paid = sim
                .lock()
                .trades
                .get(&out)
                .and_then(|t| t.paid)
                .map(|m| m.to_major_string())
                .unwrap_or_default();
            html::page(
                StatusCode::OK,
                &LOOK,
                "epay/done.html",
                "支付成功 / Payment done",
                context! {
                    paid => paid,
                    trade_no => trade_no,
                    out_trade_no => out,
                    return_url => sim.return_url(&out),
                },
            )
        }
        Err(e) => page_error(json, StatusCode::CONFLICT, &e),
    }
}

pub(super) async fn control_page(State(sim): State<Arc<EpaySim>>) -> Response {
    let (failure, delay_ms, reply, held, forged) = {
        let st = sim.lock();
        let c = &st.controls;
        (
            c.creation.fail_always.clone().unwrap_or_default(),
            c.creation.delay.as_millis().to_string(),
            c.mapi_reply,
            c.held.len(),
            c.forged_upstream,
        )
    };
    html::page(
        StatusCode::OK,
        &LOOK,
        "epay/control.html",
        "Simulator controls",
        context! {
            failure => failure,
            delay_ms => delay_ms,
            replies => MapiReply::ALL.map(MapiReply::name),
            reply => reply.name(),
            held => held,
            forged_upstream => forged,
        },
    )
}

pub(super) async fn control_form(
    State(sim): State<Arc<EpaySim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return page_error(json, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Some(f) = field(&form, "create_fail") {
        sim.set_create_failure((!f.is_empty()).then(|| f.to_owned()));
    }
    if let Some(d) = field(&form, "create_delay_ms").filter(|d| !d.is_empty()) {
        match d.parse::<u64>() {
            Ok(ms) if ms <= 600_000 => sim.set_create_delay(Duration::from_millis(ms)),
            _ => {
                return page_error(
                    json,
                    StatusCode::BAD_REQUEST,
                    "create_delay_ms must be 0-600000",
                )
            }
        }
    }
    if let Some(r) = field(&form, "mapi_reply") {
        match MapiReply::parse(r) {
            Some(r) => sim.set_mapi_reply(r),
            None => return page_error(json, StatusCode::BAD_REQUEST, "unknown mapi_reply"),
        }
    }
    match field(&form, "forged_upstream") {
        None | Some("") => {}
        Some("on") => sim.set_forged_upstream(true),
        Some("off") => sim.set_forged_upstream(false),
        Some(_) => {
            return page_error(
                json,
                StatusCode::BAD_REQUEST,
                "forged_upstream must be on or off",
            )
        }
    }
    let released = match field(&form, "release").unwrap_or("") {
        "" => 0,
        "in_order" => sim.release_held(false),
        "reverse" => sim.release_held(true),
        _ => {
            return page_error(
                json,
                StatusCode::BAD_REQUEST,
                "release must be in_order or reverse",
            )
        }
    };
    if json {
        return Json(serde_json::json!({"code": 1, "released": released})).into_response();
    }
    let message = format!("Applied. Released {released} held notification(s).");
    html::message(StatusCode::OK, &LOOK, "Simulator controls", &message, None)
}
