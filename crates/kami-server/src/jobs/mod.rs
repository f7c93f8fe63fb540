//! Background jobs: the loops that call the services on a schedule. Every job is safe to run
//! in several kami processes sharing one PostgreSQL (the services claim their work with
//! leases and change state by compare-and-set).
//!
//! - payment checks, refund retries and the expiry fallback, every 500 ms (expiry every 5 s),
//!   and the channel calls gathered since the last tick written in one transaction;
//! - housekeeping: request limiters forget idle clients every minute, the last 30 days' stats
//!   are read into the stats cache (so the dashboard never waits for them); rejected notifications
//!   past `retention.rejected_events_days` are deleted hourly (and once at start);
//! - buyer mail (when SMTP is set up, in the file or the console): see [`mail`];
//! - stored channels changed by another process: reloaded every 5 s;
//! - alerts: signals applied and deliveries sent every second, kami's own conditions
//!   evaluated every `alerting.evaluate_seconds`: see [`alerts`];
//! - reconciliation: once a day after `[reconciliation] run_at` (Beijing time), yesterday's
//!   bills, claimed through a lease in the database so one process runs it ([`reconciliation`]);
//! - routing: health changes written each payments tick; other processes' changes and the
//!   day's paid totals read every 2 s (`services::routing`);
//! - settings: every few seconds, the saved settings' version is read, and a change another
//!   kami process saved is put in effect here too (see [`settings::reload_if_changed`]).

pub mod alerts;
pub mod mail;
pub mod reconciliation;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::services::{
    channel_admin, channel_calls, checks, refunds, retention, routing, settings, stats,
};
use crate::state::AppState;

const TICK: Duration = Duration::from_millis(500);
const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
const HOUSEKEEPING_TICK: Duration = Duration::from_secs(60);
/// Retention runs every this many housekeeping ticks (hourly).
const RETENTION_EVERY: u32 = 60;
/// How often the saved settings' version is compared (one small read).
const SETTINGS_POLL: Duration = Duration::from_secs(3);

/// The running background tasks.
pub struct Workers(Vec<JoinHandle<()>>);

impl Workers {
    pub fn abort(&self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

pub fn spawn(state: Arc<AppState>, shutdown: watch::Receiver<bool>) -> Workers {
    let tasks = vec![
        spawn_payments(state.clone(), shutdown.clone()),
        spawn_housekeeping(state.clone(), shutdown.clone()),
        spawn_channel_sync(state.clone(), shutdown.clone()),
        spawn_routing_sync(state.clone(), shutdown.clone()),
        spawn_settings(state.clone(), shutdown.clone()),
        alerts::spawn(state.clone(), shutdown.clone()),
        reconciliation::spawn(state.clone(), shutdown.clone()),
        mail::spawn(state, shutdown),
    ];
    Workers(tasks)
}

fn spawn_payments(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {
                    channel_calls::flush(&state).await;
                    routing::flush(&state).await;
                    return;
                }
            }
            channel_calls::flush(&state).await;
            routing::flush(&state).await;
            if let Err(e) = checks::check_payments_once(&state).await {
                tracing::warn!("payment check worker: {e}");
            }
            if let Err(e) = refunds::retry_due(&state).await {
                tracing::warn!("refund worker: {e}");
            }
            if last_expiry.elapsed() >= EXPIRY_INTERVAL {
                last_expiry = tokio::time::Instant::now();
                if let Err(e) = checks::expire_once(&state).await {
                    tracing::warn!("expiry worker: {e}");
                }
            }
        }
    })
}

fn spawn_settings(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SETTINGS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = settings::reload_if_changed(&state).await {
                tracing::warn!("settings reload: {e}");
            }
        }
    })
}

fn spawn_housekeeping(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HOUSEKEEPING_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u32.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            state.limits.sweep(state.now_ms());
            state.notify_limits.sweep();
            // Keep the dashboard's closed days read ahead of the seller (`stats_cache.rs`).
            if let Err(e) = stats::warm(&state).await {
                tracing::warn!("stats warm-up: {e}");
            }
            if n % RETENTION_EVERY == 0 {
                if let Err(e) = retention::purge_rejected_events(&state).await {
                    tracing::warn!("retention job: {e}");
                }
                if let Err(e) = retention::prune_channel_calls(&state).await {
                    tracing::warn!("retention job (channel calls): {e}");
                }
            }
        }
    })
}

/// Stored channels another process added, changed or removed are loaded here within
/// [`channel_admin::SYNC_INTERVAL`] (this process reloads its own changes at once).
fn spawn_channel_sync(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(channel_admin::SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            channel_admin::sync(&state).await;
        }
    })
}

/// Routing state other processes wrote (health, the day's paid totals): read every
/// [`routing::SYNC_INTERVAL`].
fn spawn_routing_sync(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(routing::SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            routing::sync(&state).await;
        }
    })
}
