//! The `paypal` channel: PayPal Orders v2 with webhooks (`protocols.md` appendix A.2). The
//! gateway side lives in `kami_sim::paypal`.
//!
//! # Protocol
//!
//! **Authentication.** `POST /v1/oauth2/token` with HTTP Basic `client_id:client_secret` and
//! `grant_type=client_credentials` gives a bearer token, cached until a minute before its
//! `expires_in`; an API call answered 401 drops it and is tried once more with a new one.
//!
//! **Create.** `POST /v2/checkout/orders` (`wire::order_body`): `intent: CAPTURE`, one
//! purchase unit with `custom_id` = `invoice_id` = our trade number and `amount{currency_code,
//! value}` written from integer minor units exactly (JPY without decimals),
//! `payment_source.paypal.experience_context{return_url, cancel_url, user_action: PAY_NOW}`,
//! header `PayPal-Request-Id: kami-create-<trade>` (a retried create returns the same order).
//! The buyer is sent to the `payer-action` (or `approve`) link; the PayPal order id is the
//! payment's `gateway_ref`. PayPal takes CNY only from accounts inside China: a CNY payment is
//! refused before any call; [`PaymentChannel::charge_currency`] tells checkout to charge such an
//! order in the channel's `currency` instead.
//!
//! **Capture = query.** Approval moves no money: kami must `POST
//! /v2/checkout/orders/{id}/capture` (`PayPal-Request-Id: kami-capture-<trade>`, so a repeated
//! capture answers the first one's result). [`PaypalChannel`]'s `query` reads the order (`GET
//! /v2/checkout/orders/{id}`) and captures it when it is `APPROVED`, so every path that asks
//! the channel — the payment checks, the seller's check, the buyer's return and the
//! `CHECKOUT.ORDER.APPROVED` webhook (both through `check_on_return`) — captures through one
//! idempotent call. Paid = capture `COMPLETED` with `custom_id` naming the trade; `PENDING`
//! waits (`PAYMENT.CAPTURE.COMPLETED` or a later query completes it); `DECLINED` is closed.
//! `gateway_trade_no` = the capture id. `close` is the same look (an order approved before the
//! deadline is still captured and delivered); after it kami no longer captures, and an order
//! nobody captures moves no money and lapses at PayPal.
//!
//! **Webhooks.** Verified offline (`sign`, `certs`): the certificate at `PAYPAL-CERT-URL` (a
//! URL on PayPal's hosts only) is fetched and checked in
//! [`PaymentChannel::prepare_notification`] — the I/O step before the pure verification —
//! and cached; `verify_notification` then checks the CRC32 message's RSA signature against
//! the cached certificate with this channel's `webhook_id`. A certificate that could not be
//! fetched leaves the event unverified (refused; PayPal resends). The postback `POST
//! /v1/notifications/verify-webhook-signature` is not used: it would make every webhook
//! depend on a second call to PayPal, and the offline check is the documented equivalent.
//!
//! **Refund.** `POST /v2/payments/captures/{capture id}/refund` with `PayPal-Request-Id` =
//! our refund number (idempotent), `invoice_id` = refund number; `COMPLETED` is settled,
//! `PENDING` not yet.
//!
//! **Bill.** `GET /v1/reporting/transactions` (transaction search) for the Beijing day
//! (`bill`): captures and refunds with their `custom_field` / `invoice_id`.

mod bill;
pub mod certs;
mod notify;
pub mod settings;
pub mod sign;
pub mod wire;

#[cfg(test)]
mod tests;

use std::sync::Mutex;

use async_trait::async_trait;
use kami_core::{ChannelId, Currency, Method, SharedClock};

use crate::common::settings::Secret;
use crate::http::{send, Reply};
use crate::{
    Ack, AckResponse, Bill, BillDay, CreatePayment, Created, NotifyVerdict, PayError,
    PaymentAction, PaymentChannel, RawNotification, RefundOutcome, RefundRequest, TradeRef,
    TradeState,
};

pub use certs::{CertError, CertPolicy};
pub use notify::{CAPTURE_COMPLETED, ORDER_APPROVED};
use wire::{json, Order, OrderState, RefundAnswer, TokenAnswer};

/// Production API base (DESIGN 4.2).
pub const DEFAULT_API_BASE: &str = "https://api-m.paypal.com";
/// A token is renewed this long before PayPal says it expires.
const TOKEN_MARGIN_MS: i64 = 60_000;
/// Largest certificate file read.
const MAX_CERT_BYTES: usize = 64 * 1024;

/// Everything a `paypal` channel needs.
pub struct PaypalConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    pub api_base: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The id of the webhook registered for this app: part of every signed message.
    pub webhook_id: String,
    /// Which certificate URLs are fetched and which roots vouch for them.
    pub certs: CertPolicy,
    /// What an order priced in CNY is charged in (settings `currency`, default USD).
    pub currency: Currency,
}

impl std::fmt::Debug for PaypalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalConfig")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("api_base", &self.api_base)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("webhook_id", &self.webhook_id)
            .finish_non_exhaustive()
    }
}

struct Token {
    value: Secret,
    expires_at_ms: i64,
}

/// The PayPal channel (kami side).
pub struct PaypalChannel {
    cfg: PaypalConfig,
    http: reqwest::Client,
    /// Certificate fetches: no redirects (a redirect could leave PayPal's hosts).
    cert_http: reqwest::Client,
    clock: SharedClock,
    token: Mutex<Option<Token>>,
    certs: certs::CertCache,
}

impl std::fmt::Debug for PaypalChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalChannel")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PaypalChannel {
    pub fn new(mut cfg: PaypalConfig, http: reqwest::Client) -> PaypalChannel {
        let base = cfg.api_base.trim().trim_end_matches('/');
        cfg.api_base = if base.is_empty() {
            DEFAULT_API_BASE.to_owned()
        } else {
            base.to_owned()
        };
        let cert_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| http.clone());
        PaypalChannel {
            cfg,
            http,
            cert_http,
            clock: kami_core::clock::system(),
            token: Mutex::new(None),
            certs: certs::CertCache::default(),
        }
    }

    /// The same channel reading `clock` (token expiry, certificate validity).
    pub fn with_clock(mut self, clock: SharedClock) -> PaypalChannel {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &PaypalConfig {
        &self.cfg
    }

    /// A bearer token, from the cache or `POST /v1/oauth2/token`.
    async fn token(&self) -> Result<Secret, PayError> {
        let now = self.clock.now_ms();
        if let Some(t) = self
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|t| t.expires_at_ms > now)
        {
            return Ok(t.value.clone());
        }
        let req = self
            .http
            .post(format!("{}/v1/oauth2/token", self.cfg.api_base))
            .basic_auth(&self.cfg.client_id, Some(self.cfg.client_secret.expose()))
            .header("accept", "application/json")
            .form(&[("grant_type", "client_credentials")]);
        let reply = send(req).await?;
        if !(200..300).contains(&reply.status) {
            let err: wire::ErrorAnswer = serde_json::from_slice(&reply.body).unwrap_or_default();
            return Err(err.into_error(reply.status));
        }
        let t: TokenAnswer = json(&reply.body, "token answer")?;
        if t.access_token.is_empty() {
            return Err(PayError::Malformed(
                "token answer has no access_token".into(),
            ));
        }
        let value = Secret::new(t.access_token);
        let life_ms = t.expires_in.max(0).saturating_mul(1000);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(Token {
            value: value.clone(),
            expires_at_ms: now + (life_ms - TOKEN_MARGIN_MS).max(0),
        });
        Ok(value)
    }

    /// One authenticated API call; non-2xx answers become [`PayError::Gateway`].
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        request_id: Option<&str>,
    ) -> Result<Reply, PayError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.cfg.api_base))
                .bearer_auth(token.expose())
                .header("accept", "application/json")
                .header("prefer", "return=representation");
            if let Some(id) = request_id {
                req = req.header("paypal-request-id", id);
            }
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            let reply = send(req).await?;
            if reply.status == 401 && attempt == 0 {
                // Revoked or expired early: fetch a new token once.
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                continue;
            }
            if !(200..300).contains(&reply.status) {
                let err: wire::ErrorAnswer =
                    serde_json::from_slice(&reply.body).unwrap_or_default();
                return Err(err.into_error(reply.status));
            }
            return Ok(reply);
        }
        Err(PayError::Gateway {
            code: "HTTP_401".into(),
            message: "PayPal refused the access token twice".into(),
        })
    }

    /// PayPal order ids are short upper-case alphanumerics; anything else is not sent.
    fn checked_order_id(id: &str) -> Result<&str, PayError> {
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(PayError::Malformed(format!(
                "{} is not a PayPal order id",
                wire::clip(id)
            )));
        }
        Ok(id)
    }

    /// Create the order: the approval URL and the PayPal order id.
    pub async fn create_order(&self, req: &CreatePayment) -> Result<(String, String), PayError> {
        if !self.takes(req.amount.currency()) {
            return Err(PayError::Unsupported(
                "PayPal does not take CNY from merchants outside China: charge this order in another currency",
            ));
        }
        let body = wire::order_body(req)?;
        let rid = wire::create_request_id(req.trade_no.as_str());
        let a = self
            .call(
                reqwest::Method::POST,
                "/v2/checkout/orders",
                Some(body),
                Some(&rid),
            )
            .await?;
        let order: Order = json(&a.body, "order answer")?;
        Self::checked_order_id(&order.id)?;
        let link = wire::approve_link(&order)
            .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
            .ok_or_else(|| PayError::Malformed("order answer has no approval link".into()))?;
        Ok((link.to_owned(), order.id.clone()))
    }

    /// The trade's state at PayPal, capturing an approved order. Without the order id
    /// nothing can be looked up.
    pub async fn order_state(
        &self,
        trade_no: &str,
        order_id: Option<&str>,
    ) -> Result<TradeState, PayError> {
        match self.look(trade_no, order_id).await? {
            OrderState::Trade(t) => Ok(t),
            OrderState::CapturePending | OrderState::Approved => Ok(TradeState::Waiting),
        }
    }

    /// [`PaypalChannel::order_state`] for the deadline: an order still waiting for the buyer
    /// is closed (kami will not capture it any more); a pending capture is money on its way,
    /// so the close "fails" and the checks look again until the close grace runs out.
    pub async fn close_order(
        &self,
        trade_no: &str,
        order_id: Option<&str>,
    ) -> Result<TradeState, PayError> {
        match self.look(trade_no, order_id).await? {
            OrderState::Trade(TradeState::Waiting) => Ok(TradeState::Closed),
            OrderState::Trade(t) => Ok(t),
            OrderState::CapturePending | OrderState::Approved => Err(PayError::Gateway {
                code: "CAPTURE_PENDING".into(),
                message: "the capture is pending at PayPal".into(),
            }),
        }
    }

    async fn look(&self, trade_no: &str, order_id: Option<&str>) -> Result<OrderState, PayError> {
        let Some(order_id) = order_id else {
            return Ok(OrderState::Trade(TradeState::NotFound));
        };
        let id = Self::checked_order_id(order_id)?;
        let a = match self
            .call(
                reqwest::Method::GET,
                &format!("/v2/checkout/orders/{id}"),
                None,
                None,
            )
            .await
        {
            Ok(a) => a,
            Err(PayError::Gateway { code, .. })
                if matches!(code.as_str(), "RESOURCE_NOT_FOUND" | "INVALID_RESOURCE_ID") =>
            {
                return Ok(OrderState::Trade(TradeState::NotFound))
            }
            Err(e) => return Err(e),
        };
        let order: Order = json(&a.body, "order")?;
        match wire::order_state(&order, trade_no)? {
            OrderState::Approved => self.capture(trade_no, id).await,
            other => Ok(other),
        }
    }

    /// `POST /v2/checkout/orders/{id}/capture`, idempotent per trade.
    async fn capture(&self, trade_no: &str, order_id: &str) -> Result<OrderState, PayError> {
        let rid = wire::capture_request_id(trade_no);
        let path = format!("/v2/checkout/orders/{order_id}/capture");
        let a = match self
            .call(reqwest::Method::POST, &path, Some("{}".into()), Some(&rid))
            .await
        {
            Ok(a) => a,
            // The buyer's funding failed: they may choose another in PayPal; still waiting.
            Err(PayError::Gateway { code, .. })
                if matches!(
                    code.as_str(),
                    "INSTRUMENT_DECLINED" | "ORDER_NOT_APPROVED" | "PAYER_ACTION_REQUIRED"
                ) =>
            {
                return Ok(OrderState::Trade(TradeState::Waiting))
            }
            Err(e) => return Err(e),
        };
        let order: Order = json(&a.body, "capture answer")?;
        wire::order_state(&order, trade_no)
    }

    /// Refund part or all of the capture `capture_id`.
    pub async fn refund_capture(
        &self,
        req: &RefundRequest,
        capture_id: &str,
    ) -> Result<RefundOutcome, PayError> {
        if !self.takes(req.amount.currency()) {
            return Err(PayError::Unsupported("PayPal refunds no CNY"));
        }
        let id = Self::checked_order_id(capture_id)?;
        wire::checked_trade_no(&req.refund_no)?;
        let path = format!("/v2/payments/captures/{id}/refund");
        let a = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(wire::refund_body(req)),
                Some(&req.refund_no),
            )
            .await?;
        let answer: RefundAnswer = json(&a.body, "refund answer")?;
        if answer
            .invoice_id
            .as_deref()
            .is_some_and(|i| i != req.refund_no)
        {
            return Err(PayError::Malformed(
                "gateway answered for another refund".into(),
            ));
        }
        let settled = match answer.status.as_str() {
            "COMPLETED" => true,
            "PENDING" => false,
            other => {
                return Err(PayError::Gateway {
                    code: wire::clip(other),
                    message: format!("refund {} not successful", wire::clip(&answer.id)),
                })
            }
        };
        let amount = match &answer.amount {
            Some(a) => wire::parse_amount(a)?,
            None => req.amount,
        };
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount,
            settled,
        })
    }

    fn takes(&self, c: Currency) -> bool {
        c != Currency::Cny
    }

    /// Fetch and check the certificate a webhook names, unless cached (the I/O half of
    /// webhook verification).
    pub async fn fetch_certificate(&self, cert_url: &str) -> Result<(), PayError> {
        let now = self.clock.now_secs();
        if self.certs.get(cert_url, now).is_some() {
            return Ok(());
        }
        let url = self
            .cfg
            .certs
            .check_url(cert_url)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let reply = send(self.cert_http.get(url)).await?;
        if reply.status != 200 || reply.body.len() > MAX_CERT_BYTES {
            return Err(PayError::Gateway {
                code: format!("HTTP_{}", reply.status),
                message: "certificate download failed".into(),
            });
        }
        let text = String::from_utf8(reply.body)
            .map_err(|_| PayError::Malformed("certificate is not text".into()))?;
        let cert = self
            .cfg
            .certs
            .validate(&text, now)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        self.certs.insert(cert_url, cert, now);
        Ok(())
    }

    /// Verification at `now_secs` (tests fix the time).
    pub fn verify_notification_at(
        &self,
        raw: &RawNotification,
        now_secs: i64,
    ) -> Result<NotifyVerdict, PayError> {
        let t = sign::Transmission::from_raw(raw)?;
        self.cfg
            .certs
            .check_url(t.cert_url)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let cert = self.certs.get(t.cert_url, now_secs).ok_or_else(|| {
            PayError::Transport("the webhook's signing certificate could not be fetched".into())
        })?;
        if !t.verify(&cert.key, &self.cfg.webhook_id, &raw.body) {
            return Err(PayError::BadSignature);
        }
        notify::verdict(&raw.body)
    }
}

#[async_trait]
impl PaymentChannel for PaypalChannel {
    fn id(&self) -> &ChannelId {
        &self.cfg.id
    }

    fn kind(&self) -> &'static str {
        "paypal"
    }

    fn methods(&self) -> &[Method] {
        &self.cfg.methods
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    /// PayPal never receives CNY (only accounts inside China take it): such an order is
    /// charged in the channel's `currency` (USD unless set).
    fn charge_currency(&self, offered: Currency) -> Currency {
        if self.takes(offered) {
            offered
        } else {
            self.cfg.currency
        }
    }

    /// The PayPal order id is the payment's `gateway_ref`: orders are looked up by it only.
    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        let (url, order_id) = self.create_order(req).await?;
        Ok(Created {
            action: PaymentAction::Redirect { url },
            gateway_ref: Some(order_id),
            coin_amount: None,
        })
    }

    /// Fetch the certificate the webhook names (pinned hosts only) unless cached.
    async fn prepare_notification(&self, raw: &RawNotification) {
        let Some(url) = raw.header(sign::H_CERT_URL) else {
            return;
        };
        if let Err(e) = self.fetch_certificate(url.trim()).await {
            tracing::warn!(channel = %self.cfg.id, "PayPal webhook certificate: {e}");
        }
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        self.verify_notification_at(raw, self.clock.now_secs())
    }

    /// Approval moves no money: the return and `CHECKOUT.ORDER.APPROVED` have kami capture.
    fn check_on_return(&self) -> bool {
        true
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        notify::ack(ack)
    }

    /// Reads the order named by `gateway_ref` and captures it when approved.
    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        self.order_state(&trade.trade_no, trade.gateway_ref.as_deref())
            .await
    }

    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        self.close_order(&trade.trade_no, trade.gateway_ref.as_deref())
            .await
    }

    /// Refunds the capture the payment's confirmation named (`gateway_trade_no`).
    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let capture = req.gateway_trade_no.as_deref().ok_or_else(|| {
            PayError::Malformed("the refund does not name the PayPal capture".into())
        })?;
        self.refund_capture(req, capture).await
    }

    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        self.fetch_bill(day).await
    }
}
