//! The one place order and payment statuses are written. Each change runs kami-core's state
//! machine ([`OrderStatus::on`], [`PaymentStatus::on`]) from the status the caller read under
//! the row lock, lands as a single compare-and-set `UPDATE … WHERE id = $1 AND status = $2`
//! that must match exactly one row, sets the columns the event implies (paid and delivery
//! times, the note), and writes the outbox row the change owes — all in the caller's
//! transaction, so a change is either applied once with its side effects or not at all.

use kami_core::{Millis, OrderEvent, OrderNo, OrderStatus, PaymentEvent, PaymentStatus};

use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::FoundBy;
use crate::outbox::{self, ORDER_DELIVERED, ORDER_FULFILLED};
use crate::params;

/// An order row read under its row lock (`FOR UPDATE`; SQLite's single writer is the lock).
#[derive(Debug, Clone)]
pub(crate) struct LockedOrder {
    pub id: i64,
    pub order_no: OrderNo,
    pub status: OrderStatus,
}

impl LockedOrder {
    /// From a row selecting `id`, `order_no` and `status` (after `FOR UPDATE`).
    pub(crate) fn from_row(r: &Row) -> Result<LockedOrder> {
        Ok(LockedOrder {
            id: r.get("id")?,
            order_no: r.get("order_no")?,
            status: r.get("status")?,
        })
    }
}

/// What the caller adds to an order's change.
#[derive(Debug, Default)]
pub(crate) struct Details<'a> {
    /// Replaces the order's note (for the seller); `None` keeps it.
    pub note: Option<&'a str>,
    /// The outbox row's payload; `None`: `{"order_no": …}`.
    pub payload: Option<serde_json::Value>,
}

/// Apply one event to a locked order; returns the new status.
pub(crate) fn apply_order_event(
    tx: &mut dyn Tx,
    order: &LockedOrder,
    event: OrderEvent,
    now: Millis,
    details: Details<'_>,
) -> Result<OrderStatus> {
    apply_order_events(tx, order, &[event], now, details)
}

/// Apply events that happen together (a payment and its delivery) with one update: the state
/// machine runs through each, the row changes once, from the first status to the last.
pub(crate) fn apply_order_events(
    tx: &mut dyn Tx,
    order: &LockedOrder,
    events: &[OrderEvent],
    now: Millis,
    details: Details<'_>,
) -> Result<OrderStatus> {
    let (mut to, mut paid_at, mut delivered_at) = (order.status, None, None);
    for &event in events {
        to = to.on(event)?;
        match event {
            // Money arrived (a reversed payment arrived too, then went back).
            OrderEvent::PaymentConfirmed
            | OrderEvent::ChannelReversed
            | OrderEvent::PaidWrongAmount => paid_at = Some(now),
            OrderEvent::Delivered => delivered_at = Some(now),
            _ => {}
        }
    }
    let Some(&last) = events.last() else {
        return Ok(to);
    };
    let changed = tx.exec(
        "UPDATE orders SET status = $3, paid_at = COALESCE($4, paid_at), \
           delivered_at = COALESCE($5, delivered_at), note = COALESCE($6, note) \
         WHERE id = $1 AND status = $2",
        params![
            order.id,
            order.status,
            to,
            paid_at,
            delivered_at,
            details.note
        ],
    )?;
    if changed != 1 {
        return Err(StoreError::StatusChanged {
            table: "orders",
            id: order.id,
            expected: order.status.as_str(),
        });
    }
    if let Some(kind) = outbox_kind(last, to) {
        let payload = details
            .payload
            .unwrap_or_else(|| serde_json::json!({ "order_no": order.order_no.as_str() }));
        outbox::insert(tx, kind, order.id, payload.to_string(), now)?;
    }
    Ok(to)
}

/// The outbox row an order change owes: the mail with the keys, the seller's alerts. Expiry
/// and a bare payment (delivery is decided in the same transaction) owe none.
fn outbox_kind(last: OrderEvent, to: OrderStatus) -> Option<&'static str> {
    Some(match (last, to) {
        (OrderEvent::ChannelReversed, _) => "payment.reversed",
        (OrderEvent::Refunded { .. }, _) => "order.refunded",
        (_, OrderStatus::Delivered) => ORDER_DELIVERED,
        (_, OrderStatus::Fulfilled) => ORDER_FULFILLED,
        (_, OrderStatus::AwaitingFulfilment) => "order.awaiting_fulfilment",
        (_, OrderStatus::Exception) => "order.exception",
        _ => return None,
    })
}

/// A payment row read under its row lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedPayment {
    pub id: i64,
    pub status: PaymentStatus,
}

impl LockedPayment {
    /// From a row selecting `id` and `status` (after `FOR UPDATE`).
    pub(crate) fn from_row(r: &Row) -> Result<LockedPayment> {
        Ok(LockedPayment {
            id: r.get("id")?,
            status: r.get("status")?,
        })
    }
}

/// What a confirmation records with its status change: the gateway's trade number, when the
/// gateway says the buyer paid, and how kami found the payment (the channel measures).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Confirmation<'a> {
    pub gateway_trade_no: &'a str,
    pub gateway_paid_at: Option<Millis>,
    pub found_by: FoundBy,
}

/// Apply one event to a locked payment; returns the new status. Every event takes the payment
/// out of `created`, so its channel checks stop. A confirmation records the time and what
/// [`Confirmation`] carries, in the same `UPDATE`.
pub(crate) fn apply_payment_event(
    tx: &mut dyn Tx,
    payment: LockedPayment,
    event: PaymentEvent,
    now: Millis,
    confirmation: Option<Confirmation<'_>>,
) -> Result<PaymentStatus> {
    let to = payment.status.on(event)?;
    let paid_at = (event == PaymentEvent::Confirmed).then_some(now);
    let changed = tx.exec(
        "UPDATE payments SET status = $3, gateway_trade_no = COALESCE($4, gateway_trade_no), \
           paid_at = COALESCE($5, paid_at), gateway_paid_at = COALESCE($6, gateway_paid_at), \
           found_by = COALESCE($7, found_by), next_check_at = NULL, lease_until = NULL \
         WHERE id = $1 AND status = $2",
        params![
            payment.id,
            payment.status,
            to,
            confirmation.map(|c| c.gateway_trade_no),
            paid_at,
            confirmation.and_then(|c| c.gateway_paid_at),
            confirmation.map(|c| c.found_by.as_str())
        ],
    )?;
    if changed != 1 {
        return Err(StoreError::StatusChanged {
            table: "payments",
            id: payment.id,
            expected: payment.status.as_str(),
        });
    }
    Ok(to)
}

/// Close every still-open payment attempt of a locked order (it expired); returns how many.
pub(crate) fn close_open_payments(tx: &mut dyn Tx, order_id: i64) -> Result<u64> {
    let from = PaymentStatus::Created;
    let to = from.on(PaymentEvent::Closed)?;
    tx.exec(
        "UPDATE payments SET status = $3, next_check_at = NULL, lease_until = NULL \
         WHERE order_id = $1 AND status = $2",
        params![order_id, from, to],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Delivery, NewOrder, NewProduct};
    use crate::Store;
    use kami_core::{ChannelId, Currency, Email, Method, Money, PriceTiers, Quantity, Slug};

    /// A fresh SQLite store holding one pending order for a manual product.
    async fn store_with_pending_order() -> (tempfile::TempDir, Store, OrderNo) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let ring = crate::sealed::Keyring::generate().unwrap();
        let store = Store::connect_with_keyring(&url, 2, ring).await.unwrap();
        let price = Money::new(500, Currency::parse("CNY").unwrap()).unwrap();
        let product = NewProduct {
            prices: Default::default(),
            slug: Slug::parse("gift").unwrap(),
            title: "Gift".into(),
            description: String::new(),
            price,
            delivery: Delivery::Manual,
            manual_stock: None,
            category: String::new(),
            sort_order: 0,
            tiers: PriceTiers::parse("").unwrap(),
            min_quantity: 1,
            max_quantity: 10,
        };
        store.create_product(product, 1).await.unwrap();
        let order_no = OrderNo::generate("20260101000000");
        store
            .create_order(NewOrder {
                fx: Default::default(),
                order_no: order_no.clone(),
                product: Slug::parse("gift").unwrap(),
                quantity: Quantity::new(1).unwrap(),
                email: Email::parse("a@example.com").unwrap(),
                method: Method::Sandbox,
                channel_id: ChannelId::parse("sandbox").unwrap(),
                access_token_hash: "h".into(),
                query_password_hash: None,
                locale: "en".into(),
                now: 1,
                expires_at: 1_000,
                first_check_at: 100,
                client_ip: None,
                pending_caps: Default::default(),
                fields: Default::default(),
                coupon: None,
                stored_channel: false,
                route: Vec::new(),
            })
            .await
            .unwrap();
        (dir, store, order_no)
    }

    fn lock(tx: &mut dyn Tx, no: &str) -> Result<LockedOrder> {
        let r = tx.query_one(
            "SELECT id, order_no, status FROM orders WHERE order_no = $1",
            params![no],
        )?;
        LockedOrder::from_row(&r)
    }

    #[tokio::test]
    async fn applies_once_with_its_columns_and_outbox_row() {
        let (_dir, store, no) = store_with_pending_order().await;
        let n = no.as_str().to_owned();
        let (to, outbox) = store
            .write(move |tx| {
                let order = lock(tx, &n)?;
                let note = Some("gone back");
                let to = apply_order_event(
                    tx,
                    &order,
                    OrderEvent::ChannelReversed,
                    42,
                    Details {
                        note,
                        payload: None,
                    },
                )?;
                let kinds = tx.query(
                    "SELECT kind, payload FROM outbox WHERE order_id = $1",
                    params![order.id],
                )?;
                let outbox: Vec<(String, String)> = kinds
                    .iter()
                    .map(|r| Ok((r.get("kind")?, r.get("payload")?)))
                    .collect::<Result<_>>()?;
                Ok((to, outbox))
            })
            .await
            .unwrap();
        assert_eq!(to, OrderStatus::Exception);
        assert_eq!(
            outbox,
            vec![(
                "payment.reversed".to_owned(),
                serde_json::json!({ "order_no": no.as_str() }).to_string()
            )]
        );
        let order = store.order(&no).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Exception);
        assert_eq!(order.paid_at, Some(42));
        assert_eq!(order.delivered_at, None);
        assert_eq!(order.note.as_deref(), Some("gone back"));
    }

    #[tokio::test]
    async fn a_stale_status_or_an_illegal_event_changes_nothing() {
        let (_dir, store, no) = store_with_pending_order().await;
        let n = no.as_str().to_owned();
        // Read as expired, but the row is pending: the compare-and-set matches no row.
        let stale = store
            .write(move |tx| {
                let mut order = lock(tx, &n)?;
                order.status = OrderStatus::Expired;
                apply_order_event(
                    tx,
                    &order,
                    OrderEvent::PaymentConfirmed,
                    5,
                    Details::default(),
                )
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                stale,
                StoreError::StatusChanged {
                    table: "orders",
                    expected: "expired",
                    ..
                }
            ),
            "{stale:?}"
        );
        let n = no.as_str().to_owned();
        let illegal = store
            .write(move |tx| {
                let order = lock(tx, &n)?;
                apply_order_event(tx, &order, OrderEvent::Fulfilled, 5, Details::default())
            })
            .await
            .unwrap_err();
        assert!(
            matches!(illegal, StoreError::IllegalTransition(_)),
            "{illegal:?}"
        );
        let order = store.order(&no).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.paid_at, None);
    }

    #[test]
    fn outbox_rows_follow_the_change() {
        use OrderEvent as E;
        use OrderStatus as S;
        assert_eq!(
            outbox_kind(E::Delivered, S::Delivered),
            Some(ORDER_DELIVERED)
        );
        assert_eq!(
            outbox_kind(E::NeedsManualFulfilment, S::AwaitingFulfilment),
            Some("order.awaiting_fulfilment")
        );
        assert_eq!(
            outbox_kind(E::Undeliverable, S::Exception),
            Some("order.exception")
        );
        assert_eq!(
            outbox_kind(E::ChannelReversed, S::Exception),
            Some("payment.reversed")
        );
        assert_eq!(
            outbox_kind(E::Refunded { full: true }, S::Refunded),
            Some("order.refunded")
        );
        assert_eq!(
            outbox_kind(E::Fulfilled, S::Fulfilled),
            Some(ORDER_FULFILLED),
            "the buyer is mailed what the seller gave"
        );
        assert_eq!(outbox_kind(E::Expire, S::Expired), None);
        assert_eq!(outbox_kind(E::PaymentConfirmed, S::Paid), None);
    }
}
