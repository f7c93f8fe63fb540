//! Alert signals: a condition some part of kami noticed (a channel went down, a bill does not
//! match, an order needs the seller), written as an outbox row (`alert.signal`) in the same
//! transaction as the change that revealed it. The alerts job reads these rows, keeps each
//! condition's state (so one condition alerts once, then sends one resolve) and delivers to
//! the seller's `[[alerts]]` targets; nothing here knows about targets.

use kami_core::Millis;
use serde::{Deserialize, Serialize};

use crate::db::Tx;
use crate::error::Result;
use crate::params;

/// Kind of the outbox row an alert signal is written as.
pub const ALERT_SIGNAL: &str = "alert.signal";

/// What an alert is about; the names are the `events` of an `[[alerts]]` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A channel (for a method) stopped taking payments; resolved when it recovers
    /// (delivered as `channel_recovered`).
    ChannelDown,
    /// A channel's payment success rate fell well below its own baseline.
    SuccessRateLow,
    /// Notifications arrive late (gateway pay time → received).
    NotifyLag,
    /// A channel that usually converts has had no paid order for a while.
    SilentChannel,
    /// An order is in `exception` (paid, not deliverable): the seller must act.
    ExceptionOrder,
    /// A reconciliation found a difference with the channel's bill.
    ReconciliationMismatch,
    /// A product's stock fell below the threshold.
    LowStock,
    /// A validly signed success the gateway's own query does not confirm (held, not delivered).
    UnconfirmedPayment,
    /// An order was paid twice (a second payment attempt, or another payment of a paid
    /// trade): the buyer is owed a refund of one. Fires once per order; there is nothing to
    /// resolve it by itself.
    DuplicatePayment,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 9] = [
        AlertEvent::ChannelDown,
        AlertEvent::SuccessRateLow,
        AlertEvent::NotifyLag,
        AlertEvent::SilentChannel,
        AlertEvent::ExceptionOrder,
        AlertEvent::ReconciliationMismatch,
        AlertEvent::LowStock,
        AlertEvent::UnconfirmedPayment,
        AlertEvent::DuplicatePayment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::ChannelDown => "channel_down",
            AlertEvent::SuccessRateLow => "success_rate_low",
            AlertEvent::NotifyLag => "notify_lag",
            AlertEvent::SilentChannel => "silent_channel",
            AlertEvent::ExceptionOrder => "exception_order",
            AlertEvent::ReconciliationMismatch => "reconciliation_mismatch",
            AlertEvent::LowStock => "low_stock",
            AlertEvent::UnconfirmedPayment => "unconfirmed_payment",
            AlertEvent::DuplicatePayment => "duplicate_payment",
        }
    }

    pub fn parse(s: &str) -> Option<AlertEvent> {
        AlertEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One observation of a condition: firing (it holds now) or resolved (it no longer does).
/// `subject` says what it is about (`ali-main/alipay`, a product slug, an order number, a
/// reconciliation batch); a condition is identified by (event, subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSignal {
    pub event: AlertEvent,
    pub subject: String,
    pub firing: bool,
    /// What a person needs to act: figures, names, never secrets.
    pub details: serde_json::Value,
}

/// Write `signal` in the caller's transaction (an outbox row, due at once).
pub(crate) fn emit(tx: &mut dyn Tx, signal: &AlertSignal, now: Millis) -> Result<()> {
    let payload = serde_json::to_string(signal)
        .map_err(|e| crate::StoreError::Corrupt(format!("alert signal: {e}")))?;
    tx.exec(
        "INSERT INTO outbox (kind, order_id, payload, created_at, available_at) VALUES ($1, NULL, $2, $3, $3)",
        params![ALERT_SIGNAL, payload, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_match_serde() {
        for e in AlertEvent::ALL {
            assert_eq!(AlertEvent::parse(e.as_str()), Some(e));
            assert_eq!(
                serde_json::to_value(e).ok(),
                Some(serde_json::Value::String(e.as_str().into()))
            );
        }
        assert_eq!(AlertEvent::parse("channel_recovered"), None);
    }
}
