//! The alert workers (see `services/alerts.rs`): every second, signals are applied to their
//! conditions and due deliveries are sent; every `alerting.evaluate_seconds`, the conditions
//! kami evaluates itself are checked (`services/alert_checks.rs`). All of it is safe in
//! several processes: claims are exclusive and the conditions de-duplicate.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::services::{alert_checks, alerts};
use crate::state::AppState;

/// How often the workers look for signals and due deliveries.
const POLL: Duration = Duration::from_secs(1);

/// Run the alert workers until `shutdown`.
pub fn spawn(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(u64::from(state.config.alerting.evaluate_seconds));
        let mut last_evaluation: Option<tokio::time::Instant> = None;
        loop {
            if last_evaluation.is_none_or(|t| t.elapsed() >= every) {
                last_evaluation = Some(tokio::time::Instant::now());
                if let Err(e) = alert_checks::evaluate_once(&state).await {
                    tracing::warn!("alert evaluation: {e}");
                }
            }
            let signals = match alerts::apply_signals_once(&state).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("alert signals: {e}");
                    0
                }
            };
            let deliveries = match alerts::deliver_due_once(&state).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("alert deliveries: {e}");
                    0
                }
            };
            if signals >= alerts::BATCH as usize || deliveries >= alerts::BATCH as usize {
                continue; // more may be due
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
