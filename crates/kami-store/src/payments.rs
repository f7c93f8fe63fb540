//! Recording payment notifications: the raw event, and — for a verified payment — the order's
//! move to paid and its delivery, all in one transaction. Locks are always taken order first,
//! then payment, then cards (the same order as expiry), so concurrent paths cannot deadlock.

use kami_core::{Millis, Money, OrderEvent, OrderStatus, PaymentEvent, PaymentStatus};

use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::{Delivery, NotifyOutcome, RawEvent, Verdict};
use crate::orders::{claim_cards, insert_outbox, release_cards};
use crate::params;

/// Bytes of a rejected (unauthenticated) notification's body that are kept: enough to debug a
/// misconfigured gateway, not enough for a flood of forgeries to fill the disk.
const REJECTED_BODY_KEEP: usize = 4096;

pub(crate) fn record_notification(
    tx: &mut dyn Tx,
    ev: &RawEvent,
    verdict: &Verdict,
) -> Result<NotifyOutcome> {
    let (outcome, trade_no, detail) = match verdict {
        Verdict::Rejected { reason } => (NotifyOutcome::Rejected, None, Some(reason.clone())),
        Verdict::NotPaid { trade_no, status } => (
            NotifyOutcome::NotPaid,
            Some(trade_no.clone()),
            Some(format!("status {status}")),
        ),
        Verdict::Paid {
            trade_no,
            gateway_trade_no,
            amount,
        } => {
            let outcome = apply_payment(
                tx,
                &ev.channel_id,
                trade_no,
                gateway_trade_no,
                *amount,
                ev.received_at,
            )?;
            let detail = match &outcome {
                NotifyOutcome::AmountMismatch { expected, got } => {
                    Some(format!("expected {expected}, got {got}"))
                }
                _ => Some(format!("gateway trade {gateway_trade_no}")),
            };
            (outcome, Some(trade_no.clone()), detail)
        }
    };
    tx.exec(
        "INSERT INTO payment_events (channel_id, received_at, http_method, query, headers, body, verified, \
           trade_no, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![
            ev.channel_id.as_str(),
            ev.received_at,
            ev.http_method.as_str(),
            ev.query.as_str(),
            ev.headers.as_str(),
            match verdict {
                Verdict::Rejected { .. } => ev.body[..ev.body.len().min(REJECTED_BODY_KEEP)].to_vec(),
                _ => ev.body.clone(),
            },
            !matches!(verdict, Verdict::Rejected { .. }),
            trade_no,
            outcome.code(),
            detail
        ],
    )?;
    Ok(outcome)
}

fn apply_payment(
    tx: &mut dyn Tx,
    channel_id: &str,
    trade_no: &str,
    gateway_trade_no: &str,
    paid: Money,
    now: Millis,
) -> Result<NotifyOutcome> {
    let Some(p) = tx.query_opt(
        "SELECT id, order_id FROM payments WHERE channel_id = $1 AND trade_no = $2",
        params![channel_id, trade_no],
    )?
    else {
        return Ok(NotifyOutcome::UnknownOrder);
    };
    let (payment_id, order_id) = (p.int(0)?, p.int(1)?);

    let o = tx.query_one(
        "SELECT o.order_no, o.status, o.product_id, o.quantity, o.loop_card_id, p.delivery \
         FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id = $1 FOR UPDATE OF o",
        params![order_id],
    )?;
    let order_no = o.text(0)?;
    let order_status = OrderStatus::parse(&o.text(1)?)
        .ok_or_else(|| StoreError::Corrupt("order status".into()))?;
    let (product_id, quantity, loop_card) = (o.int(2)?, o.int(3)?, o.opt_int(4)?);
    let delivery =
        Delivery::parse(&o.text(5)?).ok_or_else(|| StoreError::Corrupt("delivery".into()))?;

    let p = tx.query_one(
        "SELECT status, amount, currency, gateway_trade_no FROM payments WHERE id = $1 FOR UPDATE",
        params![payment_id],
    )?;
    let pay_status = PaymentStatus::parse(&p.text(0)?)
        .ok_or_else(|| StoreError::Corrupt("payment status".into()))?;
    let (expected_minor, expected_currency) = (p.int(1)?, p.text(2)?);

    // Binding is by (channel, trade_no); the money must match to the minor unit and currency.
    if paid.minor() != expected_minor || paid.currency().code() != expected_currency {
        return Ok(NotifyOutcome::AmountMismatch {
            expected: format!("{expected_minor} {expected_currency}"),
            got: format!("{} {}", paid.minor(), paid.currency()),
        });
    }

    if pay_status.is_paid() {
        return Ok(if p.opt_text(3)?.as_deref() == Some(gateway_trade_no) {
            NotifyOutcome::Duplicate { order_no }
        } else {
            insert_outbox(
                tx,
                "payment.conflict",
                order_id,
                serde_json::json!({ "gateway_trade_no": gateway_trade_no }).to_string(),
                now,
            )?;
            NotifyOutcome::ConflictingPayment { order_no }
        });
    }
    let new_pay = pay_status
        .on(PaymentEvent::Confirmed)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // A gateway trade number already seen on another of our payments: the gateway (or its
    // configuration) is reusing numbers. This payment is still bound by our trade number and
    // its amount, so it counts; the seller gets an alert to look at both.
    if let Some(other) = tx.query_opt(
        "SELECT o.order_no FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE p.channel_id = $1 AND p.gateway_trade_no = $2 AND p.id <> $3 LIMIT 1",
        params![channel_id, gateway_trade_no, payment_id],
    )? {
        let payload = serde_json::json!({ "gateway_trade_no": gateway_trade_no, "other_order_no": other.text(0)? });
        insert_outbox(
            tx,
            "payment.gateway_trade_reused",
            order_id,
            payload.to_string(),
            now,
        )?;
    }
    if tx.exec(
        "UPDATE payments SET status = $2, gateway_trade_no = $3, paid_at = $4, next_check_at = NULL, lease_until = NULL \
         WHERE id = $1 AND status = $5",
        params![payment_id, new_pay.as_str(), gateway_trade_no, now, pay_status.as_str()],
    )? != 1
    {
        return Err(StoreError::Database("payment changed under its row lock".into()));
    }

    let Ok(paid_status) = order_status.on(OrderEvent::PaymentConfirmed) else {
        // The order was already paid through another payment attempt: money arrived twice.
        insert_outbox(
            tx,
            "payment.conflict",
            order_id,
            serde_json::json!({ "gateway_trade_no": gateway_trade_no }).to_string(),
            now,
        )?;
        return Ok(NotifyOutcome::ConflictingPayment { order_no });
    };
    let late = order_status == OrderStatus::Expired;

    let (event, note) = match delivery {
        Delivery::Manual => {
            // A late payment must win its stock back; on time it was taken at creation.
            if late
                && tx.exec(
                    "UPDATE products SET manual_stock = manual_stock - $2 \
                     WHERE id = $1 AND (manual_stock IS NULL OR manual_stock >= $2)",
                    params![product_id, quantity],
                )? == 0
            {
                (
                    OrderEvent::Undeliverable,
                    Some("paid after expiry; out of stock"),
                )
            } else {
                (OrderEvent::NeedsManualFulfilment, None)
            }
        }
        Delivery::Auto if loop_card.is_some() => (OrderEvent::Delivered, None),
        Delivery::Auto => {
            if late && claim_cards(tx, order_id, product_id, quantity)? < quantity as u64 {
                release_cards(tx, order_id)?;
                (
                    OrderEvent::Undeliverable,
                    Some("paid after expiry; out of stock"),
                )
            } else {
                let sold = tx.exec(
                    "UPDATE cards SET status = 'sold', sold_at = $2 WHERE order_id = $1 AND status = 'reserved'",
                    params![order_id, now],
                )?;
                if sold != quantity as u64 {
                    return Err(StoreError::Corrupt(format!(
                        "order {order_no} had {sold} reserved keys, expected {quantity}"
                    )));
                }
                (OrderEvent::Delivered, None)
            }
        }
    };
    let final_status = paid_status
        .on(event)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // Compare-and-set on the status read under the row lock, with the paid/delivered times.
    if tx.exec(
        "UPDATE orders SET status = $3, paid_at = $4, delivered_at = $5, note = $6 WHERE id = $1 AND status = $2",
        params![
            order_id,
            order_status.as_str(),
            final_status.as_str(),
            now,
            (final_status == OrderStatus::Delivered).then_some(now),
            note
        ],
    )? != 1
    {
        return Err(StoreError::Database("order changed under its row lock".into()));
    }
    let kind = match final_status {
        OrderStatus::Delivered => crate::outbox::ORDER_DELIVERED,
        OrderStatus::AwaitingFulfilment => "order.awaiting_fulfilment",
        _ => "order.exception",
    };
    insert_outbox(
        tx,
        kind,
        order_id,
        serde_json::json!({ "order_no": order_no }).to_string(),
        now,
    )?;
    Ok(match final_status {
        OrderStatus::Delivered => NotifyOutcome::Delivered { order_no, late },
        OrderStatus::AwaitingFulfilment => NotifyOutcome::AwaitingFulfilment { order_no },
        _ => NotifyOutcome::Exception { order_no },
    })
}
