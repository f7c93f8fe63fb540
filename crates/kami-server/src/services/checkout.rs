//! Placing an order: validate what the buyer asked for, reserve stock, and have the routed
//! channel create the payment. On a channel failure the stock goes back at once and the
//! channel's health records it. The JSON API and the product page's form both come here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kami_core::{
    CouponCode, CouponRefusal, Email, Method, Millis, Money, OrderNo, Quantity, SecretToken, Slug,
};
use kami_pay::{CreatePayment, Device, PayError, PaymentAction};
use kami_store::{NewOrder, StoreError};

use super::checks::FIRST_CHECK_MS;
use super::{passwords, risk, ServiceError, ServiceResult};
use crate::channels::Origin;
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
    /// What the buyer pays (after the coupon).
    pub amount: Money,
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
    let routed = state.channels.route(method).ok_or_else(|| {
        ServiceError::invalid(
            "unknown_method",
            format!("no payment channel serves {method}"),
        )
    })?;
    let channel = routed.channel.clone();
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
        channel_id: channel.id().clone(),
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
        stored_channel: routed.origin == Origin::Stored,
    };
    let created = match state.store.create_order(new).await {
        Ok(c) => c,
        Err(StoreError::OutOfStock) => {
            state.metrics.out_of_stock();
            return Err(StoreError::OutOfStock.into());
        }
        // Deleted by another process since this one last loaded the stored channels.
        Err(StoreError::ChannelGone) => {
            super::channel_admin::sync(state).await;
            return Err(ServiceError::ChannelUnavailable {
                cause: format!("channel {} was deleted meanwhile", channel.id()),
            });
        }
        // Now, not when this request began: a concurrent order may be the oldest one.
        Err(e) => return Err(risk::pending_refusal(e, state.now_ms())),
    };
    state.metrics.order_created();
    state
        .metrics
        .channel_order_created(channel.id().as_str(), method);

    let req = CreatePayment {
        trade_no: created.order_no.clone(),
        amount: created.amount,
        subject: created.product_title.clone(),
        method,
        device: b.device,
        notify_url: format!("{}/pay/notify/{}", state.public_url, channel.id()),
        return_url: format!(
            "{}/pay/return/{}?order_no={}",
            state.public_url,
            channel.id(),
            created.order_no
        ),
        expires_at_ms: created.expires_at,
        user_agent: b.user_agent,
        client_ip: b.client_ip,
    };
    let started = std::time::Instant::now();
    let created_payment = channel.create(&req).await;
    super::channel_calls::record_create(
        state,
        channel.id().as_str(),
        method,
        &created_payment,
        started,
    );
    let action = match created_payment {
        Ok(a) => {
            state.channels.record_create(channel.id().as_str(), true);
            a
        }
        Err(e) => {
            // Only a channel that cannot be reached or answers garbage is unhealthy; a
            // refusal of this one payment (a flavour not enabled, a parameter) is not, or any
            // buyer could take a method down by asking for it three times.
            if !matches!(e, PayError::Gateway { .. } | PayError::Unsupported(_)) {
                state.channels.record_create(channel.id().as_str(), false);
            }
            tracing::warn!(
                channel = %channel.id(),
                order = %created.order_no,
                "the channel could not create the payment: {e}"
            );
            // Give the stock back now rather than at expiry, saying why to the seller.
            let note = format!("channel {} could not create the payment: {e}", channel.id());
            if let Err(ce) = state
                .store
                .cancel_unpaid(&created.order_no, Some(note), state.now_ms())
                .await
            {
                tracing::error!(order = %created.order_no, "cancel after channel failure: {ce}");
            }
            state.watch.changed(created.order_no.as_str());
            return Err(ServiceError::ChannelUnavailable {
                cause: format!("channel {}: {e}", channel.id()),
            });
        }
    };
    Ok(Placed {
        order_no: created.order_no,
        token,
        amount: created.amount,
        discount: created.discount,
        quantity: quantity.get(),
        expires_at: created.expires_at,
        channel_id: channel.id().to_string(),
        method,
        action,
    })
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
