//! The console's dashboard: a period's numbers ([`super::stats`], in the shop's time zone),
//! the orders waiting for the seller and the products running low.

use kami_core::OrderStatus;
use kami_store::{ActionOrder, StockLevel};

use super::stats::{self, DayRange, Stats};
use super::ServiceResult;
use crate::state::AppState;

/// Orders listed per "needs action" group (the count says how many there are in all).
pub const ACTION_LIST: u32 = 20;

/// The dashboard's period switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Today,
    Days7,
    Days30,
}

impl Period {
    /// `today`, `7d`, `30d`; anything else is today.
    pub fn parse(s: &str) -> Period {
        match s {
            "7d" => Period::Days7,
            "30d" => Period::Days30,
            _ => Period::Today,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Today => "today",
            Period::Days7 => "7d",
            Period::Days30 => "30d",
        }
    }
    pub fn days(self) -> i64 {
        match self {
            Period::Today => 1,
            Period::Days7 => 7,
            Period::Days30 => 30,
        }
    }
}

/// Orders in one status that need the seller: how many, and the oldest few.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub total: i64,
    pub orders: Vec<ActionOrder>,
}

#[derive(Debug, Clone)]
pub struct Dashboard {
    pub period: Period,
    pub stats: Stats,
    pub exceptions: Waiting,
    pub awaiting_fulfilment: Waiting,
    /// Products on sale with less stock than `[console] low_stock_threshold`.
    pub low_stock: Vec<StockLevel>,
    pub low_stock_threshold: u32,
}

/// Whether a product counts as low: fewer than `threshold` keys or manual stock left. A
/// reusable (loop) key never runs out; a manual product without a stock limit neither.
pub fn is_low(p: &StockLevel, threshold: u32) -> bool {
    !p.has_loop_key && p.available.is_some_and(|n| n < i64::from(threshold))
}

pub async fn dashboard(state: &AppState, period: Period) -> ServiceResult<Dashboard> {
    let range = DayRange::last(stats::today(state), period.days());
    let stats = stats::stats(state, range).await?;
    let waiting = |status| async move {
        let (total, orders) = state.store.orders_in_status(status, ACTION_LIST).await?;
        ServiceResult::Ok(Waiting { total, orders })
    };
    let exceptions = waiting(OrderStatus::Exception).await?;
    let awaiting_fulfilment = waiting(OrderStatus::AwaitingFulfilment).await?;
    let threshold = state.config.console.low_stock_threshold;
    let low_stock = state
        .store
        .stock_levels()
        .await?
        .into_iter()
        .filter(|p| is_low(p, threshold))
        .collect();
    Ok(Dashboard {
        period,
        stats,
        exceptions,
        awaiting_fulfilment,
        low_stock,
        low_stock_threshold: threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(delivery: &str, available: Option<i64>, has_loop_key: bool) -> StockLevel {
        StockLevel {
            slug: "s".into(),
            title: "t".into(),
            delivery: delivery.into(),
            available,
            has_loop_key,
        }
    }

    #[test]
    fn low_means_below_the_threshold() {
        assert!(is_low(&level("auto", Some(9), false), 10));
        assert!(is_low(&level("auto", Some(0), false), 10));
        assert!(!is_low(&level("auto", Some(10), false), 10));
        assert!(!is_low(&level("auto", Some(0), true), 10), "loop key");
        assert!(is_low(&level("manual", Some(2), false), 10));
        assert!(!is_low(&level("manual", None, false), 10), "unlimited");
        assert!(!is_low(&level("auto", Some(0), false), 0), "threshold 0");
    }
}
