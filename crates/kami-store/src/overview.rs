//! The console's overview: what happened in one period (orders placed, orders paid, revenue
//! per currency) and what waits for the seller (exception and awaiting-fulfilment orders).
//! Each number is one indexed query (`orders_created`, `orders_paid`, `orders_expiry`).

use kami_core::{Millis, OrderStatus};

use crate::error::Result;
use crate::params;
use crate::Store;

/// The numbers of `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// Orders created in the period.
    pub orders: i64,
    /// Orders paid in the period (whenever they were created).
    pub paid: i64,
    /// What the orders paid in the period came to, per currency (code, minor units), by code.
    pub revenue: Vec<(String, i64)>,
    /// Orders in `exception` now (paid, not delivered: the seller must act).
    pub exceptions: i64,
    /// Manual orders in `awaiting_fulfilment` now.
    pub awaiting_fulfilment: i64,
}

impl Store {
    pub async fn overview(&self, from: Millis, to: Millis) -> Result<Overview> {
        self.read(move |tx| {
            let orders = tx
                .query_one(
                    "SELECT COUNT(*) AS n FROM orders WHERE created_at >= $1 AND created_at < $2",
                    params![from, to],
                )?
                .get("n")?;
            let mut paid = 0;
            let mut revenue = Vec::new();
            for r in tx.query(
                "SELECT currency, COUNT(*) AS n, CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM orders \
                 WHERE paid_at >= $1 AND paid_at < $2 GROUP BY currency ORDER BY currency",
                params![from, to],
            )? {
                paid += r.get::<i64>("n")?;
                revenue.push((r.get("currency")?, r.get("total")?));
            }
            let waiting = |tx: &mut dyn crate::db::Tx, s: OrderStatus| -> Result<i64> {
                tx.query_one(
                    "SELECT COUNT(*) AS n FROM orders WHERE status = $1",
                    params![s],
                )?
                .get("n")
            };
            Ok(Overview {
                orders,
                paid,
                revenue,
                exceptions: waiting(tx, OrderStatus::Exception)?,
                awaiting_fulfilment: waiting(tx, OrderStatus::AwaitingFulfilment)?,
            })
        })
        .await
    }
}
