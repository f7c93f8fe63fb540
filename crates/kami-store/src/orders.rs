//! Orders: creation with stock reservation, reading, expiry. Status changes go through
//! [`crate::transitions`].

use kami_core::{
    CardStatus, Charge, Millis, Money, OrderEvent, OrderNo, OrderStatus, PaymentStatus,
};

use crate::cards;
use crate::coupons;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{AppliedCoupon, CreatedOrder, Delivery, NewOrder, Order, PendingScope};
use crate::params;
use crate::sealed::{card_place, fields_place, fulfilment_place, Keyring};
use crate::transitions::{apply_order_event, close_open_payments, Details, LockedOrder};

/// Refuse the order if its client key or its email already holds its cap of unexpired
/// pending orders. Runs first in the creating transaction: PostgreSQL serialises the orders
/// of one key with an advisory lock until commit, SQLite has one writer; so concurrent
/// orders from one client are counted one after the other and cannot overshoot the cap.
fn check_pending_caps(tx: &mut dyn Tx, n: &NewOrder) -> Result<()> {
    let caps = &n.pending_caps;
    let client = caps.per_client.zip(n.client_ip.as_deref());
    let email = caps.per_email.map(|cap| (cap, n.email.as_str()));
    if client.is_none() && email.is_none() {
        return Ok(());
    }
    // One round trip for every order. PostgreSQL: the locks and the counts in one server-side
    // function (migration 0012); the counts alone are the same query. An absent key counts
    // nothing (`= NULL`).
    let sql = if tx.is_postgres() {
        "SELECT client_n, client_oldest, email_n, email_oldest FROM kami_pending_counts($1, $2, $3)"
    } else {
        // Scalar subqueries: SQLite materialises aggregate subqueries in FROM into temporary
        // tables, one each per order; these read the partial indexes directly.
        "SELECT \
         (SELECT COUNT(*) FROM orders WHERE client_ip = $1 AND status = 'pending' \
            AND expires_at > $3) AS client_n, \
         (SELECT MIN(expires_at) FROM orders WHERE client_ip = $1 AND status = 'pending' \
            AND expires_at > $3) AS client_oldest, \
         (SELECT COUNT(*) FROM orders WHERE email = $2 AND status = 'pending' \
            AND expires_at > $3) AS email_n, \
         (SELECT MIN(expires_at) FROM orders WHERE email = $2 AND status = 'pending' \
            AND expires_at > $3) AS email_oldest"
    };
    let r = tx.query_one(
        sql,
        params![
            client.map(|(_, key)| key),
            email.map(|(_, email)| email),
            n.now
        ],
    )?;
    if let Some((cap, _)) = client {
        refuse_at_cap(
            &r,
            ["client_n", "client_oldest"],
            cap,
            PendingScope::Client,
            n.now,
        )?;
    }
    if let Some((cap, _)) = email {
        refuse_at_cap(
            &r,
            ["email_n", "email_oldest"],
            cap,
            PendingScope::Email,
            n.now,
        )?;
    }
    Ok(())
}

/// `[n, oldest]`: the columns of `r` with this scope's count and oldest expiry.
fn refuse_at_cap(
    r: &Row,
    [n, oldest]: [&str; 2],
    cap: u32,
    scope: PendingScope,
    now: Millis,
) -> Result<()> {
    if r.get::<i64>(n)? >= i64::from(cap) {
        return Err(StoreError::TooManyPending {
            scope,
            oldest_expires_at: r.get::<Option<i64>>(oldest)?.unwrap_or(now),
        });
    }
    Ok(())
}

pub(crate) fn create_order(tx: &mut dyn Tx, ring: &Keyring, n: &NewOrder) -> Result<CreatedOrder> {
    check_pending_caps(tx, n)?;
    let p = tx
        .query_opt(
            "SELECT p.id, p.title, p.price, p.currency, p.delivery, p.manual_stock, \
               (SELECT c.id FROM cards c WHERE c.product_id = p.id AND c.is_loop = 1 ORDER BY c.id DESC LIMIT 1) AS loop_card_id, \
               p.price_tiers, p.min_quantity, p.max_quantity, p.input_fields, p.prices \
             FROM products p WHERE p.slug = $1 AND p.active = 1",
            params![n.product.as_str()],
        )?
        .ok_or(StoreError::ProductNotFound)?;
    let product_id: i64 = p.get("id")?;
    let title: String = p.get("title")?;
    let price = p.money("price", "currency")?;
    let delivery: Delivery = p.get("delivery")?;
    let qty = n.quantity.get();
    let pricing = crate::catalog::pricing_from(
        price,
        &p.get::<String>("price_tiers")?,
        p.get("min_quantity")?,
        p.get("max_quantity")?,
    )?;
    // Checked against the fields the product has now, under the same snapshot as its price.
    let fields = kami_core::InputFields::from_json(&p.get::<String>("input_fields")?)
        .map_err(|e| StoreError::Corrupt(format!("product input fields: {e}")))?
        .check(&n.fields)
        .map_err(|e| StoreError::InvalidFields(e.to_string()))?;
    let amount = pricing.total(n.quantity).map_err(|e| match e {
        kami_core::PricingError::Money(_) => {
            StoreError::InvalidQuantity("the total is too large".into())
        }
        other => StoreError::InvalidQuantity(other.to_string()),
    })?;
    // The coupon applies to the total after wholesale tiers; its use is taken here, in the
    // order's transaction.
    let coupon = match &n.coupon {
        None => None,
        Some(code) => Some((
            code,
            coupons::redeem(tx, code, &n.product, amount, &n.email, n.now)?,
        )),
    };
    let amount = coupon.map_or(amount, |(_, r)| r.discounted.total);
    // The first routed channel whose amount limits admit what it would charge (the total,
    // or it in the channel's currency); none: nothing is kept.
    let own = crate::charges::own_prices(&p, price.currency())?;
    let (channel_id, stored_channel, charge) = if n.route.is_empty() {
        let same = Charge {
            money: amount,
            basis: None,
        };
        (&n.channel_id, n.stored_channel, same)
    } else {
        let charges: Vec<Option<Charge>> = n
            .route
            .iter()
            .map(|c| {
                crate::charges::charge(&n.fx, amount, price, &own, c.charges.of(amount.currency()))
            })
            .collect();
        if charges.iter().all(Option::is_none) {
            return Err(StoreError::NoChannelForCurrency { amount });
        }
        n.route
            .iter()
            .zip(charges)
            .find_map(|(c, charge)| {
                let charge = charge?;
                c.limits
                    .admits(charge.money.minor())
                    .then_some((&c.channel_id, c.stored, charge))
            })
            .ok_or(StoreError::NoChannelForAmount { amount })?
    };
    let charged = (charge.money != amount).then_some(charge.money);
    if stored_channel {
        crate::stored_channels::hold_for_order(tx, channel_id)?;
    }

    // A reusable ("loop") key makes the product unlimited; manual products have none.
    let loop_card = match delivery {
        Delivery::Auto => p.get::<Option<i64>>("loop_card_id")?,
        Delivery::Manual => None,
    };
    if loop_card.is_some() && qty != 1 {
        return Err(StoreError::InvalidQuantity(
            "this product delivers one shared key; quantity must be 1".into(),
        ));
    }
    if delivery == Delivery::Manual && p.get::<Option<i64>>("manual_stock")?.is_some() {
        let took = tx.exec(
            "UPDATE products SET manual_stock = manual_stock - $2 WHERE id = $1 AND manual_stock >= $2",
            params![product_id, qty],
        )?;
        if took == 0 {
            return Err(StoreError::OutOfStock);
        }
    }

    let order_id = tx.insert_returning_id(
            "INSERT INTO orders (order_no, product_id, quantity, amount, currency, email, method, channel_id, \
               status, access_token_hash, query_password_hash, loop_card_id, created_at, expires_at, locale, client_ip, \
               coupon_id, coupon_code, discount, charge_amount, charge_currency) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) RETURNING id",
            params![
                n.order_no.as_str(),
                product_id,
                qty,
                amount.minor(),
                amount.currency().code(),
                n.email.as_str(),
                n.method.as_str(),
                channel_id.as_str(),
                OrderStatus::Pending,
                n.access_token_hash.as_str(),
                n.query_password_hash.clone(),
                loop_card,
                n.now,
                n.expires_at,
                n.locale.as_str(),
                n.client_ip.clone(),
                coupon.map(|(_, r)| r.id),
                coupon.map(|(code, _)| code.as_str()),
                coupon.map(|(_, r)| r.discounted.discount.minor()),
                charged.map(Money::minor),
                charged.map(|m| m.currency().code())
            ],
        )?;
    if !fields.is_empty() {
        let json = serde_json::to_string(&fields)
            .map_err(|e| StoreError::Corrupt(format!("order fields: {e}")))?;
        tx.exec(
            "UPDATE orders SET fields = $2 WHERE id = $1",
            params![
                order_id,
                ring.seal(&fields_place(order_id), json.as_bytes())?
            ],
        )?;
    }

    if delivery == Delivery::Auto && loop_card.is_none() {
        let got = cards::reserve(tx, order_id, product_id, i64::from(qty))?;
        if got < u64::from(qty) {
            // The caller's transaction (or savepoint) is rolled back: order and partial claim vanish.
            return Err(StoreError::OutOfStock);
        }
    }

    tx.exec(
        "INSERT INTO payments (order_id, channel_id, trade_no, amount, currency, status, created_at, next_check_at, charge_basis) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        params![
            order_id,
            channel_id.as_str(),
            n.order_no.as_str(),
            charge.money.minor(),
            charge.money.currency().code(),
            PaymentStatus::Created,
            n.now,
            n.first_check_at,
            charge.basis
        ],
    )?;

    Ok(CreatedOrder {
        order_no: n.order_no.clone(),
        channel_id: channel_id.clone(),
        amount,
        charge: charge.money,
        discount: coupon.map(|(_, r)| r.discounted.discount),
        product_title: title,
        expires_at: n.expires_at,
    })
}

/// The columns every order read selects (`order_from_row` reads them by name).
macro_rules! order_columns {
    () => {
        "SELECT o.id, o.order_no, p.slug, p.title, o.quantity, o.amount, o.currency, o.email, o.method, \
           o.status, o.channel_id, o.access_token_hash, o.query_password_hash, o.note, o.created_at, \
           o.expires_at, o.paid_at, o.delivered_at, o.locale, o.pay_action, o.pay_target, o.loop_card_id, o.fulfilment, o.fields, \
           o.coupon_code, o.discount, o.charge_amount, o.charge_currency \
         FROM orders o JOIN products p ON p.id = o.product_id "
    };
}

pub(crate) fn order_from_row(ring: &Keyring, r: &Row) -> Result<Order> {
    Ok(Order {
        order_no: r.get::<OrderNo>("order_no")?,
        product_slug: r.get("slug")?,
        product_title: r.get("title")?,
        quantity: r.get("quantity")?,
        amount: r.money("amount", "currency")?,
        charge: r.opt_money("charge_amount", "charge_currency")?,
        email: r.get("email")?,
        method: r.get("method")?,
        status: r.get("status")?,
        channel_id: r.get("channel_id")?,
        access_token_hash: r.get("access_token_hash")?,
        query_password_hash: r.get("query_password_hash")?,
        note: r.get("note")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        paid_at: r.get("paid_at")?,
        delivered_at: r.get("delivered_at")?,
        locale: r.get("locale")?,
        pay_action: match (r.get("pay_action")?, r.get("pay_target")?) {
            (Some(a), Some(t)) => Some((a, t)),
            _ => None,
        },
        cards: None,
        fulfilment: r
            .get::<Option<Vec<u8>>>("fulfilment")?
            .map(|sealed| ring.open_string(&fulfilment_place(r.get("id")?), &sealed))
            .transpose()?,
        fields: match r.get::<Option<Vec<u8>>>("fields")? {
            None => Default::default(),
            Some(sealed) => {
                let json = ring.open_string(&fields_place(r.get("id")?), &sealed)?;
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("order fields: {e}")))?
            }
        },
        coupon: match (
            r.get::<Option<String>>("coupon_code")?,
            r.get::<Option<i64>>("discount")?,
        ) {
            (Some(code), Some(discount)) => Some(AppliedCoupon {
                code,
                discount: Money::new(discount, r.get("currency")?)?,
            }),
            _ => None,
        },
    })
}

pub(crate) fn order_by_no(
    tx: &mut dyn Tx,
    ring: &Keyring,
    order_no: &str,
) -> Result<Option<Order>> {
    let Some(r) = tx.query_opt(
        concat!(order_columns!(), "WHERE o.order_no = $1"),
        params![order_no],
    )?
    else {
        return Ok(None);
    };
    let mut order = order_from_row(ring, &r)?;
    if order.delivered_at.is_some() {
        let id: i64 = r.get("id")?;
        let cards = match r.get::<Option<i64>>("loop_card_id")? {
            Some(loop_id) => tx.query(
                "SELECT product_id, secret FROM cards WHERE id = $1",
                params![loop_id],
            )?,
            None => tx.query(
                "SELECT product_id, secret FROM cards WHERE order_id = $1 AND status = $2 ORDER BY id",
                params![id, CardStatus::Sold],
            )?,
        }
        .iter()
        .map(|c| {
            let sealed: Vec<u8> = c.get("secret")?;
            ring.open_string(&card_place(c.get("product_id")?), &sealed)
        })
        .collect::<Result<_>>()?;
        order.cards = Some(cards);
    }
    Ok(Some(order))
}

/// The newest paid orders placed with this email that have a query password (lookups),
/// newest first; keys are not loaded. Unpaid ones are left out: they hold no keys, and
/// anyone could place them to push a victim's real orders out of the window.
pub(crate) fn orders_by_email(
    tx: &mut dyn Tx,
    ring: &Keyring,
    email: &str,
    limit: u32,
) -> Result<Vec<Order>> {
    tx.query(
        concat!(
            order_columns!(),
            "WHERE o.email = $1 AND o.query_password_hash IS NOT NULL AND o.paid_at IS NOT NULL \
             ORDER BY o.id DESC LIMIT $2"
        ),
        params![email, i64::from(limit.clamp(1, 100))],
    )?
    .iter()
    .map(|r| order_from_row(ring, r))
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
/// payment attempt closed. (Expiry records no time and owes no outbox row: `now` only
/// satisfies the transition's signature.)
pub(crate) fn expire_locked(
    tx: &mut dyn Tx,
    order: &LockedOrder,
    product_id: i64,
    quantity: i64,
    note: Option<&str>,
    now: Millis,
) -> Result<()> {
    let details = Details {
        note,
        payload: None,
    };
    apply_order_event(tx, order, OrderEvent::Expire, now, details)?;
    cards::release(tx, order.id)?;
    coupons::release(tx, order.id)?;
    tx.exec(
        "UPDATE products SET manual_stock = manual_stock + $2 \
         WHERE id = $1 AND delivery = 'manual' AND manual_stock IS NOT NULL",
        params![product_id, quantity],
    )?;
    close_open_payments(tx, order.id)?;
    Ok(())
}

/// The expiry job's pending orders due at `$1`, at most `$2`. `'pending'` written out: SQLite's
/// partial index orders_pending_expiry is chosen only for a query whose WHERE states its
/// predicate; PostgreSQL reads the pending range of orders_status_id (migration 0029).
pub const EXPIRY_SWEEP: &str = "SELECT id, order_no, status, product_id, quantity FROM orders \
     WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2 \
     FOR UPDATE SKIP LOCKED";

/// Expire up to `limit` pending orders whose time is up. Safe to run from several processes:
/// rows another transaction holds are skipped, and each expiry is a compare-and-set.
pub(crate) fn expire_due(tx: &mut dyn Tx, now: Millis, limit: u32) -> Result<Vec<OrderNo>> {
    let due = tx.query(EXPIRY_SWEEP, params![now, i64::from(limit)])?;
    let mut expired = Vec::with_capacity(due.len());
    for r in &due {
        let order = LockedOrder::from_row(r)?;
        expire_locked(
            tx,
            &order,
            r.get("product_id")?,
            r.get("quantity")?,
            None,
            now,
        )?;
        expired.push(order.order_no);
    }
    Ok(expired)
}

/// Give up on an unpaid order at once: the channel could not create the payment, the trade
/// was closed at the channel, or the seller cancelled it. `note` says why, for the seller.
/// False when the order is not pending (nothing changed).
pub(crate) fn cancel_unpaid(
    tx: &mut dyn Tx,
    order_no: &str,
    note: Option<&str>,
    now: Millis,
) -> Result<bool> {
    let Some(r) = tx.query_opt(
        "SELECT id, order_no, status, product_id, quantity FROM orders \
         WHERE order_no = $1 AND status = $2 FOR UPDATE",
        params![order_no, OrderStatus::Pending],
    )?
    else {
        return Ok(false);
    };
    let order = LockedOrder::from_row(&r)?;
    expire_locked(
        tx,
        &order,
        r.get("product_id")?,
        r.get("quantity")?,
        note,
        now,
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use kami_core::{ChannelId, Currency, Email, Method, Money, PriceTiers, Quantity, Slug};

    use crate::model::{NewProduct, PendingCaps, PendingScope};
    use crate::{Delivery, NewOrder, Store, StoreError};

    fn order(ip: &str, email: &str, now: i64, caps: PendingCaps) -> NewOrder {
        NewOrder {
            order_no: kami_core::OrderNo::generate("20260101000000"),
            product: Slug::parse("gift").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            email: Email::parse(email).unwrap(),
            method: Method::Sandbox,
            channel_id: ChannelId::parse("sandbox").unwrap(),
            access_token_hash: "h".into(),
            query_password_hash: None,
            locale: "en".into(),
            now,
            expires_at: now + 1_000,
            first_check_at: now + 100,
            client_ip: Some(ip.into()),
            pending_caps: caps,
            fields: Default::default(),
            coupon: None,
            stored_channel: false,
            route: Vec::new(),
            fx: Default::default(),
        }
    }

    #[tokio::test]
    async fn pending_caps_count_unexpired_pending_orders_per_client_and_email() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let ring = crate::sealed::Keyring::generate().unwrap();
        let store = Store::connect_with_keyring(&url, 2, ring).await.unwrap();
        let product = NewProduct {
            prices: Default::default(),
            slug: Slug::parse("gift").unwrap(),
            title: "Gift".into(),
            description: String::new(),
            price: Money::new(500, Currency::parse("CNY").unwrap()).unwrap(),
            delivery: Delivery::Manual,
            manual_stock: None,
            category: String::new(),
            sort_order: 0,
            tiers: PriceTiers::parse("").unwrap(),
            min_quantity: 1,
            max_quantity: 10,
        };
        store.create_product(product, 1).await.unwrap();
        let caps = PendingCaps {
            per_client: Some(2),
            per_email: Some(3),
        };
        store
            .create_order(order("192.0.2.1", "a@x.com", 100, caps))
            .await
            .unwrap();
        store
            .create_order(order("192.0.2.1", "b@x.com", 200, caps))
            .await
            .unwrap();
        match store
            .create_order(order("192.0.2.1", "c@x.com", 300, caps))
            .await
        {
            Err(StoreError::TooManyPending {
                scope: PendingScope::Client,
                oldest_expires_at,
            }) => assert_eq!(oldest_expires_at, 1_100, "the oldest one's expiry"),
            other => panic!("expected the client cap, got {other:?}"),
        }
        // Another client; and no cap at all.
        store
            .create_order(order("192.0.2.2", "c@x.com", 300, caps))
            .await
            .unwrap();
        store
            .create_order(order("192.0.2.1", "d@x.com", 300, PendingCaps::default()))
            .await
            .unwrap();
        // Past its expiry a pending order no longer counts, expired by the job or not: at
        // 1_250 only the uncapped order of 300 (until 1_300) is live for 192.0.2.1.
        assert!(store
            .create_order(order("192.0.2.1", "e@x.com", 1_150, caps))
            .await
            .is_err());
        store
            .create_order(order("192.0.2.1", "e@x.com", 1_250, caps))
            .await
            .unwrap();

        // The email cap, whatever the client.
        for (i, ip) in ["198.51.100.1", "198.51.100.2"].iter().enumerate() {
            store
                .create_order(order(ip, "m@x.com", 400 + i as i64, caps))
                .await
                .unwrap();
        }
        store
            .create_order(order("198.51.100.3", "m@x.com", 402, caps))
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_order(order("198.51.100.4", "M@x.com", 403, caps))
                .await,
            Err(StoreError::TooManyPending {
                scope: PendingScope::Email,
                oldest_expires_at: 1_400
            })
        ));
    }
}
