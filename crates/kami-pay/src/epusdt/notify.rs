//! Notifications (A.3, A.4): a JSON POST `{trade_id, order_id, amount, actual_amount, token,
//! block_transaction_id, signature, status}` signed like a request. epusdt sends only
//! status 2 and wants the body exactly `ok`; BEpusdt also sends signed status-1 updates for
//! waiting orders about once a minute and wants HTTP 200 whatever the body. So every
//! verified message is answered 200 `ok`, and only status 2 means paid.

use kami_core::CoinAmount;
use serde_json::{Map, Value};

use super::sign::verify;
use super::wire::{coin, fiat, int, object, text, TradeStatus};
use crate::common::ack::TEXT_PLAIN;
use crate::{Ack, AckResponse, NotifyVerdict, PayError, PaymentConfirmation, RawNotification};

/// Largest notification body read (real ones are ~400 bytes).
pub const MAX_NOTIFY_BYTES: usize = 16 * 1024;

/// A verified notification, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub trade_id: String,
    pub order_id: String,
    pub status: TradeStatus,
    pub fields: Map<String, Value>,
}

/// Parses and verifies the body against `token`; `BadSignature` when it does not check out.
pub fn verified(raw: &RawNotification, token: &str) -> Result<Notification, PayError> {
    if raw.method != "POST" {
        return Err(PayError::Malformed("notifications are POSTed".into()));
    }
    if raw.body.len() > MAX_NOTIFY_BYTES {
        return Err(PayError::Malformed("notification too large".into()));
    }
    let fields = object(&raw.body)?;
    if !verify(&fields, token) {
        return Err(PayError::BadSignature);
    }
    let code = int(&fields, "status")?;
    let status = TradeStatus::from_code(code)
        .ok_or_else(|| PayError::Malformed(format!("unknown status {code}")))?;
    Ok(Notification {
        trade_id: text(&fields, "trade_id")?.to_owned(),
        order_id: text(&fields, "order_id")?.to_owned(),
        status,
        fields,
    })
}

/// The verdict of a verified notification: status 2 pays `order_id` with the fiat `amount`
/// and the coin `actual_amount` (the store holds both to the attempt); every other status is
/// acknowledged and ignored.
pub fn verdict(n: Notification, unit: &str) -> Result<NotifyVerdict, PayError> {
    if n.status != TradeStatus::Paid {
        return Ok(NotifyVerdict::NotPaid {
            trade_no: n.order_id,
            status: n.status.name().to_owned(),
        });
    }
    let amount = fiat(n.fields.get("amount"), "amount")?;
    let coin_amount: CoinAmount = coin(n.fields.get("actual_amount"), unit, "actual_amount")?;
    Ok(NotifyVerdict::Paid(PaymentConfirmation {
        trade_no: n.order_id,
        gateway_trade_no: n.trade_id,
        amount,
        paid_at: None,
        coin_amount: Some(coin_amount),
    }))
}

/// Success: 200 `ok` exactly (epusdt compares the body; BEpusdt reads the status).
/// Failure: 500 `fail`, which both retry.
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
