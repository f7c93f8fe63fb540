//! Refunds, in two phases so a crash or a timeout never refunds twice: `begin` records the
//! refund as pending with a stable refund number (checking the refundable amount under the
//! order's lock), the channel is called with that number (gateways de-duplicate on it), and
//! `finish` records the outcome and moves the payment and the order along their state machines.

use kami_core::{Currency, Millis, Money, OrderEvent, OrderStatus, PaymentEvent, PaymentStatus};

use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::orders::insert_outbox;
use crate::params;

/// A refund as the admin sees it.
#[derive(Debug, Clone)]
pub struct Refund {
    pub refund_no: String,
    pub order_no: String,
    pub amount: Money,
    pub status: String,
    pub error: Option<String>,
    pub created_at: Millis,
    pub settled_at: Option<Millis>,
}

/// What the server needs to call the channel for a pending refund.
#[derive(Debug, Clone)]
pub struct RefundCall {
    pub refund: Refund,
    pub channel_id: String,
    pub trade_no: String,
    /// The payment's full amount (some gateways want it with every refund).
    pub total: Money,
    pub reason: Option<String>,
    /// True when this refund number already existed (an idempotent repeat).
    pub existing: bool,
}

/// The channel's answer, as the store records it.
#[derive(Debug, Clone)]
pub enum RefundResult {
    Succeeded,
    /// Not settled yet: ask again at `retry_at`.
    Pending {
        retry_at: Millis,
    },
    Failed {
        error: String,
    },
    /// The outcome is unknown and asking again could refund twice: keep the refund pending
    /// (its amount stays reserved) but stop retrying; the seller checks the gateway.
    Unknown {
        error: String,
    },
}

fn refund_from_row(r: &Row, order_no: &str) -> Result<Refund> {
    Ok(Refund {
        refund_no: r.text(0)?,
        order_no: order_no.to_owned(),
        amount: Money::new(r.int(1)?, Currency::parse(&r.text(2)?)?)?,
        status: r.text(3)?,
        error: r.opt_text(4)?,
        created_at: r.int(5)?,
        settled_at: r.opt_int(6)?,
    })
}

fn call_for(tx: &mut dyn Tx, refund_no: &str, existing: bool) -> Result<RefundCall> {
    let r = tx.query_one(
        "SELECT f.refund_no, f.amount, f.currency, f.status, f.error, f.created_at, f.settled_at, \
                o.order_no, p.channel_id, p.trade_no, p.amount, p.currency, f.reason \
         FROM refunds f JOIN orders o ON o.id = f.order_id JOIN payments p ON p.id = f.payment_id \
         WHERE f.refund_no = $1",
        params![refund_no],
    )?;
    let order_no = r.text(7)?;
    Ok(RefundCall {
        refund: refund_from_row(&r, &order_no)?,
        channel_id: r.text(8)?,
        trade_no: r.text(9)?,
        total: Money::new(r.int(10)?, Currency::parse(&r.text(11)?)?)?,
        reason: r.opt_text(12)?,
        existing,
    })
}

/// A refund the admin asked for.
#[derive(Debug, Clone, Default)]
pub struct NewRefund {
    /// Minor units; `None` = everything still refundable.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    /// Idempotency key; generated when absent.
    pub refund_no: Option<String>,
    pub now: Millis,
    /// When the retry worker may ask the channel again (`None`: never automatically).
    pub retry_at: Option<Millis>,
    /// The caller's own call to the channel holds the refund until then.
    pub lease_until: Millis,
}

pub(crate) fn begin(tx: &mut dyn Tx, order_no: &str, r: &NewRefund) -> Result<RefundCall> {
    let (amount, reason, refund_no, now, retry_at, lease_until) = (
        r.amount,
        r.reason.as_deref(),
        r.refund_no.as_deref(),
        r.now,
        r.retry_at,
        r.lease_until,
    );
    let o = tx
        .query_opt(
            "SELECT id FROM orders WHERE order_no = $1 FOR UPDATE",
            params![order_no],
        )?
        .ok_or(StoreError::OrderNotFound)?;
    let order_id = o.int(0)?;
    if let Some(no) = refund_no {
        if let Some(r) = tx.query_opt(
            "SELECT order_id FROM refunds WHERE refund_no = $1",
            params![no],
        )? {
            if r.int(0)? != order_id {
                return Err(StoreError::InvalidInput(
                    "this refund number belongs to another order".into(),
                ));
            }
            let existing = call_for(tx, no, true)?;
            if amount.is_some_and(|a| a != existing.refund.amount.minor()) {
                return Err(StoreError::InvalidInput(
                    "this refund number was already used for a different amount".into(),
                ));
            }
            return Ok(existing);
        }
    }
    let p = tx
        .query_opt(
            "SELECT id, amount, currency FROM payments WHERE order_id = $1 AND status IN ('paid', 'partially_refunded') \
             ORDER BY id LIMIT 1 FOR UPDATE",
            params![order_id],
        )?
        .ok_or_else(|| StoreError::NotRefundable("the order has no settled payment to refund".into()))?;
    let (payment_id, paid, currency) = (p.int(0)?, p.int(1)?, p.text(2)?);
    let taken = tx.query_one(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM refunds \
             WHERE payment_id = $1 AND status IN ('pending', 'succeeded')",
        params![payment_id],
    )?;
    let refundable = paid - taken.int(0)?;
    if refundable <= 0 {
        return Err(StoreError::NotRefundable(
            "the payment is already fully refunded".into(),
        ));
    }
    let amount = amount.unwrap_or(refundable);
    if amount <= 0 || amount > refundable {
        return Err(StoreError::InvalidAmount(format!(
            "refund amount must be between 1 and {refundable}"
        )));
    }
    let all = tx.query_one(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM refunds WHERE order_id = $1",
        params![order_id],
    )?;
    let refund_no = match refund_no {
        Some(n) => n.to_owned(),
        None => format!("{order_no}R{}", all.int(0)? + 1),
    };
    tx.exec(
        "INSERT INTO refunds (order_id, payment_id, refund_no, amount, currency, reason, status, created_at, \
           next_check_at, lease_until) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)",
        params![order_id, payment_id, refund_no.as_str(), amount, currency.as_str(), reason, now, retry_at, lease_until],
    )?;
    call_for(tx, &refund_no, false)
}

pub(crate) fn finish(
    tx: &mut dyn Tx,
    refund_no: &str,
    result: &RefundResult,
    now: Millis,
) -> Result<RefundCall> {
    let f = tx
        .query_opt(
            "SELECT id, order_id, payment_id, amount, status FROM refunds WHERE refund_no = $1 FOR UPDATE",
            params![refund_no],
        )?
        .ok_or_else(|| StoreError::InvalidInput("unknown refund number".into()))?;
    let (refund_id, order_id, payment_id) = (f.int(0)?, f.int(1)?, f.int(2)?);
    if f.text(4)? != "pending" {
        // Already settled one way or the other: recording again changes nothing.
        return call_for(tx, refund_no, true);
    }
    match result {
        RefundResult::Pending { retry_at } => {
            tx.exec(
                "UPDATE refunds SET next_check_at = $2, lease_until = NULL WHERE id = $1",
                params![refund_id, *retry_at],
            )?;
        }
        RefundResult::Unknown { error } => {
            tx.exec(
                "UPDATE refunds SET error = $2, next_check_at = NULL, lease_until = NULL WHERE id = $1",
                params![refund_id, format!("outcome unknown, not retried (check the gateway): {error}")],
            )?;
        }
        RefundResult::Failed { error } => {
            tx.exec(
                "UPDATE refunds SET status = 'failed', error = $2, settled_at = $3, next_check_at = NULL, lease_until = NULL \
                 WHERE id = $1",
                params![refund_id, error.as_str(), now],
            )?;
        }
        RefundResult::Succeeded => {
            // Lock order first, then payment: the same order as every other path.
            let o = tx.query_one(
                "SELECT status FROM orders WHERE id = $1 FOR UPDATE",
                params![order_id],
            )?;
            let order_status = OrderStatus::parse(&o.text(0)?)
                .ok_or_else(|| StoreError::Corrupt("order status".into()))?;
            let p = tx.query_one(
                "SELECT status, amount FROM payments WHERE id = $1 FOR UPDATE",
                params![payment_id],
            )?;
            let pay_status = PaymentStatus::parse(&p.text(0)?)
                .ok_or_else(|| StoreError::Corrupt("payment status".into()))?;
            tx.exec(
                "UPDATE refunds SET status = 'succeeded', settled_at = $2, next_check_at = NULL, lease_until = NULL \
                 WHERE id = $1",
                params![refund_id, now],
            )?;
            let refunded = tx
                .query_one(
                    "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE payment_id = $1 AND status = 'succeeded'",
                    params![payment_id],
                )?
                .int(0)?;
            let full = refunded >= p.int(1)?;
            let new_pay = pay_status
                .on(PaymentEvent::Refunded { full })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.exec(
                "UPDATE payments SET status = $2 WHERE id = $1 AND status = $3",
                params![payment_id, new_pay.as_str(), pay_status.as_str()],
            )?;
            let new_order = order_status
                .on(OrderEvent::Refunded { full })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.exec(
                "UPDATE orders SET status = $2 WHERE id = $1 AND status = $3",
                params![order_id, new_order.as_str(), order_status.as_str()],
            )?;
            insert_outbox(
                tx,
                "order.refunded",
                order_id,
                serde_json::json!({ "refund_no": refund_no, "full": full }).to_string(),
                now,
            )?;
        }
    }
    call_for(tx, refund_no, true)
}

/// Pending refunds whose retry time has come, leased to this worker.
pub(crate) fn claim_pending(
    tx: &mut dyn Tx,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> Result<Vec<RefundCall>> {
    let due = tx.query(
        "SELECT id, refund_no FROM refunds WHERE status = 'pending' AND next_check_at IS NOT NULL AND next_check_at <= $1 \
           AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        params![now, i64::from(limit)],
    )?;
    let mut out = Vec::with_capacity(due.len());
    for r in &due {
        tx.exec(
            "UPDATE refunds SET lease_until = $2 WHERE id = $1",
            params![r.int(0)?, lease_until],
        )?;
        out.push(call_for(tx, &r.text(1)?, true)?);
    }
    Ok(out)
}

pub(crate) fn list_for_order(tx: &mut dyn Tx, order_no: &str) -> Result<Vec<Refund>> {
    tx.query(
        "SELECT f.refund_no, f.amount, f.currency, f.status, f.error, f.created_at, f.settled_at \
         FROM refunds f JOIN orders o ON o.id = f.order_id WHERE o.order_no = $1 ORDER BY f.id",
        params![order_no],
    )?
    .iter()
    .map(|r| refund_from_row(r, order_no))
    .collect()
}
