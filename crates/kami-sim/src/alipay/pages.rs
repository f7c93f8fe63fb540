//! The buyer-facing and test-control pages of the Alipay simulator: the page/wap cashier,
//! the QR "scan" page, the Pay button, the index and the fault form (templates
//! `alipay/*.html`, auto-escaped).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kami_core::Money;
use kami_pay::alipay::wire::{self, signed_notify};
use kami_pay::sandbox::parse_form;
use minijinja::{context, Value as Ctx};
use serde_json::Value;

use super::api::{biz_str, invalid, ApiErr};
use super::{
    bj, AlipaySim, Fault, NotifyMode, PayOptions, SimError, Status, Trade, METHODS, NOTIFY_MODES,
};
use crate::common::faults::{form_millis, form_value, form_yuan};
use crate::common::html::{self, wants_json, web_url, Look};

const LOOK: Look = Look {
    site: "kami Alipay simulator",
    css: "body{font-family:sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}\
          .amount{font-size:2rem;font-weight:bold}button{font-size:1.2rem;padding:.5rem 2rem}\
          fieldset{margin:1rem 0}table{border-collapse:collapse}td,th{padding:.2rem .5rem;\
          border:1px solid #ccc}",
    footer: "kami Alipay gateway simulator — test payments only, no real money moves.",
};

fn page(status: StatusCode, title: &str, ctx: Ctx) -> Response {
    let ctx = context! { methods => METHODS, ..ctx };
    html::page(status, &LOOK, "alipay/cashier.html", title, ctx)
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// A gateway error shown to the buyer's browser (page/wap requests).
pub(super) fn gateway_error(e: &ApiErr) -> Response {
    let error =
        context! { code => e.code, msg => e.msg, sub_code => e.sub_code, sub_msg => e.sub_msg };
    page(
        StatusCode::BAD_REQUEST,
        "Payment request error",
        context! { error => error },
    )
}

/// What a cashier page shows.
struct View {
    out_trade_no: String,
    trade_no: String,
    subject: String,
    amount: Money,
    token: String,
    method: String,
    return_link: Option<String>,
}

impl View {
    /// The page's values; `pay_form` shows the Pay button, else `note` says why not.
    fn context(&self, pay_form: bool, note: &str) -> Ctx {
        context! {
            subject => self.subject,
            amount => self.amount.to_major_string(),
            out_trade_no => self.out_trade_no,
            trade_no => self.trade_no,
            method => self.method,
            token => pay_form.then_some(&self.token),
            note => note,
            return_url => self.return_link,
        }
    }
}

impl AlipaySim {
    fn view(&self, t: &Trade) -> View {
        View {
            out_trade_no: t.out_trade_no.clone(),
            trade_no: t.trade_no.clone(),
            subject: t.subject.clone(),
            amount: t.paid.unwrap_or(t.total),
            token: t.token.clone(),
            method: t.method.clone(),
            return_link: self.return_link(t),
        }
    }

    /// The signed browser return URL of a paid page/wap trade (A.4; never proof of payment).
    fn return_link(&self, t: &Trade) -> Option<String> {
        let url = web_url(t.return_url.as_deref()?)?;
        t.paid?;
        let params = vec![
            ("charset".to_owned(), "utf-8".to_owned()),
            ("out_trade_no".to_owned(), t.out_trade_no.clone()),
            ("method".to_owned(), format!("{}.return", t.method)),
            (
                "total_amount".to_owned(),
                t.paid.unwrap_or(t.total).to_major_string(),
            ),
            ("trade_no".to_owned(), t.trade_no.clone()),
            ("auth_app_id".to_owned(), self.cfg.app_id.clone()),
            ("version".to_owned(), "1.0".to_owned()),
            ("app_id".to_owned(), self.cfg.app_id.clone()),
            ("seller_id".to_owned(), self.cfg.seller_id.clone()),
            ("timestamp".to_owned(), bj(self.now_ms())),
        ];
        let signed = signed_notify(&self.cfg.gateway_key, t.sign_type, params).ok()?;
        let query = serde_urlencoded::to_string(signed).ok()?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Some(format!("{url}{sep}{query}"))
    }

    /// `alipay.trade.page.pay` / `wap.pay` reaching the gateway in the buyer's browser: the
    /// trade is created (or found) and shown with the Pay button. Opening the cashier counts
    /// as the buyer logging in, so the trade is visible to query from now on.
    pub(super) fn cashier(
        &self,
        method: &str,
        params: &[(String, String)],
        biz: &serde_json::Map<String, Value>,
        headers: &HeaderMap,
    ) -> Response {
        let want = if method == "alipay.trade.page.pay" {
            "FAST_INSTANT_TRADE_PAY"
        } else {
            "QUICK_WAP_WAY"
        };
        if biz_str(biz, "product_code").is_some_and(|p| p != want) {
            return gateway_error(&invalid("product_code"));
        }
        let mut out = Vec::new();
        let result = {
            let mut st = self.lock();
            match self.upsert_trade(&mut st, method, biz, params, &mut out) {
                Ok(t) => {
                    t.visible = true;
                    Ok(self.view(t))
                }
                Err(e) => {
                    let paid = biz_str(biz, "out_trade_no")
                        .and_then(|o| st.trades.get(o))
                        .filter(|t| t.paid.is_some())
                        .map(|t| self.view(t));
                    Err((e, paid))
                }
            }
        };
        for o in out {
            self.spawn_delivery(o);
        }
        let json = wants_json(headers);
        match result {
            Ok(v) if json => json_view(StatusCode::OK, &v, "WAIT_BUYER_PAY"),
            Ok(v) => cashier_page(&v),
            Err((_, Some(v))) => already_paid(&v, json),
            Err((e, None)) if e.sub_code == "ACQ.TRADE_HAS_CLOSE" => closed(json),
            Err((e, None)) if json => json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"code": e.code, "sub_code": e.sub_code, "sub_msg": e.sub_msg}),
            ),
            Err((e, None)) => gateway_error(&e),
        }
    }
}

fn json_view(status: StatusCode, v: &View, trade_status: &str) -> Response {
    json_response(
        status,
        serde_json::json!({
            "out_trade_no": v.out_trade_no,
            "trade_no": v.trade_no,
            "status": trade_status,
            "total_amount": v.amount.to_major_string(),
            "pay_url": format!("/sim/alipay/pay/{}", v.token),
            "return_url": v.return_link,
        }),
    )
}

fn cashier_page(v: &View) -> Response {
    page(
        StatusCode::OK,
        "Alipay cashier (simulated)",
        v.context(true, ""),
    )
}

fn already_paid(v: &View, json: bool) -> Response {
    if json {
        return json_view(StatusCode::OK, v, "TRADE_SUCCESS");
    }
    page(
        StatusCode::OK,
        "Already paid",
        v.context(false, "This trade is already paid."),
    )
}

fn closed(json: bool) -> Response {
    if json {
        return json_response(
            StatusCode::CONFLICT,
            serde_json::json!({"code": "40004", "sub_code": "ACQ.TRADE_HAS_CLOSE"}),
        );
    }
    html::message(
        StatusCode::CONFLICT,
        &LOOK,
        "Trade closed",
        "The trade is closed and can no longer be paid.",
        None,
    )
}

fn refused(status: StatusCode, code: &str, message: &str, json: bool) -> Response {
    if json {
        return json_response(
            status,
            serde_json::json!({"error": code, "message": message}),
        );
    }
    html::message(status, &LOOK, "Payment refused", message, None)
}

/// `GET /sim/alipay/qr/{token}`: the buyer scans the QR code.
pub(super) async fn qr_page(
    State(sim): State<Arc<AlipaySim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    let mut out = Vec::new();
    let result = {
        let mut st = sim.lock();
        let key = st.tokens.get(&token).cloned();
        match key.and_then(|k| st.trades.get_mut(&k)) {
            None => Err(None),
            Some(t) => {
                out.extend(sim.expire_locked(t, sim.now_ms()));
                match t.status {
                    Status::WaitBuyerPay => {
                        t.visible = true;
                        Ok(sim.view(t))
                    }
                    Status::Closed => Err(Some(None)),
                    Status::Success | Status::Finished => Err(Some(Some(sim.view(t)))),
                }
            }
        }
    };
    for o in out {
        sim.spawn_delivery(o);
    }
    match result {
        Ok(v) if json => json_view(StatusCode::OK, &v, "WAIT_BUYER_PAY"),
        Ok(v) => cashier_page(&v),
        Err(None) => refused(
            StatusCode::NOT_FOUND,
            "UNKNOWN_QR",
            "This QR code is unknown.",
            json,
        ),
        Err(Some(None)) => closed(json),
        Err(Some(Some(v))) => already_paid(&v, json),
    }
}

/// The Pay form's test controls.
fn pay_options(body: &[u8]) -> Result<PayOptions, String> {
    let form = &parse_form(body).map_err(|e| e.to_string())?;
    let amount = form_yuan(form, "amount")
        .map_err(|_| "amount must be a positive yuan amount like 12.30")?;
    let delay = form_millis(form, "delay_ms", 3_600_000)
        .map_err(|_| "delay_ms must be a number of milliseconds (at most an hour)")?
        .unwrap_or(Duration::from_millis(2000));
    let notify = NotifyMode::parse(
        form_value(form, "notify").unwrap_or(""),
        delay,
        &NOTIFY_MODES,
    )
    .ok_or("notify must be normal, drop, duplicate, delay or reorder")?;
    Ok(PayOptions { amount, notify })
}

/// `POST /sim/alipay/pay/{token}`: the Pay button, with the test controls.
pub(super) async fn pay_submit(
    State(sim): State<Arc<AlipaySim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let opts = match pay_options(&body) {
        Ok(o) => o,
        Err(m) => return refused(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &m, json),
    };
    let result = {
        let mut st = sim.lock();
        let key = st.tokens.get(&token).cloned();
        match key.and_then(|k| st.trades.get_mut(&k)) {
            None => Err((SimError::UnknownTrade, None)),
            Some(t) => match sim.pay_locked(t, opts) {
                Ok((_, o)) => Ok((sim.view(t), o)),
                Err(SimError::AlreadyPaid) => Err((SimError::AlreadyPaid, Some(sim.view(t)))),
                Err(e) => Err((e, None)),
            },
        }
    };
    match result {
        Ok((v, outgoing)) => {
            if let Some(o) = outgoing {
                sim.spawn_delivery(o);
            }
            if json {
                return json_view(StatusCode::OK, &v, "TRADE_SUCCESS");
            }
            page(
                StatusCode::OK,
                "Payment done",
                v.context(false, "Payment done."),
            )
        }
        Err((SimError::AlreadyPaid, Some(v))) => already_paid(&v, json),
        Err((SimError::Closed, _)) => closed(json),
        Err((SimError::Expired, _)) => refused(
            StatusCode::GONE,
            "EXPIRED",
            "The trade has expired and was closed.",
            json,
        ),
        Err(_) => refused(
            StatusCode::NOT_FOUND,
            "UNKNOWN_TRADE",
            "This payment is unknown.",
            json,
        ),
    }
}

/// `GET /sim/alipay/`: the trades and the fault form.
pub(super) async fn index_page(State(sim): State<Arc<AlipaySim>>) -> Response {
    let trades: Vec<Ctx> = sim
        .trades()
        .iter()
        .take(200)
        .map(|t| {
            context! {
                out_trade_no => t.out_trade_no,
                method => t.method,
                total => t.total.to_major_string(),
                status => t.status,
                visible => t.visible,
                qr_token => t.qr_token,
            }
        })
        .collect();
    html::page(
        StatusCode::OK,
        &LOOK,
        "alipay/index.html",
        "Alipay simulator",
        context! { trades => trades, methods => METHODS },
    )
}

/// The fault form's fault.
/// The fault form: which method, what fault, how many times.
fn queued_fault(body: &[u8]) -> Result<(String, Fault, u32), String> {
    let form = &parse_form(body).map_err(|e| e.to_string())?;
    let method = form_value(form, "method")
        .filter(|m| METHODS.contains(m))
        .ok_or("method must be one of the simulated alipay.trade.* methods")?;
    let times = match form_value(form, "times").map(str::parse::<u32>) {
        None => 1,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return Err("times must be 1..100".into()),
    };
    Ok((method.to_owned(), fault(form)?, times))
}

fn fault(form: &[(String, String)]) -> Result<Fault, &'static str> {
    let get = |k: &str| form_value(form, k);
    Ok(match get("fault").unwrap_or("") {
        "system_error" => Fault::system_error(),
        "sleep" => match form_millis(form, "sleep_ms", 600_000) {
            Ok(Some(d)) => Fault::Sleep(d),
            _ => return Err("sleep_ms must be a number of milliseconds (at most 10 minutes)"),
        },
        "lose_response" => Fault::LoseResponse,
        "forge_signature" => Fault::ForgeSignature,
        "unsigned" => Fault::Unsigned,
        "retry_later" => Fault::RetryLater,
        "error" => {
            let code = get("code").unwrap_or("40004");
            let sub_code = get("sub_code").unwrap_or("ACQ.SYSTEM_ERROR");
            Fault::Error {
                code: wire::clip(code, 8),
                msg: String::new(),
                sub_code: wire::clip(sub_code, 64),
                sub_msg: wire::clip(get("sub_msg").unwrap_or(sub_code), 128),
            }
        }
        _ => return Err("unknown fault"),
    })
}

/// `POST /sim/alipay/control`: queue a gateway fault.
pub(super) async fn control(
    State(sim): State<Arc<AlipaySim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let (method, fault, times) = match queued_fault(&body) {
        Ok(q) => q,
        Err(m) => return refused(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &m, json),
    };
    sim.inject_fault(&method, fault, times);
    if json {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"method": method, "queued": times}),
        );
    }
    page(
        StatusCode::OK,
        "Fault queued",
        context! { queued => context! { times => times, method => method } },
    )
}
