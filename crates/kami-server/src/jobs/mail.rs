//! The buyer-mail worker: every second, or at once when a delivery wakes it, it sends the due
//! delivery mails through [`crate::services::mail`], with the SMTP transport of the settings
//! in effect at that moment. While no SMTP is set up (neither in the file nor in the console)
//! it claims nothing, so turning mail on in the console starts it without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::services::mail::{send_due_once, BATCH};
use crate::state::AppState;

/// How often the worker looks for due mail when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);

/// Run the mail worker until `shutdown`: every second, or at once when woken.
pub fn spawn(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let handled = match state.mailer() {
                Some(mailer) => match send_due_once(&state, &mailer).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("mail worker: {e}");
                        0
                    }
                },
                None => 0,
            };
            if handled >= BATCH as usize {
                continue; // more may be due
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = state.mail_wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
