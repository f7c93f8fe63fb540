//! The seller's actions on one order that ask the payment channel or the buyer's mailbox:
//! check the payment at the channel now (补单), cancel a pending order (the trade is closed at
//! the channel first), and send the buyer's mail again. None of them marks anything paid by
//! hand: what the channel confirms goes through the same path as a notification
//! ([`super::payments::apply_confirmation`]), and nothing else can pay an order.

use kami_core::{OrderNo, PaymentStatus};
use kami_pay::{TradeRef, TradeState};
use kami_store::{Actor, FoundBy, Order, OrderPayment};
use serde::Serialize;

use super::payments::apply_confirmation;
use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// What one payment attempt's channel said when asked.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelAnswer {
    pub channel: String,
    pub trade_no: String,
    /// `paid`, `waiting`, `not_found`, `closed`, `refunded`, `error`, `not_configured`,
    /// or `settled` (kami already holds its final state: not asked).
    pub answer: &'static str,
    /// For `error`: what went wrong (the channel's code and message, never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `paid`: what applying it did (`delivered`, `duplicate`, `late_payment`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
}

/// Ask the channel of every open attempt of the order about its payment now, and apply a
/// confirmed payment exactly as a notification would be (delivered once, however often this
/// runs). An unpaid trade changes nothing. Returns the order as it is afterwards.
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn check_payment(
    state: &AppState,
    no: &OrderNo,
    actor: &Actor,
) -> ServiceResult<(Order, Vec<ChannelAnswer>)> {
    let payments = state
        .store
        .order_payments(no)
        .await?
        .ok_or_else(order_not_found)?;
    let mut answers = Vec::with_capacity(payments.len());
    for p in &payments {
        answers.push(ask(state, p, FoundBy::SellerCheck).await?);
    }
    tracing::info!(order = %no, actor = %actor.actor, answers = ?answers.iter().map(|a| a.answer).collect::<Vec<_>>(), "payment checked at the channel by the seller");
    state
        .store
        .record_audit(
            actor.entry(
                "order.check_payment",
                format!("order:{no}"),
                None,
                Some(serde_json::json!({ "answers": answers })),
            ),
            state.now_ms(),
        )
        .await?;
    let order = state.store.order(no).await?.ok_or_else(order_not_found)?;
    Ok((order, answers))
}

/// Ask the channel about one payment attempt (`found_by`: who asks, for the measures).
async fn ask(
    state: &AppState,
    p: &OrderPayment,
    found_by: FoundBy,
) -> ServiceResult<ChannelAnswer> {
    let mut answer = ChannelAnswer {
        channel: p.channel_id.to_string(),
        trade_no: p.trade_no.clone(),
        answer: "settled",
        detail: None,
        outcome: None,
    };
    // Paid or refunded attempts are final in kami; created and closed ones may have been paid
    // at the channel without kami hearing of it.
    if !matches!(p.status, PaymentStatus::Created | PaymentStatus::Closed) {
        return Ok(answer);
    }
    let Some(channel) = state.channels.get(p.channel_id.as_str()) else {
        answer.answer = "not_configured";
        return Ok(answer);
    };
    match channel
        .query(&TradeRef::with_ref(
            p.trade_no.as_str(),
            p.gateway_ref.clone(),
        ))
        .await
    {
        Ok(TradeState::Paid(conf)) => {
            answer.answer = "paid";
            let outcome = apply_confirmation(state, p.channel_id.as_str(), found_by, conf).await?;
            answer.outcome = Some(outcome.code());
        }
        Ok(TradeState::Waiting) => answer.answer = "waiting",
        Ok(TradeState::NotFound) => answer.answer = "not_found",
        Ok(TradeState::Closed) => answer.answer = "closed",
        Ok(TradeState::Refunded) => answer.answer = "refunded",
        Err(e) => {
            tracing::warn!(channel = %p.channel_id, trade_no = %p.trade_no, "payment check at the channel failed: {e}");
            answer.answer = "error";
            answer.detail = Some(e.to_string());
        }
    }
    Ok(answer)
}

/// What the buyer's "I have paid" did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyerCheck {
    /// The channel was asked (what it confirmed, if anything, is applied; the order shows it).
    Asked,
    /// It was asked a moment ago: not again yet (a few seconds).
    TooSoon,
    /// The order is not waiting for a payment: nothing to ask.
    NotPending,
}

/// The buyer says they paid a pending order: ask its channel now, at most once every few
/// seconds per order (`limits.rs`), and apply a confirmed payment through the same path as a
/// notification. Never marks anything paid that the channel does not confirm; no audit row
/// (the buyer is not an admin), a log line.
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn buyer_check(state: &AppState, no: &OrderNo) -> ServiceResult<BuyerCheck> {
    let order = state.store.order(no).await?.ok_or_else(order_not_found)?;
    if order.status != kami_core::OrderStatus::Pending {
        return Ok(BuyerCheck::NotPending);
    }
    if state
        .limits
        .allow_buyer_check(no.as_str(), state.now_ms())
        .is_err()
    {
        return Ok(BuyerCheck::TooSoon);
    }
    let payments = state
        .store
        .order_payments(no)
        .await?
        .ok_or_else(order_not_found)?;
    let mut answers = Vec::with_capacity(payments.len());
    for p in &payments {
        answers.push(ask(state, p, FoundBy::Query).await?.answer);
    }
    tracing::info!(order = %no, answers = ?answers, "payment checked at the channel for the buyer");
    Ok(BuyerCheck::Asked)
}

/// Cancel a pending order: its trade is closed at the channel first, so it can no longer be
/// paid; if the channel says it was paid meanwhile, the payment is applied (the order is
/// delivered, not cancelled) and the answer is `409 order_paid`. Stock goes back; the order
/// is `expired` with the note "cancelled by the seller".
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn cancel(state: &AppState, no: &OrderNo, actor: &Actor) -> ServiceResult<Order> {
    let order = state.store.order(no).await?.ok_or_else(order_not_found)?;
    if order.status != kami_core::OrderStatus::Pending {
        return Err(not_pending(&order));
    }
    let payments = state
        .store
        .order_payments(no)
        .await?
        .ok_or_else(order_not_found)?;
    for p in payments
        .iter()
        .filter(|p| p.status == PaymentStatus::Created)
    {
        let Some(channel) = state.channels.get(p.channel_id.as_str()) else {
            return Err(ServiceError::Conflict {
                code: "channel_unavailable",
                message: format!(
                    "channel {} is not configured: the trade cannot be closed there, so the \
                     order is not cancelled",
                    p.channel_id
                ),
            });
        };
        match channel
            .close(&TradeRef::with_ref(
                p.trade_no.as_str(),
                p.gateway_ref.clone(),
            ))
            .await
        {
            Ok(TradeState::Paid(conf)) => {
                let outcome =
                    apply_confirmation(state, p.channel_id.as_str(), FoundBy::Close, conf).await?;
                return Err(ServiceError::Conflict {
                    code: "order_paid",
                    message: format!(
                        "the buyer paid at channel {} before it closed; the payment was applied \
                         ({}) and the order is not cancelled",
                        p.channel_id,
                        outcome.code()
                    ),
                });
            }
            Ok(TradeState::Closed | TradeState::NotFound) => {}
            // Reachable and unpaid, but the protocol has no close (Epay): a later payment
            // still lands on the late-payment path, as for any expired order.
            Ok(TradeState::Waiting) | Err(kami_pay::PayError::Unsupported(_)) => {}
            Ok(TradeState::Refunded) => {
                return Err(ServiceError::Conflict {
                    code: "payment_reversed",
                    message: "the channel reports this trade paid and refunded; check the order \
                              at the channel"
                        .into(),
                })
            }
            Err(e) => {
                tracing::warn!(channel = %p.channel_id, order = %no, "seller's cancel: close failed: {e}");
                return Err(ServiceError::Conflict {
                    code: "close_failed",
                    message: format!(
                        "the trade could not be closed at channel {} ({e}); the order is not \
                         cancelled, try again",
                        p.channel_id
                    ),
                });
            }
        }
    }
    let audit = actor.entry(
        "order.cancel",
        format!("order:{no}"),
        Some(serde_json::json!({ "status": "pending" })),
        Some(serde_json::json!({ "status": "expired" })),
    );
    let cancelled = state
        .store
        .cancel_by_seller(no, "cancelled by the seller".into(), audit, state.now_ms())
        .await?;
    let order = state.store.order(no).await?.ok_or_else(order_not_found)?;
    if !cancelled {
        // Paid (or expired) between the check above and the cancel.
        return Err(not_pending(&order));
    }
    state.metrics.order_expired();
    state.watch.changed(no.as_str());
    state.catalog.invalidate();
    Ok(order)
}

/// Queue the buyer's mail again: the keys of a delivered order, the content of a fulfilled
/// one. `409 mail_off` when the shop sends no mail, `409 nothing_to_mail` for other statuses.
#[tracing::instrument(level = "debug", skip_all, fields(order = %no))]
pub async fn resend_mail(state: &AppState, no: &OrderNo, actor: &Actor) -> ServiceResult<()> {
    if !state.mail_enabled() {
        return Err(ServiceError::Conflict {
            code: "mail_off",
            message: "this shop sends no mail (SMTP is set up neither in [smtp] nor in the console's settings)".into(),
        });
    }
    let audit = actor.entry("order.resend_mail", format!("order:{no}"), None, None);
    let queued = state
        .store
        .requeue_order_mail(no, audit, state.now_ms())
        .await
        .map_err(|e| match e {
            kami_store::StoreError::OrderNotFound => order_not_found(),
            other => other.into(),
        })?;
    if !queued {
        return Err(ServiceError::Conflict {
            code: "nothing_to_mail",
            message: "only a delivered or fulfilled order has a mail to send".into(),
        });
    }
    state.wake_mail();
    Ok(())
}

fn order_not_found() -> ServiceError {
    ServiceError::not_found("order_not_found", "no such order")
}

fn not_pending(order: &Order) -> ServiceError {
    ServiceError::Conflict {
        code: "order_not_pending",
        message: format!(
            "the order is {}; only a pending order can be cancelled",
            order.status.as_str()
        ),
    }
}
