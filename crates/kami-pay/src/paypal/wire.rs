//! PayPal's JSON shapes (Orders v2, captures, refunds, OAuth, errors) and their translation
//! into kami's facts: amounts from integer minor units to PayPal's `value` strings and back
//! exactly, an order's state into a [`TradeState`], a capture into a
//! [`PaymentConfirmation`] bound to our trade number.

use kami_core::{Currency, Money};
use serde::Deserialize;

use crate::common::pay_time::pay_time;
use crate::{CreatePayment, PayError, PaymentConfirmation, RefundRequest, TradeState};

/// `description` of a purchase unit: at most 127 characters.
const MAX_DESCRIPTION_CHARS: usize = 127;
/// `custom_id` and `invoice_id`: at most 127 characters.
const MAX_ID_CHARS: usize = 127;

/// Clip gateway text for error messages (it may carry anything).
pub fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `{currency_code, value}` as PayPal writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Amount {
    pub currency_code: String,
    pub value: String,
}

/// PayPal's `value` of `m`: the currency's digits exactly ("10.00"; JPY "1230").
pub fn value_of(m: Money) -> String {
    m.to_major_string()
}

/// The JSON `amount` object of `m`.
pub fn amount_json(m: Money) -> serde_json::Value {
    serde_json::json!({ "currency_code": m.currency().code(), "value": value_of(m) })
}

/// An amount PayPal reports, in a currency kami knows, with no more digits than it has.
pub fn parse_amount(a: &Amount) -> Result<Money, PayError> {
    let currency = Currency::parse(&a.currency_code)
        .map_err(|_| PayError::Malformed(format!("unknown currency {}", clip(&a.currency_code))))?;
    Money::from_major_str(&a.value, currency)
        .map_err(|_| PayError::Malformed(format!("amount {} does not parse", clip(&a.value))))
}

/// Our trade number as PayPal carries it (`custom_id`, `invoice_id`).
pub fn checked_trade_no(trade_no: &str) -> Result<&str, PayError> {
    if trade_no.is_empty()
        || trade_no.chars().count() > MAX_ID_CHARS
        || !trade_no.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(PayError::Malformed(format!(
            "{} is not a valid trade number for PayPal",
            clip(trade_no)
        )));
    }
    Ok(trade_no)
}

/// `PayPal-Request-Id` of the order creation and of the capture of one trade: the same trade
/// always sends the same one, so a retry after a timeout is answered with the first result.
pub fn create_request_id(trade_no: &str) -> String {
    format!("kami-create-{trade_no}")
}

pub fn capture_request_id(trade_no: &str) -> String {
    format!("kami-capture-{trade_no}")
}

/// `POST /v2/checkout/orders` body (A.2).
pub fn order_body(req: &CreatePayment) -> Result<String, PayError> {
    let trade_no = checked_trade_no(req.trade_no.as_str())?;
    let description: String = req.subject.chars().take(MAX_DESCRIPTION_CHARS).collect();
    let mut unit = serde_json::json!({
        "custom_id": trade_no,
        "invoice_id": trade_no,
        "amount": amount_json(req.amount),
    });
    if !description.trim().is_empty() {
        unit["description"] = serde_json::Value::String(description);
    }
    Ok(serde_json::json!({
        "intent": "CAPTURE",
        "purchase_units": [unit],
        "payment_source": { "paypal": { "experience_context": {
            "return_url": req.return_url,
            "cancel_url": req.return_url,
            "user_action": "PAY_NOW",
            "shipping_preference": "NO_SHIPPING",
        }}},
    })
    .to_string())
}

/// `POST /v2/payments/captures/{id}/refund` body: the amount, our refund number as the
/// refund's `invoice_id`, our trade number as its `custom_id` (both come back in the
/// transaction search), the reason for the buyer.
pub fn refund_body(req: &RefundRequest) -> String {
    let mut body = serde_json::json!({
        "amount": amount_json(req.amount),
        "invoice_id": req.refund_no,
        "custom_id": req.trade_no,
    });
    if let Some(r) = req.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        body["note_to_payer"] = serde_json::Value::String(r.chars().take(255).collect());
    }
    body.to_string()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub href: String,
    pub rel: String,
}

/// An Orders v2 order (the fields kami reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub purchase_units: Vec<PurchaseUnit>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PurchaseUnit {
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub amount: Option<Amount>,
    pub payments: Option<Payments>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Payments {
    #[serde(default)]
    pub captures: Vec<Capture>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Capture {
    pub id: String,
    pub status: String,
    pub amount: Option<Amount>,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub create_time: Option<String>,
    pub update_time: Option<String>,
}

/// A refund as `POST …/refund` answers it (`Prefer: return=representation`).
#[derive(Debug, Clone, Deserialize)]
pub struct RefundAnswer {
    pub id: String,
    pub status: String,
    pub amount: Option<Amount>,
    pub invoice_id: Option<String>,
}

/// `POST /v1/oauth2/token`.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub expires_in: i64,
}

/// An API error (`{name, message, details[{issue, description}]}`) or an OAuth one
/// (`{error, error_description}`).
#[derive(Debug, Default, Deserialize)]
pub struct ErrorAnswer {
    pub name: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    pub issue: Option<String>,
    pub description: Option<String>,
}

impl ErrorAnswer {
    /// The most specific code: the first detail's `issue` (`ORDER_NOT_APPROVED`), else the
    /// error's `name` (`RESOURCE_NOT_FOUND`), else the OAuth `error`, else the HTTP status.
    pub fn into_error(self, status: u16) -> PayError {
        let issue = self.details.first().and_then(|d| d.issue.clone());
        let code = issue
            .or(self.name)
            .or(self.error)
            .unwrap_or_else(|| format!("HTTP_{status}"));
        let message = self
            .details
            .first()
            .and_then(|d| d.description.clone())
            .or(self.message)
            .or(self.error_description)
            .unwrap_or_default();
        PayError::Gateway {
            code: clip(&code),
            message: message.chars().take(200).collect(),
        }
    }
}

/// Parse a JSON answer, naming what it was in the error.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, PayError> {
    serde_json::from_slice(body).map_err(|e| PayError::Malformed(format!("{what}: {e}")))
}

/// RFC 3339 (`2026-11-22T10:00:00Z`) as unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The link the buyer must open to approve (`payer-action` with `payment_source`, `approve`
/// in the older flow).
pub fn approve_link(order: &Order) -> Option<&str> {
    ["payer-action", "approve"].iter().find_map(|rel| {
        order
            .links
            .iter()
            .find(|l| l.rel == *rel)
            .map(|l| l.href.as_str())
    })
}

/// A `COMPLETED` capture as a payment of `trade_no`: its `custom_id` (and `invoice_id` when
/// present) must name that trade.
pub fn confirmation(c: &Capture, trade_no: &str) -> Result<PaymentConfirmation, PayError> {
    if c.custom_id.as_deref() != Some(trade_no) {
        return Err(PayError::Malformed(
            "capture custom_id does not name this trade".into(),
        ));
    }
    if c.invoice_id.as_deref().is_some_and(|i| i != trade_no) {
        return Err(PayError::Malformed(
            "capture invoice_id does not match its custom_id".into(),
        ));
    }
    if c.id.is_empty() {
        return Err(PayError::Malformed("capture has no id".into()));
    }
    let amount = c
        .amount
        .as_ref()
        .ok_or_else(|| PayError::Malformed("capture has no amount".into()))?;
    let time = c.update_time.as_deref().or(c.create_time.as_deref());
    Ok(PaymentConfirmation {
        trade_no: trade_no.to_owned(),
        gateway_trade_no: c.id.clone(),
        amount: parse_amount(amount)?,
        paid_at: pay_time("paypal", "update_time", time, parse_rfc3339),
        coin_amount: None,
    })
}

/// What a capture's status means for the trade.
pub fn capture_state(c: &Capture, trade_no: &str) -> Result<TradeState, PayError> {
    match c.status.as_str() {
        // Partly refunded is still paid; kami learns of the refund from its own request.
        "COMPLETED" | "PARTIALLY_REFUNDED" => Ok(TradeState::Paid(confirmation(c, trade_no)?)),
        // The money is not there yet (eCheck, review): `PAYMENT.CAPTURE.COMPLETED` follows.
        "PENDING" => Ok(TradeState::Waiting),
        "DECLINED" | "FAILED" => Ok(TradeState::Closed),
        "REFUNDED" => Ok(TradeState::Refunded),
        other => Err(PayError::Malformed(format!(
            "unknown capture status {}",
            clip(other)
        ))),
    }
}

/// The order's one purchase unit, bound to `trade_no` by its `custom_id`.
pub fn unit_of<'a>(order: &'a Order, trade_no: &str) -> Result<&'a PurchaseUnit, PayError> {
    let unit = order
        .purchase_units
        .first()
        .ok_or_else(|| PayError::Malformed("order has no purchase unit".into()))?;
    if unit.custom_id.as_deref() != Some(trade_no) {
        return Err(PayError::Malformed(
            "order custom_id does not name this trade".into(),
        ));
    }
    Ok(unit)
}

/// What an order says about `trade_no`, captures included; `APPROVED` is reported as such
/// (the caller captures it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderState {
    /// Approved by the buyer, not captured: kami captures it.
    Approved,
    /// Captured, the money not there yet (`PENDING`): waits for the completed capture.
    CapturePending,
    /// Anything else, as kami's trade state.
    Trade(TradeState),
}

pub fn order_state(order: &Order, trade_no: &str) -> Result<OrderState, PayError> {
    let unit = unit_of(order, trade_no)?;
    match order.status.as_str() {
        "CREATED" | "SAVED" | "PAYER_ACTION_REQUIRED" => Ok(OrderState::Trade(TradeState::Waiting)),
        "APPROVED" => Ok(OrderState::Approved),
        "VOIDED" => Ok(OrderState::Trade(TradeState::Closed)),
        "COMPLETED" => {
            let capture = unit
                .payments
                .as_ref()
                .and_then(|p| p.captures.first())
                .ok_or_else(|| PayError::Malformed("completed order has no capture".into()))?;
            if capture.status == "PENDING" {
                return Ok(OrderState::CapturePending);
            }
            capture_state(capture, trade_no).map(OrderState::Trade)
        }
        other => Err(PayError::Malformed(format!(
            "unknown order status {}",
            clip(other)
        ))),
    }
}
