//! Channel calls waiting to be written (`services/channel_calls.rs`): the checkout records a
//! call here in memory and answers the buyer; a job writes what gathered in one transaction
//! every half second, so a create call costs no commit of its own. Bounded: if the database
//! cannot take them, the newest calls beyond [`MAX_PENDING`] are dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kami_core::Millis;
use kami_store::ChannelCall;

pub const MAX_PENDING: usize = 10_000;

#[derive(Default)]
pub struct CallLog {
    pending: Mutex<Vec<(ChannelCall, Millis)>>,
    dropped: AtomicU64,
}

impl CallLog {
    pub fn push(&self, call: ChannelCall, at: Millis) {
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.push((call, at));
    }

    /// Everything gathered so far, oldest first.
    pub fn take(&self) -> Vec<(ChannelCall, Millis)> {
        std::mem::take(&mut *self.lock())
    }

    /// Put back calls that could not be written (ahead of newer ones, within the bound).
    pub fn restore(&self, mut calls: Vec<(ChannelCall, Millis)>) {
        let mut pending = self.lock();
        let room = MAX_PENDING.saturating_sub(pending.len());
        if calls.len() > room {
            let lost = calls.len() - room;
            self.dropped.fetch_add(lost as u64, Ordering::Relaxed);
            calls.truncate(room);
        }
        calls.append(&mut pending);
        *pending = calls;
    }

    /// Calls dropped since start because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ChannelCall, Millis)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kami_store::CallOutcome;

    fn call(ms: i64) -> ChannelCall {
        ChannelCall {
            channel: "c".into(),
            method: "create",
            pay_method: None,
            outcome: CallOutcome::Ok,
            duration_ms: ms,
        }
    }

    #[test]
    fn bounded_and_restored_in_order() {
        let log = CallLog::default();
        for i in 0..MAX_PENDING as i64 + 5 {
            log.push(call(i), i);
        }
        assert_eq!(log.dropped(), 5);
        let taken = log.take();
        assert_eq!(taken.len(), MAX_PENDING);
        assert!(log.take().is_empty());
        log.push(call(-1), -1);
        log.restore(taken);
        let again = log.take();
        assert_eq!(again.len(), MAX_PENDING, "one newer call did not fit");
        assert_eq!(again[0].1, 0, "restored calls come first");
        assert_eq!(log.dropped(), 6);
    }
}
