//! Each payment channel call's outcome and duration, for the dashboard's success rates and
//! p95 latencies (`channel_calls`, pruned after [`KEEP_DAYS`] by the hourly retention job).

use kami_pay::PayError;
use kami_store::{CallOutcome, ChannelCall};

use crate::state::AppState;

/// Calls older than this many days are deleted.
pub const KEEP_DAYS: i64 = 90;

/// Record a create call's outcome and duration for the dashboard (one INSERT after the call,
/// in no transaction with the order; a failure to record is logged, never the buyer's).
pub async fn record_create<T>(
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
    if let Err(e) = state.store.record_channel_call(call, state.now_ms()).await {
        tracing::warn!(channel, "recording the channel call: {e}");
    }
}
