//! Placing an order: validate what the buyer asked for, reserve stock, and have a routed
//! channel create the payment — failing over to the next candidate when a create call errors
//! or times out, within `[routing] create_budget_ms`, before the buyer gets an answer. Each
//! attempt is a `payments` row with its own trade number (`attempts.rs` in the store), so a
//! late payment of an abandoned attempt is still recognised. If no candidate could create
//! it, the stock goes back at once with a note naming every channel tried and why. The JSON
//! API and the product page's form both come here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use std::time::{Duration, Instant};

use kami_core::{
    ChargeCurrencies, CouponCode, CouponRefusal, Email, Method, Millis, Money, OrderNo, Quantity,
    SecretToken, Slug, TradeNo,
};
use kami_pay::routing::{attribute, Attribution, Outcome};
use kami_pay::{CreatePayment, Device, PayError, PaymentAction};
use kami_store::{CreatedOrder, NewAttempt, NewOrder, RouteChoice, StoreError};

use super::checks::FIRST_CHECK_MS;
use super::{passwords, risk, ServiceError, ServiceResult};
use crate::channels::{Origin, Routed};
use crate::i18n::Locale;
use crate::state::AppState;
use crate::time::stamp;

/// An order as a buyer asks for it, from the JSON API or the product page's form.
pub struct OrderInput {
    pub product: String,
    pub quantity: i64,
    pub email: String,
    pub method: String,
    pub query_password: Option<String>,
    pub device: Device,
    pub user_agent: Option<String>,
    pub locale: Locale,
    pub client_ip: Option<IpAddr>,
    /// Answers to the product's input fields, by field name (checked by the store against
    /// the product's fields when the order is created: `422 invalid_fields`).
    pub fields: BTreeMap<String, String>,
    /// The coupon code the buyer typed (any case; blank is none).
    pub coupon: Option<String>,
}

/// A created order with its payment, and the access token (shown once, stored hashed).
pub struct Placed {
    pub order_no: OrderNo,
    pub token: SecretToken,
    /// What the buyer pays (after the coupon), in the product's currency.
    pub amount: Money,
    /// What the channel charges: `amount`, or it in the channel's currency.
    pub charge: Money,
    /// What the coupon took off.
    pub discount: Option<Money>,
    pub quantity: u32,
    pub expires_at: Millis,
    pub channel_id: String,
    pub method: Method,
    pub action: PaymentAction,
}

#[tracing::instrument(level = "debug", skip_all, fields(product = %b.product, method = %b.method))]
pub async fn place_order(state: &AppState, b: OrderInput) -> ServiceResult<Placed> {
    let product = Slug::parse(&b.product)
        .map_err(|_| ServiceError::not_found("product_not_found", "no such product"))?;
    let quantity = Quantity::new(b.quantity)
        .map_err(|e| ServiceError::invalid("invalid_quantity", e.to_string()))?;
    let email = Email::parse(&b.email)
        .map_err(|e| ServiceError::invalid("invalid_email", e.to_string()))?;
    let coupon = match b.coupon.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(code) => Some(CouponCode::parse(code).map_err(|_| {
            ServiceError::invalid("invalid_coupon", CouponRefusal::Unknown.to_string())
        })?),
    };
    risk::admit_order(state, b.client_ip, email.as_str())?;
    let method = Method::parse(&b.method).map_err(|_| {
        ServiceError::invalid(
            "unknown_method",
            format!("unknown payment method {:?}", b.method),
        )
    })?;
    let plan = state.channels.plan(method, state.now_ms());
    let Some(first) = plan.candidates.first().cloned() else {
        return Err(ServiceError::invalid(
            "unknown_method",
            format!("no payment channel serves {method}"),
        ));
    };
    if let Some(sr) = &plan.shadow_first {
        tracing::debug!(method = %method, routed = %first.entry.id(), success_rate = %sr, "shadow routing");
    }
    let password_hash = match b.query_password {
        None => None,
        Some(p) => {
            let _slot = risk::hash_slot(state, b.client_ip)?;
            Some(passwords::hash(p).await?)
        }
    };
    let (client_ip, pending_caps) = risk::pending_caps(state, b.client_ip);

    let token = SecretToken::generate();
    let now = state.now_ms();
    let expires_at = now + state.settings().orders.expire_ms();
    let new = NewOrder {
        order_no: OrderNo::generate(&stamp(now)),
        product,
        quantity,
        email,
        method,
        channel_id: first.entry.id().clone(),
        access_token_hash: token.hash(),
        query_password_hash: password_hash,
        locale: b.locale.tag().to_owned(),
        now,
        expires_at,
        first_check_at: now + FIRST_CHECK_MS,
        client_ip,
        pending_caps,
        fields: b.fields,
        coupon,
        stored_channel: first.entry.origin == Origin::Stored,
        route: plan
            .candidates
            .iter()
            .map(|r| RouteChoice {
                channel_id: r.entry.id().clone(),
                stored: r.entry.origin == Origin::Stored,
                limits: r.limits,
                charges: charge_currencies(r),
            })
            .collect(),
        fx: state.settings().fx.clone(),
    };
    let created = match state.store.create_order(new).await {
        Ok(c) => c,
        Err(StoreError::OutOfStock) => {
            state.metrics.out_of_stock();
            return Err(StoreError::OutOfStock.into());
        }
        Err(StoreError::NoChannelForCurrency { amount }) => {
            return Err(ServiceError::invalid(
                "currency_not_accepted",
                format!(
                    "no payment channel for {method} takes {}, and this product has no price \
                     in a currency they take nor does the shop's rate table ([fx]) convert it",
                    amount.currency()
                ),
            ));
        }
        Err(StoreError::NoChannelForAmount { amount }) => {
            return Err(ServiceError::invalid(
                "unknown_method",
                format!(
                    "no payment channel takes {method} payments of {amount} (their amount \
                     limits or daily limits exclude it)"
                ),
            ));
        }
        // Deleted by another process since this one last loaded the stored channels.
        Err(StoreError::ChannelGone) => {
            super::channel_admin::sync(state).await;
            return Err(ServiceError::ChannelUnavailable {
                cause: "the routed channel was deleted meanwhile".into(),
            });
        }
        // Now, not when this request began: a concurrent order may be the oldest one.
        Err(e) => return Err(risk::pending_refusal(e, state.now_ms())),
    };
    state.metrics.order_created();

    // The candidates from the one the store chose on; each later one's limits are checked
    // against what it would charge when its attempt is added.
    let candidates: Vec<Routed> = plan
        .candidates
        .into_iter()
        .skip_while(|r| *r.entry.id() != created.channel_id)
        .collect();
    let call = Call {
        device: b.device,
        user_agent: b.user_agent,
        client_ip: b.client_ip,
    };
    let first_trade = TradeNo::first(&created.order_no);
    let attempt = create_with_failover(
        state,
        &created,
        method,
        &candidates,
        &call,
        Some(first_trade),
        true,
    )
    .await;
    // Counted where the order ends up, as the orders table has it: on the channel that took
    // it after failover, or on the first one routed when none could.
    let counted = match &attempt {
        Ok((channel_id, _, _)) => channel_id.as_str(),
        Err(_) => created.channel_id.as_str(),
    };
    state.metrics.channel_order_created(counted, method);
    let (channel_id, action, charge) = attempt?;
    Ok(Placed {
        order_no: created.order_no,
        token,
        amount: created.amount,
        charge,
        discount: created.discount,
        quantity: quantity.get(),
        expires_at: created.expires_at,
        channel_id,
        method,
        action,
    })
}

/// What every create call of one checkout shares.
pub(crate) struct Call {
    pub device: Device,
    pub user_agent: Option<String>,
    pub client_ip: Option<IpAddr>,
}

/// A create call shorter than this is not worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(150);

/// Try the candidates in order within the create budget; the first attempt uses the payment
/// row already made for `created.channel_id` (`first_trade`), later ones add theirs. Returns
/// the channel that created the payment, what the buyer does next and what it charges. A buyer-caused refusal
/// stops at once; when no candidate could create it, the error names every channel tried and
/// why — and with `cancel_on_failure` the order is cancelled with that note (a new order's
/// stock goes back at once; a method switch leaves the order to its deadline).
pub(crate) async fn create_with_failover(
    state: &AppState,
    created: &CreatedOrder,
    method: Method,
    candidates: &[Routed],
    call: &Call,
    mut first_trade: Option<TradeNo>,
    cancel_on_failure: bool,
) -> ServiceResult<(String, PaymentAction, Money)> {
    let budget = Duration::from_millis(u64::from(state.config.routing.create_budget_ms));
    let started = Instant::now();
    let mut tried: Vec<String> = Vec::new();
    for (i, r) in candidates.iter().enumerate() {
        let channel = &r.entry.channel;
        let id = channel.id().as_str();
        let remaining = budget.saturating_sub(started.elapsed());
        if remaining < MIN_ATTEMPT {
            tried.push(format!(
                "{id}: not tried, the {} ms budget was spent",
                budget.as_millis()
            ));
            break;
        }
        if !state.channels.admit(id, method, state.now_ms()) {
            continue; // went down meanwhile, or another order is its probe
        }
        let ready = if i == 0 && *channel.id() == created.channel_id {
            first_trade.take()
        } else {
            None
        };
        let (trade_no, charge) = if let Some(t) = ready {
            (t, created.charge)
        } else {
            let attempt = NewAttempt {
                order_no: created.order_no.clone(),
                channel_id: channel.id().clone(),
                method,
                stored_channel: r.entry.origin == Origin::Stored,
                close_others: false,
                now: state.now_ms(),
                first_check_at: state.now_ms() + FIRST_CHECK_MS,
                charges: charge_currencies(r),
                limits: r.limits,
                fx: state.settings().fx.clone(),
            };
            match state.store.add_attempt(attempt).await {
                Ok(t) => t,
                Err(StoreError::NoChannelForAmount { amount }) => {
                    tried.push(format!(
                        "{id}: not tried, its amount limits exclude {amount}"
                    ));
                    continue;
                }
                Err(e @ StoreError::NoChannelForCurrency { .. }) => {
                    tried.push(format!("{id}: not tried, {e}"));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(order = %created.order_no, channel = id, "adding a payment attempt: {e}");
                    tried.push(format!("{id}: not tried ({e})"));
                    if matches!(e, StoreError::ChannelGone) {
                        continue;
                    }
                    break;
                }
            }
        };
        // Leave the later candidates a third of what is left: one hung gateway cannot eat
        // the whole budget.
        let slice = if i + 1 < candidates.len() {
            remaining * 2 / 3
        } else {
            remaining
        };
        let req = CreatePayment {
            trade_no,
            amount: charge,
            subject: created.product_title.clone(),
            method,
            device: call.device,
            notify_url: format!("{}/pay/notify/{id}", state.public_url),
            return_url: format!(
                "{}/pay/return/{id}?order_no={}",
                state.public_url, created.order_no
            ),
            expires_at_ms: created.expires_at,
            user_agent: call.user_agent.clone(),
            client_ip: call.client_ip,
            payer_openid: None,
        };
        let call_started = Instant::now();
        let result = match tokio::time::timeout(slice, channel.create(&req)).await {
            Ok(r) => r,
            Err(_) => Err(PayError::Transport(format!(
                "timed out after {} ms",
                slice.as_millis()
            ))),
        };
        super::channel_calls::record_create(state, id, method, &result, call_started);
        let latency_ms = i64::try_from(call_started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let e = match result {
            Ok(made) => {
                state
                    .channels
                    .record(id, method, &Outcome::Success { latency_ms }, state.now_ms());
                if !tried.is_empty() {
                    tracing::info!(order = %created.order_no, channel = id, method = %method, "failed over: {}", tried.join("; "));
                }
                // Without it the attempt could not be queried or closed later.
                if let Some(gateway_ref) = made.gateway_ref {
                    state
                        .store
                        .set_gateway_ref(req.trade_no.clone(), gateway_ref, made.coin_amount)
                        .await?;
                }
                return Ok((id.to_owned(), made.action, charge));
            }
            Err(e) => e,
        };
        let code = gateway_code(&e);
        match attribute(&e) {
            // This payment's parameters: another channel would refuse it too, and the
            // channel is not to blame (or any buyer could take a method down).
            Attribution::Buyer => {
                tracing::warn!(order = %created.order_no, channel = id, method = %method, gateway_code = code, "the channel refused this payment: {e}");
                tried.push(format!("{id} ({method}): refused this payment: {e}"));
                return Err(give_up(state, created, &tried, cancel_on_failure).await);
            }
            Attribution::Channel(outcome) => {
                state.channels.record(id, method, &outcome, state.now_ms());
                tracing::warn!(order = %created.order_no, channel = id, method = %method, gateway_code = code, "the channel could not create the payment: {e}");
                tried.push(format!("{id} ({method}): {e}"));
            }
        }
    }
    if tried.is_empty() {
        tried.push(format!("no channel for {method} was available"));
    }
    Err(give_up(state, created, &tried, cancel_on_failure).await)
}

/// What the routed channel charges an order priced in each currency.
pub(crate) fn charge_currencies(r: &Routed) -> ChargeCurrencies {
    let channel = &r.entry.channel;
    ChargeCurrencies::new(|c| channel.charge_currency(c))
}

/// The gateway's code of a failure, for the log (`-` when it gave none).
fn gateway_code(e: &PayError) -> &str {
    match e {
        PayError::Gateway { code, .. } => code,
        PayError::Transport(m) if m.contains("timed out") || m.contains("timeout") => "TIMEOUT",
        PayError::Transport(_) => "UNREACHABLE",
        PayError::BadResponseSignature => "BAD_RESPONSE_SIGNATURE",
        PayError::Malformed(_) => "MALFORMED",
        _ => "-",
    }
}

/// Give the stock back now rather than at expiry (`cancel`), saying why to the seller.
async fn give_up(
    state: &AppState,
    created: &CreatedOrder,
    tried: &[String],
    cancel: bool,
) -> ServiceError {
    let note = format!("no channel could create the payment: {}", tried.join("; "));
    tracing::warn!(order = %created.order_no, "{note}");
    if !cancel {
        return ServiceError::ChannelUnavailable { cause: note };
    }
    if let Err(ce) = state
        .store
        .cancel_unpaid(&created.order_no, Some(note.clone()), state.now_ms())
        .await
    {
        tracing::error!(order = %created.order_no, "cancel after channel failure: {ce}");
    }
    state.watch.changed(created.order_no.as_str());
    ServiceError::ChannelUnavailable { cause: note }
}

/// Phones and in-app browsers get the wallet jump; everything else the QR code.
pub fn guess_device(ua: Option<&str>) -> Device {
    match ua {
        Some(ua)
            if ["Mobile", "Android", "iPhone", "iPad", "MicroMessenger"]
                .iter()
                .any(|m| ua.contains(m)) =>
        {
            Device::Mobile
        }
        _ => Device::Pc,
    }
}
