//! Active payment checks ("never lose a payment"): pending payments are claimed by a worker
//! with a lease, the channel is asked (outside any transaction), and the payment is then
//! rescheduled, applied as paid, or closed. Claims skip rows other processes hold.

use kami_core::{Currency, Millis, Money};

use crate::db::Tx;
use crate::error::Result;
use crate::params;

/// One payment the worker must ask its channel about.
#[derive(Debug, Clone)]
pub struct PaymentCheck {
    pub payment_id: i64,
    pub order_no: String,
    pub channel_id: String,
    pub trade_no: String,
    pub amount: Money,
    /// Checks done so far (drives the backoff).
    pub attempts: i64,
    /// The order's payment deadline: after it the trade is closed at the channel.
    pub expires_at: Millis,
}

pub(crate) fn claim(
    tx: &mut dyn Tx,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> Result<Vec<PaymentCheck>> {
    let due = tx.query(
        "SELECT id FROM payments WHERE next_check_at IS NOT NULL AND next_check_at <= $1 AND status = 'created' \
           AND (lease_until IS NULL OR lease_until <= $1) \
         ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        params![now, i64::from(limit)],
    )?;
    let mut out = Vec::with_capacity(due.len());
    for r in &due {
        let id = r.int(0)?;
        tx.exec(
            "UPDATE payments SET lease_until = $2 WHERE id = $1",
            params![id, lease_until],
        )?;
        let d = tx.query_one(
            "SELECT o.order_no, p.channel_id, p.trade_no, p.amount, p.currency, p.check_attempts, o.expires_at \
             FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.id = $1",
            params![id],
        )?;
        out.push(PaymentCheck {
            payment_id: id,
            order_no: d.text(0)?,
            channel_id: d.text(1)?,
            trade_no: d.text(2)?,
            amount: Money::new(d.int(3)?, Currency::parse(&d.text(4)?)?)?,
            attempts: d.int(5)?,
            expires_at: d.int(6)?,
        });
    }
    Ok(out)
}

/// Release the lease and set the next check (`None`: no more checks).
pub(crate) fn reschedule(tx: &mut dyn Tx, payment_id: i64, next: Option<Millis>) -> Result<()> {
    tx.exec(
        "UPDATE payments SET next_check_at = $2, lease_until = NULL, check_attempts = check_attempts + 1 \
         WHERE id = $1 AND status = 'created'",
        params![payment_id, next],
    )?;
    Ok(())
}
