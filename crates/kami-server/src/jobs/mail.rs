//! The buyer-mail worker (only with `[smtp]`): every second, or at once when a delivery
//! wakes it, it sends the due delivery mails through [`crate::services::mail`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::mailer::Mailer;
use crate::services::mail::{send_due_once, BATCH};
use crate::state::AppState;

/// How often the worker looks for due mail when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);

/// Run the mail worker until `shutdown`: every second, or at once when woken.
pub fn spawn(
    state: Arc<AppState>,
    mailer: Arc<Mailer>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let handled = match send_due_once(&state, &mailer).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("mail worker: {e}");
                    0
                }
            };
            if handled >= BATCH as usize {
                continue; // more may be due
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = mailer.woken() => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
