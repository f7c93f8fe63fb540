//! The refund state machine. A refund is recorded `pending` before the channel is called
//! (its amount is then reserved), and settles exactly once: `succeeded` or `failed`. The
//! store applies a settlement with a compare-and-set on `pending`, so a repeated or racing
//! answer from the channel changes nothing.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    /// Recorded; the channel has not (yet) confirmed it. Its amount is reserved.
    Pending,
    /// The money is back with the buyer.
    Succeeded,
    /// The channel refused; the amount is free to refund again.
    Failed,
}

/// The channel's final answer for a pending refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundEvent {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refund in status {from} cannot take event {event:?}")]
pub struct RefundTransitionError {
    pub from: RefundStatus,
    pub event: RefundEvent,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 3] = [
        RefundStatus::Pending,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
    ];

    /// Only a pending refund settles; a settled one is final.
    pub fn on(self, event: RefundEvent) -> Result<RefundStatus, RefundTransitionError> {
        match (self, event) {
            (RefundStatus::Pending, RefundEvent::Succeeded) => Ok(RefundStatus::Succeeded),
            (RefundStatus::Pending, RefundEvent::Failed) => Ok(RefundStatus::Failed),
            (from, event) => Err(RefundTransitionError { from, event }),
        }
    }

    /// True when the refund's amount counts against what is still refundable.
    pub fn holds_amount(self) -> bool {
        matches!(self, RefundStatus::Pending | RefundStatus::Succeeded)
    }

    pub fn is_settled(self) -> bool {
        self != RefundStatus::Pending
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RefundStatus> {
        RefundStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_round_trip() {
        for s in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(RefundStatus::parse("Pending"), None);
    }

    #[test]
    fn a_pending_refund_settles_once() {
        let p = RefundStatus::Pending;
        assert_eq!(p.on(RefundEvent::Succeeded), Ok(RefundStatus::Succeeded));
        assert_eq!(p.on(RefundEvent::Failed), Ok(RefundStatus::Failed));
        for settled in [RefundStatus::Succeeded, RefundStatus::Failed] {
            assert!(settled.is_settled());
            for e in [RefundEvent::Succeeded, RefundEvent::Failed] {
                assert_eq!(
                    settled.on(e),
                    Err(RefundTransitionError {
                        from: settled,
                        event: e
                    })
                );
            }
        }
        assert!(p.holds_amount() && RefundStatus::Succeeded.holds_amount());
        assert!(!RefundStatus::Failed.holds_amount());
    }

    proptest! {
        /// Whatever answers arrive, a refund settles at most once and never leaves its end.
        #[test]
        fn settles_at_most_once(answers in proptest::collection::vec(any::<bool>(), 0..20)) {
            let mut s = RefundStatus::Pending;
            let mut settled = 0;
            for ok in answers {
                let e = if ok { RefundEvent::Succeeded } else { RefundEvent::Failed };
                if let Ok(next) = s.on(e) {
                    settled += 1;
                    prop_assert!(!s.is_settled() && next.is_settled());
                    s = next;
                }
            }
            prop_assert!(settled <= 1);
        }
    }
}
