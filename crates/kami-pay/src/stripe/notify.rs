//! Stripe webhooks (appendix A.1): the `Stripe-Signature` checked over the raw body, then the
//! event read. Only Checkout Session events carry a verdict; every other authentic event is
//! acknowledged as "not a payment" so Stripe stops resending it (an endpoint that keeps
//! failing is disabled by Stripe after days of retries).
//!
//! | event | verdict |
//! | --- | --- |
//! | `checkout.session.completed`, `payment_status = paid` | paid |
//! | `checkout.session.completed`, `unpaid` (delayed method) | not paid (wait for the next) |
//! | `checkout.session.async_payment_succeeded` (paid) | paid |
//! | `checkout.session.async_payment_failed` | not paid |
//! | `checkout.session.expired` | not paid |
//! | anything else | not paid, no trade |
//!
//! Events arrive at least once and in any order; the server applies a payment once, and a
//! late `expired` or `unpaid` event after the payment changes nothing.

use super::sign::{verify_header, SignatureFailure};
use super::wire::{json, Event, Session};
use super::StripeChannel;
use crate::common::form::clip;
use crate::{Ack, AckResponse, NotifyVerdict, PayError, RawNotification};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Largest webhook body read (a session event is a few KiB).
pub const MAX_WEBHOOK_BYTES: usize = 256 * 1024;

pub(super) const COMPLETED: &str = "checkout.session.completed";
pub(super) const ASYNC_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
pub(super) const ASYNC_FAILED: &str = "checkout.session.async_payment_failed";
pub(super) const EXPIRED: &str = "checkout.session.expired";

/// Stripe counts any 2xx as delivered and retries anything else; the body is not read, so
/// kami answers a small JSON object like Stripe's own examples.
pub(super) fn ack(ack: Ack) -> AckResponse {
    match ack {
        Ack::Success => AckResponse {
            status: 200,
            content_type: "application/json",
            body: r#"{"received":true}"#.to_owned(),
        },
        Ack::Failure => AckResponse {
            status: 400,
            content_type: "application/json",
            body: r#"{"received":false}"#.to_owned(),
        },
    }
}

impl StripeChannel {
    /// [`crate::PaymentChannel::verify_notification`] at an explicit unix time.
    pub fn verify_notification_at(
        &self,
        raw: &RawNotification,
        now: i64,
    ) -> Result<NotifyVerdict, PayError> {
        if !raw.method.eq_ignore_ascii_case("POST") {
            return Err(PayError::Malformed(format!(
                "unsupported method {}",
                clip(&raw.method)
            )));
        }
        if raw.body.len() > MAX_WEBHOOK_BYTES {
            return Err(PayError::Malformed("webhook body too large".into()));
        }
        let mut headers = raw
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(SIGNATURE_HEADER));
        let header = match (headers.next(), headers.next()) {
            (Some((_, v)), None) => v,
            (None, _) => return Err(PayError::Malformed("no Stripe-Signature header".into())),
            (Some(_), Some(_)) => {
                return Err(PayError::Malformed(
                    "more than one Stripe-Signature header".into(),
                ))
            }
        };
        match verify_header(
            header,
            &raw.body,
            &self.cfg.webhook_secret,
            now,
            self.tolerance_secs,
        ) {
            Ok(_) => {}
            Err(SignatureFailure::TooOld) => return Err(PayError::Stale),
            Err(SignatureFailure::Unparsable) => {
                return Err(PayError::Malformed(
                    "Stripe-Signature has no timestamp or no v1 signature".into(),
                ))
            }
            Err(SignatureFailure::NoMatch) => return Err(PayError::BadSignature),
        }
        let event: Event = json(&raw.body, "webhook event")?;
        if event.object != "event" {
            return Err(PayError::Malformed("webhook body is not an event".into()));
        }
        self.event_verdict(&event)
    }

    fn event_verdict(&self, event: &Event) -> Result<NotifyVerdict, PayError> {
        let kind = event.kind.as_str();
        if !matches!(kind, COMPLETED | ASYNC_SUCCEEDED | ASYNC_FAILED | EXPIRED) {
            return Ok(NotifyVerdict::NotPaid {
                trade_no: String::new(),
                status: clip(kind),
            });
        }
        let session: Session = serde_json::from_value(event.data.object.clone())
            .map_err(|e| PayError::Malformed(format!("event's session: {e}")))?;
        if session.object != "checkout.session" {
            return Err(PayError::Malformed(
                "event's object is not a checkout.session".into(),
            ));
        }
        let Some(trade_no) = session.bound_trade_no()? else {
            // A session some other integration on this account created.
            return Ok(NotifyVerdict::NotPaid {
                trade_no: String::new(),
                status: format!("{kind}: not a kami session"),
            });
        };
        if matches!(kind, COMPLETED | ASYNC_SUCCEEDED) && session.is_paid() {
            let paid_at = event.created.and_then(|s| s.checked_mul(1000));
            return session.confirmation(paid_at).map(NotifyVerdict::Paid);
        }
        Ok(NotifyVerdict::NotPaid {
            trade_no: trade_no.to_owned(),
            status: clip(&format!("{kind}: {}", session.payment_status)),
        })
    }
}
