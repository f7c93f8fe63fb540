//! A buyer back from the wallet's sign-in (WeChat OAuth `snsapi_base` before JSAPI): the
//! channel verifies the `state` (bound to one trade, until its expiry) and exchanges the
//! one-time code for the payer's id; then the payment of that trade is created with it and
//! remembered on the order, for the checkout page to hand to the wallet. Nothing here marks
//! anything paid: only the channel's verified notification or query does.
//!
//! Refused: a state the channel did not make (forged, another trade or channel, expired), an
//! order that is no longer pending, a trade that is not the order's current attempt on this
//! channel, and a second sign-in for a trade whose payment was already prepared (a replayed
//! return cannot move the trade to another payer). The payer's id is used for the one create
//! call and kept nowhere (the gateway names it again in its notification).

use std::time::{Duration, Instant};

use kami_core::{OrderNo, OrderStatus, PaymentStatus, TradeNo};
use kami_pay::{CreatePayment, Device, PayError, PaymentAction};

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// The stored form of a payment action (`orders.pay_action`, `pay_target`): what the order
/// page shows later. The wallet sign-in is a link like any redirect; JSAPI keeps its bridge
/// parameters as JSON.
pub fn stored_action(action: &PaymentAction) -> (&'static str, String) {
    match action {
        PaymentAction::Qr { qr_code } => ("qr", qr_code.clone()),
        PaymentAction::Redirect { url } | PaymentAction::Authorize { url } => {
            ("redirect", url.clone())
        }
        PaymentAction::JsApi { params } => (
            "jsapi",
            serde_json::to_string(params).unwrap_or_else(|_| "{}".into()),
        ),
    }
}

/// The API's `payment` object of an action (DESIGN 4.3, README "Contract additions"): the
/// wallet sign-in is a `redirect` (a client that follows it ends on the shop's order page).
pub fn action_json(channel: &str, method: &str, action: &PaymentAction) -> serde_json::Value {
    use serde_json::json;
    match action {
        PaymentAction::Qr { qr_code } => {
            json!({"channel": channel, "method": method, "action": "qr", "qr_code": qr_code})
        }
        PaymentAction::Redirect { url } | PaymentAction::Authorize { url } => {
            json!({"channel": channel, "method": method, "action": "redirect", "url": url})
        }
        PaymentAction::JsApi { params } => {
            json!({"channel": channel, "method": method, "action": "jsapi", "jsapi": params})
        }
    }
}

/// The browser that came back.
pub struct Returning {
    pub channel_id: String,
    /// The return URL's `order_no` (kami's own parameter).
    pub order_no: String,
    /// The raw query string the gateway added to.
    pub query: String,
    pub user_agent: Option<String>,
    pub client_ip: Option<std::net::IpAddr>,
}

/// What a return was.
#[derive(Debug, PartialEq, Eq)]
pub enum ReturnOutcome {
    /// Not a sign-in return: just show the order.
    Plain,
    /// The payment was created with the payer; the order page hands it to the wallet.
    Prepared(OrderNo),
}

const CREATE_TIMEOUT: Duration = Duration::from_secs(15);

#[tracing::instrument(level = "debug", skip_all, fields(channel = %r.channel_id))]
pub async fn payer_returned(state: &AppState, r: Returning) -> ServiceResult<ReturnOutcome> {
    let Some(channel) = state.channels.get(&r.channel_id) else {
        return Ok(ReturnOutcome::Plain);
    };
    let refused = |why: &str| ServiceError::invalid("payer_return_refused", why.to_owned());
    let back = match channel.payer_return(&r.query) {
        Ok(None) => return Ok(ReturnOutcome::Plain),
        Ok(Some(b)) => b,
        Err(PayError::Stale) => return Err(refused("the sign-in link has expired")),
        Err(e) => {
            tracing::warn!(channel = %r.channel_id, "payer return refused: {e}");
            return Err(refused("this sign-in return is not valid"));
        }
    };
    let no = OrderNo::parse(&r.order_no).map_err(|_| refused("unknown order"))?;
    let order = state
        .store
        .order(&no)
        .await?
        .ok_or_else(|| refused("unknown order"))?;
    if order.status != OrderStatus::Pending {
        return Err(ServiceError::Conflict {
            code: "order_not_pending",
            message: "the order is no longer waiting for payment".into(),
        });
    }
    let payments = state
        .store
        .order_payments(&no)
        .await?
        .ok_or_else(|| refused("unknown order"))?;
    // The trade the state names must be this order's newest attempt, on this channel.
    let current = payments
        .last()
        .filter(|p| {
            p.trade_no == back.trade_no
                && p.channel_id.as_str() == r.channel_id
                && order.channel_id.as_str() == r.channel_id
                && p.status == PaymentStatus::Created
        })
        .ok_or_else(|| refused("the sign-in is for another payment of this order"))?;
    if order
        .pay_action
        .as_ref()
        .is_some_and(|(kind, _)| kind == "jsapi")
    {
        return Err(ServiceError::Conflict {
            code: "payer_known",
            message: "this payment was already prepared for a payer".into(),
        });
    }
    let trade_no = (1..=TradeNo::MAX_ATTEMPTS)
        .filter_map(|n| TradeNo::attempt(&no, n))
        .find(|t| t.as_str() == current.trade_no)
        .ok_or_else(|| ServiceError::Internal("payment trade number of another shape".into()))?;
    let openid = match channel.payer_id(&back).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(order = %no, channel = %r.channel_id, "payer sign-in code refused: {e}");
            return Err(refused("the wallet did not confirm the sign-in"));
        }
    };
    let id = r.channel_id.as_str();
    let req = CreatePayment {
        trade_no,
        amount: order.amount,
        subject: order.product_title.clone(),
        method: order.method,
        device: Device::Mobile,
        notify_url: format!("{}/pay/notify/{id}", state.public_url),
        return_url: format!("{}/pay/return/{id}?order_no={no}", state.public_url),
        expires_at_ms: order.expires_at,
        user_agent: r.user_agent,
        client_ip: r.client_ip,
        payer_openid: Some(openid),
    };
    let started = Instant::now();
    let result = match tokio::time::timeout(CREATE_TIMEOUT, channel.create(&req)).await {
        Ok(r) => r,
        Err(_) => Err(PayError::Transport("timed out".into())),
    };
    super::channel_calls::record_create(state, id, order.method, &result, started);
    let made = result.map_err(|e| {
        tracing::warn!(order = %no, channel = id, "creating the payment for the payer: {e}");
        ServiceError::ChannelUnavailable {
            cause: e.to_string(),
        }
    })?;
    if let Some(gateway_ref) = made.gateway_ref {
        state
            .store
            .set_gateway_ref(req.trade_no.clone(), gateway_ref, made.coin_amount)
            .await?;
    }
    let action = made.action;
    if !matches!(action, PaymentAction::JsApi { .. }) {
        return Err(ServiceError::Internal(
            "the channel answered a payer with another sign-in".into(),
        ));
    }
    let (kind, target) = stored_action(&action);
    state.store.set_pay_action(&no, kind, &target).await?;
    state.watch.changed(no.as_str());
    Ok(ReturnOutcome::Prepared(no))
}
