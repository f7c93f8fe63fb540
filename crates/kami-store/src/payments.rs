//! Recording payment notifications: the raw event, and — for a verified payment — the order's
//! move to paid and its delivery, all in one transaction. Locks are always taken order first,
//! then payment, then cards (the same order as expiry), so concurrent paths cannot deadlock.

use kami_core::{Millis, Money, OrderEvent, OrderStatus, PaymentEvent};

use crate::cards;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::{Delivery, NotifyOutcome, RawEvent, Verdict};
use crate::outbox;
use crate::params;
use crate::transitions::{
    apply_order_events, apply_payment_event, Details, LockedOrder, LockedPayment,
};

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
    let (payment_id, order_id): (i64, i64) = (p.get("id")?, p.get("order_id")?);

    let o = tx.query_one(
        "SELECT o.id, o.order_no, o.status, o.product_id, o.quantity, o.loop_card_id, p.delivery \
         FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id = $1 FOR UPDATE OF o",
        params![order_id],
    )?;
    let order = LockedOrder::from_row(&o)?;
    let order_no = order.order_no.clone();
    let (product_id, quantity): (i64, i64) = (o.get("product_id")?, o.get("quantity")?);
    let loop_card: Option<i64> = o.get("loop_card_id")?;
    let delivery: Delivery = o.get("delivery")?;

    let p = tx.query_one(
        "SELECT id, status, amount, currency, gateway_trade_no FROM payments WHERE id = $1 FOR UPDATE",
        params![payment_id],
    )?;
    let payment = LockedPayment::from_row(&p)?;
    let (expected_minor, expected_currency): (i64, String) = (p.get("amount")?, p.get("currency")?);

    // Binding is by (channel, trade_no); the money must match to the minor unit and currency.
    if paid.minor() != expected_minor || paid.currency().code() != expected_currency {
        return Ok(NotifyOutcome::AmountMismatch {
            expected: format!("{expected_minor} {expected_currency}"),
            got: format!("{} {}", paid.minor(), paid.currency()),
        });
    }

    if payment.status.is_paid() {
        return Ok(
            if p.get::<Option<String>>("gateway_trade_no")?.as_deref() == Some(gateway_trade_no) {
                NotifyOutcome::Duplicate { order_no }
            } else {
                conflict_alert(tx, order_id, gateway_trade_no, now)?;
                NotifyOutcome::ConflictingPayment { order_no }
            },
        );
    }
    // A gateway trade number already seen on another of our payments: the gateway (or its
    // configuration) is reusing numbers. This payment is still bound by our trade number and
    // its amount, so it counts; the seller gets an alert to look at both.
    if let Some(other) = tx.query_opt(
        "SELECT o.order_no FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE p.channel_id = $1 AND p.gateway_trade_no = $2 AND p.id <> $3 LIMIT 1",
        params![channel_id, gateway_trade_no, payment_id],
    )? {
        let payload = serde_json::json!({
            "gateway_trade_no": gateway_trade_no,
            "other_order_no": other.get::<String>("order_no")?,
        });
        outbox::insert(
            tx,
            "payment.gateway_trade_reused",
            order_id,
            payload.to_string(),
            now,
        )?;
    }
    apply_payment_event(
        tx,
        payment,
        PaymentEvent::Confirmed,
        now,
        Some(gateway_trade_no),
    )?;

    if order.status.on(OrderEvent::PaymentConfirmed).is_err() {
        // The order was already paid through another payment attempt: money arrived twice.
        conflict_alert(tx, order_id, gateway_trade_no, now)?;
        return Ok(NotifyOutcome::ConflictingPayment { order_no });
    }
    let late = order.status == OrderStatus::Expired;

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
            if late && cards::reserve(tx, order_id, product_id, quantity)? < quantity as u64 {
                cards::release(tx, order_id)?;
                (
                    OrderEvent::Undeliverable,
                    Some("paid after expiry; out of stock"),
                )
            } else {
                let sold = cards::sell(tx, order_id, now)?;
                if sold != quantity as u64 {
                    return Err(StoreError::Corrupt(format!(
                        "order {order_no} had {sold} reserved keys, expected {quantity}"
                    )));
                }
                (OrderEvent::Delivered, None)
            }
        }
    };
    // Paid and delivered (or not) in one compare-and-set, with its outbox row.
    let final_status = apply_order_events(
        tx,
        &order,
        &[OrderEvent::PaymentConfirmed, event],
        now,
        Details {
            note,
            payload: None,
        },
    )?;
    Ok(match final_status {
        OrderStatus::Delivered => NotifyOutcome::Delivered { order_no, late },
        OrderStatus::AwaitingFulfilment => NotifyOutcome::AwaitingFulfilment { order_no },
        _ => NotifyOutcome::Exception { order_no },
    })
}

/// A second, different payment for an order already paid: recorded for the seller.
fn conflict_alert(
    tx: &mut dyn Tx,
    order_id: i64,
    gateway_trade_no: &str,
    now: Millis,
) -> Result<()> {
    outbox::insert(
        tx,
        "payment.conflict",
        order_id,
        serde_json::json!({ "gateway_trade_no": gateway_trade_no }).to_string(),
        now,
    )
}
