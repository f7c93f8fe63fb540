//! Notifications (A.5): a JSON POST sent only once the order is paid, its fields varying by
//! version, signed over whatever keys arrive. `Status` 1 is paid; anything else is
//! acknowledged and ignored. TokenPay retries unless the answer is HTTP 200 with the body
//! exactly `ok`.

use kami_core::Currency;
use serde_json::Value;

use super::sign::verify;
use super::wire::{coin, fiat, object, string};
use crate::common::ack::TEXT_PLAIN;
use crate::common::pay_time::{parse_china_time, pay_time};
use crate::{Ack, AckResponse, NotifyVerdict, PayError, PaymentConfirmation, RawNotification};

/// Largest notification body read (real ones are under 1 KiB).
pub const MAX_NOTIFY_BYTES: usize = 16 * 1024;

/// Parses and verifies a notification; `unit` is the channel's coin.
pub fn verdict(raw: &RawNotification, secret: &str, unit: &str) -> Result<NotifyVerdict, PayError> {
    if raw.method != "POST" {
        return Err(PayError::Malformed("notifications are POSTed".into()));
    }
    if raw.body.len() > MAX_NOTIFY_BYTES {
        return Err(PayError::Malformed("notification too large".into()));
    }
    let obj = object(&raw.body)?;
    if !verify(&obj, secret) {
        return Err(PayError::BadSignature);
    }
    let trade_no = string(&obj, "OutOrderId")?.to_owned();
    let status = match obj.get("Status") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| PayError::Malformed("`Status` missing or not an integer".into()))?;
    if status != 1 {
        return Ok(NotifyVerdict::NotPaid {
            trade_no,
            status: status.to_string(),
        });
    }
    let currency = match obj.get("BaseCurrency").and_then(Value::as_str) {
        Some(code) => Currency::parse(code)
            .map_err(|_| PayError::Malformed("`BaseCurrency` is not a known currency".into()))?,
        None => Currency::Cny,
    };
    Ok(NotifyVerdict::Paid(PaymentConfirmation {
        trade_no,
        gateway_trade_no: string(&obj, "Id")?.to_owned(),
        amount: fiat(obj.get("ActualAmount"), currency, "ActualAmount")?,
        paid_at: pay_time(
            "tokenpay",
            "PayTime",
            obj.get("PayTime").and_then(Value::as_str),
            parse_china_time,
        ),
        coin_amount: Some(coin(obj.get("Amount"), unit, "Amount")?),
    }))
}

/// Success: 200 `ok` exactly; failure: 500 `fail` (retried after a minute, twice).
pub fn ack(ack: Ack) -> AckResponse {
    let (status, body) = match ack {
        Ack::Success => (200, "ok"),
        Ack::Failure => (500, "fail"),
    };
    AckResponse {
        status,
        content_type: TEXT_PLAIN,
        body: body.to_owned(),
    }
}
