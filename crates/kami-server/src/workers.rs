//! Background work. Every worker is safe to run in several kami processes sharing one
//! PostgreSQL: claims skip rows other processes hold (and lease them), and every state change
//! is a compare-and-set, so no work is lost or done twice.
//!
//! - **Payment checks** ("never lose a payment"): a pending payment is queried at its channel
//!   on a backoff (first after ~5 s, as Alipay's 当面付 guide advises). After its deadline the
//!   trade is closed at the channel first; if the channel says it was paid, the order is
//!   delivered instead of expired.
//! - **Refunds** still pending at their channel are asked again with the same refund number.
//! - **Expiry fallback**: orders whose channel could not be reached to close are expired
//!   after a long grace (a late payment is still accepted by the late-payment path).
//! - **Buyer mail** (only with `[smtp]`): delivered orders' keys by email, from the outbox
//!   (see [`crate::mail`]).

use std::sync::Arc;
use std::time::Duration;

use kami_pay::{PayError, PaymentChannel, RefundRequest, TradeState};
use kami_store::{PaymentCheck, RawEvent, RefundCall, RefundResult, Verdict};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{AppState, Metrics};
use crate::error::ApiError;
use crate::time::now_ms;

/// First channel query after the order is created.
pub const FIRST_CHECK_MS: i64 = 5_000;
/// Later queries, by number of checks done; the last repeats.
const CHECK_BACKOFF_MS: [i64; 6] = [5_000, 10_000, 15_000, 30_000, 60_000, 120_000];
/// While closing at the channel fails (unreachable, or the protocol cannot close), keep trying
/// this long past the deadline before expiring anyway.
pub const CLOSE_GRACE_MS: i64 = 10 * 60_000;
/// A reachable gateway that says "unpaid" but cannot close the trade (Epay has no close):
/// expire this long after the deadline; a later payment still lands on the late-payment path.
pub const UNCLOSABLE_GRACE_MS: i64 = 30_000;
/// Expiry fallback for orders nobody could close: well after the close grace.
pub const EXPIRY_GRACE_MS: i64 = CLOSE_GRACE_MS + 5 * 60_000;
/// How long a claimed check or refund belongs to one worker.
const LEASE_MS: i64 = 180_000;
/// A refund the channel has not settled yet is asked about again after this.
pub const REFUND_RETRY_MS: i64 = 30_000;
/// How long an admin refund call holds its refund against the retry worker.
pub const REFUND_LEASE_MS: i64 = 180_000;
/// A refund still unsettled after this long (gateway errors throughout) is given up as failed.
const REFUND_GIVE_UP_MS: i64 = 24 * 3_600_000;

const TICK: Duration = Duration::from_millis(500);
const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
const EXPIRY_BATCH: u32 = 500;
const CHECK_BATCH: u32 = 64;

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
    let mut tasks = vec![spawn_payments(state.clone(), shutdown.clone())];
    if let Some(mailer) = state.mailer.clone() {
        tasks.push(crate::mail::spawn(state, mailer, shutdown));
    }
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
                _ = shutdown.changed() => return,
            }
            if let Err(e) = check_payments_once(&state).await {
                tracing::warn!("payment check worker: {e}");
            }
            if let Err(e) = retry_refunds_once(&state).await {
                tracing::warn!("refund worker: {e}");
            }
            if last_expiry.elapsed() >= EXPIRY_INTERVAL {
                last_expiry = tokio::time::Instant::now();
                if let Err(e) = expire_once(&state).await {
                    tracing::warn!("expiry worker: {e}");
                }
            }
        }
    })
}

/// Expire unpaid orders nobody managed to close (fallback); returns how many expired.
pub async fn expire_once(state: &AppState) -> Result<usize, kami_store::StoreError> {
    let mut total = 0;
    loop {
        let expired = state
            .store
            .expire_due(now_ms() - EXPIRY_GRACE_MS, EXPIRY_BATCH)
            .await?;
        total += expired.len();
        for no in &expired {
            Metrics::inc(&state.metrics.orders_expired);
            state.watch.changed(no);
        }
        if expired.len() < EXPIRY_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Run every due payment check once; returns how many were handled.
pub async fn check_payments_once(state: &Arc<AppState>) -> Result<usize, kami_store::StoreError> {
    let now = now_ms();
    let due = state
        .store
        .claim_payment_checks(now, now + LEASE_MS, CHECK_BATCH)
        .await?;
    let n = due.len();
    let tasks: Vec<_> = due
        .into_iter()
        .map(|c| {
            let state = state.clone();
            tokio::spawn(async move {
                let order = c.order_no.clone();
                if let Err(e) = check_one(&state, c).await {
                    tracing::warn!(order = %order, "payment check: {e}");
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(n)
}

fn next_check(attempts: i64, now: i64, deadline: i64) -> i64 {
    let step = CHECK_BACKOFF_MS[(attempts.max(0) as usize).min(CHECK_BACKOFF_MS.len() - 1)];
    // Never sleep past the deadline: that is when the trade must be closed.
    (now + step).min(deadline.max(now + 1_000))
}

async fn check_one(state: &Arc<AppState>, c: PaymentCheck) -> Result<(), kami_store::StoreError> {
    let now = now_ms();
    let Some(channel) = state.channels.get(&c.channel_id).cloned() else {
        // The channel was removed from the configuration: nothing can be asked; look again later.
        tracing::warn!(channel = %c.channel_id, order = %c.order_no, "payment's channel is not configured");
        return state
            .store
            .reschedule_check(c.payment_id, Some(now + 10 * 60_000))
            .await;
    };
    if now < c.expires_at {
        let queried = channel.query(&c.trade_no).await;
        tracing::debug!(order = %c.order_no, channel = %c.channel_id, "query at the channel: {queried:?}");
        return match queried {
            Ok(TradeState::Paid(conf)) => apply_paid(state, &c, "QUERY", conf).await,
            Ok(TradeState::Refunded) => reversal(state, &c).await,
            Ok(_) => {
                state
                    .store
                    .reschedule_check(
                        c.payment_id,
                        Some(next_check(c.attempts, now, c.expires_at)),
                    )
                    .await
            }
            Err(e) => {
                tracing::info!(channel = %c.channel_id, order = %c.order_no, "query failed: {e}");
                state
                    .store
                    .reschedule_check(
                        c.payment_id,
                        Some(next_check(c.attempts, now, c.expires_at)),
                    )
                    .await
            }
        };
    }
    // Deadline passed: close at the channel before the stock goes back.
    let closed = channel.close(&c.trade_no).await;
    tracing::debug!(order = %c.order_no, channel = %c.channel_id, "close at the channel: {closed:?}");
    match closed {
        Ok(TradeState::Paid(conf)) => apply_paid(state, &c, "CLOSE", conf).await,
        Ok(TradeState::Closed | TradeState::NotFound) => expire(state, &c).await,
        // The money came and went back (e.g. Alipay refunds a payment that raced the cancel):
        // never expire-then-deliver it later; the seller sees an exception.
        Ok(TradeState::Refunded) => reversal(state, &c).await,
        // Reachable and unpaid, but the protocol cannot close (Epay): a short grace, then expire.
        Ok(TradeState::Waiting) => {
            if now >= c.expires_at + UNCLOSABLE_GRACE_MS {
                expire(state, &c).await
            } else {
                state
                    .store
                    .reschedule_check(c.payment_id, Some(now + 5_000))
                    .await
            }
        }
        outcome => {
            if let Err(e) = &outcome {
                tracing::info!(channel = %c.channel_id, order = %c.order_no, "close failed: {e}");
            }
            if now >= c.expires_at + CLOSE_GRACE_MS {
                tracing::warn!(order = %c.order_no, "could not close the trade at its channel; expiring anyway");
                expire(state, &c).await
            } else {
                state
                    .store
                    .reschedule_check(c.payment_id, Some(now + 30_000))
                    .await
            }
        }
    }
}

async fn reversal(state: &AppState, c: &PaymentCheck) -> Result<(), kami_store::StoreError> {
    tracing::warn!(order = %c.order_no, channel = %c.channel_id, "channel reports the trade refunded before delivery");
    if state
        .store
        .record_channel_reversal(&c.order_no, now_ms())
        .await?
    {
        state.watch.changed(&c.order_no);
    }
    state.store.reschedule_check(c.payment_id, None).await
}

async fn expire(state: &AppState, c: &PaymentCheck) -> Result<(), kami_store::StoreError> {
    let no = kami_core::OrderNo::parse(&c.order_no)?;
    if state.store.cancel_unpaid(&no).await? {
        Metrics::inc(&state.metrics.orders_expired);
        state.watch.changed(&c.order_no);
    } else {
        state.store.reschedule_check(c.payment_id, None).await?;
    }
    Ok(())
}

/// A query or close found the trade paid: apply it exactly like a notification (logged as one).
async fn apply_paid(
    state: &AppState,
    c: &PaymentCheck,
    how: &str,
    conf: kami_pay::PaymentConfirmation,
) -> Result<(), kami_store::StoreError> {
    let event = RawEvent {
        channel_id: c.channel_id.clone(),
        http_method: how.to_owned(),
        query: String::new(),
        headers: "{}".into(),
        body: serde_json::json!({
            "trade_no": conf.trade_no,
            "gateway_trade_no": conf.gateway_trade_no,
            "amount": conf.amount.minor(),
            "currency": conf.amount.currency().code(),
        })
        .to_string()
        .into_bytes(),
        received_at: now_ms(),
    };
    let verdict = Verdict::Paid {
        trade_no: conf.trade_no,
        gateway_trade_no: conf.gateway_trade_no,
        amount: conf.amount,
    };
    let outcome = state.store.record_notification(event, verdict).await?;
    state.metrics.notification(outcome.code());
    if let Some(no) = outcome.changed_order() {
        state.watch.changed(no);
    }
    if matches!(outcome, kami_store::NotifyOutcome::Delivered { .. }) {
        state.wake_mail();
    }
    if !outcome.acknowledge() {
        // e.g. the channel reports a different amount: keep asking, the seller sees the event.
        state
            .store
            .reschedule_check(c.payment_id, Some(now_ms() + 60_000))
            .await?;
    }
    Ok(())
}

/// Call the channel for a pending refund and record the answer.
pub async fn settle_refund(state: &AppState, call: RefundCall) -> Result<RefundCall, ApiError> {
    let channel: Arc<dyn PaymentChannel> = state
        .channels
        .get(&call.channel_id)
        .cloned()
        .ok_or_else(|| {
            ApiError::internal(format!("channel {} is not configured", call.channel_id))
        })?;
    let req = RefundRequest {
        trade_no: call.trade_no.clone(),
        refund_no: call.refund.refund_no.clone(),
        amount: call.refund.amount,
        total: call.total,
        reason: call.reason.clone(),
    };
    let now = now_ms();
    let idempotent = channel.refund_is_idempotent();
    let given_up = now - call.refund.created_at > REFUND_GIVE_UP_MS;
    let retry = |why: String| {
        if given_up {
            RefundResult::Failed {
                error: format!("not settled after 24 hours: {why}"),
            }
        } else {
            RefundResult::Pending {
                retry_at: now + REFUND_RETRY_MS,
            }
        }
    };
    let result = match channel.refund(&req).await {
        Ok(o) if o.settled => RefundResult::Succeeded,
        // Accepted, not settled yet: ask again later with the same number — where that is safe.
        Ok(_) if idempotent => retry("accepted, not settled".into()),
        Ok(_) => RefundResult::Unknown {
            error: "accepted by the gateway but not confirmed settled".into(),
        },
        Err(PayError::Unsupported(what)) => RefundResult::Failed {
            error: format!("not supported by the channel: {what}"),
        },
        // A gateway error may be temporary (system busy, rate limited) and the money may still
        // move: retry with the same number where the gateway de-duplicates; where it does not,
        // its explicit refusal is final.
        Err(PayError::Gateway { code, message }) if idempotent => {
            tracing::warn!(refund = %call.refund.refund_no, "refund refused ({code}: {message}); will retry");
            retry(format!("{code}: {message}"))
        }
        Err(PayError::Gateway { code, message }) => RefundResult::Failed {
            error: format!("{code}: {message}"),
        },
        // Unknown outcome (timeout, bad response): ask again with the same refund number —
        // unless the gateway does not de-duplicate refunds, where a repeat could pay twice.
        Err(e) if idempotent => {
            tracing::warn!(refund = %call.refund.refund_no, "refund call failed, will retry: {e}");
            retry(e.to_string())
        }
        Err(e) => {
            tracing::error!(refund = %call.refund.refund_no, "refund outcome unknown; not retried: {e}");
            RefundResult::Unknown {
                error: e.to_string(),
            }
        }
    };
    Ok(state
        .store
        .finish_refund(&call.refund.refund_no, result, now_ms())
        .await?)
}

async fn retry_refunds_once(state: &Arc<AppState>) -> Result<usize, kami_store::StoreError> {
    let now = now_ms();
    let due = state
        .store
        .claim_pending_refunds(now, now + LEASE_MS, 16)
        .await?;
    let n = due.len();
    for call in due {
        let no = call.refund.order_no.clone();
        match settle_refund(state, call).await {
            Ok(_) => state.watch.changed(&no),
            Err(e) => tracing::warn!(order = %no, "refund retry: {}", e.message),
        }
    }
    Ok(n)
}
