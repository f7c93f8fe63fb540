//! The daily reconciliation: every minute, once it is `[reconciliation] run_at` in Beijing
//! time, yesterday's bills are reconciled (`services::reconciliation::daily_tick`). Every
//! process runs this loop; the lease row in the database lets exactly one of them do the day.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::services::reconciliation;
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(60);

pub fn spawn(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    // Names this process in the lease row (who holds the day's run).
    let holder = format!("pid{}-{:08x}", std::process::id(), rand::random::<u32>());
    tokio::spawn(async move {
        if !state.config.reconciliation.enabled {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            match reconciliation::daily_tick(&state, &holder).await {
                Ok(reports) => {
                    for r in &reports {
                        tracing::info!("daily reconciliation: {}", r.summary());
                    }
                }
                Err(e) => tracing::warn!("daily reconciliation: {e}"),
            }
        }
    })
}
