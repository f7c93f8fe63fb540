//! Recording payment notifications: the raw event, and — for a verified payment — the order's
//! move to paid and its delivery, all in one transaction. Locks are always taken order first,
//! then payment, then cards (the same order as expiry), so concurrent paths cannot deadlock.

use kami_core::{CoinAmount, Method, Millis, Money, OrderEvent, OrderStatus, PaymentEvent};

use crate::alert_signal::{self, AlertEvent, AlertSignal};
use crate::cards;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::{
    ConfirmedPayment, Delivery, FoundBy, NotifyOutcome, RawEvent, Recorded, Verdict,
};
use crate::outbox;
use crate::params;
use crate::transitions::{
    apply_order_events, apply_payment_event, Confirmation, Details, LockedOrder, LockedPayment,
};

/// Bytes of a rejected (unauthenticated) notification kept, query + headers + body together:
/// enough to debug a misconfigured gateway, not enough for a flood of forgeries to fill the
/// disk. Verified events are kept whole.
pub const REJECTED_EVENT_KEEP: usize = 4096;

/// A rejected event cut to [`REJECTED_EVENT_KEEP`] bytes: the query first, then the headers,
/// then the body, each cut on a character boundary. Returns the cut event and how many bytes
/// the whole had (when it was cut).
fn truncated(ev: &RawEvent) -> (String, String, Vec<u8>, Option<usize>) {
    let total = ev.query.len() + ev.headers.len() + ev.body.len();
    let mut budget = REJECTED_EVENT_KEEP;
    let mut cut = |s: &str| {
        let mut end = s.len().min(budget);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        budget -= end;
        s[..end].to_owned()
    };
    let query = cut(&ev.query);
    let headers = cut(&ev.headers);
    let body = ev.body[..ev.body.len().min(budget)].to_vec();
    (
        query,
        headers,
        body,
        (total > REJECTED_EVENT_KEEP).then_some(total),
    )
}

/// Delete up to `limit` unverified events received before `before`; returns how many.
/// Verified events (the proof of every payment) are never deleted.
pub(crate) fn purge_rejected(tx: &mut dyn Tx, before: Millis, limit: u32) -> Result<u64> {
    tx.exec(
        "DELETE FROM payment_events WHERE id IN (SELECT id FROM payment_events \
         WHERE verified = 0 AND received_at < $1 ORDER BY received_at LIMIT $2)",
        params![before, i64::from(limit)],
    )
}

pub(crate) fn record_notification(
    tx: &mut dyn Tx,
    ev: &RawEvent,
    verdict: &Verdict,
    found_by: FoundBy,
) -> Result<Recorded> {
    let mut confirmed = None;
    let (outcome, trade_no, detail) = match verdict {
        Verdict::Rejected { reason } => (NotifyOutcome::Rejected, None, Some(reason.clone())),
        Verdict::NotPaid { trade_no, status } => (
            NotifyOutcome::NotPaid,
            Some(trade_no.clone()),
            Some(format!("status {status}")),
        ),
        Verdict::Unconfirmed {
            trade_no,
            gateway_trade_no,
            amount,
            reason,
        } => {
            unconfirmed_alert(tx, ev, trade_no, gateway_trade_no, *amount, reason)?;
            (
                NotifyOutcome::Unconfirmed,
                Some(trade_no.clone()),
                Some(format!(
                    "gateway trade {gateway_trade_no}; not confirmed by query: {reason}"
                )),
            )
        }
        Verdict::Paid {
            trade_no,
            gateway_trade_no,
            amount,
            gateway_paid_at,
            coin_amount,
        } => {
            let (outcome, paid) = apply_payment(
                tx,
                &ev.channel_id,
                Signal {
                    trade_no,
                    gateway_trade_no,
                    paid: *amount,
                    gateway_paid_at: *gateway_paid_at,
                    coin_amount: coin_amount.as_ref(),
                    found_by,
                },
                ev.received_at,
            )?;
            confirmed = paid;
            let detail = match &outcome {
                NotifyOutcome::AmountMismatch { expected, got } => {
                    Some(format!("expected {expected}, got {got}"))
                }
                _ => Some(format!("gateway trade {gateway_trade_no}")),
            };
            (outcome, Some(trade_no.clone()), detail)
        }
    };
    let (query, headers, body, detail) = match verdict {
        Verdict::Rejected { .. } => {
            let (q, h, b, cut_from) = truncated(ev);
            let detail = match cut_from {
                Some(n) => detail.map(|d| format!("{d} (kept {REJECTED_EVENT_KEEP} of {n} bytes)")),
                None => detail,
            };
            (q, h, b, detail)
        }
        _ => (
            ev.query.clone(),
            ev.headers.clone(),
            ev.body.clone(),
            detail,
        ),
    };
    tx.exec(
        "INSERT INTO payment_events (channel_id, received_at, http_method, query, headers, body, verified, \
           trade_no, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![
            ev.channel_id.as_str(),
            ev.received_at,
            ev.http_method.as_str(),
            query,
            headers,
            body,
            !matches!(verdict, Verdict::Rejected { .. }),
            trade_no,
            outcome.code(),
            detail
        ],
    )?;
    Ok(Recorded { outcome, confirmed })
}

/// A verified "paid" as the store applies it.
struct Signal<'a> {
    trade_no: &'a str,
    gateway_trade_no: &'a str,
    paid: Money,
    gateway_paid_at: Option<Millis>,
    coin_amount: Option<&'a CoinAmount>,
    found_by: FoundBy,
}

/// The order of `(channel, trade_no)`, if kami knows the trade.
fn order_of_trade(tx: &mut dyn Tx, channel_id: &str, trade_no: &str) -> Result<Option<String>> {
    tx.query_opt(
        "SELECT o.order_no FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE p.channel_id = $1 AND p.trade_no = $2",
        params![channel_id, trade_no],
    )?
    .map(|r| r.get::<String>("order_no"))
    .transpose()
}

/// The alert's subject for an unconfirmed success: one condition per trade.
fn unconfirmed_subject(channel_id: &str, trade_no: &str) -> String {
    format!("{channel_id}/{trade_no}")
}

/// A signed success the channel's query does not confirm: the seller is alerted (firing; a
/// later confirmed payment of the trade resolves it).
fn unconfirmed_alert(
    tx: &mut dyn Tx,
    ev: &RawEvent,
    trade_no: &str,
    gateway_trade_no: &str,
    amount: Money,
    reason: &str,
) -> Result<()> {
    let order_no = order_of_trade(tx, &ev.channel_id, trade_no)?;
    let signal = AlertSignal {
        event: AlertEvent::UnconfirmedPayment,
        subject: unconfirmed_subject(&ev.channel_id, trade_no),
        firing: true,
        details: serde_json::json!({
            "channel": ev.channel_id,
            "trade_no": trade_no,
            "order_no": order_no,
            "gateway_trade_no": gateway_trade_no,
            "amount": amount.to_major_string(),
            "currency": amount.currency().code(),
            "query_said": reason,
        }),
    };
    alert_signal::emit(tx, &signal, ev.received_at)
}

/// A trade once held as unconfirmed (a notification of it stored with that outcome) is now
/// confirmed and applied: resolve its alert.
fn resolve_unconfirmed(
    tx: &mut dyn Tx,
    channel_id: &str,
    trade_no: &str,
    now: Millis,
) -> Result<()> {
    let signal = AlertSignal {
        event: AlertEvent::UnconfirmedPayment,
        subject: unconfirmed_subject(channel_id, trade_no),
        firing: false,
        details: serde_json::json!({ "channel": channel_id, "trade_no": trade_no }),
    };
    alert_signal::emit(tx, &signal, now)
}

/// A notification's payment by (channel, trade number), with whether a notification of the
/// trade was held as unconfirmed (its alert is resolved when the payment applies): one round
/// trip, not two, on every payment. The trade's few events are found by its number;
/// `outcome || ''` keeps a plan made on empty tables off payment_events_outcome, which would
/// read every unconfirmed event of the shop (`tests/engine/cached_plans.rs`).
pub const PAYMENT_LOOKUP: &str =
    "SELECT id, order_id, EXISTS (SELECT 1 FROM payment_events e WHERE e.channel_id = $1 \
     AND e.trade_no = $2 AND e.outcome || '' = 'unconfirmed') AS held \
     FROM payments WHERE channel_id = $1 AND trade_no = $2";

fn apply_payment(
    tx: &mut dyn Tx,
    channel_id: &str,
    signal: Signal<'_>,
    now: Millis,
) -> Result<(NotifyOutcome, Option<ConfirmedPayment>)> {
    let Signal {
        trade_no,
        gateway_trade_no,
        paid,
        gateway_paid_at,
        coin_amount,
        found_by,
    } = signal;
    let Some(p) = tx.query_opt(PAYMENT_LOOKUP, params![channel_id, trade_no])? else {
        return Ok((NotifyOutcome::UnknownOrder, None));
    };
    let (payment_id, order_id): (i64, i64) = (p.get("id")?, p.get("order_id")?);
    let held: bool = p.get("held")?;

    let o = tx.query_one(
        "SELECT o.id, o.order_no, o.status, o.product_id, o.quantity, o.loop_card_id, o.method, \
         p.delivery FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id = $1 \
         FOR UPDATE OF o",
        params![order_id],
    )?;
    let order = LockedOrder::from_row(&o)?;
    let order_no = order.order_no.clone();
    let (product_id, quantity): (i64, i64) = (o.get("product_id")?, o.get("quantity")?);
    let loop_card: Option<i64> = o.get("loop_card_id")?;
    let delivery: Delivery = o.get("delivery")?;
    let method: Method = o.get("method")?;

    // `reused_by`: another of our payments the gateway gave the same trade number (read here
    // to save a round trip; it is used only if this payment applies).
    let p = tx.query_one(
        "SELECT id, status, amount, currency, gateway_trade_no, coin_amount, \
         (SELECT o.order_no FROM payments r JOIN orders o ON o.id = r.order_id \
          WHERE r.channel_id = $2 AND r.gateway_trade_no = $3 AND r.id <> $1 LIMIT 1) AS reused_by \
         FROM payments WHERE id = $1 FOR UPDATE",
        params![payment_id, channel_id, gateway_trade_no],
    )?;
    let payment = LockedPayment::from_row(&p)?;
    let (expected_minor, expected_currency): (i64, String) = (p.get("amount")?, p.get("currency")?);

    // Binding is by (channel, trade_no); the money must match to the minor unit and currency.
    if paid.minor() != expected_minor || paid.currency().code() != expected_currency {
        return Ok((
            NotifyOutcome::AmountMismatch {
                expected: format!("{expected_minor} {expected_currency}"),
                got: format!("{} {}", paid.minor(), paid.currency()),
            },
            None,
        ));
    }
    // A crypto gateway's coin amount must be the one its create asked for: the fiat amount
    // it echoes says nothing about what reached the wallet (an underpayment).
    let expected_coin: Option<String> = p.get("coin_amount")?;
    if let (Some(expected), Some(got)) = (expected_coin, coin_amount) {
        if expected.parse::<CoinAmount>().ok().as_ref() != Some(got) {
            return Ok((
                NotifyOutcome::AmountMismatch {
                    expected,
                    got: got.to_string(),
                },
                None,
            ));
        }
    }

    if payment.status.is_paid() {
        return Ok((
            if p.get::<Option<String>>("gateway_trade_no")?.as_deref() == Some(gateway_trade_no) {
                NotifyOutcome::Duplicate { order_no }
            } else {
                conflict_alert(
                    tx,
                    (order_id, order_no.as_str()),
                    channel_id,
                    gateway_trade_no,
                    now,
                )?;
                NotifyOutcome::ConflictingPayment { order_no }
            },
            None,
        ));
    }
    // A gateway trade number already seen on another of our payments: the gateway (or its
    // configuration) is reusing numbers. This payment is still bound by our trade number and
    // its amount, so it counts; the seller gets an alert to look at both.
    if let Some(other) = p.get::<Option<String>>("reused_by")? {
        let payload = serde_json::json!({
            "gateway_trade_no": gateway_trade_no,
            "other_order_no": other,
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
        Some(Confirmation {
            gateway_trade_no,
            gateway_paid_at,
            found_by,
        }),
    )?;
    if held {
        resolve_unconfirmed(tx, channel_id, trade_no, now)?;
    }

    if order.status.on(OrderEvent::PaymentConfirmed).is_err() {
        // The order was already paid through another payment attempt: money arrived twice.
        conflict_alert(
            tx,
            (order_id, order_no.as_str()),
            channel_id,
            gateway_trade_no,
            now,
        )?;
        return Ok((NotifyOutcome::ConflictingPayment { order_no }, None));
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
    let outcome = match final_status {
        OrderStatus::Delivered => NotifyOutcome::Delivered { order_no, late },
        OrderStatus::AwaitingFulfilment => NotifyOutcome::AwaitingFulfilment { order_no },
        _ => NotifyOutcome::Exception { order_no },
    };
    let confirmed = ConfirmedPayment {
        method,
        gateway_paid_at,
        confirmed_at: now,
    };
    Ok((outcome, Some(confirmed)))
}

/// A second, different payment for an order already paid: recorded with the order, and the
/// seller alerted (one of the two is the buyer's to get back).
fn conflict_alert(
    tx: &mut dyn Tx,
    order: (i64, &str),
    channel_id: &str,
    gateway_trade_no: &str,
    now: Millis,
) -> Result<()> {
    let (order_id, order_no) = order;
    outbox::insert(
        tx,
        "payment.conflict",
        order_id,
        serde_json::json!({ "gateway_trade_no": gateway_trade_no }).to_string(),
        now,
    )?;
    let signal = AlertSignal {
        event: AlertEvent::DuplicatePayment,
        subject: order_no.to_owned(),
        firing: true,
        details: serde_json::json!({
            "order_no": order_no,
            "channel": channel_id,
            "gateway_trade_no": gateway_trade_no,
        }),
    };
    alert_signal::emit(tx, &signal, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(query: &str, headers: &str, body: &[u8]) -> RawEvent {
        RawEvent {
            channel_id: "c".into(),
            http_method: "POST".into(),
            query: query.into(),
            headers: headers.into(),
            body: body.to_vec(),
            received_at: 0,
        }
    }

    #[test]
    fn a_rejected_event_keeps_at_most_4_kib_in_all() {
        let small = event("a=1", "{}", b"x");
        assert_eq!(
            truncated(&small),
            ("a=1".into(), "{}".into(), b"x".to_vec(), None)
        );

        // A huge query leaves nothing for headers and body.
        let q = "q".repeat(10_000);
        let (query, headers, body, cut) = truncated(&event(&q, "{\"h\":1}", &[7; 100]));
        assert_eq!(
            (query.len(), headers.len(), body.len()),
            (REJECTED_EVENT_KEEP, 0, 0)
        );
        assert_eq!(cut, Some(10_107));

        // Budget flows on: query, then headers, then body; multi-byte text is cut on a
        // character boundary, never inside one.
        let h = "字".repeat(1_000); // 3,000 bytes
        let (query, headers, body, cut) = truncated(&event(&"q".repeat(1_000), &h, &[1; 500]));
        assert_eq!(query.len(), 1_000);
        assert_eq!(headers.len(), 3_000);
        assert_eq!(body.len(), REJECTED_EVENT_KEEP - 4_000);
        assert_eq!(cut, Some(4_500));
        let (_, headers, body, _) = truncated(&event(&"q".repeat(2_000), &h, b""));
        assert_eq!(headers.len(), 2_094); // 698 whole characters: 2,096 would split one
        assert!(headers.chars().all(|c| c == '字'));
        assert!(body.is_empty());
    }
}
