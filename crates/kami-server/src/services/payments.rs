//! Applying what a channel says about a payment — a verified notification, or the answer to
//! an active query or close — through one path: the store records the event and applies the
//! verdict in one commit, then the post-commit steps run (metrics, waking long-polling
//! readers, waking the mail worker). The gateway's success reply may only follow an outcome
//! that [`NotifyOutcome::acknowledge`]s.

use std::net::IpAddr;

use kami_pay::PaymentConfirmation;
use kami_store::{NotifyOutcome, RawEvent, StoreError, Verdict};

use crate::state::AppState;

/// A notification from a gateway (`client`: who sent it). A verified one goes through
/// [`apply_verdict`]; a rejected one is stored (truncated, by the store) only within
/// `retention.rejected_events_per_minute` per client and channel, and beyond it only counted,
/// so a flood of forgeries neither fills the disk nor the log.
pub async fn record_notification(
    state: &AppState,
    client: Option<IpAddr>,
    event: RawEvent,
    verdict: Verdict,
) -> Result<NotifyOutcome, StoreError> {
    if let Verdict::Rejected { reason } = &verdict {
        if !state
            .notify_limits
            .allow(client, &event.channel_id, state.now_ms())
        {
            state.metrics.notification("rejected_unlogged");
            return Ok(NotifyOutcome::Rejected);
        }
        tracing::warn!(channel = %event.channel_id, client = ?client, "notification rejected: {reason}");
    }
    apply_verdict(state, event, verdict).await
}

/// Record `event`, apply `verdict` in the same commit, and run the post-commit steps.
#[tracing::instrument(level = "debug", skip_all, fields(channel = %event.channel_id, how = %event.http_method))]
pub async fn apply_verdict(
    state: &AppState,
    event: RawEvent,
    verdict: Verdict,
) -> Result<NotifyOutcome, StoreError> {
    // A payment counts toward its channel's daily limit at once (the database's total is
    // read again every few seconds).
    let paid = match &verdict {
        Verdict::Paid { amount, .. } => Some((event.channel_id.clone(), amount.minor())),
        _ => None,
    };
    let outcome = match state.store.record_notification(event, verdict).await {
        Ok(o) => o,
        Err(e) => {
            state.metrics.notification("store_error");
            return Err(e);
        }
    };
    state.metrics.notification(outcome.code());
    if let Some((channel, minor)) = paid.filter(|_| {
        matches!(
            outcome,
            NotifyOutcome::Delivered { .. }
                | NotifyOutcome::AwaitingFulfilment { .. }
                | NotifyOutcome::Exception { .. }
                | NotifyOutcome::ConflictingPayment { .. }
        )
    }) {
        state.channels.add_paid_today(&channel, minor);
    }
    if let Some(no) = outcome.changed_order() {
        state.watch.changed(no.as_str());
    }
    if matches!(outcome, NotifyOutcome::Delivered { .. }) {
        state.wake_mail();
    }
    if !outcome.acknowledge() && !matches!(outcome, NotifyOutcome::Rejected) {
        tracing::warn!(outcome = outcome.code(), "payment signal not accepted");
    }
    Ok(outcome)
}

/// A channel query or close (`how`: `QUERY` / `CLOSE`) found the trade paid: apply it exactly
/// like a notification, logged as one.
pub async fn apply_confirmation(
    state: &AppState,
    channel_id: &str,
    how: &str,
    conf: PaymentConfirmation,
) -> Result<NotifyOutcome, StoreError> {
    let event = RawEvent {
        channel_id: channel_id.to_owned(),
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
        received_at: state.now_ms(),
    };
    let verdict = Verdict::Paid {
        trade_no: conf.trade_no,
        gateway_trade_no: conf.gateway_trade_no,
        amount: conf.amount,
    };
    apply_verdict(state, event, verdict).await
}
