//! Background work: expiring unpaid orders. Every worker is safe to run in several kami
//! processes sharing one PostgreSQL (claims skip locked rows; transitions are compare-and-set).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{AppState, Metrics};
use crate::time::now_ms;

const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
/// How long after its deadline an unpaid order is expired. The channel is told the deadline
/// itself, so a payment made in its last second still has time to be notified before the
/// reserved keys go back (the next stage closes the trade at the channel first).
pub const EXPIRY_GRACE_MS: i64 = 60_000;
const EXPIRY_BATCH: u32 = 500;

pub fn spawn(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = expire_once(&state).await {
                tracing::warn!("expiry worker: {e}");
            }
        }
    })
}

/// Expire everything due now; returns how many orders expired.
pub async fn expire_once(state: &AppState) -> Result<usize, kami_store::StoreError> {
    let mut total = 0;
    loop {
        let expired = state
            .store
            .expire_due(now_ms() - EXPIRY_GRACE_MS, EXPIRY_BATCH)
            .await?;
        total += expired.len();
        for no in &expired {
            Metrics::inc(&state.metrics.orders_expired);
            state.watch.changed(no);
        }
        if expired.len() < EXPIRY_BATCH as usize {
            return Ok(total);
        }
    }
}
