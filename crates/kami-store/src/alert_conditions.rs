//! Alert conditions: what turns `alert.signal` outbox rows into deliveries, exactly once per
//! change. A condition is (event, subject); its row's `firing` changes only by compare-and-set
//! under the row lock, in the same transaction that finishes the signal's outbox row and writes
//! one `alert.delivery` outbox row per target that wants the event:
//!
//! - firing while not firing → the condition fires: one delivery per target;
//! - firing again while firing → only `last_seen` and `details` move;
//! - resolved while firing → one resolve delivery per target;
//! - resolved while not firing → nothing.
//!
//! Signals of one condition may be claimed by two processes at once; each row remembers the
//! outbox id of the newest signal applied, and an older one met later is stale (ignored), so a
//! resolve overtaken by its own firing signal cannot leave the condition firing.

use kami_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alert_signal::{AlertEvent, AlertSignal};
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::{outbox, params};

/// Kind of the outbox row of one alert to one target (payload: [`AlertDelivery`]).
pub const ALERT_DELIVERY: &str = "alert.delivery";

/// A target the consumer may deliver to and the events it wants (the configuration's are
/// passed in by the server; the stored ones are read in the transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEvents {
    /// `config-<n>` (the n-th `[[alerts]]` block, from 0) or a stored target's name.
    pub target: String,
    pub events: Vec<AlertEvent>,
}

/// What applying one signal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The condition started firing: `deliveries` rows written.
    Fired { deliveries: usize },
    /// The condition stopped firing: `deliveries` resolve rows written.
    Resolved { deliveries: usize },
    /// Nothing to deliver (firing again, or resolved while not firing).
    Unchanged,
    /// A newer signal of this condition was applied already, or the signal row was finished
    /// by another claimer.
    Stale,
}

/// The payload of an `alert.delivery` row: everything the message needs (never secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDelivery {
    pub target: String,
    pub event: AlertEvent,
    pub subject: String,
    pub firing: bool,
    pub details: Value,
    /// When the condition fired (or resolved).
    pub at: Millis,
}

impl AlertDelivery {
    /// The name a receiver sees: `channel_down` / `channel_recovered`, `<event>` /
    /// `<event>_resolved`.
    pub fn name(&self) -> String {
        match (self.event, self.firing) {
            (AlertEvent::ChannelDown, false) => "channel_recovered".to_owned(),
            (e, true) => e.as_str().to_owned(),
            (e, false) => format!("{}_resolved", e.as_str()),
        }
    }
}

/// A condition as the console lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCondition {
    pub event: AlertEvent,
    pub subject: String,
    pub firing: bool,
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub resolved_at: Option<Millis>,
    pub details: Value,
}

/// One delivery (an `alert.delivery` outbox row) and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub alert: AlertDelivery,
    pub created_at: Millis,
    pub attempts: i64,
    /// Due (or leased) until then while not done.
    pub next_attempt_at: Millis,
    pub done_at: Option<Millis>,
    pub gave_up: bool,
    pub last_error: Option<String>,
}

struct Current {
    firing: bool,
    signal_id: i64,
}

fn locked(tx: &mut dyn Tx, event: &str, subject: &str) -> Result<Option<Current>> {
    tx.query_opt(
        "SELECT firing, signal_id FROM alert_conditions WHERE event = $1 AND subject = $2 FOR UPDATE",
        params![event, subject],
    )?
    .map(|r| {
        Ok(Current {
            firing: r.get("firing")?,
            signal_id: r.get("signal_id")?,
        })
    })
    .transpose()
}

/// Apply the claimed signal row `signal_id` to its condition, finish the row and write the
/// deliveries, in the caller's transaction.
pub(crate) fn apply(
    tx: &mut dyn Tx,
    signal_id: i64,
    signal: &AlertSignal,
    config_targets: &[TargetEvents],
    now: Millis,
) -> Result<Applied> {
    if !outbox::complete(tx, signal_id, now)? {
        return Ok(Applied::Stale);
    }
    let (event, subject) = (signal.event.as_str(), signal.subject.as_str());
    let details = signal.details.to_string();
    let cur = match locked(tx, event, subject)? {
        Some(c) => c,
        None => {
            // First word of this condition. Two first words at once: one inserts, the other
            // waits for it and then finds the row.
            tx.exec(
                "INSERT INTO alert_conditions \
                   (event, subject, firing, signal_id, first_seen, last_seen, details) \
                 VALUES ($1, $2, 0, 0, $3, $3, '{}') ON CONFLICT (event, subject) DO NOTHING",
                params![event, subject, now],
            )?;
            locked(tx, event, subject)?
                .ok_or_else(|| StoreError::Corrupt("alert condition vanished".into()))?
        }
    };
    if cur.signal_id > signal_id {
        return Ok(Applied::Stale);
    }
    let changed = match (cur.firing, signal.firing) {
        (false, true) => tx.exec(
            "UPDATE alert_conditions SET firing = 1, signal_id = $3, first_seen = $4, \
               last_seen = $4, resolved_at = NULL, details = $5 \
             WHERE event = $1 AND subject = $2 AND firing = 0 AND signal_id = $6",
            params![event, subject, signal_id, now, details, cur.signal_id],
        )?,
        (true, false) => tx.exec(
            "UPDATE alert_conditions SET firing = 0, signal_id = $3, last_seen = $4, \
               resolved_at = $4, details = $5 \
             WHERE event = $1 AND subject = $2 AND firing = 1 AND signal_id = $6",
            params![event, subject, signal_id, now, details, cur.signal_id],
        )?,
        (true, true) => {
            tx.exec(
                "UPDATE alert_conditions SET signal_id = $3, last_seen = $4, details = $5 \
                 WHERE event = $1 AND subject = $2 AND signal_id = $6",
                params![event, subject, signal_id, now, details, cur.signal_id],
            )?;
            return Ok(Applied::Unchanged);
        }
        (false, false) => {
            tx.exec(
                "UPDATE alert_conditions SET signal_id = $3 \
                 WHERE event = $1 AND subject = $2 AND signal_id = $4",
                params![event, subject, signal_id, cur.signal_id],
            )?;
            return Ok(Applied::Unchanged);
        }
    };
    if changed != 1 {
        return Err(StoreError::StatusChanged {
            table: "alert_conditions",
            id: signal_id,
            expected: if cur.firing { "firing" } else { "resolved" },
        });
    }
    let mut targets: Vec<String> = config_targets
        .iter()
        .filter(|t| t.events.contains(&signal.event))
        .map(|t| t.target.clone())
        .collect();
    targets.extend(crate::alert_targets::wanting(tx, signal.event)?);
    for target in &targets {
        let payload = AlertDelivery {
            target: target.clone(),
            event: signal.event,
            subject: signal.subject.clone(),
            firing: signal.firing,
            details: signal.details.clone(),
            at: now,
        };
        insert_delivery(tx, &payload, now)?;
    }
    let deliveries = targets.len();
    Ok(if signal.firing {
        Applied::Fired { deliveries }
    } else {
        Applied::Resolved { deliveries }
    })
}

pub(crate) fn insert_delivery(tx: &mut dyn Tx, d: &AlertDelivery, now: Millis) -> Result<()> {
    let payload = serde_json::to_string(d)
        .map_err(|e| StoreError::Corrupt(format!("alert delivery: {e}")))?;
    tx.exec(
        "INSERT INTO outbox (kind, order_id, payload, created_at, available_at) VALUES ($1, NULL, $2, $3, $3)",
        params![ALERT_DELIVERY, payload, now],
    )?;
    Ok(())
}

fn json(column: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn condition(r: &Row) -> Result<AlertCondition> {
    let event: String = r.get("event")?;
    Ok(AlertCondition {
        event: AlertEvent::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("alert event `{event}`")))?,
        subject: r.get("subject")?,
        firing: r.get("firing")?,
        first_seen: r.get("first_seen")?,
        last_seen: r.get("last_seen")?,
        resolved_at: r.get("resolved_at")?,
        details: json("alert_conditions.details", &r.get::<String>("details")?)?,
    })
}

pub(crate) fn open(tx: &mut dyn Tx, limit: u32) -> Result<Vec<AlertCondition>> {
    tx.query(
        "SELECT event, subject, firing, first_seen, last_seen, resolved_at, details \
         FROM alert_conditions WHERE firing = 1 ORDER BY first_seen DESC, event, subject LIMIT $1",
        params![limit],
    )?
    .iter()
    .map(condition)
    .collect()
}

/// The subjects of `event` firing now (the evaluators compare them with what they see).
pub(crate) fn firing_subjects(tx: &mut dyn Tx, event: AlertEvent) -> Result<Vec<String>> {
    tx.query(
        "SELECT subject FROM alert_conditions WHERE event = $1 AND firing = 1 ORDER BY subject",
        params![event.as_str()],
    )?
    .iter()
    .map(|r| r.get("subject"))
    .collect()
}

pub(crate) fn deliveries(tx: &mut dyn Tx, limit: u32) -> Result<Vec<DeliveryRecord>> {
    tx.query(
        "SELECT id, payload, created_at, attempts, available_at, done_at, gave_up, last_error \
         FROM outbox WHERE kind = $1 ORDER BY id DESC LIMIT $2",
        params![ALERT_DELIVERY, limit],
    )?
    .iter()
    .map(|r| {
        Ok(DeliveryRecord {
            id: r.get("id")?,
            alert: serde_json::from_str(&r.get::<String>("payload")?)
                .map_err(|e| StoreError::Corrupt(format!("alert delivery payload: {e}")))?,
            created_at: r.get("created_at")?,
            attempts: r.get("attempts")?,
            next_attempt_at: r.get("available_at")?,
            done_at: r.get("done_at")?,
            gave_up: r.get("gave_up")?,
            last_error: r.get("last_error")?,
        })
    })
    .collect()
}

impl crate::Store {
    /// Apply the claimed `alert.signal` row `signal_id` (see the module documentation):
    /// finish it, change its condition by compare-and-set, and write one delivery per target
    /// wanting the event (`config_targets` and the enabled stored targets), in one commit.
    pub async fn apply_alert_signal(
        &self,
        signal_id: i64,
        signal: AlertSignal,
        config_targets: Vec<TargetEvents>,
        now: Millis,
    ) -> Result<Applied> {
        self.write(move |tx| apply(tx, signal_id, &signal, &config_targets, now))
            .await
    }

    /// The conditions firing now, newest first.
    pub async fn open_alert_conditions(&self, limit: u32) -> Result<Vec<AlertCondition>> {
        self.read(move |tx| open(tx, limit)).await
    }

    /// The subjects of `event` firing now.
    pub async fn firing_alert_subjects(&self, event: AlertEvent) -> Result<Vec<String>> {
        self.read(move |tx| firing_subjects(tx, event)).await
    }

    /// The newest `limit` alert deliveries and where each stands.
    pub async fn alert_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>> {
        self.read(move |tx| deliveries(tx, limit)).await
    }

    /// Write several signals in one transaction (the evaluators' findings of one round).
    pub async fn emit_alerts(&self, signals: Vec<AlertSignal>, now: Millis) -> Result<()> {
        if signals.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            for s in &signals {
                crate::alert_signal::emit(tx, s, now)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_names() {
        let d = |event, firing| AlertDelivery {
            target: "config-0".into(),
            event,
            subject: "s".into(),
            firing,
            details: Value::Null,
            at: 0,
        };
        assert_eq!(d(AlertEvent::ChannelDown, true).name(), "channel_down");
        assert_eq!(
            d(AlertEvent::ChannelDown, false).name(),
            "channel_recovered"
        );
        assert_eq!(d(AlertEvent::LowStock, true).name(), "low_stock");
        assert_eq!(d(AlertEvent::LowStock, false).name(), "low_stock_resolved");
    }
}
