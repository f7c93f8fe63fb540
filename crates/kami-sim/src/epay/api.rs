//! The 易支付 merchant API: v1 `mapi.php` (create) and `api.php` (`act=order|refund|query`,
//! merchant key), v2 `api/pay/create|query|refund|refundquery|close` and
//! `api/merchant/info` (RSA-signed both ways). Errors are `{"code":-1,"msg":…}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kami_core::{Currency, Money};
use kami_pay::crypto::ct_eq;
use kami_pay::epay::{field, parse_form};

use super::{
    cny, datetime, merged, new_trade_no, req, str_fields, EpaySim, EpaySimCredentials, MapiReply,
    Params, Refund, Status,
};
use crate::common::html::origin;

pub(super) fn json_error(msg: &str) -> Response {
    Json(serde_json::json!({"code": -1, "msg": msg})).into_response()
}

/// Which URL form `mapi.php` / `api/pay/create` answers with: (kind, value) where kind is
/// `qrcode`, `payurl` or `urlscheme`.
fn pay_target(
    sim: &EpaySim,
    headers: &HeaderMap,
    trade_no: &str,
    device: &str,
) -> (&'static str, String) {
    let page = format!("{}/sim/epay/pay/{trade_no}", origin(headers));
    let reply = sim.lock().controls.mapi_reply;
    match reply {
        MapiReply::QrCode => ("qrcode", page),
        MapiReply::PayUrl => ("payurl", page),
        MapiReply::UrlScheme => ("urlscheme", format!("weixin://dl/business/?t={trade_no}")),
        MapiReply::Auto if device.is_empty() || device == "pc" => ("qrcode", page),
        MapiReply::Auto => ("payurl", page),
    }
}

/// The creation both API versions share, after the signature check: the `required` fields,
/// the creation controls, the trade, and where the buyer pays it (trade number, form kind,
/// URL).
async fn create(
    sim: &EpaySim,
    params: &Params,
    headers: &HeaderMap,
    required: &[&str],
) -> Result<(String, &'static str, String), String> {
    for k in required {
        req(params, k)?;
    }
    sim.creation_controls().await?;
    let trade_no = match sim.create_trade(params, false)? {
        (_, true) => return Err("订单已支付 (already paid)".into()),
        (t, false) => t,
    };
    let device = field(params, "device").unwrap_or("");
    let (kind, value) = pay_target(sim, headers, &trade_no, device);
    Ok((trade_no, kind, value))
}

pub(super) async fn mapi_v1(
    State(sim): State<Arc<EpaySim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match parse_form(&body) {
        Ok(p) => p,
        Err(e) => return json_error(&e.to_string()),
    };
    if let Err(e) = sim.verify_request(&params, false) {
        return json_error(&e);
    }
    let (trade_no, kind, value) = match create(&sim, &params, &headers, &["clientip"]).await {
        Ok(created) => created,
        Err(e) => return json_error(&e),
    };
    let mut reply = serde_json::Map::new();
    reply.insert("code".into(), 1.into());
    reply.insert("msg".into(), "".into());
    reply.insert("trade_no".into(), trade_no.into());
    reply.insert(kind.into(), value.into());
    Json(serde_json::Value::Object(reply)).into_response()
}

pub(super) async fn api_v1(
    State(sim): State<Arc<EpaySim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = match merged(query.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return json_error(&e),
    };
    let EpaySimCredentials::V1 { key } = &sim.cfg.credentials else {
        return json_error("v1 接口未开启 (this host speaks v2)");
    };
    if field(&params, "pid") != Some(sim.cfg.pid.as_str()) {
        return json_error("商户不存在 (unknown pid)");
    }
    let given = field(&params, "key").unwrap_or("");
    if !ct_eq(given.as_bytes(), key.as_bytes()) {
        return Json(serde_json::json!({"code": -3, "msg": "KEY校验失败"})).into_response();
    }
    match field(&params, "act").unwrap_or("") {
        "order" => {
            let st = sim.lock();
            let Some(t) = EpaySim::lookup(&st, &params).and_then(|o| st.trades.get(&o)) else {
                return json_error("订单号不存在");
            };
            let mut reply = serde_json::Map::new();
            reply.insert("code".into(), 1.into());
            reply.insert("msg".into(), "查询订单号成功！".into());
            for (k, v) in sim.queried_fields(&st, t) {
                // `status` is a number on 彩虹 hosts; the rest are strings.
                let v = match (k.as_str(), v.parse::<u8>()) {
                    ("status", Ok(n)) => serde_json::Value::from(n),
                    _ => v.into(),
                };
                reply.insert(k, v);
            }
            Json(serde_json::Value::Object(reply)).into_response()
        }
        "refund" => match refund(&sim, &params) {
            Ok(_) => Json(serde_json::json!({"code": 1, "msg": "退款成功"})).into_response(),
            Err(e) => json_error(&e),
        },
        "query" => {
            let st = sim.lock();
            let balance: i64 = st
                .trades
                .values()
                .filter_map(|t| t.paid.map(|p| p.minor() - t.refunded_minor))
                .sum();
            let money = Money::new(balance, Currency::Cny)
                .map(|m| m.to_major_string())
                .unwrap_or_default();
            Json(serde_json::json!({
                "code": 1, "pid": sim.cfg.pid, "active": 1, "money": money,
                "orders": st.trades.len(),
            }))
            .into_response()
        }
        _ => Json(serde_json::json!({"code": -5, "msg": "No Act!"})).into_response(),
    }
}

/// Refund part or all of a paid trade. Idempotent per `out_refund_no` when given (v2).
fn refund(sim: &EpaySim, params: &Params) -> Result<Refund, String> {
    let money = cny(req(params, "money")?)?;
    if money.minor() <= 0 {
        return Err("退款金额不合法 (money must be positive)".into());
    }
    let out_refund_no = field(params, "out_refund_no").filter(|v| !v.is_empty());
    let mut st = sim.lock();
    let out = EpaySim::lookup(&st, params).ok_or_else(|| "订单号不存在".to_owned())?;
    let t = st
        .trades
        .get_mut(&out)
        .ok_or_else(|| "订单号不存在".to_owned())?;
    if let Some(r) = out_refund_no.and_then(|no| t.refunds.get(no)) {
        if r.money != money {
            return Err("退款单号已存在 (out_refund_no reused with another amount)".into());
        }
        return Ok(r.clone());
    }
    let Some(paid) = t.paid else {
        return Err("订单未支付 (not paid)".into());
    };
    if t.refunded_minor + money.minor() > paid.minor() {
        return Err("退款金额超过订单剩余金额 (exceeds the paid amount)".into());
    }
    t.refunded_minor += money.minor();
    if t.refunded_minor == paid.minor() {
        t.status = Status::Refunded;
    }
    let refund = Refund {
        refund_no: new_trade_no(sim.clock.now_secs()),
        money,
        addtime: datetime(sim.clock.now_secs()),
    };
    let key = out_refund_no.map_or_else(|| refund.refund_no.clone(), str::to_owned);
    t.refunds.insert(key, refund.clone());
    Ok(refund)
}

// ---------------------------------------------------------------------------------------
// Handlers: v2 API (G.5)
// ---------------------------------------------------------------------------------------

/// Parse and verify a v2 API request; `Err` is the (unsigned) error response.
fn v2_request(sim: &EpaySim, body: &[u8]) -> Result<Params, Box<Response>> {
    let params = parse_form(body).map_err(|e| Box::new(json_error(&e.to_string())))?;
    sim.verify_request(&params, true)
        .map_err(|e| Box::new(json_error(&e)))?;
    Ok(params)
}

pub(super) async fn create_v2(
    State(sim): State<Arc<EpaySim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let created = create(&sim, &params, &headers, &["method", "clientip"]).await;
    let (trade_no, kind, value) = match created {
        Ok(created) => created,
        Err(e) => return json_error(&e),
    };
    let pay_type = match kind {
        "qrcode" => "qrcode",
        "urlscheme" => "urlscheme",
        _ => "jump",
    };
    sim.v2_reply(str_fields(&[
        ("msg", String::new()),
        ("trade_no", trade_no),
        ("pay_type", pay_type.to_owned()),
        ("pay_info", value),
    ]))
}

pub(super) async fn query_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let fields = {
        let st = sim.lock();
        let Some(t) = EpaySim::lookup(&st, &params).and_then(|o| st.trades.get(&o)) else {
            return json_error("订单号不存在");
        };
        sim.queried_fields(&st, t)
    };
    sim.v2_reply(fields)
}

pub(super) async fn refund_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let trade_no = {
        let st = sim.lock();
        EpaySim::lookup(&st, &params)
            .and_then(|o| st.trades.get(&o))
            .map(|t| t.trade_no.clone())
            .unwrap_or_default()
    };
    match refund(&sim, &params) {
        Ok(r) => sim.v2_reply(str_fields(&[
            ("msg", "退款成功".to_owned()),
            ("refund_no", r.refund_no),
            (
                "out_refund_no",
                field(&params, "out_refund_no").unwrap_or("").to_owned(),
            ),
            ("trade_no", trade_no),
            ("money", r.money.to_major_string()),
            ("reducemoney", r.money.to_major_string()),
        ])),
        Err(e) => json_error(&e),
    }
}

pub(super) async fn refundquery_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let wanted_out = field(&params, "out_refund_no").filter(|v| !v.is_empty());
    let wanted_no = field(&params, "refund_no").filter(|v| !v.is_empty());
    let found = {
        let st = sim.lock();
        st.trades.values().find_map(|t| {
            t.refunds.iter().find_map(|(key, r)| {
                let hit = wanted_out.is_some_and(|w| w == key)
                    || wanted_no.is_some_and(|w| w == r.refund_no);
                hit.then(|| {
                    str_fields(&[
                        ("refund_no", r.refund_no.clone()),
                        ("out_refund_no", wanted_out.unwrap_or("").to_owned()),
                        ("trade_no", t.trade_no.clone()),
                        ("out_trade_no", t.out_trade_no.clone()),
                        ("money", r.money.to_major_string()),
                        ("status", "1".to_owned()),
                        ("addtime", r.addtime.clone()),
                    ])
                })
            })
        })
    };
    match found {
        Some(f) => sim.v2_reply(f),
        None => json_error("退款单号不存在"),
    }
}

pub(super) async fn close_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    let params = match v2_request(&sim, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let outcome = {
        let mut st = sim.lock();
        match EpaySim::lookup(&st, &params).and_then(|o| st.trades.get_mut(&o).map(|t| (o, t))) {
            None => Err("订单号不存在"),
            Some((_, t)) => match t.status {
                Status::Waiting | Status::Closed => {
                    t.status = Status::Closed;
                    Ok((t.trade_no.clone(), t.out_trade_no.clone()))
                }
                Status::Paid | Status::Refunded => Err("订单已支付，无法关闭"),
            },
        }
    };
    match outcome {
        Ok((trade_no, out_trade_no)) => sim.v2_reply(str_fields(&[
            ("msg", "关闭订单成功".to_owned()),
            ("trade_no", trade_no),
            ("out_trade_no", out_trade_no),
        ])),
        Err(e) => json_error(e),
    }
}

pub(super) async fn info_v2(State(sim): State<Arc<EpaySim>>, body: Bytes) -> Response {
    if let Err(r) = v2_request(&sim, &body) {
        return *r;
    }
    let (balance, orders) = {
        let st = sim.lock();
        let b: i64 = st
            .trades
            .values()
            .filter_map(|t| t.paid.map(|p| p.minor() - t.refunded_minor))
            .sum();
        (b, st.trades.len())
    };
    let money = Money::new(balance, Currency::Cny)
        .map(|m| m.to_major_string())
        .unwrap_or_default();
    sim.v2_reply(str_fields(&[
        ("pid", sim.cfg.pid.clone()),
        ("status", "1".to_owned()),
        ("money", money),
        ("orders", orders.to_string()),
    ]))
}
