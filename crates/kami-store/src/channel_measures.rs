//! The channel page's measures (issue 11 part 2), read from the database so every kami
//! process sharing it counts: per channel and payment method, create calls by outcome and
//! duration, orders created and paid, payments by how they were found and their notify lag,
//! and per channel the notifications that failed. One read covers `[since, ∞)`; each row says
//! whether it falls in the recent part (`at >= recent_since`), so the service gets the last
//! 24 hours and the last 7 days from one range scan per query (indexes `channel_calls_at`,
//! `orders_created_stats`, `payments_found`, `payment_events_outcome`, all from migration 22).

use kami_core::Millis;

use crate::db::Tx;
use crate::error::Result;
use crate::explain::{self, Explained};
use crate::params;
use crate::Store;

macro_rules! calls_sql {
    () => {
        "SELECT channel_id, pay_method, outcome, duration_ms, \
         CAST(CASE WHEN at >= $2 THEN 1 ELSE 0 END AS BIGINT) AS recent, COUNT(*) AS n \
         FROM channel_calls WHERE at >= $1 AND method = 'create' \
         GROUP BY channel_id, pay_method, outcome, duration_ms, recent"
    };
}
macro_rules! orders_sql {
    () => {
        "SELECT channel_id, method, \
         CAST(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END AS BIGINT) AS recent, \
         COUNT(*) AS n, COUNT(paid_at) AS paid FROM orders WHERE created_at >= $1 \
         GROUP BY channel_id, method, recent"
    };
}
// A notified payment's lag is kami's confirmation time minus the gateway's pay time, in
// whole seconds (the gateways' pay times have seconds).
macro_rules! found_sql {
    () => {
        "SELECT p.channel_id, o.method, p.found_by, \
         CAST(CASE WHEN p.paid_at >= $2 THEN 1 ELSE 0 END AS BIGINT) AS recent, \
         CAST(CASE WHEN p.found_by = 'notify' AND p.gateway_paid_at IS NOT NULL \
              THEN (p.paid_at - p.gateway_paid_at) / 1000 END AS BIGINT) AS lag_s, \
         COUNT(*) AS n \
         FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE p.paid_at >= $1 AND p.found_by IS NOT NULL \
         GROUP BY p.channel_id, o.method, p.found_by, recent, lag_s"
    };
}
macro_rules! failures_sql {
    () => {
        "SELECT channel_id, outcome, \
         CAST(CASE WHEN received_at >= $2 THEN 1 ELSE 0 END AS BIGINT) AS recent, COUNT(*) AS n \
         FROM payment_events \
         WHERE outcome IN ('rejected', 'amount_mismatch', 'unknown_order', 'unconfirmed') \
         AND received_at >= $1 \
         GROUP BY channel_id, outcome, recent"
    };
}

/// Create calls of one channel for one payment method that ended with `outcome` after
/// `duration_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureCallRow {
    pub channel: String,
    /// The payment method ('' for calls recorded before migration 22).
    pub method: String,
    pub outcome: String,
    pub duration_ms: i64,
    pub recent: bool,
    pub calls: i64,
}

/// Orders created through one channel for one method, and how many of them are paid by now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureOrderRow {
    pub channel: String,
    pub method: String,
    pub recent: bool,
    pub created: i64,
    pub paid: i64,
}

/// Payments confirmed through one channel for one method, by what found them; for notified
/// ones with a gateway pay time, grouped by their lag in whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureFoundRow {
    pub channel: String,
    pub method: String,
    /// `notify`, `query`, `close`, `seller_check`, `bill`.
    pub found_by: String,
    pub recent: bool,
    pub lag_s: Option<i64>,
    pub payments: i64,
}

/// Notifications of one channel that failed: `rejected` (verification), `amount_mismatch`,
/// `unknown_order`, `unconfirmed` (not confirmed by the channel's query). Rejected ones beyond
/// the per-client logging limit are not stored, so only `/metrics` counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureFailureRow {
    pub channel: String,
    pub outcome: String,
    pub recent: bool,
    pub events: i64,
}

/// Everything the channel page shows, since one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelMeasureRows {
    pub calls: Vec<MeasureCallRow>,
    pub orders: Vec<MeasureOrderRow>,
    pub found: Vec<MeasureFoundRow>,
    pub failures: Vec<MeasureFailureRow>,
}

/// The payments confirmed since `since`, by channel, method, how they were found and lag.
fn found_rows(
    tx: &mut dyn Tx,
    since: Millis,
    recent_since: Millis,
) -> Result<Vec<MeasureFoundRow>> {
    tx.query(found_sql!(), params![since, recent_since])?
        .iter()
        .map(|r| {
            Ok(MeasureFoundRow {
                channel: r.get("channel_id")?,
                method: r.get("method")?,
                found_by: r.get("found_by")?,
                recent: r.get::<i64>("recent")? == 1,
                lag_s: r.get("lag_s")?,
                payments: r.get("n")?,
            })
        })
        .collect()
}

fn rows(tx: &mut dyn Tx, since: Millis, recent_since: Millis) -> Result<ChannelMeasureRows> {
    let p = params![since, recent_since];
    let calls = tx
        .query(calls_sql!(), p)?
        .iter()
        .map(|r| {
            Ok(MeasureCallRow {
                channel: r.get("channel_id")?,
                method: r.get("pay_method")?,
                outcome: r.get("outcome")?,
                duration_ms: r.get("duration_ms")?,
                recent: r.get::<i64>("recent")? == 1,
                calls: r.get("n")?,
            })
        })
        .collect::<Result<_>>()?;
    let orders = tx
        .query(orders_sql!(), p)?
        .iter()
        .map(|r| {
            Ok(MeasureOrderRow {
                channel: r.get("channel_id")?,
                method: r.get("method")?,
                recent: r.get::<i64>("recent")? == 1,
                created: r.get("n")?,
                paid: r.get("paid")?,
            })
        })
        .collect::<Result<_>>()?;
    let found = found_rows(tx, since, recent_since)?;
    let failures = tx
        .query(failures_sql!(), p)?
        .iter()
        .map(|r| {
            Ok(MeasureFailureRow {
                channel: r.get("channel_id")?,
                outcome: r.get("outcome")?,
                recent: r.get::<i64>("recent")? == 1,
                events: r.get("n")?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(ChannelMeasureRows {
        calls,
        orders,
        found,
        failures,
    })
}

/// The plan of each query, by name (see [`crate::explain`]).
fn plans(tx: &mut dyn Tx, since: Millis, recent: Millis) -> Result<Vec<(&'static str, String)>> {
    let queries: [Explained; 4] = [
        (
            "calls",
            concat!("EXPLAIN ", calls_sql!()),
            concat!("EXPLAIN QUERY PLAN ", calls_sql!()),
        ),
        (
            "orders",
            concat!("EXPLAIN ", orders_sql!()),
            concat!("EXPLAIN QUERY PLAN ", orders_sql!()),
        ),
        (
            "found",
            concat!("EXPLAIN ", found_sql!()),
            concat!("EXPLAIN QUERY PLAN ", found_sql!()),
        ),
        (
            "failures",
            concat!("EXPLAIN ", failures_sql!()),
            concat!("EXPLAIN QUERY PLAN ", failures_sql!()),
        ),
    ];
    explain::plans(tx, &queries, since, recent)
}

impl Store {
    /// The channel measures since `since` (unix ms), each row marked recent when at or after
    /// `recent_since`.
    pub async fn channel_measure_rows(
        &self,
        since: Millis,
        recent_since: Millis,
    ) -> Result<ChannelMeasureRows> {
        self.read(move |tx| rows(tx, since, recent_since)).await
    }

    /// Only the confirmed payments of [`Store::channel_measure_rows`] (the notify-lag alert
    /// needs no more).
    pub async fn channel_found_rows(&self, since: Millis) -> Result<Vec<MeasureFoundRow>> {
        self.read(move |tx| found_rows(tx, since, since)).await
    }

    /// The query plans of [`Store::channel_measure_rows`] (tests: each is an index scan).
    pub async fn channel_measure_plans(
        &self,
        since: Millis,
        recent_since: Millis,
    ) -> Result<Vec<(&'static str, String)>> {
        self.write(move |tx| plans(tx, since, recent_since)).await
    }
}
