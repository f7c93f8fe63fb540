//! Each payment channel call's outcome and duration, for the dashboard's success rates and
//! p95 latencies (`channel_calls`, pruned after [`KEEP_DAYS`] by the hourly retention job).

use kami_core::Method;
use kami_pay::PayError;
use kami_store::{CallOutcome, ChannelCall};

use crate::state::AppState;

/// Calls older than this many days are deleted.
pub const KEEP_DAYS: i64 = 90;

/// How a create call ended, as the dashboard, the channel page and `/metrics` count it.
pub fn call_outcome<T>(result: &Result<T, PayError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Ok,
        Err(PayError::Transport(m)) if m.contains("timed out") || m.contains("timeout") => {
            CallOutcome::Timeout
        }
        Err(PayError::Transport(_)) => CallOutcome::TransportError,
        Err(PayError::Gateway { .. }) => CallOutcome::GatewayError,
        Err(PayError::Unsupported(_)) => CallOutcome::Unsupported,
        Err(PayError::Config(_)) => CallOutcome::ConfigError,
        Err(
            PayError::Malformed(_)
            | PayError::BadResponseSignature
            | PayError::BadSignature
            | PayError::WrongMerchant
            | PayError::Stale,
        ) => CallOutcome::BadResponse,
    }
}

/// Record a create call's outcome and duration for the dashboard and the channel page: kept
/// in memory (`call_log.rs`) and written by [`flush`] with the others of the last half
/// second; counted on `/metrics` at once.
pub fn record_create<T>(
    state: &AppState,
    channel: &str,
    method: Method,
    result: &Result<T, PayError>,
    started: std::time::Instant,
) {
    let outcome = call_outcome(result);
    let elapsed = started.elapsed();
    state
        .metrics
        .create_call(channel, method, outcome, elapsed.as_secs_f64());
    let call = ChannelCall {
        channel: channel.to_owned(),
        method: "create",
        pay_method: Some(method),
        outcome,
        duration_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
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
