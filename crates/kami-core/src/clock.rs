//! Time as an input. The domain never reads the clock on its own: functions take `now` as a
//! value, and the layers that do read it (channels, simulators, services, jobs) hold a
//! [`Clock`] so tests can fix or move time instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Millis;

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> Millis;

    /// Whole seconds since the Unix epoch (UTC), as protocol timestamps want them.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// A shared clock, as components hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        // Before 1970 only on a badly broken machine; 0 keeps every comparison defined.
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
            Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
        })
    }
}

/// The wall clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Wall-clock milliseconds, for edges that have no clock injected (CLI, migrations).
pub fn now_ms() -> Millis {
    SystemClock.now_ms()
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: Millis) -> ManualClock {
        ManualClock(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: Millis) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, by_ms: Millis) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_700_000_000_123);
        assert_eq!(c.now_ms(), 1_700_000_000_123);
        assert_eq!(c.now_secs(), 1_700_000_000);
        c.advance(877);
        assert_eq!(c.now_secs(), 1_700_000_001);
        c.set(-1);
        assert_eq!(
            c.now_secs(),
            -1,
            "seconds round down, also before the epoch"
        );
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now_ms() > 1_704_067_200_000);
        assert!(now_ms() >= SystemClock.now_ms() - 60_000);
    }
}
