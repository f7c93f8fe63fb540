//! `[console]`: the seller console's sessions and sign-in lock.

use serde::Deserialize;

use super::{check_range, ConfigError, Origins};

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConsoleConfig {
    /// A session ends after this many minutes without a request, 1..=1440, default 30.
    pub idle_minutes: u32,
    /// A session ends this many hours after sign-in whatever its use, 1..=720, default 12.
    pub absolute_hours: u32,
    /// Wrong passwords or codes in a row that lock an admin user, 1..=100, default 5.
    pub failed_logins_before_lock: u32,
    /// How long such a lock lasts, 1..=1440 minutes, default 15.
    pub lock_minutes: u32,
    /// The dashboard lists products with fewer available keys (or manual stock) than this,
    /// 0..=1000000, default 10 (0: none is ever low).
    pub low_stock_threshold: u32,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            idle_minutes: 30,
            absolute_hours: 12,
            failed_logins_before_lock: 5,
            lock_minutes: 15,
            low_stock_threshold: 10,
        }
    }
}

impl ConsoleConfig {
    pub fn idle_ms(&self) -> i64 {
        i64::from(self.idle_minutes) * 60_000
    }
    pub fn absolute_ms(&self) -> i64 {
        i64::from(self.absolute_hours) * 3_600_000
    }
    pub fn lock_ms(&self) -> i64 {
        i64::from(self.lock_minutes) * 60_000
    }
}

/// Checks the ranges.
pub(super) fn check_console(c: &ConsoleConfig, origins: &Origins) -> Result<(), ConfigError> {
    check_range(origins, "console.idle_minutes", c.idle_minutes, (1, 1440))?;
    check_range(
        origins,
        "console.absolute_hours",
        c.absolute_hours,
        (1, 720),
    )?;
    check_range(
        origins,
        "console.failed_logins_before_lock",
        c.failed_logins_before_lock,
        (1, 100),
    )?;
    check_range(origins, "console.lock_minutes", c.lock_minutes, (1, 1440))?;
    check_range(
        origins,
        "console.low_stock_threshold",
        c.low_stock_threshold,
        (0, 1_000_000),
    )?;
    Ok(())
}
