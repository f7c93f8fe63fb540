//! The buyer switches a pending order's payment method (the order page, or
//! `POST /api/v1/orders/{order_no}/switch`): every open trade is closed at its channel first
//! — if a close reveals the trade was paid, that payment is applied through the normal
//! verified path and the method is not switched — then the new method is routed like a new
//! checkout (failover included) with a new attempt and a new trade number; the order's
//! `method` and `channel_id` follow it. At most a few switches per order in a short time
//! (`limits.rs`).

use std::net::IpAddr;

use kami_core::{Method, Millis, OrderNo, OrderStatus, PaymentStatus};
use kami_pay::{Device, PaymentAction, TradeRef, TradeState};
use kami_store::{CreatedOrder, FoundBy, NewAttempt, StoreError};

use super::checkout::{charge_currencies, create_with_failover, Call};
use super::checks::FIRST_CHECK_MS;
use super::payments::apply_confirmation;
use super::{orders, ServiceError, ServiceResult};
use crate::channels::{Origin, Routed};
use crate::state::AppState;

pub struct SwitchInput {
    pub order_no: String,
    /// The order's access token.
    pub token: String,
    pub method: String,
    pub device: Device,
    pub user_agent: Option<String>,
    pub client_ip: Option<IpAddr>,
}

#[derive(Debug)]
pub enum Switched {
    /// The new method's payment, to show the buyer.
    Switched {
        order_no: OrderNo,
        channel_id: String,
        method: Method,
        action: PaymentAction,
        expires_at: Millis,
    },
    /// Closing the open trade found it paid: the payment was applied, nothing switched.
    AlreadyPaid { order_no: OrderNo },
}

fn conflict(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Conflict {
        code,
        message: message.into(),
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(order = %input.order_no, method = %input.method))]
pub async fn switch_method(state: &AppState, input: SwitchInput) -> ServiceResult<Switched> {
    let (no, order) = orders::for_token(state, &input.order_no, &input.token).await?;
    let method = Method::parse(&input.method).map_err(|_| {
        ServiceError::invalid(
            "unknown_method",
            format!("unknown payment method {:?}", input.method),
        )
    })?;
    if order.status != OrderStatus::Pending {
        return Err(conflict(
            "order_not_pending",
            format!(
                "the order is {}: there is nothing to pay",
                order.status.as_str()
            ),
        ));
    }
    if order.method == method {
        return Err(conflict(
            "same_method",
            format!("the order is already paid with {method}"),
        ));
    }
    // Route first: a method no channel takes for this amount changes nothing. A channel that
    // charges another currency has its limits checked on that amount when its attempt is added.
    let amount = order.amount;
    let candidates: Vec<Routed> = state
        .channels
        .plan(method, state.now_ms())
        .candidates
        .into_iter()
        .filter(|r| {
            r.entry.channel.charge_currency(amount.currency()) != amount.currency()
                || r.limits.admits(amount.minor())
        })
        .collect();
    let Some(first) = candidates.first().cloned() else {
        return Err(ServiceError::invalid(
            "unknown_method",
            format!(
                "no payment channel takes {method} payments of {}",
                order.amount
            ),
        ));
    };
    if let Err(wait) = state
        .limits
        .allow_method_switch(no.as_str(), state.now_ms())
    {
        return Err(ServiceError::Limited {
            code: "too_many_switches",
            message: "the payment method was switched a moment ago; try again shortly".into(),
            retry_after: wait.0,
        });
    }
    if close_open_trades(state, &no).await? {
        return Ok(Switched::AlreadyPaid { order_no: no });
    }
    let attempt = NewAttempt {
        order_no: no.clone(),
        channel_id: first.entry.id().clone(),
        method,
        stored_channel: first.entry.origin == Origin::Stored,
        close_others: true,
        now: state.now_ms(),
        first_check_at: state.now_ms() + FIRST_CHECK_MS,
        charges: charge_currencies(&first),
        limits: first.limits,
        fx: state.settings().fx.clone(),
    };
    let (trade_no, charge) = match state.store.add_attempt(attempt).await {
        Ok(t) => t,
        Err(StoreError::NoChannelForAmount { amount }) => {
            return Err(ServiceError::invalid(
                "unknown_method",
                format!("no payment channel takes {method} payments of {amount}"),
            ));
        }
        // The product has no price in the channel's currency and the rate table cannot
        // convert to it.
        Err(e @ StoreError::NoChannelForCurrency { .. }) => {
            return Err(ServiceError::invalid(
                "currency_not_accepted",
                e.to_string(),
            ));
        }
        // Paid (a notification) or expired while the trades were being closed.
        Err(StoreError::InvalidStatus(_)) => {
            let now = state.store.order(&no).await?;
            return match now.map(|o| o.status) {
                Some(s) if s.is_paid() => Ok(Switched::AlreadyPaid { order_no: no }),
                _ => Err(conflict(
                    "order_not_pending",
                    "the order is no longer pending",
                )),
            };
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(order = %no, from = %order.method, to = %method, trade = %trade_no, "buyer switched payment method");
    let created = CreatedOrder {
        order_no: no.clone(),
        channel_id: first.entry.id().clone(),
        amount: order.amount,
        charge,
        discount: order.coupon.as_ref().map(|c| c.discount),
        product_title: order.product_title.clone(),
        expires_at: order.expires_at,
    };
    let call = Call {
        device: input.device,
        user_agent: input.user_agent,
        client_ip: input.client_ip,
    };
    let (channel_id, action, _) = create_with_failover(
        state,
        &created,
        method,
        &candidates,
        &call,
        Some(trade_no),
        false,
    )
    .await?;
    state.watch.changed(no.as_str());
    Ok(Switched::Switched {
        order_no: no,
        channel_id,
        method,
        action,
        expires_at: order.expires_at,
    })
}

/// Close every open trade of the order at its channel; true when one was found paid (its
/// payment is applied, the order is not to be switched).
async fn close_open_trades(state: &AppState, no: &OrderNo) -> ServiceResult<bool> {
    let payments = state.store.order_payments(no).await?.unwrap_or_default();
    for p in payments
        .iter()
        .filter(|p| p.status == PaymentStatus::Created)
    {
        let Some(channel) = state.channels.get(p.channel_id.as_str()) else {
            return Err(conflict(
                "close_failed",
                format!(
                    "channel {} is not configured: its trade cannot be closed",
                    p.channel_id
                ),
            ));
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
                tracing::info!(order = %no, channel = %p.channel_id, outcome = outcome.code(), "switch: the open trade was paid; not switching");
                return Ok(true);
            }
            Ok(TradeState::Closed | TradeState::NotFound) => {}
            // Unpaid, but the protocol has no close (Epay): a later payment of it still lands
            // on the order (delivered once; a second payment is flagged).
            Ok(TradeState::Waiting) | Err(kami_pay::PayError::Unsupported(_)) => {}
            Ok(TradeState::Refunded) => {
                return Err(conflict(
                    "payment_reversed",
                    "the channel reports this order's trade paid and refunded",
                ))
            }
            Err(e) => {
                tracing::warn!(channel = %p.channel_id, order = %no, "switch: close failed: {e}");
                return Err(conflict(
                    "close_failed",
                    format!("the open payment could not be closed at its channel ({e}); try again"),
                ));
            }
        }
    }
    Ok(false)
}
