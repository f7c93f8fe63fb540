//! The order and payment state machines. Every status change in kami goes through
//! [`OrderStatus::on`] or [`PaymentStatus::on`]; the store applies the result with a
//! compare-and-set on the old status, so a transition decided here is either applied once
//! or not at all.

use std::fmt;

/// DESIGN 4.3 order statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Created, stock reserved, waiting for a verified payment.
    Pending,
    /// Payment verified; delivery not yet decided (only ever seen inside a transaction).
    Paid,
    /// Auto delivery done: the keys are the buyer's.
    Delivered,
    /// Manual product paid; the seller must fulfil it.
    AwaitingFulfilment,
    /// Manual product fulfilled by the seller.
    Fulfilled,
    /// Not paid in time; reserved stock went back.
    Expired,
    /// Paid but not deliverable (stock gone after a late payment): needs the seller.
    Exception,
    Refunded,
    PartiallyRefunded,
}

/// Something that happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// A verified payment for the full amount (notification or authenticated query).
    PaymentConfirmed,
    /// Keys were allocated to the paid order.
    Delivered,
    /// The product is delivered by hand.
    NeedsManualFulfilment,
    /// The paid order cannot be delivered (no stock left).
    Undeliverable,
    /// The seller fulfilled a manual order.
    Fulfilled,
    /// The payment window passed (or the channel refused to create a payment).
    Expire,
    /// A refund succeeded; `full` when the whole paid amount is back with the buyer.
    Refunded { full: bool },
    /// The channel reports the trade refunded although kami never delivered it: money
    /// arrived and went back (a payment that raced its cancel, a refund in the gateway's
    /// console). The order counts as paid but cannot be delivered: the seller looks at it.
    ChannelReversed,
    /// The channel's bill (or an authenticated query) proves a payment for this trade of a
    /// different amount or currency than the order's. Money arrived, but never the order's:
    /// the seller decides (refund, or deliver by hand); kami never fixes an amount itself.
    PaidWrongAmount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order in status {from} cannot take event {event:?}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Delivered,
        OrderStatus::AwaitingFulfilment,
        OrderStatus::Fulfilled,
        OrderStatus::Expired,
        OrderStatus::Exception,
        OrderStatus::Refunded,
        OrderStatus::PartiallyRefunded,
    ];

    /// The one transition table.
    pub fn on(self, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
        use OrderEvent as E;
        use OrderStatus as S;
        let next = match (self, event) {
            // A late payment for an expired order is accepted, never dropped (issue: late payment).
            (S::Pending | S::Expired, E::PaymentConfirmed) => S::Paid,
            (S::Paid, E::Delivered) => S::Delivered,
            (S::Paid, E::NeedsManualFulfilment) => S::AwaitingFulfilment,
            (S::Paid, E::Undeliverable) => S::Exception,
            // Only an order kami never took money for: a paid one keeps its status (an alert).
            (S::Pending | S::Expired, E::ChannelReversed) => S::Exception,
            // Likewise a wrong sum: paid, not deliverable, the seller's to look at.
            (S::Pending | S::Expired, E::PaidWrongAmount) => S::Exception,
            // The seller can still deliver an exception order once stock is back (补单).
            (S::Exception, E::Delivered) => S::Delivered,
            (S::AwaitingFulfilment, E::Fulfilled) => S::Fulfilled,
            (S::Pending, E::Expire) => S::Expired,
            (
                S::Paid
                | S::Delivered
                | S::AwaitingFulfilment
                | S::Fulfilled
                | S::Exception
                | S::PartiallyRefunded,
                E::Refunded { full },
            ) => {
                if full {
                    S::Refunded
                } else {
                    S::PartiallyRefunded
                }
            }
            (from, event) => return Err(TransitionError { from, event }),
        };
        Ok(next)
    }

    /// True once money has been verified as received for this order.
    pub fn is_paid(self) -> bool {
        !matches!(self, OrderStatus::Pending | OrderStatus::Expired)
    }

    /// True when the buyer holds the goods (keys may be shown).
    pub fn has_goods(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Fulfilled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Delivered => "delivered",
            OrderStatus::AwaitingFulfilment => "awaiting_fulfilment",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Expired => "expired",
            OrderStatus::Exception => "exception",
            OrderStatus::Refunded => "refunded",
            OrderStatus::PartiallyRefunded => "partially_refunded",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt to collect an order's money through one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Sent to the channel; waiting for the buyer.
    Created,
    /// Verified as paid.
    Paid,
    /// Closed without payment (order expired). A later verified payment still counts.
    Closed,
    Refunded,
    PartiallyRefunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    Confirmed,
    Closed,
    Refunded {
        full: bool,
    },
    /// The channel took the money and gave it back before kami saw it paid. The attempt is
    /// settled as partially refunded (how much went back is the gateway's to say), so no
    /// later notification can deliver it.
    ChannelReversed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payment in status {from:?} cannot take event {event:?}")]
pub struct PaymentTransitionError {
    pub from: PaymentStatus,
    pub event: PaymentEvent,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Created,
        PaymentStatus::Paid,
        PaymentStatus::Closed,
        PaymentStatus::Refunded,
        PaymentStatus::PartiallyRefunded,
    ];

    pub fn on(self, event: PaymentEvent) -> Result<PaymentStatus, PaymentTransitionError> {
        use PaymentEvent as E;
        use PaymentStatus as S;
        Ok(match (self, event) {
            (S::Created | S::Closed, E::Confirmed) => S::Paid,
            (S::Created, E::Closed) => S::Closed,
            (S::Paid | S::PartiallyRefunded, E::Refunded { full: true }) => S::Refunded,
            (S::Paid | S::PartiallyRefunded, E::Refunded { full: false }) => S::PartiallyRefunded,
            (S::Created | S::Closed, E::ChannelReversed) => S::PartiallyRefunded,
            (from, event) => return Err(PaymentTransitionError { from, event }),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Closed => "closed",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_paid(self) -> bool {
        matches!(
            self,
            PaymentStatus::Paid | PaymentStatus::Refunded | PaymentStatus::PartiallyRefunded
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_event() -> impl Strategy<Value = OrderEvent> {
        prop_oneof![
            Just(OrderEvent::PaymentConfirmed),
            Just(OrderEvent::Delivered),
            Just(OrderEvent::NeedsManualFulfilment),
            Just(OrderEvent::Undeliverable),
            Just(OrderEvent::Fulfilled),
            Just(OrderEvent::Expire),
            any::<bool>().prop_map(|full| OrderEvent::Refunded { full }),
            Just(OrderEvent::ChannelReversed),
            Just(OrderEvent::PaidWrongAmount),
        ]
    }

    #[test]
    fn a_channel_reversal_makes_an_unpaid_order_an_exception() {
        for from in [OrderStatus::Pending, OrderStatus::Expired] {
            let to = from.on(OrderEvent::ChannelReversed).unwrap();
            assert_eq!(to, OrderStatus::Exception);
            // The same end as the history the store used to fake for it.
            let faked = from
                .on(OrderEvent::PaymentConfirmed)
                .and_then(|s| s.on(OrderEvent::Undeliverable))
                .unwrap();
            assert_eq!(to, faked);
            assert!(to.is_paid() && !to.has_goods());
        }
        // A paid order is never reversed by the state machine (the store only alerts).
        for from in OrderStatus::ALL.into_iter().filter(|s| s.is_paid()) {
            let err = from.on(OrderEvent::ChannelReversed).unwrap_err();
            assert_eq!(err.from, from);
        }
        for from in [PaymentStatus::Created, PaymentStatus::Closed] {
            let to = from.on(PaymentEvent::ChannelReversed).unwrap();
            let faked = from
                .on(PaymentEvent::Confirmed)
                .and_then(|s| s.on(PaymentEvent::Refunded { full: false }))
                .unwrap();
            assert_eq!(to, faked);
            assert_eq!(to, PaymentStatus::PartiallyRefunded);
            // Settled: a later verified payment cannot confirm it again.
            assert!(to.on(PaymentEvent::Confirmed).is_err());
        }
        for from in [
            PaymentStatus::Paid,
            PaymentStatus::Refunded,
            PaymentStatus::PartiallyRefunded,
        ] {
            assert!(from.on(PaymentEvent::ChannelReversed).is_err());
        }
    }

    #[test]
    fn a_wrong_amount_makes_an_unpaid_order_an_exception_only() {
        for from in [OrderStatus::Pending, OrderStatus::Expired] {
            assert_eq!(
                from.on(OrderEvent::PaidWrongAmount).unwrap(),
                OrderStatus::Exception
            );
        }
        // A paid order keeps its status: the difference is reported, never applied.
        for from in OrderStatus::ALL.into_iter().filter(|s| s.is_paid()) {
            assert!(from.on(OrderEvent::PaidWrongAmount).is_err());
        }
    }

    #[test]
    fn status_strings_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("PAID"), None);
    }

    #[test]
    fn the_happy_paths() {
        let s = OrderStatus::Pending;
        let s = s.on(OrderEvent::PaymentConfirmed).unwrap();
        assert_eq!(s.on(OrderEvent::Delivered).unwrap(), OrderStatus::Delivered);
        assert_eq!(
            s.on(OrderEvent::NeedsManualFulfilment)
                .unwrap()
                .on(OrderEvent::Fulfilled)
                .unwrap(),
            OrderStatus::Fulfilled
        );
        // Late payment: expired orders still accept a verified payment.
        assert_eq!(
            OrderStatus::Expired
                .on(OrderEvent::PaymentConfirmed)
                .unwrap(),
            OrderStatus::Paid
        );
        // A paid order never expires, a delivered order is never paid twice.
        assert!(OrderStatus::Delivered.on(OrderEvent::Expire).is_err());
        assert!(OrderStatus::Delivered
            .on(OrderEvent::PaymentConfirmed)
            .is_err());
        assert!(OrderStatus::Expired.on(OrderEvent::Expire).is_err());
    }

    proptest! {
        /// Whatever sequence of events arrives, applying only the allowed ones keeps the
        /// order's history sane: money arrives (a confirmed payment or a reversed one) at most
        /// once, goods appear only after it, a paid order never becomes unpaid, and refunds
        /// are final.
        #[test]
        fn random_event_sequences_keep_invariants(events in proptest::collection::vec(any_event(), 0..40)) {
            let mut s = OrderStatus::Pending;
            let mut confirmations = 0;
            let mut deliveries = 0;
            for e in events {
                let before = s;
                match s.on(e) {
                    Ok(next) => {
                        if matches!(e, OrderEvent::PaymentConfirmed | OrderEvent::ChannelReversed | OrderEvent::PaidWrongAmount) {
                            confirmations += 1;
                            prop_assert!(!before.is_paid() && next.is_paid());
                        }
                        if e == OrderEvent::Delivered { deliveries += 1; }
                        if before.is_paid() { prop_assert!(next.is_paid(), "{before} -> {next}"); }
                        if next.has_goods() { prop_assert!(confirmations == 1); }
                        prop_assert_ne!(before, OrderStatus::Refunded);
                        s = next;
                    }
                    Err(err) => prop_assert_eq!(err.from, before),
                }
            }
            prop_assert!(confirmations <= 1);
            prop_assert!(deliveries <= 1);
        }

        #[test]
        fn payment_is_confirmed_at_most_once(events in proptest::collection::vec(0u8..5, 0..30)) {
            let mut s = PaymentStatus::Created;
            let mut confirmed = 0;
            for e in events {
                let ev = match e {
                    0 => PaymentEvent::Confirmed,
                    1 => PaymentEvent::Closed,
                    2 => PaymentEvent::Refunded { full: true },
                    3 => PaymentEvent::Refunded { full: false },
                    _ => PaymentEvent::ChannelReversed,
                };
                if let Ok(next) = s.on(ev) {
                    if matches!(ev, PaymentEvent::Confirmed | PaymentEvent::ChannelReversed) { confirmed += 1; }
                    if s.is_paid() { prop_assert!(next.is_paid()); }
                    s = next;
                }
            }
            prop_assert!(confirmed <= 1);
        }
    }
}
