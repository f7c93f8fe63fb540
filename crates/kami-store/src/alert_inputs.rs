//! What the alert evaluators read: each channel's orders and payments over a window (on the
//! stats indexes `orders_created_stats` and `orders_paid_stats`, index-only).

use kami_core::Millis;

use crate::error::Result;
use crate::params;

/// A channel's orders created in a window, and how many of them are paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreatedPaid {
    pub created: i64,
    pub paid: i64,
}

/// A channel's paid orders (by pay time) since a moment, and the latest pay time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidSince {
    pub channel_id: String,
    pub paid: i64,
    pub last_paid_at: Millis,
}

impl crate::Store {
    /// Per channel: orders created in `[from, to)` and how many of them are paid.
    pub async fn created_and_paid(
        &self,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, CreatedPaid)>> {
        self.read(move |tx| {
            tx.query(
                "SELECT channel_id, COUNT(*) AS created, \
                   CAST(COALESCE(SUM(CASE WHEN paid_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS paid \
                 FROM orders WHERE created_at >= $1 AND created_at < $2 \
                 GROUP BY channel_id ORDER BY channel_id",
                params![from, to],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.get("channel_id")?,
                    CreatedPaid {
                        created: r.get("created")?,
                        paid: r.get("paid")?,
                    },
                ))
            })
            .collect()
        })
        .await
    }

    /// Per channel with a payment since `from`: how many, and the latest.
    pub async fn paid_since(&self, from: Millis) -> Result<Vec<PaidSince>> {
        self.read(move |tx| {
            tx.query(
                "SELECT channel_id, COUNT(*) AS paid, MAX(paid_at) AS last_paid \
                 FROM orders WHERE paid_at >= $1 GROUP BY channel_id ORDER BY channel_id",
                params![from],
            )?
            .iter()
            .map(|r| {
                Ok(PaidSince {
                    channel_id: r.get("channel_id")?,
                    paid: r.get("paid")?,
                    last_paid_at: r.get("last_paid")?,
                })
            })
            .collect()
        })
        .await
    }
}
