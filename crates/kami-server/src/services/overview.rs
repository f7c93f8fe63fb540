//! The console's overview page: today's numbers. "Today" is the UTC day: the configuration has
//! no shop time zone yet.

use kami_store::Overview;

use super::ServiceResult;
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

/// Today's orders, paid orders and revenue, and the orders waiting for the seller.
pub async fn today(state: &AppState) -> ServiceResult<Overview> {
    let now = state.now_ms();
    let start = now - now.rem_euclid(DAY_MS);
    Ok(state.store.overview(start, start + DAY_MS).await?)
}
