//! How many rejected (unverifiable) notifications are stored per client and channel
//! (`retention.rejected_events_per_minute`). A flood of forgeries is then only counted: the
//! log keeps enough to debug a misconfigured gateway without a forger filling the disk.
//! Verified notifications are never limited here.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::limits::client_key;

/// Above this many remembered (client, channel) pairs, idle ones are forgotten at most once
/// a minute; the retention job also sweeps them every run.
const SWEEP_ABOVE: usize = 10_000;

pub struct RejectedEventLimits {
    stored: DefaultKeyedRateLimiter<(IpAddr, String)>,
    last_sweep: AtomicI64,
}

impl RejectedEventLimits {
    pub fn new(per_minute: u32) -> RejectedEventLimits {
        RejectedEventLimits {
            stored: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            last_sweep: AtomicI64::new(0),
        }
    }

    /// May a rejected notification from this client to this channel be stored now?
    pub fn allow(&self, ip: Option<IpAddr>, channel: &str, now_ms: i64) -> bool {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if self.stored.len() > SWEEP_ABOVE
            && now_ms - last > 60_000
            && self
                .last_sweep
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep();
        }
        self.stored
            .check_key(&(client_key(ip), channel.to_owned()))
            .is_ok()
    }

    /// Forget the pairs whose limit has fully recovered.
    pub fn sweep(&self) {
        self.stored.retain_recent();
        self.stored.shrink_to_fit();
    }

    /// Pairs remembered now (for tests and the sweep).
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_client_and_channel_apart() {
        let limits = RejectedEventLimits::new(3);
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        let allowed = (0..10).filter(|_| limits.allow(a, "ali", 0)).count();
        assert_eq!(allowed, 3);
        assert!(
            limits.allow(a, "wx", 0),
            "another channel has its own limit"
        );
        assert!(
            limits.allow(b, "ali", 0),
            "another client has its own limit"
        );
        assert_eq!(limits.len(), 3);
    }
}
