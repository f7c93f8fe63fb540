//! Active payment checks ("never lose a payment"): pending payments are claimed by a worker
//! with a lease, the channel is asked (outside any transaction), and the payment is then
//! rescheduled, applied as paid, or closed. Claims skip rows other processes hold.

use kami_core::{Currency, Millis, Money, OrderEvent, OrderStatus, PaymentEvent, PaymentStatus};

use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::orders::{insert_outbox, release_cards};
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

/// The channel reports the trade refunded (fully or partly) although kami never delivered it:
/// money arrived and went back — e.g. Alipay refunds a payment that raced its cancel, or the
/// seller refunded in the gateway's console. A pending or expired order becomes `exception`
/// (paid, not deliverable) with its reserved keys returned, and the payment is marked refunded
/// so a notification arriving later can never deliver it. For an order already paid, only an
/// alert is recorded. Returns true when the order changed.
pub(crate) fn channel_reversal(tx: &mut dyn Tx, order_no: &str, now: Millis) -> Result<bool> {
    let o = tx
        .query_opt(
            "SELECT o.id, o.status, o.product_id, o.quantity, p.delivery FROM orders o \
             JOIN products p ON p.id = o.product_id WHERE o.order_no = $1 FOR UPDATE OF o",
            params![order_no],
        )?
        .ok_or(StoreError::OrderNotFound)?;
    let (order_id, product_id, quantity) = (o.int(0)?, o.int(2)?, o.int(3)?);
    let status = OrderStatus::parse(&o.text(1)?)
        .ok_or_else(|| StoreError::Corrupt("order status".into()))?;
    let note =
        "the payment channel reports this trade refunded before delivery; no keys were delivered";
    let alert = serde_json::json!({ "order_no": order_no, "reason": note }).to_string();
    if status.is_paid() {
        insert_outbox(tx, "payment.reversed", order_id, alert, now)?;
        return Ok(false);
    }
    let next = status
        .on(OrderEvent::PaymentConfirmed)
        .and_then(|s| s.on(OrderEvent::Undeliverable))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if status == OrderStatus::Pending {
        release_cards(tx, order_id)?;
        if o.text(4)? == "manual" {
            tx.exec(
                "UPDATE products SET manual_stock = manual_stock + $2 WHERE id = $1 AND manual_stock IS NOT NULL",
                params![product_id, quantity],
            )?;
        }
    }
    tx.exec(
        "UPDATE orders SET status = $3, paid_at = $4, note = $5 WHERE id = $1 AND status = $2",
        params![order_id, status.as_str(), next.as_str(), now, note],
    )?;
    for p in tx.query(
        "SELECT id, status FROM payments WHERE order_id = $1 AND status IN ('created', 'closed') FOR UPDATE",
        params![order_id],
    )? {
        let from = PaymentStatus::parse(&p.text(1)?).ok_or_else(|| StoreError::Corrupt("payment status".into()))?;
        let to = from
            .on(PaymentEvent::Confirmed)
            .and_then(|s| s.on(PaymentEvent::Refunded { full: false }))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.exec(
            "UPDATE payments SET status = $3, next_check_at = NULL, lease_until = NULL WHERE id = $1 AND status = $2",
            params![p.int(0)?, from.as_str(), to.as_str()],
        )?;
    }
    insert_outbox(tx, "payment.reversed", order_id, alert, now)?;
    Ok(true)
}
