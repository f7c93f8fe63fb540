//! The seller finishing an order by hand: fulfilling a manual order with its content, and
//! delivering an exception order from stock once keys are back (补单). Each is one
//! transaction that locks the order row first (then cards, the same order as payments and
//! expiry), checks the status it needs, and changes the status through
//! [`crate::transitions`].

use kami_core::{Millis, OrderEvent, OrderStatus, PaymentStatus};

use crate::cards;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{Delivery, Order};
use crate::orders::order_by_no;
use crate::params;
use crate::sealed::{fulfilment_place, Keyring};
use crate::transitions::{apply_order_event, Details, LockedOrder};

/// Lock the order row (with its product's delivery); `OrderNotFound` if there is none.
fn lock(tx: &mut dyn Tx, order_no: &str) -> Result<(LockedOrder, Row)> {
    let r = tx
        .query_opt(
            "SELECT o.id, o.order_no, o.status, o.product_id, o.quantity, o.loop_card_id, p.delivery \
             FROM orders o JOIN products p ON p.id = o.product_id WHERE o.order_no = $1 FOR UPDATE OF o",
            params![order_no],
        )?
        .ok_or(StoreError::OrderNotFound)?;
    Ok((LockedOrder::from_row(&r)?, r))
}

/// Refuse an event the order's status does not take, naming the status it needs.
fn require(order: &LockedOrder, event: OrderEvent, needs: OrderStatus) -> Result<()> {
    if order.status.on(event).is_err() {
        return Err(StoreError::InvalidStatus(format!(
            "order {} is {}; only an {needs} order can be {}",
            order.order_no,
            order.status,
            match event {
                OrderEvent::Fulfilled => "fulfilled",
                _ => "delivered",
            }
        )));
    }
    Ok(())
}

fn reload(tx: &mut dyn Tx, ring: &Keyring, order_no: &str) -> Result<Order> {
    order_by_no(tx, ring, order_no)?.ok_or(StoreError::OrderNotFound)
}

/// `awaiting_fulfilment` → `fulfilled`, keeping `content` for the buyer.
pub(crate) fn fulfil(
    tx: &mut dyn Tx,
    ring: &Keyring,
    order_no: &str,
    content: &str,
    now: Millis,
) -> Result<Order> {
    let (order, _) = lock(tx, order_no)?;
    require(
        &order,
        OrderEvent::Fulfilled,
        OrderStatus::AwaitingFulfilment,
    )?;
    tx.exec(
        "UPDATE orders SET fulfilment = $2 WHERE id = $1",
        params![
            order.id,
            ring.seal(&fulfilment_place(order.id), content.as_bytes())?
        ],
    )?;
    apply_order_event(tx, &order, OrderEvent::Fulfilled, now, Details::default())?;
    reload(tx, ring, order_no)
}

/// `exception` → `delivered`: the order's keys are reserved from stock and sold (no key twice:
/// `cards.rs` moves each by compare-and-set), and the `order.delivered` outbox row queues the
/// buyer's mail.
pub(crate) fn deliver_exception(
    tx: &mut dyn Tx,
    ring: &Keyring,
    order_no: &str,
    now: Millis,
) -> Result<Order> {
    let (order, r) = lock(tx, order_no)?;
    require(&order, OrderEvent::Delivered, OrderStatus::Exception)?;
    let delivery: Delivery = r.get("delivery")?;
    if delivery == Delivery::Manual {
        return Err(StoreError::InvalidStatus(format!(
            "order {} is for a manual product; it has no keys to deliver from stock",
            order.order_no
        )));
    }
    // An exception whose money went back at the channel (a reversed payment) is not the
    // buyer's to receive: only an order with a verified, kept payment is delivered.
    let paid = tx.query_opt(
        "SELECT id FROM payments WHERE order_id = $1 AND status = $2 LIMIT 1",
        params![order.id, PaymentStatus::Paid],
    )?;
    if paid.is_none() {
        return Err(StoreError::InvalidStatus(format!(
            "order {} has no kept payment (it was reversed at the channel); it cannot be delivered",
            order.order_no
        )));
    }
    let (product_id, quantity): (i64, i64) = (r.get("product_id")?, r.get("quantity")?);
    if r.get::<Option<i64>>("loop_card_id")?.is_none() {
        // Keys still reserved by the order (none after a late payment) count toward it.
        let held: i64 = tx
            .query_one(
                "SELECT COUNT(*) AS n FROM cards WHERE order_id = $1 AND status = $2",
                params![order.id, kami_core::CardStatus::Reserved],
            )?
            .get("n")?;
        if held < quantity
            && cards::reserve(tx, order.id, product_id, quantity - held)? < (quantity - held) as u64
        {
            cards::release(tx, order.id)?;
            return Err(StoreError::OutOfStock);
        }
        let sold = cards::sell(tx, order.id, now)?;
        if sold != quantity as u64 {
            return Err(StoreError::Corrupt(format!(
                "order {} had {sold} reserved keys, expected {quantity}",
                order.order_no
            )));
        }
    }
    apply_order_event(tx, &order, OrderEvent::Delivered, now, Details::default())?;
    reload(tx, ring, order_no)
}
