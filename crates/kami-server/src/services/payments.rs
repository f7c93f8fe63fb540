//! Applying what a channel says about a payment — a verified notification, or the answer to
//! an active query or close, the seller's check, a bill — through one path: the store records
//! the event and applies the verdict in one commit, then the post-commit steps run (metrics,
//! waking long-polling readers, waking the mail worker). The gateway's success reply may only
//! follow an outcome that [`NotifyOutcome::acknowledge`]s.
//!
//! A channel with `confirm_by_query` ([`PaymentChannel::confirm_by_query`]: Epay by default)
//! has a verified "paid" notification confirmed by its own query first: only the same trade,
//! paid, for the same amount is applied; anything else (not paid, unknown, another amount, the
//! query failing) is recorded as `unconfirmed`, alerted, and answered with a failure so the
//! gateway resends. The order stays pending and its checks keep asking, so a payment the
//! gateway was only slow to record is still delivered, once.

use std::net::IpAddr;
use std::time::Duration;

use kami_pay::{PaymentChannel, PaymentConfirmation, TradeRef, TradeState};
use kami_store::{FoundBy, NotifyOutcome, RawEvent, Recorded, StoreError, Verdict};

use crate::state::AppState;

/// How long the confirming query may take: the gateway is waiting for its answer (and
/// resends after a failure anyway).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(8);

/// A notification from a gateway (`client`: who sent it). A verified one goes through
/// [`apply_verdict`] (after the channel's query confirms it, for channels that ask); a
/// rejected one is stored (truncated, by the store) only within
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
    let verdict = match state.channels.get(&event.channel_id) {
        Some(channel) if channel.confirm_by_query() => {
            let gateway_ref = match &verdict {
                Verdict::Paid { trade_no, .. } => state.store.gateway_ref(trade_no).await?,
                _ => None,
            };
            confirm_by_query(channel.as_ref(), verdict, gateway_ref).await
        }
        _ => verdict,
    };
    apply_verdict(state, event, verdict, FoundBy::Notify).await
}

/// `verdict` as the channel's own query confirms it: a `Paid` verdict stays `Paid` only when
/// the query says the same trade is paid for the same amount; otherwise it becomes
/// `Unconfirmed` with what the query said. Other verdicts pass unchanged.
pub async fn confirm_by_query(
    channel: &dyn PaymentChannel,
    verdict: Verdict,
    gateway_ref: Option<String>,
) -> Verdict {
    let Verdict::Paid {
        trade_no,
        gateway_trade_no,
        amount,
        gateway_paid_at,
    } = verdict
    else {
        return verdict;
    };
    let trade = TradeRef::with_ref(trade_no.as_str(), gateway_ref);
    let queried = tokio::time::timeout(CONFIRM_TIMEOUT, channel.query(&trade)).await;
    let reason = match queried {
        Ok(Ok(TradeState::Paid(c))) if c.trade_no == trade_no && c.amount == amount => {
            return Verdict::Paid {
                trade_no,
                gateway_trade_no,
                amount,
                // Epay notifications carry no pay time; its query's `endtime` does.
                gateway_paid_at: gateway_paid_at.or(c.paid_at),
            };
        }
        Ok(Ok(TradeState::Paid(c))) if c.trade_no != trade_no => {
            "the query answered for another trade".to_owned()
        }
        Ok(Ok(TradeState::Paid(c))) => format!(
            "paid {} {}, not {} {}",
            c.amount.to_major_string(),
            c.amount.currency().code(),
            amount.to_major_string(),
            amount.currency().code()
        ),
        Ok(Ok(TradeState::NotFound)) => "trade not found".to_owned(),
        Ok(Ok(TradeState::Waiting)) => "waiting for payment".to_owned(),
        Ok(Ok(TradeState::Closed)) => "closed".to_owned(),
        Ok(Ok(TradeState::Refunded)) => "refunded".to_owned(),
        // The kind only: a gateway's text may carry anything.
        Ok(Err(e)) => format!("query failed ({})", e.code()),
        Err(_) => "query timed out".to_owned(),
    };
    tracing::warn!(
        channel = %channel.id(),
        trade_no = %trade_no,
        "a signed success not confirmed by the channel's query: held, not delivered ({reason})"
    );
    Verdict::Unconfirmed {
        trade_no,
        gateway_trade_no,
        amount,
        reason,
    }
}

/// Record `event`, apply `verdict` in the same commit, and run the post-commit steps.
/// `found_by`: what brought the verdict (the reconciliation passes [`FoundBy::Bill`]).
#[tracing::instrument(level = "debug", skip_all, fields(channel = %event.channel_id, how = %event.http_method))]
pub async fn apply_verdict(
    state: &AppState,
    event: RawEvent,
    verdict: Verdict,
    found_by: FoundBy,
) -> Result<NotifyOutcome, StoreError> {
    let channel = event.channel_id.clone();
    // A payment counts toward its channel's daily limit at once (the database's total is
    // read again every few seconds).
    let paid = match &verdict {
        Verdict::Paid { amount, .. } => Some(amount.minor()),
        _ => None,
    };
    let Recorded { outcome, confirmed } = match state
        .store
        .record_payment_signal(event, verdict, found_by)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            state.metrics.notification("store_error");
            return Err(e);
        }
    };
    state.metrics.notification(outcome.code());
    if let Some(paid) = &confirmed {
        let lag = paid
            .gateway_paid_at
            .filter(|_| found_by == FoundBy::Notify)
            // A gateway clock ahead of ours reads as no lag, never a negative one.
            .map(|at| (paid.confirmed_at - at).max(0) as f64 / 1000.0);
        state
            .metrics
            .channel_order_paid(&channel, paid.method, found_by, lag);
    }
    if let Some(minor) = paid.filter(|_| {
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
    if matches!(
        outcome,
        NotifyOutcome::AmountMismatch { .. }
            | NotifyOutcome::UnknownOrder
            | NotifyOutcome::Unconfirmed
    ) {
        state.metrics.verification_failure(&channel, outcome.code());
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

/// A channel query or close found the trade paid (`found_by`: `Query`, `Close`,
/// `SellerCheck`): apply it exactly like a notification, logged as one (`QUERY` / `CLOSE`).
pub async fn apply_confirmation(
    state: &AppState,
    channel_id: &str,
    found_by: FoundBy,
    conf: PaymentConfirmation,
) -> Result<NotifyOutcome, StoreError> {
    let how = match found_by {
        FoundBy::Close => "CLOSE",
        FoundBy::Bill => "BILL",
        FoundBy::Notify | FoundBy::Query | FoundBy::SellerCheck => "QUERY",
    };
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
            "paid_at": conf.paid_at,
            "found_by": found_by.as_str(),
        })
        .to_string()
        .into_bytes(),
        received_at: state.now_ms(),
    };
    let verdict = Verdict::Paid {
        trade_no: conf.trade_no,
        gateway_trade_no: conf.gateway_trade_no,
        amount: conf.amount,
        gateway_paid_at: conf.paid_at,
    };
    apply_verdict(state, event, verdict, found_by).await
}
