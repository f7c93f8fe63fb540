//! Orders: creation with stock reservation, reading, expiry. Every status change goes
//! through `OrderStatus::on` and lands with a compare-and-set on the old status.

use kami_core::{
    Currency, Millis, Money, OrderEvent, OrderNo, OrderStatus, PaymentEvent, PaymentStatus,
};

use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{CreatedOrder, Delivery, NewOrder, Order, OrderFilter};
use crate::params;

/// Reserve up to `n` available keys of a product for an order; returns how many were taken.
/// PostgreSQL skips rows other transactions are claiming instead of waiting on them; on
/// SQLite the single writer makes the same statement race-free.
pub(crate) fn claim_cards(tx: &mut dyn Tx, order_id: i64, product_id: i64, n: i64) -> Result<u64> {
    tx.exec(
        "WITH picked AS (SELECT id FROM cards WHERE product_id = $2 AND status = 'available' AND is_loop = 0 \
                         ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE cards SET status = 'reserved', order_id = $1 \
         WHERE id IN (SELECT id FROM picked) AND status = 'available'",
        params![order_id, product_id, n],
    )
}

/// Return an order's reserved (unsold) keys to stock.
pub(crate) fn release_cards(tx: &mut dyn Tx, order_id: i64) -> Result<u64> {
    tx.exec(
        "UPDATE cards SET status = 'available', order_id = NULL WHERE order_id = $1 AND status = 'reserved'",
        params![order_id],
    )
}

pub(crate) fn insert_outbox(
    tx: &mut dyn Tx,
    kind: &str,
    order_id: i64,
    payload: String,
    now: Millis,
) -> Result<()> {
    tx.exec(
        "INSERT INTO outbox (kind, order_id, payload, created_at, available_at) VALUES ($1, $2, $3, $4, $4)",
        params![kind, order_id, payload, now],
    )?;
    Ok(())
}

/// Set an order's status from `from` to `to` only if it is still `from`.
pub(crate) fn cas_order_status(
    tx: &mut dyn Tx,
    order_id: i64,
    from: OrderStatus,
    to: OrderStatus,
) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE orders SET status = $3 WHERE id = $1 AND status = $2",
        params![order_id, from.as_str(), to.as_str()],
    )? == 1)
}

pub(crate) fn create_order(tx: &mut dyn Tx, n: &NewOrder) -> Result<CreatedOrder> {
    let p = tx
        .query_opt(
            "SELECT p.id, p.title, p.price, p.currency, p.delivery, p.manual_stock, \
               (SELECT c.id FROM cards c WHERE c.product_id = p.id AND c.is_loop = 1 ORDER BY c.id DESC LIMIT 1), \
               p.price_tiers, p.min_quantity, p.max_quantity \
             FROM products p WHERE p.slug = $1 AND p.active = 1",
            params![n.product.as_str()],
        )?
        .ok_or(StoreError::ProductNotFound)?;
    let product_id = p.int(0)?;
    let title = p.text(1)?;
    let price = Money::new(p.int(2)?, Currency::parse(&p.text(3)?)?)?;
    let delivery =
        Delivery::parse(&p.text(4)?).ok_or_else(|| StoreError::Corrupt("delivery".into()))?;
    let qty = n.quantity.get();
    let pricing = crate::catalog::pricing_from(price, &p.text(7)?, p.int(8)?, p.int(9)?)?;
    let amount = pricing.total(n.quantity).map_err(|e| match e {
        kami_core::PricingError::Money(_) => {
            StoreError::InvalidQuantity("the total is too large".into())
        }
        other => StoreError::InvalidQuantity(other.to_string()),
    })?;

    // A reusable ("loop") key makes the product unlimited; manual products have none.
    let loop_card = match delivery {
        Delivery::Auto => p.opt_int(6)?,
        Delivery::Manual => None,
    };
    if loop_card.is_some() && qty != 1 {
        return Err(StoreError::InvalidQuantity(
            "this product delivers one shared key; quantity must be 1".into(),
        ));
    }
    if delivery == Delivery::Manual && p.opt_int(5)?.is_some() {
        let took = tx.exec(
            "UPDATE products SET manual_stock = manual_stock - $2 WHERE id = $1 AND manual_stock >= $2",
            params![product_id, qty],
        )?;
        if took == 0 {
            return Err(StoreError::OutOfStock);
        }
    }

    let order_id = tx
        .query_one(
            "INSERT INTO orders (order_no, product_id, quantity, amount, currency, email, method, channel_id, \
               status, access_token_hash, query_password_hash, loop_card_id, created_at, expires_at, locale) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
            params![
                n.order_no.as_str(),
                product_id,
                qty,
                amount.minor(),
                amount.currency().code(),
                n.email.as_str(),
                n.method.as_str(),
                n.channel_id.as_str(),
                OrderStatus::Pending.as_str(),
                n.access_token_hash.as_str(),
                n.query_password_hash.clone(),
                loop_card,
                n.now,
                n.expires_at,
                n.locale.as_str()
            ],
        )?
        .int(0)?;

    if delivery == Delivery::Auto && loop_card.is_none() {
        let got = claim_cards(tx, order_id, product_id, i64::from(qty))?;
        if got < u64::from(qty) {
            // The caller's transaction (or savepoint) is rolled back: order and partial claim vanish.
            return Err(StoreError::OutOfStock);
        }
    }

    tx.exec(
        "INSERT INTO payments (order_id, channel_id, trade_no, amount, currency, status, created_at, next_check_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![
            order_id,
            n.channel_id.as_str(),
            n.order_no.as_str(),
            amount.minor(),
            amount.currency().code(),
            PaymentStatus::Created.as_str(),
            n.now,
            n.first_check_at
        ],
    )?;

    Ok(CreatedOrder {
        order_no: n.order_no.clone(),
        amount,
        product_title: title,
        expires_at: n.expires_at,
    })
}

fn order_from_row(r: &Row) -> Result<Order> {
    let status_text = r.text(8)?;
    Ok(Order {
        order_no: OrderNo::parse(&r.text(0)?)?,
        product_slug: r.text(1)?,
        product_title: r.text(2)?,
        quantity: r.int(3)?,
        amount: Money::new(r.int(4)?, Currency::parse(&r.text(5)?)?)?,
        email: r.text(6)?,
        method: r.text(7)?,
        status: OrderStatus::parse(&status_text)
            .ok_or_else(|| StoreError::Corrupt(format!("order status {status_text:?}")))?,
        channel_id: r.text(9)?,
        access_token_hash: r.text(10)?,
        query_password_hash: r.opt_text(11)?,
        note: r.opt_text(12)?,
        created_at: r.int(13)?,
        expires_at: r.int(14)?,
        paid_at: r.opt_int(15)?,
        delivered_at: r.opt_int(16)?,
        locale: r.text(17)?,
        pay_action: match (r.opt_text(18)?, r.opt_text(19)?) {
            (Some(a), Some(t)) => Some((a, t)),
            _ => None,
        },
        cards: None,
    })
}

pub(crate) fn order_by_no(tx: &mut dyn Tx, order_no: &str) -> Result<Option<Order>> {
    let Some(r) = tx.query_opt(
        "SELECT o.order_no, p.slug, p.title, o.quantity, o.amount, o.currency, o.email, o.method, o.status, \
           o.channel_id, o.access_token_hash, o.query_password_hash, o.note, o.created_at, o.expires_at, \
           o.paid_at, o.delivered_at, o.locale, o.pay_action, o.pay_target, o.id, o.loop_card_id \
         FROM orders o JOIN products p ON p.id = o.product_id WHERE o.order_no = $1",
        params![order_no],
    )?
    else {
        return Ok(None);
    };
    let mut order = order_from_row(&r)?;
    if order.delivered_at.is_some() {
        let id = r.int(20)?;
        let cards = match r.opt_int(21)? {
            Some(loop_id) => {
                tx.query("SELECT secret FROM cards WHERE id = $1", params![loop_id])?
            }
            None => tx.query(
                "SELECT secret FROM cards WHERE order_id = $1 AND status = 'sold' ORDER BY id",
                params![id],
            )?,
        }
        .iter()
        .map(|c| c.text(0))
        .collect::<Result<_>>()?;
        order.cards = Some(cards);
    }
    Ok(Some(order))
}

pub(crate) fn list_orders(tx: &mut dyn Tx, f: &OrderFilter) -> Result<Vec<Order>> {
    let status = f.status.map_or("", OrderStatus::as_str);
    // Every order number sorts before "L".
    let before = f.before.as_ref().map_or("L", OrderNo::as_str);
    tx.query(
        "SELECT o.order_no, p.slug, p.title, o.quantity, o.amount, o.currency, o.email, o.method, o.status, \
           o.channel_id, o.access_token_hash, o.query_password_hash, o.note, o.created_at, o.expires_at, \
           o.paid_at, o.delivered_at, o.locale, o.pay_action, o.pay_target \
         FROM orders o JOIN products p ON p.id = o.product_id \
         WHERE ($1 = '' OR o.status = $1) AND o.order_no < $2 ORDER BY o.order_no DESC LIMIT $3",
        params![status, before, i64::from(f.limit.clamp(1, 500))],
    )?
    .iter()
    .map(order_from_row)
    .collect()
}

/// The newest paid orders placed with this email that have a query password (lookups),
/// newest first; keys are not loaded. Unpaid ones are left out: they hold no keys, and
/// anyone could place them to push a victim's real orders out of the window.
pub(crate) fn orders_by_email(tx: &mut dyn Tx, email: &str, limit: u32) -> Result<Vec<Order>> {
    tx.query(
        "SELECT o.order_no, p.slug, p.title, o.quantity, o.amount, o.currency, o.email, o.method, o.status, \
           o.channel_id, o.access_token_hash, o.query_password_hash, o.note, o.created_at, o.expires_at, \
           o.paid_at, o.delivered_at, o.locale, o.pay_action, o.pay_target \
         FROM orders o JOIN products p ON p.id = o.product_id \
         WHERE o.email = $1 AND o.query_password_hash IS NOT NULL AND o.paid_at IS NOT NULL \
         ORDER BY o.id DESC LIMIT $2",
        params![email, i64::from(limit.clamp(1, 100))],
    )?
    .iter()
    .map(order_from_row)
    .collect()
}

/// Remember how the channel asked the buyer to pay, so the checkout page can show it again.
pub(crate) fn set_pay_action(
    tx: &mut dyn Tx,
    order_no: &str,
    action: &str,
    target: &str,
) -> Result<()> {
    tx.exec(
        "UPDATE orders SET pay_action = $2, pay_target = $3 WHERE order_no = $1",
        params![order_no, action, target],
    )?;
    Ok(())
}

/// Expire one locked pending order: status, reserved keys back to stock, manual stock back,
/// payment attempt closed. Returns false if the order was no longer pending.
fn expire_locked(tx: &mut dyn Tx, order_id: i64, product_id: i64, quantity: i64) -> Result<bool> {
    let to = OrderStatus::Pending
        .on(OrderEvent::Expire)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if !cas_order_status(tx, order_id, OrderStatus::Pending, to)? {
        return Ok(false);
    }
    release_cards(tx, order_id)?;
    tx.exec(
        "UPDATE products SET manual_stock = manual_stock + $2 \
         WHERE id = $1 AND delivery = 'manual' AND manual_stock IS NOT NULL",
        params![product_id, quantity],
    )?;
    let closed = PaymentStatus::Created
        .on(PaymentEvent::Closed)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.exec(
        "UPDATE payments SET status = $2, next_check_at = NULL, lease_until = NULL WHERE order_id = $1 AND status = $3",
        params![order_id, closed.as_str(), PaymentStatus::Created.as_str()],
    )?;
    Ok(true)
}

/// Expire up to `limit` pending orders whose time is up. Safe to run from several processes:
/// rows another transaction holds are skipped, and each expiry is a compare-and-set.
pub(crate) fn expire_due(tx: &mut dyn Tx, now: Millis, limit: u32) -> Result<Vec<String>> {
    let due = tx.query(
        "SELECT id, order_no, product_id, quantity FROM orders \
         WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        params![now, i64::from(limit)],
    )?;
    let mut expired = Vec::new();
    for r in &due {
        if expire_locked(tx, r.int(0)?, r.int(2)?, r.int(3)?)? {
            expired.push(r.text(1)?);
        }
    }
    Ok(expired)
}

/// Give up on an unpaid order at once (the channel could not create the payment).
pub(crate) fn cancel_unpaid(tx: &mut dyn Tx, order_no: &str) -> Result<bool> {
    let Some(r) = tx.query_opt(
        "SELECT id, product_id, quantity FROM orders WHERE order_no = $1 AND status = 'pending' FOR UPDATE",
        params![order_no],
    )?
    else {
        return Ok(false);
    };
    expire_locked(tx, r.int(0)?, r.int(1)?, r.int(2)?)
}
