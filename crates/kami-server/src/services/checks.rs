//! "Never lose a payment": a pending payment is queried at its channel on a backoff (first
//! after ~5 s, as Alipay's 当面付 guide advises). After its deadline the trade is closed at the
//! channel first; if the channel says it was paid, the order is delivered instead of expired.
//! Orders whose channel could not be reached to close are expired after a long grace (a late
//! payment is still accepted by the late-payment path).
//!
//! Safe to run in several kami processes sharing one PostgreSQL: checks are claimed with a
//! lease (other processes skip them), and every state change is a compare-and-set.

use std::sync::Arc;

use kami_pay::{TradeRef, TradeState};
use kami_store::{FoundBy, PaymentCheck};

use super::payments::apply_confirmation;
use crate::state::AppState;

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
/// How long a claimed check belongs to one worker.
pub const LEASE_MS: i64 = 180_000;
const EXPIRY_BATCH: u32 = 500;
const CHECK_BATCH: u32 = 64;

/// Expire unpaid orders nobody managed to close (fallback); returns how many expired.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn expire_once(state: &AppState) -> Result<usize, kami_store::StoreError> {
    let mut total = 0;
    loop {
        let expired = state
            .store
            .expire_due(state.now_ms() - EXPIRY_GRACE_MS, EXPIRY_BATCH)
            .await?;
        total += expired.len();
        for no in &expired {
            state.metrics.order_expired();
            state.watch.changed(no.as_str());
        }
        if expired.len() < EXPIRY_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Run every due payment check once; returns how many were handled.
pub async fn check_payments_once(state: &Arc<AppState>) -> Result<usize, kami_store::StoreError> {
    let now = state.now_ms();
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

#[tracing::instrument(level = "debug", skip_all, fields(order = %c.order_no, channel = %c.channel_id))]
async fn check_one(state: &Arc<AppState>, c: PaymentCheck) -> Result<(), kami_store::StoreError> {
    let now = state.now_ms();
    let Some(channel) = state.channels.get(c.channel_id.as_str()) else {
        // The channel was removed from the configuration: nothing can be asked; look again later.
        tracing::warn!(channel = %c.channel_id, order = %c.order_no, "payment's channel is not configured");
        return state
            .store
            .reschedule_check(c.payment_id, Some(now + 10 * 60_000))
            .await;
    };
    let trade = TradeRef::with_ref(c.trade_no.as_str(), c.gateway_ref.clone());
    if now < c.expires_at {
        let queried = channel.query(&trade).await;
        tracing::debug!(order = %c.order_no, channel = %c.channel_id, "query at the channel: {queried:?}");
        return match queried {
            Ok(TradeState::Paid(conf)) => apply_paid(state, &c, FoundBy::Query, conf).await,
            Ok(TradeState::Refunded) => reversal(state, &c).await,
            Ok(_) | Err(_) => {
                if let Err(e) = &queried {
                    tracing::info!(channel = %c.channel_id, order = %c.order_no, "query failed: {e}");
                }
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
    let closed = channel.close(&trade).await;
    tracing::debug!(order = %c.order_no, channel = %c.channel_id, "close at the channel: {closed:?}");
    match closed {
        Ok(TradeState::Paid(conf)) => apply_paid(state, &c, FoundBy::Close, conf).await,
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
        .record_channel_reversal(&c.order_no, state.now_ms())
        .await?
    {
        state.watch.changed(c.order_no.as_str());
    }
    state.store.reschedule_check(c.payment_id, None).await
}

/// This attempt's trade is closed (or given up on): close the attempt; the order expires
/// with its newest attempt, the one the buyer was shown (a failover or a method switch
/// leaves older ones).
async fn expire(state: &AppState, c: &PaymentCheck) -> Result<(), kami_store::StoreError> {
    if state
        .store
        .close_attempt(c.payment_id, state.now_ms())
        .await?
    {
        state.metrics.order_expired();
        state.watch.changed(c.order_no.as_str());
    }
    Ok(())
}

/// A query or close found the trade paid: apply it like a notification.
async fn apply_paid(
    state: &AppState,
    c: &PaymentCheck,
    found_by: FoundBy,
    conf: kami_pay::PaymentConfirmation,
) -> Result<(), kami_store::StoreError> {
    let outcome = apply_confirmation(state, c.channel_id.as_str(), found_by, conf).await?;
    if !outcome.acknowledge() {
        // e.g. the channel reports a different amount: the seller sees the event. Keep asking
        // until the deadline; once the close has found it so, there is nothing more to learn
        // (a pending order expires by the fallback; one paid through another attempt is done).
        let next = (found_by != FoundBy::Close).then(|| state.now_ms() + 60_000);
        state.store.reschedule_check(c.payment_id, next).await?;
    }
    Ok(())
}
