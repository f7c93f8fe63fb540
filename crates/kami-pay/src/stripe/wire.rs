//! Stripe's wire shapes and their translation to kami's facts: the form kami posts to create a
//! Checkout Session, the Session / Event / Refund objects Stripe answers with, its error body,
//! and money (integer minor units with a lower-case ISO code; zero-decimal currencies such as
//! JPY are counted in whole units, which is what kami's `Money` holds for them already).

use kami_core::{Currency, Money};
use serde::Deserialize;
use serde_json::Value;

use crate::common::form::clip;
use crate::{PayError, PaymentConfirmation, TradeState};

/// The metadata key kami binds a session (and its payment intent, and a refund) to its trade.
pub const TRADE_NO_KEY: &str = "trade_no";
/// The metadata key naming kami's refund number on a refund.
pub const REFUND_NO_KEY: &str = "refund_no";
/// Stripe's `expires_at` must lie 30 minutes to 24 hours after the session is created.
pub const MIN_EXPIRY_SECS: i64 = 30 * 60;
pub const MAX_EXPIRY_SECS: i64 = 24 * 3600;
/// Kept from both ends of Stripe's window so a clock a little off from Stripe's is not
/// refused.
pub const EXPIRY_MARGIN_SECS: i64 = 120;
/// Stripe's limit on `client_reference_id`, and on a metadata value.
const MAX_REFERENCE_CHARS: usize = 200;
const MAX_METADATA_VALUE_CHARS: usize = 500;

/// `CNY` → `cny`: Stripe names currencies by their lower-case ISO code.
pub fn currency_param(c: Currency) -> String {
    c.code().to_ascii_lowercase()
}

/// A Stripe `currency` (lower-case ISO code) as kami's currency.
pub fn parse_currency(s: &str) -> Result<Currency, PayError> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(PayError::Malformed(format!(
            "currency {:?} is not a lower-case ISO code",
            clip(s)
        )));
    }
    Currency::parse(&s.to_ascii_uppercase())
        .map_err(|_| PayError::Malformed(format!("currency {} is not one kami takes", clip(s))))
}

/// An amount in minor units with its currency.
pub fn money(minor: i64, currency: &str) -> Result<Money, PayError> {
    let c = parse_currency(currency)?;
    Money::new(minor, c).map_err(|e| PayError::Malformed(format!("amount {minor}: {e}")))
}

/// `expires_at` for a session created at `now` whose order is due at `deadline` (unix s):
/// the deadline, moved into Stripe's window of 30 min..24 h after creation. An order due
/// sooner than 30 minutes (kami's default is 15) gets the earliest expiry Stripe takes; kami
/// closes the session itself at the order's deadline with the expire endpoint, so the buyer
/// still cannot pay late. Rounded up to the minute so a retry with the same idempotency key
/// within the minute sends the same parameters.
pub fn expires_at(now: i64, deadline: i64) -> i64 {
    let earliest = now + MIN_EXPIRY_SECS + EXPIRY_MARGIN_SECS;
    let latest = now + MAX_EXPIRY_SECS - EXPIRY_MARGIN_SECS;
    let rounded = |t: i64| (t + 59).div_euclid(60) * 60;
    let t = rounded(deadline.max(earliest));
    if t > latest {
        latest.div_euclid(60) * 60
    } else {
        t
    }
}

/// `s` cut to at most `max` characters (Stripe counts characters).
pub(super) fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The form of `POST /v1/checkout/sessions` for one payment attempt, in the order it is sent.
#[allow(clippy::too_many_arguments)]
pub fn session_form(
    trade_no: &str,
    amount: Money,
    product_name: &str,
    success_url: &str,
    cancel_url: &str,
    expires_at: i64,
) -> Vec<(String, String)> {
    let name = if product_name.trim().is_empty() {
        format!("Order {trade_no}")
    } else {
        cut(product_name.trim(), 250)
    };
    let pairs: [(&str, String); 12] = [
        ("mode", "payment".into()),
        ("payment_method_types[0]", "card".into()),
        (
            "line_items[0][price_data][currency]",
            currency_param(amount.currency()),
        ),
        (
            "line_items[0][price_data][unit_amount]",
            amount.minor().to_string(),
        ),
        ("line_items[0][price_data][product_data][name]", name),
        ("line_items[0][quantity]", "1".into()),
        ("success_url", success_url.to_owned()),
        ("cancel_url", cancel_url.to_owned()),
        ("client_reference_id", cut(trade_no, MAX_REFERENCE_CHARS)),
        ("metadata[trade_no]", trade_no.to_owned()),
        (
            "payment_intent_data[metadata][trade_no]",
            trade_no.to_owned(),
        ),
        ("expires_at", expires_at.to_string()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The form of `POST /v1/refunds`.
pub fn refund_form(
    payment_intent: &str,
    amount: Money,
    trade_no: &str,
    refund_no: &str,
    reason: Option<&str>,
) -> Vec<(String, String)> {
    let mut f = vec![
        ("payment_intent".to_owned(), payment_intent.to_owned()),
        ("amount".to_owned(), amount.minor().to_string()),
        ("metadata[trade_no]".to_owned(), trade_no.to_owned()),
        ("metadata[refund_no]".to_owned(), refund_no.to_owned()),
    ];
    if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        f.push((
            "metadata[reason]".to_owned(),
            cut(r, MAX_METADATA_VALUE_CHARS),
        ));
    }
    f
}

/// A Checkout Session object (the fields kami reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub amount_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// A `pi_…` id (or the expanded object) once the buyer paid; null while open.
    #[serde(default)]
    pub payment_intent: Option<Value>,
    /// `paid` | `unpaid` | `no_payment_required`.
    #[serde(default)]
    pub payment_status: String,
    /// `open` | `complete` | `expired`.
    #[serde(default)]
    pub status: Option<String>,
    /// The hosted page; null once the session is complete or expired.
    #[serde(default)]
    pub url: Option<String>,
}

impl Session {
    pub fn payment_intent_id(&self) -> Option<&str> {
        match self.payment_intent.as_ref()? {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("id")?.as_str(),
            _ => None,
        }
    }

    fn metadata_trade_no(&self) -> Option<&str> {
        self.metadata.as_ref()?.get(TRADE_NO_KEY)?.as_str()
    }

    /// The trade this session was created for: `client_reference_id` and `metadata[trade_no]`
    /// must both name it. `Ok(None)`: neither is set (a session another integration on the
    /// same account created); one set without the other, or the two disagreeing, is refused.
    pub fn bound_trade_no(&self) -> Result<Option<&str>, PayError> {
        match (
            self.client_reference_id.as_deref(),
            self.metadata_trade_no(),
        ) {
            (None, None) => Ok(None),
            (Some(a), Some(b)) if a == b && !a.is_empty() => Ok(Some(a)),
            _ => Err(PayError::Malformed(
                "session's client_reference_id and metadata[trade_no] disagree".into(),
            )),
        }
    }

    /// The session is complete and its money collected.
    pub fn is_paid(&self) -> bool {
        self.status.as_deref() == Some("complete") && self.payment_status == "paid"
    }

    /// What a paid session proves: our trade, the payment intent, the amount and currency.
    pub fn confirmation(&self, paid_at: Option<i64>) -> Result<PaymentConfirmation, PayError> {
        let trade_no = self
            .bound_trade_no()?
            .ok_or_else(|| PayError::Malformed("session names no kami trade".into()))?;
        let pi = self
            .payment_intent_id()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| PayError::Malformed("paid session has no payment_intent".into()))?;
        let minor = self
            .amount_total
            .ok_or_else(|| PayError::Malformed("paid session has no amount_total".into()))?;
        let currency = self
            .currency
            .as_deref()
            .ok_or_else(|| PayError::Malformed("paid session has no currency".into()))?;
        Ok(PaymentConfirmation {
            trade_no: trade_no.to_owned(),
            gateway_trade_no: pi.to_owned(),
            amount: money(minor, currency)?,
            paid_at,
            coin_amount: None,
        })
    }

    /// The session as a trade state for `trade_no` (which it must be bound to).
    pub fn state_for(&self, trade_no: &str) -> Result<TradeState, PayError> {
        if self.object != "checkout.session" {
            return Err(PayError::Malformed("not a checkout.session object".into()));
        }
        match self.bound_trade_no()? {
            Some(t) if t == trade_no => {}
            _ => {
                return Err(PayError::Malformed(format!(
                    "session {} is not bound to trade {}",
                    clip(&self.id),
                    clip(trade_no)
                )))
            }
        }
        if self.is_paid() {
            return self.confirmation(None).map(TradeState::Paid);
        }
        Ok(match self.status.as_deref() {
            Some("expired") => TradeState::Closed,
            // Open, or complete with an asynchronous payment still under way.
            _ => TradeState::Waiting,
        })
    }
}

/// An Event (webhook body).
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub created: Option<i64>,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// A Refund object (the fields kami reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending` | `requires_action` | `succeeded` | `failed` | `canceled`.
    pub status: String,
    #[serde(default)]
    pub payment_intent: Option<Value>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

impl Refund {
    /// kami's refund number, from `metadata[refund_no]`.
    pub fn refund_no(&self) -> Option<&str> {
        self.metadata.as_ref()?.get(REFUND_NO_KEY)?.as_str()
    }
}

/// A list answer: `{"object": "list", "data": [...], "has_more"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

/// Stripe's error body: `{"error": {"type", "code"?, "message", "param"?}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A non-2xx answer as [`PayError::Gateway`]: the error's `code` (else its `type`, else the
/// HTTP status) and message, clipped.
pub fn api_error(status: u16, body: &[u8]) -> PayError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => PayError::Gateway {
            code: clip(
                b.error
                    .code
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .unwrap_or(&b.error.kind),
            ),
            message: clip(b.error.message.as_deref().unwrap_or("")),
        },
        Err(_) => PayError::Gateway {
            code: format!("http_{status}"),
            message: "unreadable error body".into(),
        },
    }
}

/// A JSON body as `T`.
pub fn json<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, PayError> {
    serde_json::from_slice(body)
        .map_err(|e| PayError::Malformed(format!("{what} is not the expected JSON: {e}")))
}
