//! The `alipay` channel: Alipay OpenAPI through `gateway.do` (protocols.md section A). The
//! gateway side is `kami_sim::alipay`; the byte-level primitives shared by both are in
//! [`wire`].
//!
//! # Requests (A.1, A.2)
//!
//! Every API call carries the common parameters `app_id`, `method`, `format=JSON`,
//! `charset=utf-8`, `sign_type` (`RSA2` | `RSA`), `timestamp` (Beijing time
//! `yyyy-MM-dd HH:mm:ss`), `version=1.0`, `app_auth_token` when configured, and `biz_content`
//! (compact JSON of the business parameters). Create calls add `notify_url`, page/wap calls
//! `return_url`; create calls put `extend_params.sys_service_provider_id` in `biz_content`
//! when configured. Empty values are never sent.
//!
//! `sign` = base64 RSASSA-PKCS1-v1_5 (SHA256 for `RSA2`, SHA1 for `RSA`) over the request
//! sign string: every parameter except `sign` — `sign_type` included — with a non-empty
//! value, sorted by key bytewise, joined as `k=v` with `&`, raw (not URL-encoded) values
//! ([`wire::request_sign_content`]). Server-to-server calls are a `POST` to the configured
//! gateway URL with the common parameters (and `sign`) URL-encoded in the query string and
//! `biz_content` as the `application/x-www-form-urlencoded;charset=utf-8` body, like the
//! official SDKs; the gateway merges both.
//!
//! # Synchronous responses (A.3)
//!
//! `{"<method with . → _>_response":{...},"sign":"..."}` (or `error_response`). The signature
//! is verified over the RAW text of the node's value as it appears in the body (a
//! string-aware scan, never a re-serialisation; [`wire::split_response`]), with the
//! algorithm of the configured `sign_type`. A success (`code` `10000`) without a valid
//! signature is [`PayError::BadResponseSignature`]; an error with a `sign` must verify too;
//! an error without one is accepted as an error only. Errors become
//! [`PayError::Gateway`] with `code` = `sub_code` (or `code` when absent) and `message` =
//! `sub_msg` (or `msg`). Echoed `out_trade_no`s must match the request.
//!
//! # create (A.5)
//!
//! The flavour comes from [`AlipayMode`]: `Qr` → `alipay.trade.precreate` (当面付) →
//! [`PaymentAction::Qr`] with the response's `qr_code`; `Page` → `alipay.trade.page.pay`
//! (`product_code` `FAST_INSTANT_TRADE_PAY`) and `Wap` → `alipay.trade.wap.pay`
//! (`QUICK_WAP_WAY`, `quit_url` = return URL) → [`PaymentAction::Redirect`] to the gateway
//! URL with the signed parameters as its query string (no server call). `Auto` picks `Wap`
//! for [`Device::Mobile`] or a mobile User-Agent, else `Qr`. `biz_content` carries
//! `out_trade_no`, `total_amount` (yuan, `"12.30"`, from [`Money`]), `subject` (control
//! characters removed, at most 256 characters), `product_code` and `time_expire` (Beijing
//! time of `expires_at_ms`, rounded down to the second). Only CNY can be collected.
//!
//! # Notifications (A.4)
//!
//! A form `POST` body (or the query string of a `GET`), parsed once and strictly (valid
//! percent-encoding, UTF-8, no repeated key — else [`PayError::Malformed`]). Required:
//! `sign`, `app_id`, `out_trade_no`, `trade_no`, `total_amount`, `trade_status`. The
//! signature is verified over every parameter except `sign` AND `sign_type`, empty values
//! dropped, sorted, `k=v&...` ([`wire::notify_sign_content`]), with the CONFIGURED sign type
//! (a different `sign_type` parameter fails) → else [`PayError::BadSignature`]. Then
//! `app_id` must be ours and, when `seller_id` is configured, `seller_id` too → else
//! [`PayError::WrongMerchant`]; `total_amount` must parse exactly to fen (CNY) → else
//! Malformed. Only `trade_status` `TRADE_SUCCESS`/`TRADE_FINISHED` of a `trade_status_sync`
//! notification without refund fields is [`NotifyVerdict::Paid`] (`trade_no` =
//! `out_trade_no`, `gateway_trade_no` = `trade_no`, `amount` = `total_amount`); a
//! `TRADE_SUCCESS` carrying `refund_fee`/`out_biz_no`/`gmt_refund` is a partial-refund
//! notice → [`NotifyVerdict::NotPaid`] with status `PARTIAL_REFUND`; `TRADE_CLOSED`,
//! `WAIT_BUYER_PAY` and anything else → NotPaid with that status.
//!
//! Ack: success → HTTP 200 `text/plain` body exactly `success`; failure → HTTP 400 `fail`
//! (anything but `success` makes Alipay resend).
//!
//! # query / close / refund (A.5)
//!
//! * query: `alipay.trade.query` → `WAIT_BUYER_PAY` Waiting, `TRADE_SUCCESS`/`TRADE_FINISHED`
//!   Paid (with `trade_no`, `total_amount`), `TRADE_CLOSED` Closed; `ACQ.TRADE_NOT_EXIST`
//!   (also an unscanned precreate) NotFound.
//! * close: `alipay.trade.close` → Closed. On `ACQ.TRADE_NOT_EXIST` (an unscanned precreate
//!   QR is still payable!) `alipay.trade.cancel`: `action=close` → Closed, `action=refund`
//!   → Refunded (the buyer paid in between and Alipay returned the money), `retry_flag=Y` →
//!   retried (3 attempts), `ACQ.TRADE_NOT_EXIST` → NotFound. When close or cancel answer
//!   that the trade is paid/finished/closed (`ACQ.TRADE_STATUS_ERROR`,
//!   `ACQ.TRADE_HAS_SUCCESS`, `ACQ.TRADE_HAS_FINISHED`, `ACQ.TRADE_HAS_CLOSE`,
//!   `ACQ.CANCEL_NOT_ALLOWED`) the trade is queried and that state returned (Paid when paid).
//! * refund: `alipay.trade.refund` with `out_request_no` = refund number (the idempotency
//!   key), `refund_amount`, optional `refund_reason`. Settled iff `fund_change` is `Y`; on
//!   `N` (a replay of a refund already done) `alipay.trade.fastpay.refund.query` must say
//!   `refund_status` `REFUND_SUCCESS` to report it settled, with the refunded amount it
//!   reports.

pub mod settings;
pub mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method, Money};
use serde_json::{json, Map, Value};

use crate::crypto::{RsaSigner, RsaVerifier};
use crate::sandbox::parse_form;
use crate::{
    Ack, AckResponse, CreatePayment, Device, NotifyVerdict, PayError, PaymentAction,
    PaymentChannel, PaymentConfirmation, RawNotification, RefundOutcome, RefundRequest, TradeState,
};

pub use wire::AlipaySignType;
use wire::{clip, field};

/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest `subject` Alipay accepts (characters).
const MAX_SUBJECT_CHARS: usize = 256;
/// Notification fields that must be present (and non-empty).
pub const NOTIFY_REQUIRED: [&str; 6] = [
    "sign",
    "app_id",
    "out_trade_no",
    "trade_no",
    "total_amount",
    "trade_status",
];

/// How the buyer pays (A.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlipayMode {
    /// `alipay.trade.precreate`: a QR code to scan with the Alipay app.
    Qr,
    /// `alipay.trade.page.pay`: the PC cashier.
    Page,
    /// `alipay.trade.wap.pay`: the mobile-web cashier (jumps to the app).
    Wap,
    /// Wap on [`Device::Mobile`] or a mobile User-Agent, QR otherwise.
    Auto,
}

impl AlipayMode {
    /// The configuration value: `qr` | `page` | `wap` | `auto` (DESIGN 4.2).
    pub fn parse(s: &str) -> Option<AlipayMode> {
        match s {
            "qr" => Some(AlipayMode::Qr),
            "page" => Some(AlipayMode::Page),
            "wap" => Some(AlipayMode::Wap),
            "auto" => Some(AlipayMode::Auto),
            _ => None,
        }
    }
}

/// One Alipay channel's settings (DESIGN 4.2 `kind = "alipay"`).
pub struct AlipayConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    /// Full URL of `gateway.do`, e.g. `https://openapi.alipay.com/gateway.do`. A query
    /// string or fragment on it is ignored.
    pub gateway: String,
    pub app_id: String,
    pub app_private_key: RsaSigner,
    pub alipay_public_key: RsaVerifier,
    pub sign_type: AlipaySignType,
    pub mode: AlipayMode,
    /// The merchant's `2088…` PID; when set, notifications must carry it.
    pub seller_id: Option<String>,
    /// ISV acting for a merchant: sent as `app_auth_token` on every call.
    pub app_auth_token: Option<String>,
    /// ISV rebate id: `extend_params.sys_service_provider_id` on create calls.
    pub sys_service_provider_id: Option<String>,
}

impl std::fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("gateway", &self.gateway)
            .field("app_id", &self.app_id)
            .field("app_private_key", &"<redacted>")
            .field("sign_type", &self.sign_type)
            .field("mode", &self.mode)
            .field("seller_id", &self.seller_id)
            .field(
                "app_auth_token",
                &self.app_auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("sys_service_provider_id", &self.sys_service_provider_id)
            .finish()
    }
}

/// A business or protocol error answered by the gateway (A.5 result model).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError {
    code: String,
    msg: String,
    sub_code: String,
    sub_msg: String,
}

impl ApiError {
    fn is(&self, sub_code: &str) -> bool {
        self.sub_code == sub_code
    }

    fn into_pay_error(self) -> PayError {
        let code = if self.sub_code.is_empty() {
            self.code
        } else {
            self.sub_code
        };
        let message = if self.sub_msg.is_empty() {
            self.msg
        } else {
            self.sub_msg
        };
        PayError::Gateway {
            code: clip(&code, 64),
            message: clip(&message, 200),
        }
    }
}

/// Answers that mean "the trade is not (or no longer) in WAIT_BUYER_PAY": ask query.
const SETTLED_STATE_CODES: [&str; 5] = [
    "ACQ.TRADE_STATUS_ERROR",
    "ACQ.TRADE_HAS_SUCCESS",
    "ACQ.TRADE_HAS_FINISHED",
    "ACQ.TRADE_HAS_CLOSE",
    "ACQ.CANCEL_NOT_ALLOWED",
];

/// The Alipay payment channel (kami side).
pub struct AlipayChannel {
    cfg: AlipayConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for AlipayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayChannel")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn required_str<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a str, PayError> {
    match map.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(PayError::Malformed(format!("gateway response lacks {key}"))),
    }
}

fn cny(amount: &str) -> Result<Money, PayError> {
    Money::from_major_str(amount, Currency::Cny).map_err(|e| PayError::Malformed(e.to_string()))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// True for the User-Agents of phones and tablets (and the Alipay app's own browser).
pub fn is_mobile_user_agent(ua: &str) -> bool {
    [
        "Mobile",
        "Android",
        "iPhone",
        "iPad",
        "iPod",
        "HarmonyOS",
        "AlipayClient",
    ]
    .iter()
    .any(|m| ua.contains(m))
}

fn clean_subject(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let s = s.trim();
    if s.is_empty() {
        return "order".to_owned();
    }
    s.chars().take(MAX_SUBJECT_CHARS).collect()
}

impl AlipayChannel {
    pub fn new(cfg: AlipayConfig, http: reqwest::Client) -> AlipayChannel {
        let mut cfg = cfg;
        if let Some(i) = cfg.gateway.find(['?', '#']) {
            cfg.gateway.truncate(i);
        }
        AlipayChannel { cfg, http }
    }

    /// The configured `gateway.do` URL (without query string).
    pub fn gateway(&self) -> &str {
        &self.cfg.gateway
    }

    pub fn config(&self) -> &AlipayConfig {
        &self.cfg
    }

    /// The flavour `create` uses for this request.
    pub fn flavour(&self, req: &CreatePayment) -> AlipayMode {
        match self.cfg.mode {
            AlipayMode::Auto => {
                let mobile = req.device == Device::Mobile
                    || req.user_agent.as_deref().is_some_and(is_mobile_user_agent);
                if mobile {
                    AlipayMode::Wap
                } else {
                    AlipayMode::Qr
                }
            }
            m => m,
        }
    }

    /// Common parameters (A.1) plus `extra` and `biz_content`, signed (A.2).
    pub fn signed_params(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
        now_ms: i64,
    ) -> Result<Vec<(String, String)>, PayError> {
        let timestamp = wire::beijing_time(now_ms)
            .ok_or_else(|| PayError::Config("clock out of range".into()))?;
        let mut params = owned(&[
            ("app_id", &self.cfg.app_id),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("timestamp", &timestamp),
            ("version", "1.0"),
        ]);
        if let Some(t) = &self.cfg.app_auth_token {
            params.push(("app_auth_token".into(), t.clone()));
        }
        params.extend(owned(extra));
        params.push(("biz_content".into(), biz.to_string()));
        wire::signed_request(&self.cfg.app_private_key, self.cfg.sign_type, params)
    }

    fn create_biz(&self, req: &CreatePayment, product_code: &str) -> Result<Value, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("Alipay collects CNY only"));
        }
        let time_expire = wire::beijing_time(req.expires_at_ms)
            .ok_or_else(|| PayError::Malformed("expiry time out of range".into()))?;
        let mut biz = json!({
            "out_trade_no": req.trade_no.as_str(),
            "total_amount": req.amount.to_major_string(),
            "subject": clean_subject(&req.subject),
            "product_code": product_code,
            "time_expire": time_expire,
        });
        if let Some(obj) = biz.as_object_mut() {
            if let Some(id) = self
                .cfg
                .sys_service_provider_id
                .as_deref()
                .filter(|s| !s.is_empty())
            {
                obj.insert(
                    "extend_params".into(),
                    json!({ "sys_service_provider_id": id }),
                );
            }
        }
        Ok(biz)
    }

    /// The signed redirect URL of a page.pay / wap.pay (A.5): `gateway?<urlencoded params>`.
    fn redirect(&self, req: &CreatePayment, wap: bool) -> Result<PaymentAction, PayError> {
        let (method, product_code) = if wap {
            ("alipay.trade.wap.pay", "QUICK_WAP_WAY")
        } else {
            ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY")
        };
        let mut biz = self.create_biz(req, product_code)?;
        if wap {
            if let Some(obj) = biz.as_object_mut() {
                obj.insert("quit_url".into(), Value::String(req.return_url.clone()));
            }
        }
        let params = self.signed_params(
            method,
            &biz,
            &[
                ("notify_url", &req.notify_url),
                ("return_url", &req.return_url),
            ],
            wire::now_ms(),
        )?;
        let query =
            serde_urlencoded::to_string(&params).map_err(|e| PayError::Malformed(e.to_string()))?;
        Ok(PaymentAction::Redirect {
            url: format!("{}?{query}", self.cfg.gateway),
        })
    }

    /// One API call: sign, send, read (bounded), verify (A.3). The inner `Err` is an error
    /// the gateway answered authentically (or unsigned, for errors only).
    async fn call(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
    ) -> Result<Result<Map<String, Value>, ApiError>, PayError> {
        let params = self.signed_params(method, biz, extra, wire::now_ms())?;
        let (body_params, query_params): (Vec<_>, Vec<_>) =
            params.into_iter().partition(|(k, _)| k == "biz_content");
        let query = serde_urlencoded::to_string(&query_params)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let body = serde_urlencoded::to_string(&body_params)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let req = self
            .http
            .post(format!("{}?{query}", self.cfg.gateway))
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .timeout(API_TIMEOUT);
        let crate::http::Reply {
            status,
            body: bytes,
            ..
        } = crate::http::send(req).await?;
        if status != 200 {
            return Err(PayError::Gateway {
                code: format!("HTTP_{status}"),
                message: clip(&String::from_utf8_lossy(&bytes), 200),
            });
        }
        self.verify_response(method, &bytes)
    }

    /// Verify a synchronous response body of `method` (A.3) and split success from error.
    pub fn verify_response_body(
        &self,
        method: &str,
        body: &[u8],
    ) -> Result<Map<String, Value>, PayError> {
        self.verify_response(method, body)?
            .map_err(ApiError::into_pay_error)
    }

    fn verify_response(
        &self,
        method: &str,
        body: &[u8],
    ) -> Result<Result<Map<String, Value>, ApiError>, PayError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| PayError::Malformed("gateway response is not UTF-8".into()))?;
        let parts = wire::split_response(text, &wire::response_node_name(method))?;
        let node: Map<String, Value> = serde_json::from_str(parts.node_raw)
            .map_err(|_| PayError::Malformed("gateway response node is not an object".into()))?;
        let code = required_str(&node, "code")?;
        let signed = parts.sign.as_deref().is_some_and(|s| !s.is_empty());
        if (code == "10000" || signed)
            && !wire::verify_response_node(
                &self.cfg.alipay_public_key,
                self.cfg.sign_type,
                parts.node_raw,
                parts.sign.as_deref(),
            )
        {
            return Err(PayError::BadResponseSignature);
        }
        if code == "10000" {
            if parts.node_name == wire::ERROR_NODE {
                return Err(PayError::Malformed(
                    "gateway answered success under error_response".into(),
                ));
            }
            return Ok(Ok(node));
        }
        Ok(Err(ApiError {
            code: code.to_owned(),
            msg: str_field(&node, "msg").to_owned(),
            sub_code: str_field(&node, "sub_code").to_owned(),
            sub_msg: str_field(&node, "sub_msg").to_owned(),
        }))
    }

    fn check_echo(map: &Map<String, Value>, trade_no: &str) -> Result<(), PayError> {
        match map.get("out_trade_no").and_then(Value::as_str) {
            Some(t) if t != trade_no => Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            )),
            _ => Ok(()),
        }
    }

    fn trade_state(map: &Map<String, Value>, trade_no: &str) -> Result<TradeState, PayError> {
        let echoed = required_str(map, "out_trade_no")?;
        if echoed != trade_no {
            return Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            ));
        }
        match required_str(map, "trade_status")? {
            "WAIT_BUYER_PAY" => Ok(TradeState::Waiting),
            "TRADE_CLOSED" => Ok(TradeState::Closed),
            "TRADE_SUCCESS" | "TRADE_FINISHED" => Ok(TradeState::Paid(PaymentConfirmation {
                trade_no: trade_no.to_owned(),
                gateway_trade_no: required_str(map, "trade_no")?.to_owned(),
                amount: cny(required_str(map, "total_amount")?)?,
            })),
            other => Err(PayError::Malformed(format!(
                "unknown trade_status {}",
                clip(other, 32)
            ))),
        }
    }

    async fn cancel(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let biz = json!({ "out_trade_no": trade_no });
        for _attempt in 0..3 {
            match self.call("alipay.trade.cancel", &biz, &[]).await? {
                Ok(map) => {
                    Self::check_echo(&map, trade_no)?;
                    match (str_field(&map, "action"), str_field(&map, "retry_flag")) {
                        ("refund", _) => return Ok(TradeState::Refunded),
                        (_, "Y") => continue,
                        ("close" | "cancel" | "", _) => return Ok(TradeState::Closed),
                        (other, _) => {
                            return Err(PayError::Malformed(format!(
                                "unknown cancel action {}",
                                clip(other, 32)
                            )))
                        }
                    }
                }
                Err(e) if e.is("ACQ.TRADE_NOT_EXIST") => return Ok(TradeState::NotFound),
                Err(e) if SETTLED_STATE_CODES.iter().any(|c| e.is(c)) => {
                    return self.query_after(trade_no, e).await
                }
                Err(e) => return Err(e.into_pay_error()),
            }
        }
        Err(PayError::Gateway {
            code: "CANCEL_RETRY".into(),
            message: "alipay.trade.cancel still asks to retry".into(),
        })
    }

    /// After close/cancel refused because the trade left WAIT_BUYER_PAY: what is it now?
    async fn query_after(&self, trade_no: &str, refusal: ApiError) -> Result<TradeState, PayError> {
        match self.query(trade_no).await? {
            // Still payable although close/cancel said otherwise: report the refusal.
            TradeState::Waiting => Err(refusal.into_pay_error()),
            state => Ok(state),
        }
    }
}

#[async_trait]
impl PaymentChannel for AlipayChannel {
    fn id(&self) -> &ChannelId {
        &self.cfg.id
    }

    fn kind(&self) -> &'static str {
        "alipay"
    }

    fn methods(&self) -> &[Method] {
        &self.cfg.methods
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    async fn create(&self, req: &CreatePayment) -> Result<PaymentAction, PayError> {
        match self.flavour(req) {
            AlipayMode::Page => self.redirect(req, false),
            AlipayMode::Wap | AlipayMode::Auto => self.redirect(req, true),
            AlipayMode::Qr => {
                let biz = self.create_biz(req, "FACE_TO_FACE_PAYMENT")?;
                let trade_no = req.trade_no.as_str();
                let map = self
                    .call(
                        "alipay.trade.precreate",
                        &biz,
                        &[("notify_url", &req.notify_url)],
                    )
                    .await?
                    .map_err(ApiError::into_pay_error)?;
                Self::check_echo(&map, trade_no)?;
                let qr_code = required_str(&map, "qr_code")?;
                Ok(PaymentAction::Qr {
                    qr_code: qr_code.to_owned(),
                })
            }
        }
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        let input: &[u8] = if raw.method.eq_ignore_ascii_case("POST") {
            &raw.body
        } else if raw.method.eq_ignore_ascii_case("GET") {
            raw.query.as_bytes()
        } else {
            return Err(PayError::Malformed(format!(
                "unsupported method {}",
                clip(&raw.method, 16)
            )));
        };
        let params = parse_form(input)?;
        let get = |key: &str| {
            // Empty counts as missing: the sign string skips empty values.
            field(&params, key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| PayError::Malformed(format!("missing field {key}")))
        };
        for key in NOTIFY_REQUIRED {
            get(key)?;
        }
        if let Some(st) = field(&params, "sign_type") {
            if st != self.cfg.sign_type.as_str() {
                return Err(PayError::BadSignature);
            }
        }
        if !wire::verify_params(
            &self.cfg.alipay_public_key,
            self.cfg.sign_type,
            &params,
            wire::NOTIFY_UNSIGNED,
        ) {
            return Err(PayError::BadSignature);
        }
        if get("app_id")? != self.cfg.app_id {
            return Err(PayError::WrongMerchant);
        }
        if let Some(seller) = self.cfg.seller_id.as_deref().filter(|s| !s.is_empty()) {
            if field(&params, "seller_id") != Some(seller) {
                return Err(PayError::WrongMerchant);
            }
        }
        let out_trade_no = get("out_trade_no")?;
        let gateway_trade_no = get("trade_no")?;
        let amount = cny(get("total_amount")?)?;
        let status = get("trade_status")?;
        let not_paid = |status: &str| {
            Ok(NotifyVerdict::NotPaid {
                trade_no: out_trade_no.to_owned(),
                status: clip(status, 64),
            })
        };
        if let Some(t) = field(&params, "notify_type") {
            if t != "trade_status_sync" {
                return not_paid(t);
            }
        }
        match status {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                let refund = ["refund_fee", "out_biz_no", "gmt_refund"]
                    .iter()
                    .any(|k| field(&params, k).is_some_and(|v| !v.is_empty()));
                if refund {
                    return not_paid("PARTIAL_REFUND");
                }
                Ok(NotifyVerdict::Paid(PaymentConfirmation {
                    trade_no: out_trade_no.to_owned(),
                    gateway_trade_no: gateway_trade_no.to_owned(),
                    amount,
                }))
            }
            other => not_paid(other),
        }
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        match ack {
            Ack::Success => AckResponse {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: "success".to_owned(),
            },
            Ack::Failure => AckResponse {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: "fail".to_owned(),
            },
        }
    }

    async fn query(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let biz = json!({ "out_trade_no": trade_no });
        match self.call("alipay.trade.query", &biz, &[]).await? {
            Ok(map) => Self::trade_state(&map, trade_no),
            Err(e) if e.is("ACQ.TRADE_NOT_EXIST") => Ok(TradeState::NotFound),
            Err(e) => Err(e.into_pay_error()),
        }
    }

    async fn close(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let biz = json!({ "out_trade_no": trade_no });
        match self.call("alipay.trade.close", &biz, &[]).await? {
            Ok(map) => {
                Self::check_echo(&map, trade_no)?;
                Ok(TradeState::Closed)
            }
            Err(e) if e.is("ACQ.TRADE_NOT_EXIST") => self.cancel(trade_no).await,
            Err(e) if SETTLED_STATE_CODES.iter().any(|c| e.is(c)) => {
                self.query_after(trade_no, e).await
            }
            Err(e) => Err(e.into_pay_error()),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("Alipay refunds CNY only"));
        }
        let mut biz = json!({
            "out_trade_no": req.trade_no,
            "out_request_no": req.refund_no,
            "refund_amount": req.amount.to_major_string(),
        });
        if let (Some(obj), Some(reason)) = (
            biz.as_object_mut(),
            req.reason.as_deref().filter(|r| !r.is_empty()),
        ) {
            obj.insert("refund_reason".into(), Value::String(clean_subject(reason)));
        }
        let map = self
            .call("alipay.trade.refund", &biz, &[])
            .await?
            .map_err(ApiError::into_pay_error)?;
        Self::check_echo(&map, &req.trade_no)?;
        if str_field(&map, "fund_change") == "Y" {
            return Ok(RefundOutcome {
                refund_no: req.refund_no.clone(),
                amount: req.amount,
                settled: true,
            });
        }
        // No money moved in this call: a replay of a refund done before, or still pending.
        let biz = json!({
            "out_trade_no": req.trade_no,
            "out_request_no": req.refund_no,
        });
        let map = self
            .call("alipay.trade.fastpay.refund.query", &biz, &[])
            .await?
            .map_err(ApiError::into_pay_error)?;
        Self::check_echo(&map, &req.trade_no)?;
        if let Some(r) = map.get("out_request_no").and_then(Value::as_str) {
            if r != req.refund_no {
                return Err(PayError::Malformed(
                    "gateway answered for another refund".into(),
                ));
            }
        }
        if str_field(&map, "refund_status") == "REFUND_SUCCESS" {
            let amount = match map.get("refund_amount").and_then(Value::as_str) {
                Some(a) => cny(a)?,
                None => req.amount,
            };
            Ok(RefundOutcome {
                refund_no: req.refund_no.clone(),
                amount,
                settled: true,
            })
        } else {
            Ok(RefundOutcome {
                refund_no: req.refund_no.clone(),
                amount: req.amount,
                settled: false,
            })
        }
    }
}
