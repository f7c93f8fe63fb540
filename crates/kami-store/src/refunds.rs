//! Refunds, in two phases so a crash or a timeout never refunds twice: `begin` records the
//! refund as pending with a stable refund number (checking the refundable amount under the
//! order's lock), the channel is called with that number (gateways de-duplicate on it), and
//! `finish` records the outcome and moves the payment and the order along their state machines.

use kami_core::{
    ChannelId, Millis, Money, OrderEvent, OrderNo, OrderStatus, PaymentEvent, PaymentStatus,
    RefundEvent, RefundStatus,
};

use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::params;
use crate::transitions::{
    apply_order_event, apply_payment_event, Details, LockedOrder, LockedPayment,
};

/// A refund as the admin sees it.
#[derive(Debug, Clone)]
pub struct Refund {
    pub refund_no: String,
    pub order_no: OrderNo,
    pub amount: Money,
    pub status: RefundStatus,
    pub error: Option<String>,
    pub created_at: Millis,
    pub settled_at: Option<Millis>,
}

/// What the server needs to call the channel for a pending refund.
#[derive(Debug, Clone)]
pub struct RefundCall {
    pub refund: Refund,
    pub channel_id: ChannelId,
    pub trade_no: String,
    /// The gateway's own id of the attempt, when its create call returned one.
    pub gateway_ref: Option<String>,
    /// The gateway's id of the payment being refunded, once it told us.
    pub gateway_trade_no: Option<String>,
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

/// The refund's own columns, selected from `refunds f` (read by `refund_from_row`, with
/// `o.order_no`).
macro_rules! refund_columns {
    () => {
        "SELECT f.refund_no, f.amount, f.currency, f.status, f.error, f.created_at, f.settled_at, "
    };
}

fn refund_from_row(r: &Row) -> Result<Refund> {
    Ok(Refund {
        refund_no: r.get("refund_no")?,
        order_no: r.get("order_no")?,
        amount: r.money("amount", "currency")?,
        status: r.get("status")?,
        error: r.get("error")?,
        created_at: r.get("created_at")?,
        settled_at: r.get("settled_at")?,
    })
}

/// The statuses whose amount is no longer refundable ([`RefundStatus::holds_amount`]).
const HOLDING: [RefundStatus; 2] = [RefundStatus::Pending, RefundStatus::Succeeded];

fn call_for(tx: &mut dyn Tx, refund_no: &str, existing: bool) -> Result<RefundCall> {
    let r = tx.query_one(
        concat!(
            refund_columns!(),
            "o.order_no, p.channel_id, p.trade_no, p.gateway_ref, p.gateway_trade_no, \
               p.amount AS payment_amount, \
               p.currency AS payment_currency, f.reason \
             FROM refunds f JOIN orders o ON o.id = f.order_id JOIN payments p ON p.id = f.payment_id \
             WHERE f.refund_no = $1"
        ),
        params![refund_no],
    )?;
    Ok(RefundCall {
        refund: refund_from_row(&r)?,
        channel_id: r.get("channel_id")?,
        trade_no: r.get("trade_no")?,
        gateway_ref: r.get("gateway_ref")?,
        gateway_trade_no: r.get("gateway_trade_no")?,
        total: r.money("payment_amount", "payment_currency")?,
        reason: r.get("reason")?,
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
    /// When the retry worker may ask the channel again, if the refunded payment's channel is
    /// one of `retrying_channels`; else never automatically.
    pub retry_at: Millis,
    /// The channels whose gateways de-duplicate refunds, so a lost answer may be asked again.
    pub retrying_channels: Vec<String>,
    /// The caller's own call to the channel holds the refund until then.
    pub lease_until: Millis,
}

pub(crate) fn begin(tx: &mut dyn Tx, order_no: &str, r: &NewRefund) -> Result<RefundCall> {
    let (amount, reason, refund_no, now, lease_until) = (
        r.amount,
        r.reason.as_deref(),
        r.refund_no.as_deref(),
        r.now,
        r.lease_until,
    );
    let o = tx
        .query_opt(
            "SELECT id FROM orders WHERE order_no = $1 FOR UPDATE",
            params![order_no],
        )?
        .ok_or(StoreError::OrderNotFound)?;
    let order_id: i64 = o.get("id")?;
    if let Some(no) = refund_no {
        if let Some(r) = tx.query_opt(
            "SELECT order_id FROM refunds WHERE refund_no = $1",
            params![no],
        )? {
            if r.get::<i64>("order_id")? != order_id {
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
    let paid_payments = tx.query(
        "SELECT id, amount, currency, channel_id FROM payments WHERE order_id = $1 \
             AND status IN ($2, $3) ORDER BY id FOR UPDATE",
        params![
            order_id,
            PaymentStatus::Paid,
            PaymentStatus::PartiallyRefunded
        ],
    )?;
    if paid_payments.is_empty() {
        // A fully refunded payment is not "settled" any more: say what the seller needs.
        let refunded = tx.query_opt(
            "SELECT id FROM payments WHERE order_id = $1 AND status = $2 LIMIT 1",
            params![order_id, PaymentStatus::Refunded],
        )?;
        return Err(StoreError::NotRefundable(if refunded.is_some() {
            "the order is already fully refunded".into()
        } else {
            "the order has no settled payment to refund".into()
        }));
    }
    // An order paid twice (a second attempt paid too, flagged) has two payments: the first
    // with money left is refunded.
    let mut chosen = None;
    for p in &paid_payments {
        let (payment_id, paid, currency, channel): (i64, i64, String, String) = (
            p.get("id")?,
            p.get("amount")?,
            p.get("currency")?,
            p.get("channel_id")?,
        );
        let taken = tx.query_one(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS taken FROM refunds \
                 WHERE payment_id = $1 AND status IN ($2, $3)",
            params![payment_id, HOLDING[0], HOLDING[1]],
        )?;
        let refundable = paid - taken.get::<i64>("taken")?;
        if refundable > 0 {
            chosen = Some((payment_id, currency, channel, refundable));
            break;
        }
    }
    let Some((payment_id, currency, channel, refundable)) = chosen else {
        return Err(StoreError::NotRefundable(
            "the payment is already fully refunded".into(),
        ));
    };
    // Retries follow the channel of the payment refunded, which after a failover is not
    // always the order's newest.
    let retry_at = r.retrying_channels.contains(&channel).then_some(r.retry_at);
    let amount = amount.unwrap_or(refundable);
    if amount <= 0 || amount > refundable {
        return Err(StoreError::InvalidAmount(format!(
            "refund amount must be between 1 and {refundable}"
        )));
    }
    let all = tx.query_one(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM refunds WHERE order_id = $1",
        params![order_id],
    )?;
    let refund_no = match refund_no {
        Some(n) => n.to_owned(),
        None => format!("{order_no}R{}", all.get::<i64>("n")? + 1),
    };
    tx.exec(
        "INSERT INTO refunds (order_id, payment_id, refund_no, amount, currency, reason, status, created_at, \
           next_check_at, lease_until) VALUES ($1, $2, $3, $4, $5, $6, $10, $7, $8, $9)",
        params![
            order_id,
            payment_id,
            refund_no.as_str(),
            amount,
            currency.as_str(),
            reason,
            now,
            retry_at,
            lease_until,
            RefundStatus::Pending
        ],
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
    let (refund_id, order_id, payment_id): (i64, i64, i64) =
        (f.get("id")?, f.get("order_id")?, f.get("payment_id")?);
    if f.get::<RefundStatus>("status")?.is_settled() {
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
            settle(tx, refund_id, RefundEvent::Failed, Some(error), now)?;
        }
        RefundResult::Succeeded => {
            // Lock order first, then payment: the same order as every other path.
            let o = tx.query_one(
                "SELECT id, order_no, status FROM orders WHERE id = $1 FOR UPDATE",
                params![order_id],
            )?;
            let order = LockedOrder::from_row(&o)?;
            let p = tx.query_one(
                "SELECT id, status, amount FROM payments WHERE id = $1 FOR UPDATE",
                params![payment_id],
            )?;
            let payment = LockedPayment::from_row(&p)?;
            settle(tx, refund_id, RefundEvent::Succeeded, None, now)?;
            let refunded: i64 = tx
                .query_one(
                    "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS refunded FROM refunds \
                     WHERE payment_id = $1 AND status = $2",
                    params![payment_id, RefundStatus::Succeeded],
                )?
                .get("refunded")?;
            let full = refunded >= p.get::<i64>("amount")?;
            apply_payment_event(tx, payment, PaymentEvent::Refunded { full }, now, None)?;
            // An order paid twice (a second attempt paid too, flagged) is refunded in full
            // only once neither payment keeps money.
            let others_keep = tx
                .query_one(
                    "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM payments \
                     WHERE order_id = $1 AND id <> $2 AND status IN ($3, $4)",
                    params![
                        order_id,
                        payment_id,
                        PaymentStatus::Paid,
                        PaymentStatus::PartiallyRefunded
                    ],
                )?
                .get::<i64>("n")?
                > 0;
            let full = full && !others_keep;
            // Money that arrived after the order was refunded (a late second payment) goes
            // back without changing it: the order stays refunded.
            if order.status != OrderStatus::Refunded {
                apply_order_event(
                    tx,
                    &order,
                    OrderEvent::Refunded { full },
                    now,
                    Details {
                        note: None,
                        payload: Some(serde_json::json!({ "refund_no": refund_no, "full": full })),
                    },
                )?;
            }
        }
    }
    call_for(tx, refund_no, true)
}

/// Settle a locked pending refund: a compare-and-set on `pending`, run through
/// [`RefundStatus::on`].
fn settle(
    tx: &mut dyn Tx,
    refund_id: i64,
    event: RefundEvent,
    error: Option<&str>,
    now: Millis,
) -> Result<()> {
    let from = RefundStatus::Pending;
    let to = from.on(event)?;
    if tx.exec(
        "UPDATE refunds SET status = $3, error = COALESCE($4, error), settled_at = $5, next_check_at = NULL, lease_until = NULL \
         WHERE id = $1 AND status = $2",
        params![refund_id, from, to, error, now],
    )? != 1
    {
        return Err(StoreError::StatusChanged {
            table: "refunds",
            id: refund_id,
            expected: from.as_str(),
        });
    }
    Ok(())
}

/// Pending refunds whose retry time has come, leased to this worker.
pub(crate) fn claim_pending(
    tx: &mut dyn Tx,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> Result<Vec<RefundCall>> {
    let due = tx.query(
        "SELECT id, refund_no FROM refunds WHERE status = $3 AND next_check_at IS NOT NULL AND next_check_at <= $1 \
           AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        params![now, i64::from(limit), RefundStatus::Pending],
    )?;
    let mut out = Vec::with_capacity(due.len());
    for r in &due {
        tx.exec(
            "UPDATE refunds SET lease_until = $2 WHERE id = $1",
            params![r.get::<i64>("id")?, lease_until],
        )?;
        out.push(call_for(tx, &r.get::<String>("refund_no")?, true)?);
    }
    Ok(out)
}

pub(crate) fn list_for_order(tx: &mut dyn Tx, order_no: &str) -> Result<Vec<Refund>> {
    tx.query(
        concat!(
            refund_columns!(),
            "o.order_no FROM refunds f JOIN orders o ON o.id = f.order_id \
             WHERE o.order_no = $1 ORDER BY f.id"
        ),
        params![order_no],
    )?
    .iter()
    .map(refund_from_row)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_statuses_are_the_state_machines() {
        let held: Vec<_> = RefundStatus::ALL
            .into_iter()
            .filter(|s| s.holds_amount())
            .collect();
        assert_eq!(held, HOLDING);
    }
}
