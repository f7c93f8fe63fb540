//! What the dashboard and `GET /api/v1/admin/stats` count, as rows grouped into quarter-hour
//! buckets of UTC time. Every time zone in use today is offset from UTC by a multiple of 15
//! minutes, so a bucket never straddles a local midnight: the service puts each bucket into
//! the shop's local day without the database knowing any time zone (SQLite has none).
//! Each query is one range scan of an index (`orders_created_stats`, `orders_paid_stats` (covering),
//! `refunds_settled`, `channel_calls_at`); [`Store::stats_plans`] shows the plans.

use kami_core::Millis;

use crate::db::{Tx, Value};
use crate::error::Result;
use crate::explain::{self, Explained};
use crate::params;
use crate::Store;

/// The width of a bucket: 15 minutes.
pub const BUCKET_MS: i64 = 900_000;
/// A UTC day: 96 buckets.
pub const DAY_MS: i64 = 86_400_000;

// The queries as macros, so the EXPLAIN texts are literals too (`concat!`).
macro_rules! created_sql {
    () => {
        "SELECT created_at / 900000 AS q, channel_id, COUNT(*) AS n, \
         COUNT(paid_at) AS paid FROM orders \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY q, channel_id"
    };
}
macro_rules! paid_sql {
    () => {
        "SELECT paid_at / 900000 AS q, channel_id, currency, COUNT(*) AS n, \
         CAST(SUM(amount) AS BIGINT) AS total FROM orders \
         WHERE paid_at >= $1 AND paid_at < $2 GROUP BY q, channel_id, currency"
    };
}
macro_rules! refunded_sql {
    () => {
        "SELECT settled_at / 900000 AS q, currency, CAST(SUM(amount) AS BIGINT) AS total \
         FROM refunds WHERE status = 'succeeded' AND settled_at >= $1 AND settled_at < $2 \
         GROUP BY q, currency"
    };
}
macro_rules! calls_sql {
    () => {
        "SELECT at / 86400000 AS d, channel_id, outcome, duration_ms, COUNT(*) AS n \
         FROM channel_calls WHERE at >= $1 AND at < $2 AND method = 'create' \
         GROUP BY d, channel_id, outcome, duration_ms"
    };
}

/// Orders created in one bucket through one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedRow {
    pub bucket: i64,
    pub channel: String,
    pub orders: i64,
    /// Of those orders, how many are paid by now (the conversion's numerator).
    pub paid_since: i64,
}

/// Orders paid in one bucket, through one channel, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidRow {
    pub bucket: i64,
    pub channel: String,
    pub currency: String,
    pub orders: i64,
    /// Minor units.
    pub amount: i64,
}

/// Refunds that succeeded in one bucket, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundedRow {
    pub bucket: i64,
    pub currency: String,
    pub amount: i64,
}

/// How many create calls of one channel ended with `outcome` after `duration_ms`, on one
/// UTC day (so cached days can be told apart; durations are not kept per bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    /// Days since the epoch, UTC.
    pub day: i64,
    pub channel: String,
    pub outcome: String,
    pub duration_ms: i64,
    pub calls: i64,
}

/// Everything counted in `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRows {
    pub created: Vec<CreatedRow>,
    pub paid: Vec<PaidRow>,
    pub refunded: Vec<RefundedRow>,
    pub calls: Vec<CallRow>,
}

/// How a channel call ended. (Calls recorded before migration 22 may say `error`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    /// The gateway answered and refused (an error code).
    GatewayError,
    /// The gateway could not be reached, or the connection failed.
    TransportError,
    /// No answer in time.
    Timeout,
    /// An answer that did not verify or parse.
    BadResponse,
    /// Not supported for this payment (a flavour not enabled, a currency): the order's
    /// parameters, not the channel's health.
    Unsupported,
    /// The channel's configuration cannot make the call.
    ConfigError,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 7] = [
        CallOutcome::Ok,
        CallOutcome::GatewayError,
        CallOutcome::TransportError,
        CallOutcome::Timeout,
        CallOutcome::BadResponse,
        CallOutcome::Unsupported,
        CallOutcome::ConfigError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::GatewayError => "gateway_error",
            CallOutcome::TransportError => "transport_error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::BadResponse => "bad_response",
            CallOutcome::Unsupported => "unsupported",
            CallOutcome::ConfigError => "config_error",
        }
    }
}

/// One finished call to a payment channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCall {
    pub channel: String,
    /// `create` (the only one recorded so far).
    pub method: &'static str,
    /// The payment method the call was for (`alipay`, `wxpay`, ...).
    pub pay_method: Option<kami_core::Method>,
    pub outcome: CallOutcome,
    pub duration_ms: i64,
}

fn rows(tx: &mut dyn Tx, from: Millis, to: Millis) -> Result<StatsRows> {
    let created = tx
        .query(created_sql!(), params![from, to])?
        .iter()
        .map(|r| {
            Ok(CreatedRow {
                bucket: r.get("q")?,
                channel: r.get("channel_id")?,
                orders: r.get("n")?,
                paid_since: r.get("paid")?,
            })
        })
        .collect::<Result<_>>()?;
    let paid = tx
        .query(paid_sql!(), params![from, to])?
        .iter()
        .map(|r| {
            Ok(PaidRow {
                bucket: r.get("q")?,
                channel: r.get("channel_id")?,
                currency: r.get("currency")?,
                orders: r.get("n")?,
                amount: r.get("total")?,
            })
        })
        .collect::<Result<_>>()?;
    let refunded = tx
        .query(refunded_sql!(), params![from, to])?
        .iter()
        .map(|r| {
            Ok(RefundedRow {
                bucket: r.get("q")?,
                currency: r.get("currency")?,
                amount: r.get("total")?,
            })
        })
        .collect::<Result<_>>()?;
    let calls = tx
        .query(calls_sql!(), params![from, to])?
        .iter()
        .map(|r| {
            Ok(CallRow {
                day: r.get("d")?,
                channel: r.get("channel_id")?,
                outcome: r.get("outcome")?,
                duration_ms: r.get("duration_ms")?,
                calls: r.get("n")?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(StatsRows {
        created,
        paid,
        refunded,
        calls,
    })
}

/// The text of the plan of each stats query, by name (`created`, `paid`, `refunded`,
/// `calls`; see [`crate::explain`]).
fn plans(tx: &mut dyn Tx, from: Millis, to: Millis) -> Result<Vec<(&'static str, String)>> {
    let queries: [Explained; 4] = [
        (
            "created",
            concat!("EXPLAIN ", created_sql!()),
            concat!("EXPLAIN QUERY PLAN ", created_sql!()),
        ),
        (
            "paid",
            concat!("EXPLAIN ", paid_sql!()),
            concat!("EXPLAIN QUERY PLAN ", paid_sql!()),
        ),
        (
            "refunded",
            concat!("EXPLAIN ", refunded_sql!()),
            concat!("EXPLAIN QUERY PLAN ", refunded_sql!()),
        ),
        (
            "calls",
            concat!("EXPLAIN ", calls_sql!()),
            concat!("EXPLAIN QUERY PLAN ", calls_sql!()),
        ),
    ];
    explain::plans(tx, &queries, from, to)
}

impl Store {
    /// The stats rows of `[from, to)` (unix ms; both on bucket boundaries for whole buckets).
    pub async fn stats_rows(&self, from: Millis, to: Millis) -> Result<StatsRows> {
        self.read(move |tx| rows(tx, from, to)).await
    }

    /// The query plans of [`Store::stats_rows`] (for tests and `EXPLAIN`-minded operators).
    pub async fn stats_plans(
        &self,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(&'static str, String)>> {
        // A transaction of its own: `SET LOCAL` ends with it.
        self.write(move |tx| plans(tx, from, to)).await
    }

    /// Record channel calls (with when each was made), all in one transaction of their own:
    /// [`CALLS_PER_INSERT`] rows per statement, the rest one by one (one round trip per
    /// order was PostgreSQL's to pay before).
    pub async fn record_channel_calls(&self, calls: Vec<(ChannelCall, Millis)>) -> Result<()> {
        self.write(move |tx| {
            let mut chunks = calls.chunks_exact(CALLS_PER_INSERT);
            for chunk in chunks.by_ref() {
                let values: Vec<Value> = chunk.iter().flat_map(call_values).collect();
                tx.exec(insert_calls_sql(), &values)?;
            }
            for call in chunks.remainder() {
                tx.exec(
                    concat!(insert_calls!(), "($1, $2, $3, $4, $5, $6)"),
                    &call_values(call),
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Delete up to `limit` channel calls recorded before `before`; returns how many went.
    pub async fn prune_channel_calls(&self, before: Millis, limit: u32) -> Result<u64> {
        self.write(move |tx| {
            tx.exec(
                "DELETE FROM channel_calls WHERE id IN \
                 (SELECT id FROM channel_calls WHERE at < $1 ORDER BY at LIMIT $2)",
                params![before, i64::from(limit)],
            )
        })
        .await
    }
}

/// The channel-call insert up to its rows (one row's six values per [`call_values`]).
macro_rules! insert_calls {
    () => {
        "INSERT INTO channel_calls (channel_id, method, pay_method, outcome, duration_ms, at) VALUES "
    };
}
use insert_calls;

/// Rows per multi-row channel-call insert (6 parameters each, far below either backend's cap).
const CALLS_PER_INSERT: usize = 32;

/// `INSERT … VALUES ($1..$6), … ` for [`CALLS_PER_INSERT`] rows, built once: a `'static` text,
/// as the SQLite statement cache wants.
fn insert_calls_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let rows: Vec<String> = (0..CALLS_PER_INSERT)
            .map(|r| {
                let p: Vec<String> = (1..=6).map(|c| format!("${}", r * 6 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        format!("{}{}", insert_calls!(), rows.join(", "))
    });
    SQL.as_str()
}

/// One call's six column values, in the insert's order.
fn call_values((call, at): &(ChannelCall, Millis)) -> [Value; 6] {
    [
        Value::from(call.channel.as_str()),
        Value::from(call.method),
        Value::from(call.pay_method.map_or("", kami_core::Method::as_str)),
        Value::from(call.outcome.as_str()),
        Value::from(call.duration_ms),
        Value::from(*at),
    ]
}
