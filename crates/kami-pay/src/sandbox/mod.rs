//! The `sandbox` channel: kami's own test protocol. It is deliberately shaped like a real
//! gateway (signed redirect, signed asynchronous notification retried until acknowledged,
//! signed query/close/refund API) so the demo and the tests exercise kami's real payment
//! path. The gateway side lives in `kami_sim::sandbox`.
//!
//! # Protocol
//!
//! **Signature.** Both sides share a secret (bytes). `sign` = lowercase hex of
//! HMAC-SHA256(secret, canonical), where canonical = every parameter except `sign` whose value
//! is non-empty, sorted by key bytewise, joined as `k=v` with `&` (raw values, not
//! url-encoded). Verification compares in constant time. See [`sign()`] and [`verify`].
//!
//! **create** (no network call, like Alipay page.pay): a redirect to
//! `{gateway}/sim/sandbox/pay/{trade_no}?{urlencoded params}` with `trade_no`, `amount`
//! (major units, "12.30"), `currency` ("CNY"), `subject`, `notify_url`, `return_url`,
//! `expires_at` (unix ms) and `sign`. `gateway` is the configured base URL without trailing
//! slash.
//!
//! **Pay page** (simulator): `GET /sim/sandbox/pay/{trade_no}?...` verifies the signature and
//! that the path's trade number equals the parameter (bad → 400), refuses a trade past
//! `expires_at` (410) or closed through the close API (409 "trade closed"), otherwise shows
//! subject, amount and currency and a form posting back to the same URL, with an optional
//! `notify` control: `normal` | `drop` (paid, never notified) | `duplicate` (each notification
//! sent twice concurrently). `POST` on the same URL (form body may carry `notify`) makes the
//! same checks, then marks the trade paid idempotently, assigns `gateway_trade_no` = "SBX" +
//! 20 random digits, schedules the notification and answers 200: JSON
//! `{"trade_no","gateway_trade_no","status":"paid"}` for `Accept: application/json`,
//! otherwise an HTML "Payment done" page linking to `return_url`.
//!
//! **Notification** (gateway → kami): `POST notify_url`, `application/x-www-form-urlencoded`,
//! parameters `trade_no`, `gateway_trade_no`, `amount`, `currency`, `status` (`paid`),
//! `paid_at` (unix ms; the pay time, optional for kami: a malformed one reads as unknown),
//! `notify_id` (random hex), `sign`. Delivered iff the answer is HTTP 200
//! with trimmed body exactly `success`; otherwise retried on a schedule (default immediately,
//! then 1s, 2s, 4s, 8s, 16s, 30s, 60s, 120s, 300s: 10 attempts). kami accepts the POST form
//! body, or the query string of a GET. All of `trade_no`, `gateway_trade_no`, `amount`,
//! `currency`, `status`, `sign` are required; duplicated keys, non-UTF-8 and bad
//! percent-encoding are malformed.
//!
//! **Ack.** Success → 200 `text/plain; charset=utf-8` `success`; Failure → 400 `fail`.
//!
//! **query**: `GET {gateway}/sim/sandbox/api/query?trade_no=..&nonce=..&sign=..` → JSON object
//! of string fields `trade_no`, `status` (`NOT_FOUND` | `WAITING` | `PAID` | `CLOSED` |
//! `REFUNDED`), when a payment exists `gateway_trade_no`, `amount`, `currency`, `paid_at`
//! (unix ms; optional for kami, which reads it as the pay time), and `sign` over the other
//! fields. A trade is known to the gateway once its pay page was opened.
//!
//! **close**: `POST {gateway}/sim/sandbox/api/close`, form `trade_no, nonce, sign` → the same
//! signed JSON describing the state after closing: a paid trade stays `PAID`, anything else
//! (unknown trades included) becomes `CLOSED`.
//!
//! **refund**: `POST {gateway}/sim/sandbox/api/refund`, form `trade_no, refund_no, amount,
//! currency, nonce, sign` → signed JSON `refund_no, amount, currency, status="SUCCESS"`,
//! idempotent per `refund_no`. Errors are signed JSON with `error` (`NOT_PAID` |
//! `EXCEEDS_TOTAL` | ...) and HTTP 409. When refunds reach the total the trade is `REFUNDED`.
//!
//! API requests with a bad signature get HTTP 400 `{"error":"BAD_SIGNATURE"}` (unsigned).
//!
//! **bill**: `GET {gateway}/sim/sandbox/api/bill?date=YYYY-MM-DD&nonce=..&sign=..` → a signed
//! text file of the day's payments and refunds with its own totals line (see [`bill`]).
//!
//! # Files
//!
//! `sign` (HMAC), `wire` (API answers → facts), `notify`, `bill` (the day's bill), `tests`. The sandbox channel never
//! reads the clock: expiry travels in the request.

pub mod bill;
mod notify;
pub mod settings;
mod sign;
mod wire;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use kami_core::{ChannelId, Method};

use crate::common::ack::plain_text_ack;
use crate::common::form::{clip, required};
use crate::common::text::owned;
use crate::{
    Ack, AckResponse, Bill, BillDay, CreatePayment, Created, NotifyVerdict, PayError,
    PaymentAction, PaymentChannel, RawNotification, RefundOutcome, RefundRequest, TradeRef,
    TradeState,
};

pub use crate::common::form::{field, parse_form, MAX_FORM_BYTES, MAX_FORM_FIELDS};
pub use sign::{sign, signed, verify};
use wire::{nonce, parse_money};

/// The sandbox payment channel (kami side).
pub struct SandboxChannel {
    id: ChannelId,
    methods: Vec<Method>,
    priority: i32,
    secret: Vec<u8>,
    gateway: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for SandboxChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxChannel")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("secret", &"<redacted>")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl SandboxChannel {
    pub fn new(
        id: ChannelId,
        methods: Vec<Method>,
        priority: i32,
        secret: Vec<u8>,
        gateway: String,
        http: reqwest::Client,
    ) -> SandboxChannel {
        let gateway = gateway.trim_end_matches('/').to_owned();
        SandboxChannel {
            id,
            methods,
            priority,
            secret,
            gateway,
            http,
        }
    }

    /// The gateway base URL (no trailing slash).
    pub fn gateway(&self) -> &str {
        &self.gateway
    }
}

#[async_trait]
impl PaymentChannel for SandboxChannel {
    fn id(&self) -> &ChannelId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "sandbox"
    }

    fn methods(&self) -> &[Method] {
        &self.methods
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        let trade_no = req.trade_no.as_str();
        let amount = req.amount.to_major_string();
        let expires = req.expires_at_ms.to_string();
        let params = owned(&[
            ("trade_no", trade_no),
            ("amount", &amount),
            ("currency", req.amount.currency().code()),
            ("subject", &req.subject),
            ("notify_url", &req.notify_url),
            ("return_url", &req.return_url),
            ("expires_at", &expires),
        ]);
        let query = self.signed_form(params)?;
        Ok(PaymentAction::Redirect {
            url: format!("{}/sim/sandbox/pay/{trade_no}?{query}", self.gateway),
        }
        .into())
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        notify::verify_notification(&self.secret, raw)
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        plain_text_ack(ack)
    }

    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        let n = nonce();
        let query = self.signed_form(owned(&[("trade_no", trade_no), ("nonce", &n)]))?;
        let url = format!("{}?{query}", self.api_url("query"));
        let fields = self.call(self.http.get(url)).await?;
        self.trade_state(trade_no, &fields)
    }

    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        let n = nonce();
        let fields = self
            .post("close", owned(&[("trade_no", trade_no), ("nonce", &n)]))
            .await?;
        self.trade_state(trade_no, &fields)
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let n = nonce();
        let amount = req.amount.to_major_string();
        let params = owned(&[
            ("trade_no", &req.trade_no),
            ("refund_no", &req.refund_no),
            ("amount", &amount),
            ("currency", req.amount.currency().code()),
            ("nonce", &n),
        ]);
        let fields = self.post("refund", params).await?;
        if required(&fields, "refund_no")? != req.refund_no {
            return Err(PayError::Malformed(
                "gateway answered for another refund".into(),
            ));
        }
        let status = required(&fields, "status")?;
        if status != "SUCCESS" {
            return Err(PayError::Gateway {
                code: clip(status),
                message: "refund not successful".into(),
            });
        }
        let refunded = parse_money(required(&fields, "amount")?, required(&fields, "currency")?)?;
        if refunded.currency() != req.amount.currency() {
            return Err(PayError::Malformed("refund currency differs".into()));
        }
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount: refunded,
            settled: true,
        })
    }

    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        let n = nonce();
        let date = bill::format_day(day);
        let query = self.signed_form(owned(&[("date", &date), ("nonce", &n)]))?;
        let url = format!("{}?{query}", self.api_url("bill"));
        self.fetch_bill(day, self.http.get(url)).await
    }
}
