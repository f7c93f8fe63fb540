//! A verified webhook event's meaning, and the reply PayPal expects.
//!
//! Only `PAYMENT.CAPTURE.COMPLETED` pays: its resource is the capture, bound to our trade by
//! `custom_id` (and `invoice_id`, which kami sets to the same). Every other authentic event is
//! [`NotifyVerdict::NotPaid`] naming the trade when the resource carries it —
//! `CHECKOUT.ORDER.APPROVED` (the buyer approved; kami captures, see the channel's
//! `check_on_return`), `PAYMENT.CAPTURE.PENDING`, `…DENIED`, `…REFUNDED`, `…REVERSED`.
//! PayPal retries anything but a 2xx (up to 25 times over 3 days).

use serde::Deserialize;

use super::wire::{capture_state, clip, json, Capture};
use crate::{Ack, AckResponse, NotifyVerdict, PayError, TradeState};

pub const CAPTURE_COMPLETED: &str = "PAYMENT.CAPTURE.COMPLETED";
pub const ORDER_APPROVED: &str = "CHECKOUT.ORDER.APPROVED";

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    event_type: String,
    #[serde(default)]
    resource: serde_json::Value,
}

fn text<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
}

/// The verdict of an authentic event body.
pub fn verdict(body: &[u8]) -> Result<NotifyVerdict, PayError> {
    let event: Event = json(body, "webhook event")?;
    if event.id.is_empty() {
        return Err(PayError::Malformed("webhook event has no id".into()));
    }
    let r = &event.resource;
    match event.event_type.as_str() {
        CAPTURE_COMPLETED => {
            let capture: Capture = serde_json::from_value(r.clone())
                .map_err(|e| PayError::Malformed(format!("capture resource: {e}")))?;
            let trade_no = capture
                .custom_id
                .clone()
                .ok_or_else(|| PayError::Malformed("capture has no custom_id".into()))?;
            if capture.status != "COMPLETED" {
                return Err(PayError::Malformed(format!(
                    "{CAPTURE_COMPLETED} with capture status {}",
                    clip(&capture.status)
                )));
            }
            match capture_state(&capture, &trade_no)? {
                TradeState::Paid(c) => Ok(NotifyVerdict::Paid(c)),
                _ => Err(PayError::Malformed("capture is not completed".into())),
            }
        }
        // The order's purchase unit names the trade.
        t if t.starts_with("CHECKOUT.ORDER.") => Ok(NotifyVerdict::NotPaid {
            trade_no: r
                .get("purchase_units")
                .and_then(|u| u.get(0))
                .and_then(|u| text(u, "custom_id"))
                .unwrap_or_default()
                .to_owned(),
            status: clip(t),
        }),
        // Captures and refunds carry `custom_id` (kami sets it on both).
        t => Ok(NotifyVerdict::NotPaid {
            trade_no: text(r, "custom_id").unwrap_or_default().to_owned(),
            status: clip(t),
        }),
    }
}

/// 200 with an empty body stops PayPal's retries; anything else has it resend.
pub fn ack(ack: Ack) -> AckResponse {
    match ack {
        Ack::Success => AckResponse {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
        },
        Ack::Failure => AckResponse {
            status: 400,
            content_type: "text/plain; charset=utf-8",
            body: "rejected".into(),
        },
    }
}
