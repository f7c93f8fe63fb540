//! Active payment checks ("never lose a payment"): pending payments are claimed by a worker
//! with a lease, the channel is asked (outside any transaction), and the payment is then
//! rescheduled, applied as paid, or closed. Claims skip rows other processes hold.

use kami_core::{ChannelId, Millis, Money, OrderEvent, OrderNo, PaymentEvent, PaymentStatus};

use crate::cards;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::Delivery;
use crate::outbox;
use crate::params;
use crate::transitions::{
    apply_order_event, apply_payment_event, Details, LockedOrder, LockedPayment,
};

/// One payment the worker must ask its channel about.
#[derive(Debug, Clone)]
pub struct PaymentCheck {
    pub payment_id: i64,
    pub order_no: OrderNo,
    pub channel_id: ChannelId,
    pub trade_no: String,
    /// The gateway's own id of the attempt, when its create call returned one.
    pub gateway_ref: Option<String>,
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
        "SELECT id FROM payments WHERE next_check_at IS NOT NULL AND next_check_at <= $1 AND status = $3 \
           AND (lease_until IS NULL OR lease_until <= $1) \
         ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        params![now, i64::from(limit), PaymentStatus::Created],
    )?;
    let mut out = Vec::with_capacity(due.len());
    for r in &due {
        let id: i64 = r.get("id")?;
        tx.exec(
            "UPDATE payments SET lease_until = $2 WHERE id = $1",
            params![id, lease_until],
        )?;
        let d = tx.query_one(
            "SELECT o.order_no, p.channel_id, p.trade_no, p.gateway_ref, p.amount, p.currency, \
             p.check_attempts, o.expires_at \
             FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.id = $1",
            params![id],
        )?;
        out.push(PaymentCheck {
            payment_id: id,
            order_no: d.get("order_no")?,
            channel_id: d.get("channel_id")?,
            trade_no: d.get("trade_no")?,
            gateway_ref: d.get("gateway_ref")?,
            amount: d.money("amount", "currency")?,
            attempts: d.get("check_attempts")?,
            expires_at: d.get("expires_at")?,
        });
    }
    Ok(out)
}

/// Release the lease and set the next check (`None`: no more checks).
pub(crate) fn reschedule(tx: &mut dyn Tx, payment_id: i64, next: Option<Millis>) -> Result<()> {
    tx.exec(
        "UPDATE payments SET next_check_at = $2, lease_until = NULL, check_attempts = check_attempts + 1 \
         WHERE id = $1 AND status = $3",
        params![payment_id, next, PaymentStatus::Created],
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
            "SELECT o.id, o.order_no, o.status, o.product_id, o.quantity, p.delivery FROM orders o \
             JOIN products p ON p.id = o.product_id WHERE o.order_no = $1 FOR UPDATE OF o",
            params![order_no],
        )?
        .ok_or(StoreError::OrderNotFound)?;
    let order = LockedOrder::from_row(&o)?;
    let note =
        "the payment channel reports this trade refunded before delivery; no keys were delivered";
    let alert = serde_json::json!({ "order_no": order_no, "reason": note });
    if order.status.is_paid() {
        outbox::insert(tx, "payment.reversed", order.id, alert.to_string(), now)?;
        return Ok(false);
    }
    if order.status == kami_core::OrderStatus::Pending {
        // Its stock is still held: give it back (an expired order gave it back already).
        cards::release(tx, order.id)?;
        if o.get::<Delivery>("delivery")? == Delivery::Manual {
            tx.exec(
                "UPDATE products SET manual_stock = manual_stock + $2 WHERE id = $1 AND manual_stock IS NOT NULL",
                params![o.get::<i64>("product_id")?, o.get::<i64>("quantity")?],
            )?;
        }
    }
    apply_order_event(
        tx,
        &order,
        OrderEvent::ChannelReversed,
        now,
        Details {
            note: Some(note),
            payload: Some(alert),
        },
    )?;
    // Settle every open attempt so a notification arriving later can never deliver it.
    for p in tx.query(
        "SELECT id, status FROM payments WHERE order_id = $1 AND status IN ($2, $3) FOR UPDATE",
        params![order.id, PaymentStatus::Created, PaymentStatus::Closed],
    )? {
        let payment = LockedPayment::from_row(&p)?;
        apply_payment_event(tx, payment, PaymentEvent::ChannelReversed, now, None)?;
    }
    Ok(true)
}

/// One payment attempt of an order, as the seller's "check payment" (补单) asks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPayment {
    pub payment_id: i64,
    pub channel_id: ChannelId,
    pub trade_no: String,
    /// The gateway's own id of the attempt, when its create call returned one.
    pub gateway_ref: Option<String>,
    /// The channel's own number for the payment, once it told us.
    pub gateway_trade_no: Option<String>,
    pub amount: Money,
    pub status: PaymentStatus,
    pub created_at: Millis,
    pub paid_at: Option<Millis>,
    /// What a USDT attempt asks in coin (`4.25 USDT`).
    pub coin_amount: Option<String>,
    /// How `amount` follows from the order's when the channel charges another currency.
    pub charge_basis: Option<String>,
}

/// Every payment attempt of an order, oldest first (`None`: no such order).
pub(crate) fn order_payments(tx: &mut dyn Tx, order_no: &str) -> Result<Option<Vec<OrderPayment>>> {
    let Some(o) = tx.query_opt(
        "SELECT id FROM orders WHERE order_no = $1",
        params![order_no],
    )?
    else {
        return Ok(None);
    };
    tx.query(
        "SELECT id, channel_id, trade_no, gateway_ref, gateway_trade_no, amount, currency, status, \
         created_at, paid_at, coin_amount, charge_basis FROM payments WHERE order_id = $1 ORDER BY id",
        params![o.get::<i64>("id")?],
    )?
    .iter()
    .map(|r| {
        Ok(OrderPayment {
            payment_id: r.get("id")?,
            channel_id: r.get("channel_id")?,
            trade_no: r.get("trade_no")?,
            gateway_ref: r.get("gateway_ref")?,
            gateway_trade_no: r.get("gateway_trade_no")?,
            amount: r.money("amount", "currency")?,
            status: r.get("status")?,
            created_at: r.get("created_at")?,
            paid_at: r.get("paid_at")?,
            coin_amount: r.get("coin_amount")?,
            charge_basis: r.get("charge_basis")?,
        })
    })
    .collect::<Result<Vec<_>>>()
    .map(Some)
}
