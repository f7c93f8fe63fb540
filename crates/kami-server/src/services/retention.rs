//! Retention: unverified notifications older than `retention.rejected_events_days` are
//! deleted, in batches so a large backlog never holds a long write lock. Verified ones are
//! the proof of every payment and are kept forever. Recorded channel calls (dashboard
//! latencies) older than 90 days are deleted the same way.

use kami_store::StoreError;

use super::channel_calls::KEEP_DAYS;
use crate::state::AppState;

/// Rows deleted per transaction.
const BATCH: u32 = 1_000;

/// Delete the expired rejected notifications; returns how many went.
pub async fn purge_rejected_events(state: &AppState) -> Result<u64, StoreError> {
    let before = state.now_ms() - state.config.retention.rejected_events_ms();
    let mut total = 0;
    loop {
        let n = state.store.purge_rejected_events(before, BATCH).await?;
        total += n;
        if n < u64::from(BATCH) {
            break;
        }
        // Let other writers in between batches (SQLite has one writer).
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(
            deleted = total,
            "rejected notifications past retention deleted"
        );
    }
    Ok(total)
}

/// Delete the channel calls recorded more than [`KEEP_DAYS`] days ago; returns how many went.
pub async fn prune_channel_calls(state: &AppState) -> Result<u64, StoreError> {
    let before = state.now_ms() - KEEP_DAYS * 86_400_000;
    let mut total = 0;
    loop {
        let n = state.store.prune_channel_calls(before, BATCH).await?;
        total += n;
        if n < u64::from(BATCH) {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}
