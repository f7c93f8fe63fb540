//! `[orders]`: how long a buyer has to pay.

use serde::Deserialize;

use super::{check_range, ConfigError, Origins};

const DEFAULT_EXPIRE_MINUTES: u32 = 15;
const EXPIRE_MINUTES_RANGE: (u32, u32) = (1, 1440);

/// `[orders]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OrdersConfig {
    /// Minutes before an unpaid order expires, 1..=1440, default 15.
    pub expire_minutes: u32,
    /// Overrides `expire_minutes` with a finer deadline, 5..=86400 (tests and demos).
    pub expire_seconds: Option<u32>,
}

impl OrdersConfig {
    /// The payment window in milliseconds.
    pub fn expire_ms(&self) -> i64 {
        match self.expire_seconds {
            Some(s) => i64::from(s) * 1000,
            None => i64::from(self.expire_minutes) * 60_000,
        }
    }
}

impl Default for OrdersConfig {
    fn default() -> OrdersConfig {
        OrdersConfig {
            expire_minutes: DEFAULT_EXPIRE_MINUTES,
            expire_seconds: None,
        }
    }
}

/// Checks the ranges.
pub(super) fn check_orders(orders: &OrdersConfig, origins: &Origins) -> Result<(), ConfigError> {
    check_range(
        origins,
        "orders.expire_minutes",
        orders.expire_minutes,
        EXPIRE_MINUTES_RANGE,
    )?;
    if let Some(v) = orders.expire_seconds {
        check_range(origins, "orders.expire_seconds", v, (5, 86_400))?;
    }
    Ok(())
}
