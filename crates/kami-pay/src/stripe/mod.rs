//! The `stripe` channel: Stripe Checkout for card payments (method `card`;
//! `shared/protocols.md` appendix A.1). The gateway side lives in `kami_sim::stripe`.
//!
//! # What each trait method sends
//!
//! Every call is form-encoded with `Authorization: Bearer <secret key>` to `api_base`
//! (default `https://api.stripe.com`). Answers are not signed: they are authenticated by TLS to
//! the configured host only. A non-2xx answer is Stripe's `{"error": {type, code, message}}`
//! → [`PayError::Gateway`].
//!
//! * `create`: `POST /v1/checkout/sessions` with `mode=payment`, `payment_method_types[0]=card`,
//!   one line item priced inline (`currency` lower-case, `unit_amount` in minor units, the
//!   product title), `success_url` = `cancel_url` = kami's return URL, the trade number as
//!   `client_reference_id`, `metadata[trade_no]` and `payment_intent_data[metadata][trade_no]`,
//!   and `expires_at` ([`wire::expires_at`]: Stripe takes only 30 min..24 h ahead, so a
//!   15-minute order gets 30 minutes and kami expires the session itself at the deadline).
//!   Header `Idempotency-Key: kami-checkout-<trade no>`: a retry with the same parameters
//!   gets the same session; the same key with other parameters is refused by Stripe (400
//!   `idempotency_error`). The buyer is redirected to the session's `url`; the session id
//!   (`cs_…`) is the attempt's `gateway_ref`.
//! * `verify_notification`: the webhook ([`notify`]): `Stripe-Signature` over the raw body,
//!   then the Checkout Session events. kami's `notify_url` is not sent to Stripe: the seller
//!   adds `<public_url>/pay/notify/<channel id>` as a webhook endpoint in the dashboard,
//!   listening to `checkout.session.completed`, `checkout.session.async_payment_succeeded`,
//!   `checkout.session.async_payment_failed` and `checkout.session.expired`.
//! * `query`: `GET /v1/checkout/sessions/{gateway_ref}`: `complete` + `paid` → paid (with the
//!   payment intent `pi_…` as the gateway trade number), `expired` → closed, otherwise
//!   waiting. Without a `gateway_ref` (the create call's answer was lost, so the buyer never
//!   saw the page) the trade is `NotFound`, after an authenticated
//!   `GET /v1/checkout/sessions?limit=1` (so a wrong key still shows).
//! * `close`: `POST /v1/checkout/sessions/{id}/expire`; Stripe refuses to expire a session
//!   that is no longer open, and then the session is read: a completed, paid one is `Paid`.
//! * `refund`: `POST /v1/refunds` with the payment intent (the confirmation's gateway trade
//!   number, or read from the session), `amount`, `metadata[trade_no|refund_no]`;
//!   `Idempotency-Key` = kami's refund number. `succeeded` is settled; `pending` and
//!   `requires_action` are not yet; `failed` / `canceled` are errors.
//!
//! * `bill`: the day's balance transactions ([`bill`]), kami's trades picked by the payment
//!   intent's `metadata[trade_no]`.
//!
//! # Binding and money
//!
//! A session is bound to its trade by `client_reference_id` and `metadata[trade_no]`: both
//! must name it. The server then checks the trade's amount and currency against
//! `amount_total` and `currency`. Amounts are minor units as Stripe counts them (zero-decimal
//! currencies such as JPY in whole units, as kami's `Money` holds them).
//!
//! # Files
//!
//! `sign` (the `Stripe-Signature` scheme), `wire` (forms and objects), `notify` (webhooks and
//! the reply), `settings`, `tests`. Webhook freshness reads the channel's
//! [`kami_core::Clock`] ([`StripeChannel::with_clock`]).

mod bill;
mod notify;
pub mod settings;
mod sign;
mod wire;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use kami_core::{ChannelId, Method, SharedClock};

use crate::common::form::clip;
use crate::http::send;
use crate::{
    Ack, AckResponse, Bill, BillDay, CreatePayment, Created, NotifyVerdict, PayError,
    PaymentAction, PaymentChannel, RawNotification, RefundOutcome, RefundRequest, TradeRef,
    TradeState,
};

pub use bill::day_bounds;
pub use notify::{MAX_WEBHOOK_BYTES, SIGNATURE_HEADER};
pub use sign::{
    parse_header, signature_header, v1_signature, verify_header, SignatureFailure,
    DEFAULT_TOLERANCE_SECS, SCHEME,
};
pub use wire::{
    currency_param, expires_at, money, parse_currency, refund_form, session_form, Event, Refund,
    Session, EXPIRY_MARGIN_SECS, MAX_EXPIRY_SECS, MIN_EXPIRY_SECS, REFUND_NO_KEY, TRADE_NO_KEY,
};

/// Stripe's API host.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// What `Idempotency-Key` of a session create starts with; the trade number follows.
pub const CHECKOUT_KEY_PREFIX: &str = "kami-checkout-";

/// The idempotency key of the session create for `trade_no`.
pub fn checkout_idempotency_key(trade_no: &str) -> String {
    format!("{CHECKOUT_KEY_PREFIX}{trade_no}")
}

/// A Stripe object id as it may appear in a URL path: a known prefix, then letters, digits
/// and `_` (so a stored reference can never turn into another path).
pub fn valid_object_id(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len()
        && id.len() <= 255
        && id.starts_with(prefix)
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Configuration of one Stripe channel.
pub struct StripeConfig {
    pub id: ChannelId,
    pub methods: Vec<Method>,
    pub priority: i32,
    /// `https://api.stripe.com` (no trailing slash needed).
    pub api_base: String,
    pub secret_key: String,
    /// The endpoint's `whsec_…` signing secret, used as it is.
    pub webhook_secret: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("id", &self.id)
            .field("methods", &self.methods)
            .field("priority", &self.priority)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// The Stripe Checkout channel (merchant side). See the module documentation.
pub struct StripeChannel {
    cfg: StripeConfig,
    http: reqwest::Client,
    clock: SharedClock,
    tolerance_secs: i64,
}

impl std::fmt::Debug for StripeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeChannel")
            .field("cfg", &self.cfg)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

enum Verb {
    Get,
    Post,
}

impl StripeChannel {
    pub fn new(cfg: StripeConfig, http: reqwest::Client) -> StripeChannel {
        StripeChannel {
            cfg,
            http,
            clock: kami_core::clock::system(),
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    /// The same channel reading `clock` for webhook freshness and session expiry.
    pub fn with_clock(mut self, clock: SharedClock) -> StripeChannel {
        self.clock = clock;
        self
    }

    fn url(&self, path: &str) -> Result<String, PayError> {
        let base = self.cfg.api_base.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(PayError::Config(
                "stripe api_base must be an http(s) URL".into(),
            ));
        }
        Ok(format!("{base}{path}"))
    }

    /// One API call; the 2xx body, or Stripe's error as [`PayError::Gateway`].
    async fn call(
        &self,
        verb: Verb,
        path: &str,
        form: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<u8>, PayError> {
        let url = self.url(path)?;
        let mut rb = match verb {
            Verb::Get => self.http.get(url),
            Verb::Post => {
                let body = serde_urlencoded::to_string(form)
                    .map_err(|e| PayError::Malformed(format!("request form: {e}")))?;
                self.http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
        };
        rb = rb.bearer_auth(&self.cfg.secret_key);
        if let Some(k) = idempotency_key {
            rb = rb.header("idempotency-key", k);
        }
        let reply = send(rb).await?;
        if !(200..300).contains(&reply.status) {
            return Err(wire::api_error(reply.status, &reply.body));
        }
        Ok(reply.body)
    }

    /// The form of the session create for `req` at unix time `now` (interop tests compare it
    /// with stripe-python's encoding).
    pub fn session_form_for(&self, req: &CreatePayment, now: i64) -> Vec<(String, String)> {
        let deadline = req.expires_at_ms.div_euclid(1000);
        session_form(
            req.trade_no.as_str(),
            req.amount,
            &req.subject,
            &req.return_url,
            &req.return_url,
            expires_at(now, deadline),
        )
    }

    /// `POST /v1/checkout/sessions`: the page to send the buyer to, and the session.
    pub async fn create_session(&self, req: &CreatePayment) -> Result<Session, PayError> {
        let form = self.session_form_for(req, self.clock.now_secs());
        let key = checkout_idempotency_key(req.trade_no.as_str());
        let body = self
            .call(Verb::Post, "/v1/checkout/sessions", &form, Some(&key))
            .await?;
        let session: Session = wire::json(&body, "checkout session")?;
        if !valid_object_id(&session.id, "cs_") {
            return Err(PayError::Malformed(format!(
                "session id {:?} is not a cs_ id",
                clip(&session.id)
            )));
        }
        match session.bound_trade_no()? {
            Some(t) if t == req.trade_no.as_str() => {}
            _ => {
                return Err(PayError::Malformed(
                    "created session is bound to another trade".into(),
                ))
            }
        }
        let expected = (req.amount.minor(), currency_param(req.amount.currency()));
        if (session.amount_total, session.currency.clone()) != (Some(expected.0), Some(expected.1))
        {
            return Err(PayError::Malformed(
                "created session's amount_total or currency differs from the order".into(),
            ));
        }
        Ok(session)
    }

    /// `GET /v1/checkout/sessions/{id}`.
    pub async fn retrieve_session(&self, id: &str) -> Result<Session, PayError> {
        if !valid_object_id(id, "cs_") {
            return Err(PayError::Malformed(format!(
                "{:?} is not a checkout session id",
                clip(id)
            )));
        }
        let body = self
            .call(Verb::Get, &format!("/v1/checkout/sessions/{id}"), &[], None)
            .await?;
        wire::json(&body, "checkout session")
    }

    async fn expire_session(&self, id: &str) -> Result<Session, PayError> {
        if !valid_object_id(id, "cs_") {
            return Err(PayError::Malformed(format!(
                "{:?} is not a checkout session id",
                clip(id)
            )));
        }
        let body = self
            .call(
                Verb::Post,
                &format!("/v1/checkout/sessions/{id}/expire"),
                &[],
                None,
            )
            .await?;
        wire::json(&body, "checkout session")
    }

    /// The payment intent of a paid trade: the one the confirmation recorded, else the
    /// session's.
    async fn payment_intent(&self, req: &RefundRequest) -> Result<String, PayError> {
        if let Some(pi) = req.gateway_trade_no.as_deref().filter(|p| !p.is_empty()) {
            return Ok(pi.to_owned());
        }
        let id = req.gateway_ref.as_deref().ok_or_else(|| {
            PayError::Malformed("no payment intent nor checkout session to refund".into())
        })?;
        let session = self.retrieve_session(id).await?;
        if let TradeState::Paid(c) = session.state_for(&req.trade_no)? {
            return Ok(c.gateway_trade_no);
        }
        Err(PayError::Gateway {
            code: "not_paid".into(),
            message: "the checkout session is not paid".into(),
        })
    }
}

#[async_trait]
impl PaymentChannel for StripeChannel {
    fn id(&self) -> &ChannelId {
        &self.cfg.id
    }

    fn kind(&self) -> &'static str {
        "stripe"
    }

    fn methods(&self) -> &[Method] {
        &self.cfg.methods
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        let session = self.create_session(req).await?;
        let url = session
            .url
            .clone()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| PayError::Malformed("created session has no url".into()))?;
        Ok(Created {
            action: PaymentAction::Redirect { url },
            gateway_ref: Some(session.id),
            coin_amount: None,
        })
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        self.verify_notification_at(raw, self.clock.now_secs())
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        notify::ack(ack)
    }

    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let Some(id) = trade.gateway_ref.as_deref() else {
            // No session was recorded (its create answer was lost, so the buyer never saw a
            // page): nothing to find. The authenticated list call makes the answer Stripe's
            // (a wrong key fails here), which is what the console's test button relies on.
            self.call(Verb::Get, "/v1/checkout/sessions?limit=1", &[], None)
                .await?;
            return Ok(TradeState::NotFound);
        };
        match self.retrieve_session(id).await {
            Ok(s) => s.state_for(&trade.trade_no),
            Err(PayError::Gateway { code, .. }) if code == "resource_missing" => {
                Ok(TradeState::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let Some(id) = trade.gateway_ref.as_deref() else {
            return Ok(TradeState::NotFound);
        };
        match self.expire_session(id).await {
            Ok(s) => s.state_for(&trade.trade_no),
            // Not open any more (complete, or expired already): what is it now?
            Err(PayError::Gateway { .. }) => self.query(trade).await,
            Err(e) => Err(e),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let pi = self.payment_intent(req).await?;
        if !valid_object_id(&pi, "pi_") {
            return Err(PayError::Malformed(format!(
                "{:?} is not a payment intent id",
                clip(&pi)
            )));
        }
        // Stripe forgets idempotency keys after 24 hours: a refund asked again later is found
        // by its refund number among the payment's refunds instead of being made twice.
        let r = match self.find_refund(&pi, &req.refund_no).await? {
            Some(r) => r,
            None => self.post_refund(&pi, req).await?,
        };
        refund_outcome(&r, req)
    }

    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        self.fetch_bill(day).await
    }
}

impl StripeChannel {
    /// `GET /v1/refunds?payment_intent=…&limit=100`: the refund whose `metadata[refund_no]`
    /// is `refund_no`, if any.
    async fn find_refund(&self, pi: &str, refund_no: &str) -> Result<Option<Refund>, PayError> {
        let body = self
            .call(
                Verb::Get,
                &format!("/v1/refunds?payment_intent={pi}&limit=100"),
                &[],
                None,
            )
            .await?;
        let list: wire::List<Refund> = wire::json(&body, "refund list")?;
        Ok(list
            .data
            .into_iter()
            .find(|r| r.refund_no() == Some(refund_no)))
    }

    async fn post_refund(&self, pi: &str, req: &RefundRequest) -> Result<Refund, PayError> {
        let form = refund_form(
            pi,
            req.amount,
            &req.trade_no,
            &req.refund_no,
            req.reason.as_deref(),
        );
        let body = self
            .call(Verb::Post, "/v1/refunds", &form, Some(&req.refund_no))
            .await?;
        wire::json(&body, "refund")
    }
}

/// A refund answer for `req`, checked: same amount and currency; settled once `succeeded`.
fn refund_outcome(r: &Refund, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
    if money(r.amount, &r.currency)? != req.amount {
        return Err(PayError::Malformed(
            "refund answer's amount or currency differs from the request".into(),
        ));
    }
    let settled = match r.status.as_str() {
        "succeeded" => true,
        "pending" | "requires_action" => false,
        other => {
            return Err(PayError::Gateway {
                code: format!("refund_{}", clip(other)),
                message: format!("refund {} is {}", clip(&r.id), clip(other)),
            })
        }
    };
    Ok(RefundOutcome {
        refund_no: req.refund_no.clone(),
        amount: req.amount,
        settled,
    })
}
