//! Routing state shared by the kami processes on one database (`channels.rs` keeps it in
//! memory): the health changes this process decided are written in one transaction each
//! tick — with the `ChannelDown` alert signal (firing, resolved) when a channel goes down or
//! comes back — and every [`SYNC_INTERVAL`] the changes other processes wrote are adopted and
//! the day's paid total per channel (for `daily_limit`) is read again. No checkout waits on
//! any of it.

use std::collections::HashMap;
use std::time::Duration;

use super::stats;
use crate::state::AppState;

/// How often the shared state is read.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Write the health changes gathered since the last call (put back if the write fails).
pub async fn flush(state: &AppState) {
    let changes = state.channels.take_health_changes();
    if changes.is_empty() {
        return;
    }
    match state
        .store
        .record_channel_health(changes.clone(), state.now_ms())
        .await
    {
        Ok(applied) => {
            for row in applied {
                tracing::debug!(subject = %row.subject(), state = %row.state, "channel health recorded");
            }
        }
        Err(e) => {
            tracing::warn!(changes = changes.len(), "recording channel health: {e}");
            state.channels.restore_health_changes(changes);
        }
    }
}

/// Write this process's changes, then take other processes' and today's paid totals.
pub async fn sync(state: &AppState) {
    flush(state).await;
    match state.store.channel_health().await {
        Ok(rows) => state.channels.adopt_shared(&rows, state.now_ms()),
        Err(e) => tracing::warn!("reading channel health: {e}"),
    }
    let since = match stats::day_start(stats::today(state), &state.config.shop.time_zone()) {
        Ok(ms) => ms,
        Err(e) => {
            tracing::warn!("the day's start: {e}");
            return;
        }
    };
    match state.store.paid_totals_since(since).await {
        Ok(totals) => state
            .channels
            .set_paid_today(totals.into_iter().collect::<HashMap<_, _>>()),
        Err(e) => tracing::warn!("reading the day's paid totals: {e}"),
    }
}
