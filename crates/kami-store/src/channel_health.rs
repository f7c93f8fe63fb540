//! Routing state shared by the kami processes on one database: each (channel, method)'s
//! health (`channel_health`, written on state changes, read every few seconds by every
//! process) and the day's paid total per channel (for `daily_limit`). A change into or out of
//! `down` writes the `ChannelDown` alert signal (firing / resolved) in the same transaction,
//! once: a process whose change is older than the row's, or repeats its state, writes nothing.

use kami_core::Millis;

use crate::alert_signal::{self, AlertEvent, AlertSignal};
use crate::db::Tx;
use crate::error::Result;
use crate::params;

/// State names as the server's routing spells them.
pub const DOWN: &str = "down";
pub const HEALTHY: &str = "healthy";

/// One (channel, method)'s health as a process decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    pub channel_id: String,
    pub method: String,
    /// `healthy`, `degraded` or `down`.
    pub state: String,
    /// When it changed.
    pub since: Millis,
    pub rest_until: Option<Millis>,
    /// The deciding process's window at the change.
    pub calls: i64,
    pub failures: i64,
    pub last_code: Option<String>,
    pub reason: String,
}

impl HealthRow {
    pub fn subject(&self) -> String {
        format!("{}/{}", self.channel_id, self.method)
    }
}

/// Write the changes in order; returns those that took effect (newer than the row and a
/// different state).
pub(crate) fn record_changes(
    tx: &mut dyn Tx,
    changes: &[HealthRow],
    now: Millis,
) -> Result<Vec<HealthRow>> {
    let mut applied = Vec::new();
    for c in changes {
        // The row exists before it is locked, so two processes' changes are serialised
        // (and the alert signal written once).
        tx.exec(
            "INSERT INTO channel_health (channel_id, method, state, since) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (channel_id, method) DO NOTHING",
            params![c.channel_id.as_str(), c.method.as_str(), HEALTHY],
        )?;
        let current = tx.query_opt(
            "SELECT state, since FROM channel_health WHERE channel_id = $1 AND method = $2 FOR UPDATE",
            params![c.channel_id.as_str(), c.method.as_str()],
        )?;
        let (was, since) = match &current {
            Some(r) => (r.get::<String>("state")?, r.get::<i64>("since")?),
            None => (HEALTHY.to_owned(), i64::MIN),
        };
        if since > c.since || was == c.state {
            continue;
        }
        tx.exec(
            "INSERT INTO channel_health (channel_id, method, state, since, rest_until, calls, failures, last_code, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (channel_id, method) DO UPDATE SET state = excluded.state, since = excluded.since, \
               rest_until = excluded.rest_until, calls = excluded.calls, failures = excluded.failures, \
               last_code = excluded.last_code, reason = excluded.reason",
            params![
                c.channel_id.as_str(),
                c.method.as_str(),
                c.state.as_str(),
                c.since,
                c.rest_until,
                c.calls,
                c.failures,
                c.last_code.clone(),
                c.reason.as_str()
            ],
        )?;
        let into_down = c.state == DOWN && was != DOWN;
        let out_of_down = was == DOWN && c.state != DOWN;
        if into_down || out_of_down {
            let signal = AlertSignal {
                event: AlertEvent::ChannelDown,
                subject: c.subject(),
                firing: into_down,
                details: serde_json::json!({
                    "channel": c.channel_id,
                    "method": c.method,
                    "state": c.state,
                    "reason": c.reason,
                    "calls": c.calls,
                    "failures": c.failures,
                    "last_code": c.last_code,
                    "rest_until": c.rest_until,
                }),
            };
            alert_signal::emit(tx, &signal, now)?;
        }
        applied.push(c.clone());
    }
    Ok(applied)
}

pub(crate) fn all(tx: &mut dyn Tx) -> Result<Vec<HealthRow>> {
    tx.query(
        "SELECT channel_id, method, state, since, rest_until, calls, failures, last_code, reason \
         FROM channel_health ORDER BY channel_id, method",
        params![],
    )?
    .iter()
    .map(|r| {
        Ok(HealthRow {
            channel_id: r.get("channel_id")?,
            method: r.get("method")?,
            state: r.get("state")?,
            since: r.get("since")?,
            rest_until: r.get("rest_until")?,
            calls: r.get("calls")?,
            failures: r.get("failures")?,
            last_code: r.get("last_code")?,
            reason: r.get("reason")?,
        })
    })
    .collect()
}

/// Paid amounts (minor units) per channel of payments paid at or after `since`.
pub(crate) fn paid_totals(tx: &mut dyn Tx, since: Millis) -> Result<Vec<(String, i64)>> {
    tx.query(
        "SELECT channel_id, CAST(SUM(amount) AS BIGINT) AS total FROM payments \
         WHERE paid_at IS NOT NULL AND paid_at >= $1 GROUP BY channel_id",
        params![since],
    )?
    .iter()
    .map(|r| Ok((r.get("channel_id")?, r.get("total")?)))
    .collect()
}

impl crate::Store {
    /// Record health changes (with their alert signals) in one transaction; returns those
    /// that took effect.
    pub async fn record_channel_health(
        &self,
        changes: Vec<HealthRow>,
        now: Millis,
    ) -> Result<Vec<HealthRow>> {
        self.write(move |tx| record_changes(tx, &changes, now))
            .await
    }

    /// Every (channel, method)'s shared health.
    pub async fn channel_health(&self) -> Result<Vec<HealthRow>> {
        self.read(all).await
    }

    /// Paid amounts per channel since `since` (the day's start).
    pub async fn paid_totals_since(&self, since: Millis) -> Result<Vec<(String, i64)>> {
        self.read(move |tx| paid_totals(tx, since)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn row(state: &str, since: Millis) -> HealthRow {
        HealthRow {
            channel_id: "ali".into(),
            method: "alipay".into(),
            state: state.into(),
            since,
            rest_until: (state == DOWN).then_some(since + 60_000),
            calls: 5,
            failures: 5,
            last_code: Some("ACQ.SYSTEM_ERROR".into()),
            reason: "down: 5 create failures in a row".into(),
        }
    }

    async fn signals(store: &Store, firing: bool) -> usize {
        store
            .read(move |tx| {
                let rows = tx.query(
                    "SELECT payload FROM outbox WHERE kind = $1",
                    params![crate::ALERT_SIGNAL],
                )?;
                let mut n = 0;
                for r in &rows {
                    let s: AlertSignal = serde_json::from_str(&r.get::<String>("payload")?)
                        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
                    assert_eq!(
                        (s.event, s.subject.as_str()),
                        (AlertEvent::ChannelDown, "ali/alipay")
                    );
                    n += usize::from(s.firing == firing);
                }
                Ok(n)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn down_and_back_signal_once_and_older_changes_lose() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let ring = crate::sealed::Keyring::generate().unwrap();
        let store = Store::connect_with_keyring(&url, 2, ring).await.unwrap();

        let applied = store
            .record_channel_health(vec![row("degraded", 10), row(DOWN, 20)], 20)
            .await
            .unwrap();
        assert_eq!(applied.len(), 2);
        assert_eq!(
            (signals(&store, true).await, signals(&store, false).await),
            (1, 0)
        );
        // Another process reports the same down state: nothing new.
        let applied = store
            .record_channel_health(vec![row(DOWN, 25)], 25)
            .await
            .unwrap();
        assert!(applied.is_empty());
        assert_eq!(signals(&store, true).await, 1);
        // A change older than the row's loses.
        let applied = store
            .record_channel_health(vec![row("healthy", 15)], 30)
            .await
            .unwrap();
        assert!(applied.is_empty());
        let shared = store.channel_health().await.unwrap();
        assert_eq!((shared.len(), shared[0].state.as_str()), (1, DOWN));
        assert_eq!(shared[0].rest_until, Some(60_020));
        // Back: resolved, once.
        store
            .record_channel_health(vec![row("degraded", 90_000)], 90_000)
            .await
            .unwrap();
        assert_eq!(
            (signals(&store, true).await, signals(&store, false).await),
            (1, 1)
        );
        assert!(store.paid_totals_since(0).await.unwrap().is_empty());
    }
}
