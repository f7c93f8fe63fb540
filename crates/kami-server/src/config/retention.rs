//! `[retention]`: how long, and how much of, unverified gateway notifications are kept.

use serde::Deserialize;

use super::{check_range, ConfigError, Origins};

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Days an unverified (rejected) notification is kept, 1..=3650, default 7. Verified ones
    /// are the proof of a payment and are kept forever.
    pub rejected_events_days: u32,
    /// Rejected notifications stored per minute per client IP and channel, 1..=10000, default
    /// 30; beyond it they are only counted (`kami_notifications_total{outcome="rejected_unlogged"}`).
    pub rejected_events_per_minute: u32,
}

impl RetentionConfig {
    /// The retention of rejected notifications in milliseconds.
    pub fn rejected_events_ms(&self) -> i64 {
        i64::from(self.rejected_events_days) * 86_400_000
    }
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            rejected_events_days: 7,
            rejected_events_per_minute: 30,
        }
    }
}

/// Checks the ranges.
pub(super) fn check_retention(r: &RetentionConfig, origins: &Origins) -> Result<(), ConfigError> {
    check_range(
        origins,
        "retention.rejected_events_days",
        r.rejected_events_days,
        (1, 3650),
    )?;
    check_range(
        origins,
        "retention.rejected_events_per_minute",
        r.rejected_events_per_minute,
        (1, 10_000),
    )?;
    Ok(())
}
