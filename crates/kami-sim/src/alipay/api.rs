//! The Alipay gateway itself, `gateway.do`: the request checks every method shares (A.1,
//! A.2; checklist F), the signed JSON answers (A.3) with the injected [`Fault`]s, and the
//! business semantics of each method (A.5). `page.pay` / `wap.pay` reaching the gateway in a
//! browser are answered by the cashier ([`super::pages`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use kami_core::{Currency, Money};
use kami_pay::alipay::wire::{
    self, build_response, field, request_sign_content, response_node_name, AlipaySignType,
    ERROR_NODE, REQUEST_UNSIGNED,
};
use kami_pay::sandbox::parse_form;
use serde_json::Value;

use super::{
    bj, pages, random_digits, random_token, AlipaySim, Fault, NotifyMode, Outgoing, Refund,
    SimState, Status, Trade, METHODS,
};
use crate::common::html::origin;

#[derive(Debug, Clone)]
pub(super) struct ApiErr {
    pub(super) code: String,
    pub(super) msg: String,
    pub(super) sub_code: String,
    pub(super) sub_msg: String,
}

fn err(code: &str, sub_code: &str, sub_msg: impl Into<String>) -> ApiErr {
    let msg = match code {
        "20000" => "Service Currently Unavailable",
        "40001" => "Missing Required Arguments",
        "40002" => "Invalid Arguments",
        "40004" => "Business Failed",
        _ => "Error",
    };
    ApiErr {
        code: code.to_owned(),
        msg: msg.to_owned(),
        sub_code: sub_code.to_owned(),
        sub_msg: sub_msg.into(),
    }
}

fn acq(sub_code: &str, sub_msg: &str) -> ApiErr {
    err("40004", sub_code, sub_msg)
}

fn not_exist() -> ApiErr {
    acq("ACQ.TRADE_NOT_EXIST", "交易不存在")
}

pub(super) fn invalid(what: &str) -> ApiErr {
    acq("ACQ.INVALID_PARAMETER", &format!("参数无效: {what}"))
}

type Fields = Vec<(&'static str, Value)>;

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

pub(super) fn biz_str<'a>(biz: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    biz.get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

fn parse_amount(v: Option<&str>, what: &str) -> Result<Money, ApiErr> {
    let m = v
        .and_then(|v| Money::from_major_str(v, Currency::Cny).ok())
        .ok_or_else(|| invalid(what))?;
    if m.minor() < 1 || m.minor() > 10_000_000_000 {
        return Err(invalid(what));
    }
    Ok(m)
}

/// `timeout_express` (`90m`, `2h`, `1d`; A.6) in milliseconds.
fn parse_timeout_express(v: &str) -> Option<i64> {
    let unit = match v.as_bytes().last()? {
        b'm' => 60_000,
        b'h' => 3_600_000,
        b'd' => 86_400_000,
        _ => return None,
    };
    // The last byte is ASCII, so this slice ends on a character boundary.
    let n: i64 = v.get(..v.len() - 1)?.parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(unit)
}

fn is_browser_method(m: &str) -> bool {
    m == "alipay.trade.page.pay" || m == "alipay.trade.wap.pay"
}

fn valid_out_trade_no(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Fields of a successful answer, after `code` and `msg`.
type Answer = Result<Fields, ApiErr>;

impl AlipaySim {
    /// The request checks every method shares (A.1, A.2; checklist F), in the gateway's order.
    fn check_common(&self, params: &[(String, String)]) -> Result<(), ApiErr> {
        let get = |k: &str| field(params, k).filter(|v| !v.is_empty());
        let required = [
            ("app_id", "isv.missing-app-id", "缺少AppID参数"),
            ("sign", "isv.missing-signature", "缺少签名参数"),
            (
                "sign_type",
                "isv.missing-signature-type",
                "缺少签名类型参数",
            ),
            ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
            ("version", "isv.missing-version", "缺少版本参数"),
            ("charset", "isv.missing-charset", "缺少字符集参数"),
        ];
        for (k, sub, msg) in required {
            if get(k).is_none() {
                return Err(err("40001", sub, msg));
            }
        }
        if get("app_id") != Some(self.cfg.app_id.as_str()) {
            return Err(err("40002", "isv.invalid-app-id", "无效的AppID参数"));
        }
        let Some(sign_type) = get("sign_type").and_then(AlipaySignType::parse) else {
            return Err(err("40002", "isv.invalid-signature-type", "无效签名类型"));
        };
        if !get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8")) {
            return Err(err("40002", "isv.invalid-charset", "字符集错误"));
        }
        if get("format").is_some_and(|f| !f.eq_ignore_ascii_case("JSON")) {
            return Err(err("40002", "isv.invalid-format", "无效的数据格式"));
        }
        if get("version") != Some("1.0") {
            return Err(err("40002", "isv.invalid-version", "无效的版本号"));
        }
        let window = self.settings().timestamp_window;
        let ts = get("timestamp").and_then(wire::parse_beijing_time);
        let fresh = match (ts, window) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(ts), Some(w)) => {
                (ts - self.now_ms()).unsigned_abs()
                    <= u64::try_from(w.as_millis()).unwrap_or(u64::MAX)
            }
        };
        if !fresh {
            return Err(err("40002", "isv.invalid-timestamp", "非法的时间戳参数"));
        }
        if !wire::verify_params(
            &self.cfg.merchant_public_key,
            sign_type,
            params,
            REQUEST_UNSIGNED,
        ) {
            let content = request_sign_content(params);
            return Err(err(
                "40002",
                "isv.invalid-signature",
                format!(
                    "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}"
                ),
            ));
        }
        Ok(())
    }

    /// The signed JSON answer (A.3) to an API call.
    fn respond(
        &self,
        node: &str,
        sign_type: AlipaySignType,
        answer: Answer,
        fault: Option<&Fault>,
    ) -> Response {
        let answer = match fault {
            Some(Fault::LoseResponse) => Err(err("20000", "isp.unknow-error", "系统繁忙")),
            _ => answer,
        };
        let fields: Fields = match answer {
            Ok(f) => {
                let mut all: Fields = vec![("code", s("10000")), ("msg", s("Success"))];
                all.extend(f);
                all
            }
            Err(e) => vec![
                ("code", s(e.code)),
                ("msg", s(e.msg)),
                ("sub_code", s(e.sub_code)),
                ("sub_msg", s(e.sub_msg)),
            ],
        };
        let body = match fault {
            Some(Fault::Unsigned) => {
                let name = Value::String(node.to_owned()).to_string();
                Ok(format!("{{{name}:{}}}", wire::compact_json_object(&fields)))
            }
            Some(Fault::ForgeSignature) => {
                let mut other = fields.clone();
                other.push(("forged", s("yes")));
                // The signature of other content, attached to these fields.
                build_response(&self.cfg.gateway_key, sign_type, node, &other).and_then(|b| {
                    let good = build_response(&self.cfg.gateway_key, sign_type, node, &fields)?;
                    let sig_at = |x: &str| x.rfind(",\"sign\":").unwrap_or(x.len());
                    Ok(format!("{}{}", &good[..sig_at(&good)], &b[sig_at(&b)..]))
                })
            }
            _ => build_response(&self.cfg.gateway_key, sign_type, node, &fields),
        };
        match body {
            Ok(b) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
                b,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }

    /// Find the trade a business request names (`trade_no` wins over `out_trade_no`),
    /// expiring it first if its time is up.
    fn find_trade<'a>(
        &self,
        st: &'a mut SimState,
        biz: &serde_json::Map<String, Value>,
        out: &mut Vec<Outgoing>,
    ) -> Result<&'a mut Trade, ApiErr> {
        let key = if let Some(trade_no) = biz_str(biz, "trade_no") {
            st.trades
                .values()
                .find(|t| t.trade_no == trade_no)
                .map(|t| t.out_trade_no.clone())
        } else if let Some(o) = biz_str(biz, "out_trade_no") {
            Some(o.to_owned())
        } else {
            return Err(invalid("out_trade_no"));
        };
        let t = key
            .and_then(|k| st.trades.get_mut(&k))
            .ok_or_else(not_exist)?;
        out.extend(self.expire_locked(t, self.now_ms()));
        Ok(t)
    }

    fn new_trade(
        &self,
        method: &str,
        out_trade_no: &str,
        subject: &str,
        total: Money,
        params: &[(String, String)],
        expire_ms: Option<i64>,
    ) -> Trade {
        let now = self.now_ms();
        let date: String = bj(now)
            .chars()
            .filter(char::is_ascii_digit)
            .take(8)
            .collect();
        Trade {
            out_trade_no: out_trade_no.to_owned(),
            trade_no: format!("{date}22001{}", random_digits(15)),
            method: method.to_owned(),
            subject: subject.to_owned(),
            total,
            notify_url: field(params, "notify_url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            return_url: field(params, "return_url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            expire_ms,
            sign_type: field(params, "sign_type")
                .and_then(AlipaySignType::parse)
                .unwrap_or(AlipaySignType::Rsa2),
            token: random_token(),
            visible: false,
            status: Status::WaitBuyerPay,
            created_ms: now,
            paid_ms: None,
            paid: None,
            refunds: Vec::new(),
            notifications: Vec::new(),
        }
    }

    /// Validate the order fields of a create call; `(out_trade_no, subject, total, expiry)`.
    fn order_fields(
        biz: &serde_json::Map<String, Value>,
        default_ttl_ms: i64,
        now: i64,
    ) -> Result<(String, String, Money, Option<i64>), ApiErr> {
        let out_trade_no = biz_str(biz, "out_trade_no")
            .filter(|o| valid_out_trade_no(o))
            .ok_or_else(|| invalid("out_trade_no"))?;
        let total = parse_amount(biz_str(biz, "total_amount"), "total_amount")?;
        let subject = biz_str(biz, "subject")
            .filter(|s| s.chars().count() <= 256)
            .ok_or_else(|| invalid("subject"))?;
        let expire = match (biz_str(biz, "time_expire"), biz_str(biz, "timeout_express")) {
            (Some(t), _) => {
                Some(wire::parse_beijing_time(t).ok_or_else(|| invalid("time_expire"))?)
            }
            (None, Some(t)) => Some(now.saturating_add(
                parse_timeout_express(t).ok_or_else(|| invalid("timeout_express"))?,
            )),
            (None, None) => Some(now + default_ttl_ms),
        };
        Ok((out_trade_no.to_owned(), subject.to_owned(), total, expire))
    }

    /// Create-or-reuse under the lock (A.5 precreate/page/wap semantics for a known
    /// `out_trade_no`).
    pub(super) fn upsert_trade<'a>(
        &self,
        st: &'a mut SimState,
        method: &str,
        biz: &serde_json::Map<String, Value>,
        params: &[(String, String)],
        out: &mut Vec<Outgoing>,
    ) -> Result<&'a mut Trade, ApiErr> {
        let default_ttl = if method == "alipay.trade.precreate" {
            2 * 3_600_000
        } else {
            15 * 86_400_000
        };
        let (out_trade_no, subject, total, expire) =
            Self::order_fields(biz, default_ttl, self.now_ms())?;
        if !st.trades.contains_key(&out_trade_no) {
            let t = self.new_trade(method, &out_trade_no, &subject, total, params, expire);
            st.tokens.insert(t.token.clone(), out_trade_no.clone());
            st.trades.insert(out_trade_no.clone(), t);
        }
        let t = st.trades.get_mut(&out_trade_no).ok_or_else(not_exist)?;
        out.extend(self.expire_locked(t, self.now_ms()));
        match t.status {
            Status::Success | Status::Finished => Err(acq("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")),
            Status::Closed => Err(acq("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
            Status::WaitBuyerPay if t.total != total => {
                Err(acq("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"))
            }
            Status::WaitBuyerPay => Ok(t),
        }
    }

    fn dispatch(
        &self,
        st: &mut SimState,
        method: &str,
        params: &[(String, String)],
        biz: &serde_json::Map<String, Value>,
        base: &str,
        out: &mut Vec<Outgoing>,
    ) -> Answer {
        match method {
            "alipay.trade.precreate" => {
                let t = self.upsert_trade(st, method, biz, params, out)?;
                Ok(vec![
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("qr_code", s(format!("{base}/sim/alipay/qr/{}", t.token))),
                ])
            }
            "alipay.trade.query" => {
                let t = self.find_trade(st, biz, out)?;
                if !t.visible {
                    return Err(not_exist());
                }
                let amount = t.paid.unwrap_or(t.total).to_major_string();
                let paid = t.paid.map(Money::to_major_string);
                let mut f: Fields = vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("buyer_logon_id", s("158****1234")),
                    ("trade_status", s(t.status.api())),
                    ("total_amount", s(&amount)),
                    ("buyer_pay_amount", s(paid.as_deref().unwrap_or("0.00"))),
                    ("point_amount", s("0.00")),
                    ("invoice_amount", s(paid.as_deref().unwrap_or("0.00"))),
                    ("receipt_amount", s(paid.as_deref().unwrap_or("0.00"))),
                    ("buyer_user_id", s("2088102177846880")),
                    ("subject", s(&t.subject)),
                ];
                if let (Some(p), Some(at)) = (&paid, t.paid_ms) {
                    f.push(("send_pay_date", s(bj(at))));
                    f.push((
                        "fund_bill_list",
                        serde_json::json!([{"fund_channel": "ALIPAYACCOUNT", "amount": p}]),
                    ));
                }
                Ok(f)
            }
            "alipay.trade.close" => {
                let t = self.find_trade(st, biz, out)?;
                if !t.visible {
                    return Err(not_exist());
                }
                if t.status != Status::WaitBuyerPay {
                    return Err(acq("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"));
                }
                t.status = Status::Closed;
                out.extend(self.notification_locked(t, "close", NotifyMode::Normal, &[]));
                Ok(vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                ])
            }
            "alipay.trade.cancel" => {
                let t = self.find_trade(st, biz, out)?;
                let action = match t.status {
                    Status::Finished => return Err(acq("ACQ.TRADE_HAS_FINISHED", "交易已完结")),
                    Status::Closed => "close",
                    Status::WaitBuyerPay => {
                        t.status = Status::Closed;
                        if t.visible {
                            out.extend(self.notification_locked(
                                t,
                                "close",
                                NotifyMode::Normal,
                                &[],
                            ));
                        }
                        t.visible = true;
                        "close"
                    }
                    Status::Success => {
                        let now = self.now_ms();
                        let rest = t.paid.unwrap_or(t.total).minor() - t.refunded_minor();
                        if let Ok(amount) = Money::new(rest, Currency::Cny) {
                            if rest > 0 {
                                t.refunds.push(Refund {
                                    out_request_no: t.out_trade_no.clone(),
                                    amount,
                                    at_ms: now,
                                });
                            }
                        }
                        t.status = Status::Closed;
                        let fee = Money::new(t.refunded_minor(), Currency::Cny)
                            .map(Money::to_major_string)
                            .unwrap_or_default();
                        out.extend(self.notification_locked(
                            t,
                            "refund",
                            NotifyMode::Normal,
                            &[
                                ("refund_fee", fee),
                                ("gmt_refund", format!("{}.000", bj(now))),
                            ],
                        ));
                        "refund"
                    }
                };
                Ok(vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("retry_flag", s("N")),
                    ("action", s(action)),
                ])
            }
            "alipay.trade.refund" => self.refund_locked(st, biz, out),
            "alipay.data.dataservice.bill.downloadurl.query" => self.bill_locked(st, biz, base),
            "alipay.trade.fastpay.refund.query" => {
                let t = self.find_trade(st, biz, out)?;
                if !t.visible {
                    return Err(not_exist());
                }
                let req_no = biz_str(biz, "out_request_no").unwrap_or(&t.out_trade_no);
                let mut f: Fields = vec![
                    ("trade_no", s(&t.trade_no)),
                    ("out_trade_no", s(&t.out_trade_no)),
                    ("out_request_no", s(req_no)),
                ];
                if let Some(r) = t.refunds.iter().find(|r| r.out_request_no == req_no) {
                    let total = t.paid.unwrap_or(t.total).to_major_string();
                    f.extend([
                        ("total_amount", s(total)),
                        ("refund_amount", s(r.amount.to_major_string())),
                        ("refund_status", s("REFUND_SUCCESS")),
                        ("gmt_refund_pay", s(format!("{}.000", bj(r.at_ms)))),
                        ("send_back_fee", s(r.amount.to_major_string())),
                    ]);
                }
                Ok(f)
            }
            _ => Err(err("40002", "isv.invalid-method", "不存在的方法名")),
        }
    }

    fn refund_locked(
        &self,
        st: &mut SimState,
        biz: &serde_json::Map<String, Value>,
        out: &mut Vec<Outgoing>,
    ) -> Answer {
        let t = self.find_trade(st, biz, out)?;
        if !t.visible {
            return Err(not_exist());
        }
        let amount = parse_amount(biz_str(biz, "refund_amount"), "refund_amount")?;
        let explicit_no = biz_str(biz, "out_request_no");
        let req_no = explicit_no.unwrap_or(&t.out_trade_no).to_owned();
        let answer = |t: &Trade, fund_change: &str, sent_back: Money, at: i64| -> Fields {
            let fee = Money::new(t.refunded_minor(), Currency::Cny)
                .map(Money::to_major_string)
                .unwrap_or_default();
            vec![
                ("trade_no", s(&t.trade_no)),
                ("out_trade_no", s(&t.out_trade_no)),
                ("buyer_logon_id", s("158****1234")),
                ("fund_change", s(fund_change)),
                ("refund_fee", s(fee)),
                ("send_back_fee", s(sent_back.to_major_string())),
                ("gmt_refund_pay", s(format!("{}.000", bj(at)))),
            ]
        };
        if let Some(r) = t.refunds.iter().find(|r| r.out_request_no == req_no) {
            // A replay: same refund, no money moves (A.5 fund_change=N).
            let (amt, at) = (r.amount, r.at_ms);
            return Ok(answer(t, "N", amt, at));
        }
        let paid = match t.status {
            Status::WaitBuyerPay => return Err(acq("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")),
            Status::Finished => return Err(acq("ACQ.TRADE_HAS_FINISHED", "交易已完结")),
            Status::Closed => return Err(acq("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
            Status::Success => t.paid.unwrap_or(t.total),
        };
        if explicit_no.is_none() && amount != paid {
            return Err(acq(
                "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "撤销或退款金额与订单金额不一致",
            ));
        }
        if t.refunded_minor() + amount.minor() > paid.minor() {
            return Err(acq("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限"));
        }
        let now = self.now_ms();
        t.refunds.push(Refund {
            out_request_no: req_no.clone(),
            amount,
            at_ms: now,
        });
        let fee = Money::new(t.refunded_minor(), Currency::Cny)
            .map(Money::to_major_string)
            .unwrap_or_default();
        let extra = [
            ("refund_fee", fee),
            ("gmt_refund", format!("{}.000", bj(now))),
            ("out_biz_no", req_no),
        ];
        if t.refunded_minor() == paid.minor() {
            t.status = Status::Closed;
        }
        out.extend(self.notification_locked(t, "refund", NotifyMode::Normal, &extra));
        Ok(answer(t, "Y", amount, now))
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        match self.settings().public_base.clone() {
            Some(b) => b,
            None => origin(headers),
        }
    }
}

fn merged_params(
    method: &HttpMethod,
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let mut params = parse_form(query.unwrap_or("").as_bytes()).map_err(|e| e.to_string())?;
    if method == HttpMethod::POST && !body.is_empty() {
        for (k, v) in parse_form(body).map_err(|e| e.to_string())? {
            if field(&params, &k).is_some() {
                return Err(format!("duplicate field {}", wire::clip(&k, 32)));
            }
            params.push((k, v));
        }
    }
    Ok(params)
}

pub(super) async fn gateway(
    State(sim): State<Arc<AlipaySim>>,
    method: HttpMethod,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = match merged_params(&method, query.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => {
            return sim.respond(
                ERROR_NODE,
                AlipaySignType::Rsa2,
                Err(err(
                    "40002",
                    "isv.invalid-parameter",
                    format!("参数无效: {e}"),
                )),
                None,
            )
        }
    };
    let sign_type = field(&params, "sign_type")
        .and_then(AlipaySignType::parse)
        .unwrap_or(AlipaySignType::Rsa2);
    let m = field(&params, "method").unwrap_or("").to_owned();
    if m.is_empty() {
        let e = err("40001", "isv.missing-method", "缺少方法名参数");
        return sim.respond(ERROR_NODE, sign_type, Err(e), None);
    }
    if !METHODS.contains(&m.as_str()) {
        let e = err("40002", "isv.invalid-method", "不存在的方法名");
        return sim.respond(ERROR_NODE, sign_type, Err(e), None);
    }
    let node = response_node_name(&m);
    let browser = is_browser_method(&m);
    if let Err(e) = sim.check_common(&params) {
        return if browser {
            pages::gateway_error(&e)
        } else {
            sim.respond(&node, sign_type, Err(e), None)
        };
    }
    let fault = sim.take_fault(&m);
    match &fault {
        Some(Fault::Sleep(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Error {
            code,
            msg,
            sub_code,
            sub_msg,
        }) => {
            let mut e = err(code, sub_code, sub_msg.clone());
            if !msg.is_empty() {
                e.msg.clone_from(msg);
            }
            return if browser {
                pages::gateway_error(&e)
            } else {
                sim.respond(&node, sign_type, Err(e), None)
            };
        }
        Some(Fault::RetryLater) if m == "alipay.trade.cancel" => {
            return sim.respond(&node, sign_type, Ok(vec![("retry_flag", s("Y"))]), None);
        }
        _ => {}
    }
    let biz: serde_json::Map<String, Value> = match field(&params, "biz_content")
        .map(serde_json::from_str::<serde_json::Map<String, Value>>)
    {
        Some(Ok(b)) => b,
        _ => {
            let e = invalid("biz_content");
            return if browser {
                pages::gateway_error(&e)
            } else {
                sim.respond(&node, sign_type, Err(e), None)
            };
        }
    };
    let base = sim.base_url(&headers);
    if browser {
        return sim.cashier(&m, &params, &biz, &headers);
    }
    let mut out = Vec::new();
    let answer = {
        let mut st = sim.lock();
        sim.dispatch(&mut st, &m, &params, &biz, &base, &mut out)
    };
    for o in out {
        sim.spawn_delivery(o);
    }
    sim.respond(&node, sign_type, answer, fault.as_ref())
}
