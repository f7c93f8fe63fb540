//! Each payment channel call's outcome and duration, for the dashboard's success rates and
//! p95 latencies (`channel_calls`, pruned after [`KEEP_DAYS`] by the hourly retention job).

use kami_pay::PayError;
use kami_store::{CallOutcome, ChannelCall};

use crate::state::AppState;

/// Calls older than this many days are deleted.
pub const KEEP_DAYS: i64 = 90;

/// Record a create call's outcome and duration for the dashboard: kept in memory
/// (`call_log.rs`) and written by [`flush`] with the others of the last half second.
pub fn record_create<T>(
    state: &AppState,
    channel: &str,
    result: &Result<T, PayError>,
    started: std::time::Instant,
) {
    let outcome = match result {
        Ok(_) => CallOutcome::Ok,
        Err(PayError::Transport(m)) if m.contains("timed out") || m.contains("timeout") => {
            CallOutcome::Timeout
        }
        Err(_) => CallOutcome::Error,
    };
    let call = ChannelCall {
        channel: channel.to_owned(),
        method: "create",
        outcome,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    state.call_log.push(call, state.now_ms());
}

/// Write the calls gathered so far in one transaction (the payments job calls this every
/// tick and at shutdown; the stats read calls it first, so they count every call made).
pub async fn flush(state: &AppState) {
    let calls = state.call_log.take();
    if calls.is_empty() {
        return;
    }
    if let Err(e) = state.store.record_channel_calls(calls.clone()).await {
        tracing::warn!(calls = calls.len(), "recording channel calls: {e}");
        state.call_log.restore(calls);
    }
}
