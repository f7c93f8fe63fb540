//! Refunds: the seller's request (full or partial, with an optional idempotency number) is
//! recorded as pending before the channel is called, so a retry — by the seller with the same
//! `refund_no`, or by the refund job — never refunds twice. Where the gateway de-duplicates
//! refunds, unsettled ones are asked again with the same number; where it does not, nothing
//! repeats a refund automatically.

use std::sync::Arc;

use kami_core::{OrderNo, OrderStatus, RefundStatus};
use kami_pay::{PayError, PaymentChannel, RefundRequest};
use kami_store::{NewRefund, RefundCall, RefundResult};

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// A refund the channel has not settled yet is asked about again after this.
pub const REFUND_RETRY_MS: i64 = 30_000;
/// How long a refund call holds its refund against the retry job.
pub const REFUND_LEASE_MS: i64 = 180_000;
/// A refund still unsettled after this long (gateway errors throughout) is given up as failed.
const REFUND_GIVE_UP_MS: i64 = 24 * 3_600_000;
/// Refunds the retry job claims per round.
const RETRY_BATCH: u32 = 16;

/// What the seller asks for (the refund API's JSON body).
#[derive(Debug, Default, serde::Deserialize)]
pub struct RefundInput {
    /// Minor units; `None` = everything still refundable.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    /// Idempotency key: repeating a request with the same number returns the same refund.
    pub refund_no: Option<String>,
}

/// A refund as it stands after the request, and the order's status then.
pub struct RefundOutcome {
    pub call: RefundCall,
    pub order_status: OrderStatus,
}

/// Refund (part of) a paid order through its channel.
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn refund(
    state: &AppState,
    no: &OrderNo,
    input: RefundInput,
    actor: &kami_store::Actor,
) -> ServiceResult<RefundOutcome> {
    if let Some(r) = &input.refund_no {
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(ServiceError::invalid(
                "invalid_refund_no",
                "refund_no must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'",
            ));
        }
    }
    if input
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 256)
    {
        return Err(ServiceError::invalid(
            "invalid_reason",
            "reason must be at most 256 characters",
        ));
    }
    let not_found = || ServiceError::not_found("order_not_found", "no such order");
    let now = state.now_ms();
    state.store.order(no).await?.ok_or_else(not_found)?;
    // Where the gateway does not de-duplicate refunds, nothing retries automatically.
    let retrying_channels = state
        .channels
        .entries()
        .iter()
        .filter(|e| e.channel.refund_is_idempotent())
        .map(|e| e.id().as_str().to_owned())
        .collect();
    let call = state
        .store
        .begin_refund(
            no,
            NewRefund {
                amount: input.amount,
                reason: input.reason,
                refund_no: input.refund_no,
                now,
                retry_at: now + REFUND_RETRY_MS,
                retrying_channels,
                lease_until: now + REFUND_LEASE_MS,
            },
            actor.entry("order.refund", format!("order:{no}"), None, None),
        )
        .await?;
    let idempotent = state
        .channels
        .get(call.channel_id.as_str())
        .is_some_and(|c| c.refund_is_idempotent());
    // A repeated request for an existing refund asks the gateway again only where that is safe.
    let call = if call.refund.status == RefundStatus::Pending
        && (!call.existing || idempotent)
        && call.refund.error.is_none()
    {
        settle_refund(state, call).await?
    } else {
        call
    };
    let order = state.store.order(no).await?.ok_or_else(not_found)?;
    state.watch.changed(no.as_str());
    Ok(RefundOutcome {
        call,
        order_status: order.status,
    })
}

/// Call the channel for a pending refund and record the answer.
#[tracing::instrument(level = "debug", skip_all, fields(refund = %call.refund.refund_no, channel = %call.channel_id))]
pub async fn settle_refund(state: &AppState, call: RefundCall) -> ServiceResult<RefundCall> {
    let channel: Arc<dyn PaymentChannel> = state
        .channels
        .get(call.channel_id.as_str())
        .ok_or_else(|| {
            ServiceError::internal(format!("channel {} is not configured", call.channel_id))
        })?;
    let req = RefundRequest {
        trade_no: call.trade_no.clone(),
        gateway_ref: call.gateway_ref.clone(),
        gateway_trade_no: call.gateway_trade_no.clone(),
        refund_no: call.refund.refund_no.clone(),
        amount: call.refund.amount,
        total: call.total,
        reason: call.reason.clone(),
    };
    let now = state.now_ms();
    let idempotent = channel.refund_is_idempotent();
    let given_up = now - call.refund.created_at > REFUND_GIVE_UP_MS;
    // `refused`: the gateway said no. Otherwise (accepted but unsettled, or no answer) the
    // money may have moved: after a day the refund stops being retried but stays held with its
    // outcome unknown, for the seller to check at the gateway; marking it failed would make
    // the amount refundable a second time.
    let retry = |why: String, refused: bool| {
        if !given_up {
            RefundResult::Pending {
                retry_at: now + REFUND_RETRY_MS,
            }
        } else if refused {
            RefundResult::Failed {
                error: format!("not settled after 24 hours: {why}"),
            }
        } else {
            RefundResult::Unknown {
                error: format!("not settled after 24 hours: {why}"),
            }
        }
    };
    let result = match channel.refund(&req).await {
        Ok(o) if o.settled => RefundResult::Succeeded,
        // Accepted, not settled yet: ask again later with the same number — where that is safe.
        Ok(_) if idempotent => retry("accepted, not settled".into(), false),
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
            retry(format!("{code}: {message}"), true)
        }
        Err(PayError::Gateway { code, message }) => RefundResult::Failed {
            error: format!("{code}: {message}"),
        },
        // Unknown outcome (timeout, bad response): ask again with the same refund number —
        // unless the gateway does not de-duplicate refunds, where a repeat could pay twice.
        Err(e) if idempotent => {
            tracing::warn!(refund = %call.refund.refund_no, "refund call failed, will retry: {e}");
            retry(e.to_string(), false)
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
        .finish_refund(&call.refund.refund_no, result, state.now_ms())
        .await?)
}

/// Ask the channels again about the due pending refunds; returns how many were handled.
pub async fn retry_due(state: &Arc<AppState>) -> Result<usize, kami_store::StoreError> {
    let now = state.now_ms();
    let due = state
        .store
        .claim_pending_refunds(now, now + super::checks::LEASE_MS, RETRY_BATCH)
        .await?;
    let n = due.len();
    for call in due {
        let no = call.refund.order_no.clone();
        match settle_refund(state, call).await {
            Ok(_) => state.watch.changed(no.as_str()),
            Err(e) => tracing::warn!(order = %no, "refund retry: {e}"),
        }
    }
    Ok(n)
}
