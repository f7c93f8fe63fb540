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
//! `out_trade_no`, `total_amount` (yuan, `"12.30"`, from [`Money`](kami_core::Money)), `subject` (control
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
//!
//! # bill (A.5)
//!
//! `alipay.data.dataservice.bill.downloadurl.query` (`bill_type=trade`), `isp.bill_not_exist`
//! → an empty bill; the archive at `bill_download_url` is read by [`bill_file`] (GBK CSVs,
//! columns by header name, totals checked, bounded unzip).
//!
//! # Files
//!
//! `sign` (sign strings, RSA, the signed common parameters), `wire` (response node
//! extraction, Beijing time, answers → facts; re-exports `sign` for the simulator), `api`
//! (one verified call, the error model, cancel), `notify` (A.4), `bill` and `bill_file`
//! (the day's bill), `tests`. Request timestamps
//! come from the channel's [`kami_core::Clock`] ([`AlipayChannel::with_clock`]).

mod api;
mod bill;
pub mod bill_file;
mod notify;
pub mod settings;
mod sign;
pub mod wire;

#[cfg(test)]
mod bill_tests;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method, SharedClock};
use serde_json::{json, Value};

use crate::common::ack::plain_text_ack;
use crate::crypto::{RsaSigner, RsaVerifier};
use crate::{
    Ack, AckResponse, Bill, BillDay, CreatePayment, Created, Device, NotifyVerdict, PayError,
    PaymentAction, PaymentChannel, RawNotification, RefundOutcome, RefundRequest, TradeRef,
    TradeState,
};

use api::{ApiError, SETTLED_STATE_CODES};
pub use bill::NO_BILL;
pub use notify::NOTIFY_REQUIRED;
use wire::{check_echo, clean_subject, cny, required_str, str_field, trade_state};
pub use wire::{is_mobile_user_agent, AlipaySignType};

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

/// The Alipay payment channel (kami side).
pub struct AlipayChannel {
    cfg: AlipayConfig,
    http: reqwest::Client,
    /// Request timestamps (`timestamp`) read this clock.
    clock: SharedClock,
}

impl std::fmt::Debug for AlipayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayChannel")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl AlipayChannel {
    pub fn new(cfg: AlipayConfig, http: reqwest::Client) -> AlipayChannel {
        let mut cfg = cfg;
        if let Some(i) = cfg.gateway.find(['?', '#']) {
            cfg.gateway.truncate(i);
        }
        AlipayChannel {
            cfg,
            http,
            clock: kami_core::clock::system(),
        }
    }

    /// The same channel reading `clock` for request timestamps.
    pub fn with_clock(mut self, clock: SharedClock) -> AlipayChannel {
        self.clock = clock;
        self
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

    /// Mainland gateways settle in CNY only (epusdt and BEpusdt take the fiat amount in CNY).
    fn charge_currency(&self, _offered: Currency) -> Currency {
        Currency::Cny
    }

    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        match self.flavour(req) {
            AlipayMode::Page => self.redirect(req, false).map(Created::from),
            AlipayMode::Wap | AlipayMode::Auto => self.redirect(req, true).map(Created::from),
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
                check_echo(&map, trade_no)?;
                let qr_code = required_str(&map, "qr_code")?;
                Ok(PaymentAction::Qr {
                    qr_code: qr_code.to_owned(),
                }
                .into())
            }
        }
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        self.verify_notify(raw)
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        plain_text_ack(ack)
    }

    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        let biz = json!({ "out_trade_no": trade_no });
        match self.call("alipay.trade.query", &biz, &[]).await? {
            Ok(map) => trade_state(&map, trade_no),
            Err(e) if e.is("ACQ.TRADE_NOT_EXIST") => Ok(TradeState::NotFound),
            Err(e) => Err(e.into_pay_error()),
        }
    }

    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        let biz = json!({ "out_trade_no": trade_no });
        match self.call("alipay.trade.close", &biz, &[]).await? {
            Ok(map) => {
                check_echo(&map, trade_no)?;
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
        check_echo(&map, &req.trade_no)?;
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
        check_echo(&map, &req.trade_no)?;
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

    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        self.fetch_bill(day).await
    }
}
