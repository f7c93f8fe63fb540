//! Payment attempts: an order has one `payments` row per trade it sent to a channel. The
//! first is made with the order (`orders::create_order`); a failover to another channel or
//! the buyer's switch of method adds one with its own trade number ([`TradeNo::attempt`],
//! chosen here under the order's row lock), and the order's `channel_id` (and `method`)
//! follow the newest attempt — a plain column update, not a status change. Every trade
//! number maps back to its order through this table only.

use std::sync::Arc;

use kami_core::{
    AmountLimits, ChannelId, ChargeCurrencies, CoinAmount, FxTable, Method, Millis, Money, OrderNo,
    OrderStatus, PaymentEvent, PaymentStatus, TradeNo,
};

use crate::charges;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::orders::expire_locked;
use crate::params;
use crate::transitions::{apply_payment_event, close_open_payments, LockedOrder, LockedPayment};

/// A new attempt for a pending order.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub order_no: OrderNo,
    pub channel_id: ChannelId,
    pub method: Method,
    /// `channel_id` is a stored channel: the attempt requires its row (see `NewOrder`).
    pub stored_channel: bool,
    /// The buyer switched method: the open attempts were closed at their channels first and
    /// are closed here too. A failover leaves them open: their trades may exist at the
    /// gateway (a timeout), so they are still checked and closed at the deadline.
    pub close_others: bool,
    pub now: Millis,
    pub first_check_at: Millis,
    /// The currency the channel charges in, by the product's (see `RouteChoice`).
    pub charges: ChargeCurrencies,
    /// The channel's limits on what it is charged: outside them nothing is added
    /// ([`StoreError::NoChannelForAmount`] with the charge).
    pub limits: AmountLimits,
    pub fx: Arc<FxTable>,
}

/// Add an attempt; returns its trade number and what it charges. The order must be pending
/// ([`StoreError::InvalidStatus`] otherwise, nothing changed), and its amount convertible to
/// the channel's currency ([`StoreError::NoChannelForCurrency`] otherwise).
pub(crate) fn add_attempt(tx: &mut dyn Tx, a: &NewAttempt) -> Result<(TradeNo, Money)> {
    if a.stored_channel {
        crate::stored_channels::hold_for_order(tx, &a.channel_id)?;
    }
    let o = tx
        .query_opt(
            "SELECT o.id, o.status, o.amount, o.currency, p.price, p.currency AS price_currency, p.prices \
             FROM orders o JOIN products p ON p.id = o.product_id WHERE o.order_no = $1 FOR UPDATE OF o",
            params![a.order_no.as_str()],
        )?
        .ok_or(StoreError::OrderNotFound)?;
    let (order_id, status): (i64, OrderStatus) = (o.get("id")?, o.get("status")?);
    if status != OrderStatus::Pending {
        return Err(StoreError::InvalidStatus(format!(
            "the order is {}, not pending",
            status.as_str()
        )));
    }
    let n: i64 = tx
        .query_one(
            "SELECT COUNT(*) AS n FROM payments WHERE order_id = $1",
            params![order_id],
        )?
        .get("n")?;
    let trade_no = u32::try_from(n + 1)
        .ok()
        .and_then(|n| TradeNo::attempt(&a.order_no, n))
        .ok_or_else(|| {
            StoreError::InvalidInput("too many payment attempts for this order".into())
        })?;
    let total = o.money("amount", "currency")?;
    let list = o.money("price", "price_currency")?;
    let own = charges::own_prices(&o, list.currency())?;
    let charge = charges::charge(&a.fx, total, list, &own, a.charges.of(total.currency()))
        .ok_or(StoreError::NoChannelForCurrency { amount: total })?;
    if !a.limits.admits(charge.money.minor()) {
        return Err(StoreError::NoChannelForAmount {
            amount: charge.money,
        });
    }
    if a.close_others {
        close_open_payments(tx, order_id)?;
    }
    tx.exec(
        "INSERT INTO payments (order_id, channel_id, trade_no, amount, currency, status, created_at, next_check_at, charge_basis) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        params![
            order_id,
            a.channel_id.as_str(),
            trade_no.as_str(),
            charge.money.minor(),
            charge.money.currency().code(),
            PaymentStatus::Created,
            a.now,
            a.first_check_at,
            charge.basis
        ],
    )?;
    let charged = (charge.money != total).then_some(charge.money);
    tx.exec(
        "UPDATE orders SET channel_id = $2, method = $3, pay_action = NULL, pay_target = NULL, \
           charge_amount = $4, charge_currency = $5 WHERE id = $1",
        params![
            order_id,
            a.channel_id.as_str(),
            a.method.as_str(),
            charged.map(Money::minor),
            charged.map(|m| m.currency().code())
        ],
    )?;
    Ok((trade_no, charge.money))
}

/// The trade of one attempt was closed at its channel after the order's deadline: close the
/// attempt, and expire the order when it was the newest attempt or the last open one. True
/// when the order expired.
pub(crate) fn close_attempt(tx: &mut dyn Tx, payment_id: i64, now: Millis) -> Result<bool> {
    let Some(o) = tx.query_opt(
        "SELECT o.id, o.order_no, o.status, o.product_id, o.quantity FROM orders o \
         JOIN payments p ON p.order_id = o.id WHERE p.id = $1 FOR UPDATE OF o",
        params![payment_id],
    )?
    else {
        return Ok(false);
    };
    let order = LockedOrder::from_row(&o)?;
    if let Some(p) = tx.query_opt(
        "SELECT id, status FROM payments WHERE id = $1 AND status = $2 FOR UPDATE",
        params![payment_id, PaymentStatus::Created],
    )? {
        apply_payment_event(
            tx,
            LockedPayment::from_row(&p)?,
            PaymentEvent::Closed,
            now,
            None,
        )?;
    }
    if order.status != OrderStatus::Pending {
        return Ok(false);
    }
    // The newest attempt is the one the buyer was shown (earlier ones failed to create or
    // were switched away from): once it is closed the order expires, and the others are
    // closed with it (a late payment of one still lands on the late-payment path).
    let r = tx.query_one(
        "SELECT MAX(id) AS newest, SUM(CASE WHEN status = $2 THEN 1 ELSE 0 END) AS open \
         FROM payments WHERE order_id = $1",
        params![order.id, PaymentStatus::Created],
    )?;
    let (newest, open): (Option<i64>, Option<i64>) = (r.get("newest")?, r.get("open")?);
    if newest != Some(payment_id) && open.unwrap_or(0) > 0 {
        return Ok(false);
    }
    expire_locked(
        tx,
        &order,
        o.get("product_id")?,
        o.get("quantity")?,
        None,
        now,
    )?;
    Ok(true)
}

/// Keep the gateway's own id of an attempt (`payments.gateway_ref`), and the coin amount it
/// asks for (`payments.coin_amount`, USDT gateways: every later payment of the attempt must
/// report the same), as its create call returned them. Written once: a repeated create (an
/// idempotent retry) returns the same id.
pub(crate) fn set_gateway_ref(
    tx: &mut dyn Tx,
    trade_no: &TradeNo,
    gateway_ref: &str,
    coin_amount: Option<&CoinAmount>,
) -> Result<()> {
    let n = tx.exec(
        "UPDATE payments SET gateway_ref = $2, coin_amount = $3 WHERE trade_no = $1 \
           AND (gateway_ref IS NULL OR gateway_ref = $2)",
        params![
            trade_no.as_str(),
            gateway_ref,
            coin_amount.map(|c| c.to_string())
        ],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "payment {trade_no} is unknown or already names another gateway reference"
        )))
    }
}

/// The gateway's id of the attempt with this trade number (`None`: none kept, or no such
/// attempt).
pub(crate) fn gateway_ref(tx: &mut dyn Tx, trade_no: &str) -> Result<Option<String>> {
    match tx.query_opt(
        "SELECT gateway_ref FROM payments WHERE trade_no = $1",
        params![trade_no],
    )? {
        Some(r) => r.get("gateway_ref"),
        None => Ok(None),
    }
}

impl crate::Store {
    /// The gateway's id of an attempt, as its create call returned it.
    pub async fn gateway_ref(&self, trade_no: &str) -> Result<Option<String>> {
        let trade_no = trade_no.to_owned();
        self.read(move |tx| gateway_ref(tx, &trade_no)).await
    }

    /// Keep the gateway's id of an attempt and its coin amount, returned by its create call.
    pub async fn set_gateway_ref(
        &self,
        trade_no: TradeNo,
        gateway_ref: String,
        coin_amount: Option<CoinAmount>,
    ) -> Result<()> {
        self.write(move |tx| set_gateway_ref(tx, &trade_no, &gateway_ref, coin_amount.as_ref()))
            .await
    }

    /// Add a payment attempt to a pending order (failover, method switch); its trade number.
    pub async fn add_attempt(&self, attempt: NewAttempt) -> Result<(TradeNo, Money)> {
        self.write(move |tx| add_attempt(tx, &attempt)).await
    }

    /// An attempt's trade was closed at its channel after the deadline: close it, and expire
    /// the order when it was the last one open. True when the order expired.
    pub async fn close_attempt(&self, payment_id: i64, now: Millis) -> Result<bool> {
        self.write(move |tx| close_attempt(tx, payment_id, now))
            .await
    }
}
