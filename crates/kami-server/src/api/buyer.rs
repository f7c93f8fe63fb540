//! Buyer API: catalogue, order creation, order reading.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use kami_core::{Email, Method, OrderNo, Quantity, SecretToken, Slug};
use kami_pay::{CreatePayment, Device, PaymentAction};
use kami_store::{NewOrder, Order, Stock, StoreError};
use serde::Deserialize;
use serde_json::json;

use super::{bearer, parse_json};
use crate::app::{AppState, Metrics};
use crate::error::{ApiError, ApiResult};
use crate::passwords;
use crate::time::{now_ms, rfc3339, stamp};

pub async fn products(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let methods: Vec<&str> = state
        .channels
        .methods()
        .into_iter()
        .map(Method::as_str)
        .collect();
    let list: Vec<_> = state
        .store
        .list_products()
        .await?
        .into_iter()
        .map(|p| {
            json!({
                "slug": p.slug,
                "title": p.title,
                "description": p.description,
                "price": p.price.minor(),
                "currency": p.price.currency().code(),
                "delivery": p.delivery.as_str(),
                "stock": match p.stock { Stock::Count(n) => json!(n), Stock::Unlimited => json!(null) },
                "methods": methods,
                "category": p.category,
                "min_quantity": p.pricing.min_quantity(),
                "max_quantity": p.pricing.max_quantity(),
                "tiers": p.pricing.tiers().tiers().iter().map(|t| json!({
                    "min_quantity": t.min_quantity(),
                    "price": t.unit_minor(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "products": list })))
}

#[derive(Deserialize)]
struct CreateOrderBody {
    product: String,
    #[serde(default = "one")]
    quantity: i64,
    email: String,
    method: String,
    query_password: Option<String>,
    device: Option<String>,
}

fn one() -> i64 {
    1
}

pub async fn create_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let b: CreateOrderBody = parse_json(&body)?;
    let device = match b.device.as_deref() {
        None => None,
        Some("pc") => Some(Device::Pc),
        Some("mobile") => Some(Device::Mobile),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_device",
                "device must be \"pc\" or \"mobile\"",
            ))
        }
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let locale = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::web::Locale::negotiate)
        .unwrap_or(crate::web::Locale::ZhCn);
    let placed = place_order(
        &state,
        OrderInput {
            product: b.product,
            quantity: b.quantity,
            email: b.email,
            method: b.method,
            query_password: b.query_password,
            device: device.unwrap_or_else(|| guess_device(user_agent.as_deref())),
            user_agent,
            locale,
            client_ip: None,
        },
    )
    .await?;
    let body = json!({
        "order_no": placed.order_no.as_str(),
        "access_token": placed.token.expose(),
        "status": "pending",
        "amount": placed.amount.minor(),
        "currency": placed.amount.currency().code(),
        "quantity": placed.quantity,
        "expires_at": rfc3339(placed.expires_at),
        "payment": placed.payment_json(),
    });
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    ))
}

/// An order as a buyer asks for it, from the JSON API or the product page's form.
pub(crate) struct OrderInput {
    pub product: String,
    pub quantity: i64,
    pub email: String,
    pub method: String,
    pub query_password: Option<String>,
    pub device: Device,
    pub user_agent: Option<String>,
    pub locale: crate::web::Locale,
    pub client_ip: Option<std::net::IpAddr>,
}

/// A created order with its payment, and the access token (shown once, stored hashed).
pub(crate) struct Placed {
    pub order_no: OrderNo,
    pub token: SecretToken,
    pub amount: kami_core::Money,
    pub quantity: u32,
    pub expires_at: kami_core::Millis,
    pub channel_id: String,
    pub method: Method,
    pub action: PaymentAction,
}

impl Placed {
    fn payment_json(&self) -> serde_json::Value {
        let (channel, method) = (self.channel_id.as_str(), self.method.as_str());
        match &self.action {
            PaymentAction::Qr { qr_code } => {
                json!({"channel": channel, "method": method, "action": "qr", "qr_code": qr_code})
            }
            PaymentAction::Redirect { url } => {
                json!({"channel": channel, "method": method, "action": "redirect", "url": url})
            }
        }
    }
}

/// Validate, reserve stock, and ask the routed channel to create the payment. On a channel
/// failure the stock goes back at once and the channel's health records it.
pub(crate) async fn place_order(state: &AppState, b: OrderInput) -> ApiResult<Placed> {
    let product = Slug::parse(&b.product)
        .map_err(|_| ApiError::not_found("product_not_found", "no such product"))?;
    let quantity = Quantity::new(b.quantity)
        .map_err(|e| ApiError::unprocessable("invalid_quantity", e.to_string()))?;
    let email = Email::parse(&b.email)
        .map_err(|e| ApiError::unprocessable("invalid_email", e.to_string()))?;
    let method = Method::parse(&b.method).map_err(|_| {
        ApiError::unprocessable(
            "unknown_method",
            format!("unknown payment method {:?}", b.method),
        )
    })?;
    let channel = state
        .channels
        .route(method)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_method",
                format!("no payment channel serves {method}"),
            )
        })?
        .clone();
    let password_hash = match b.query_password {
        None => None,
        Some(p) => Some(passwords::hash(p).await?),
    };

    let token = SecretToken::generate();
    let now = now_ms();
    let expires_at = now + state.config.orders.expire_ms();
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
        first_check_at: now + crate::workers::FIRST_CHECK_MS,
    };
    let created = match state.store.create_order(new).await {
        Ok(c) => c,
        Err(StoreError::OutOfStock) => {
            Metrics::inc(&state.metrics.orders_out_of_stock);
            return Err(StoreError::OutOfStock.into());
        }
        Err(e) => return Err(e.into()),
    };
    Metrics::inc(&state.metrics.orders_created);

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
    let action = match channel.create(&req).await {
        Ok(a) => {
            state.channels.record_create(channel.id().as_str(), true);
            a
        }
        Err(e) => {
            // Only a channel that cannot be reached or answers garbage is unhealthy; a
            // refusal of this one payment (a flavour not enabled, a parameter) is not, or any
            // buyer could take a method down by asking for it three times.
            if !matches!(
                e,
                kami_pay::PayError::Gateway { .. } | kami_pay::PayError::Unsupported(_)
            ) {
                state.channels.record_create(channel.id().as_str(), false);
            }
            // Give the stock back now rather than at expiry.
            if let Err(ce) = state.store.cancel_unpaid(&created.order_no).await {
                tracing::error!(order = %created.order_no, "cancel after channel failure: {ce}");
            }
            state.watch.changed(created.order_no.as_str());
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "channel_unavailable",
                "the payment channel could not create the payment; please try again",
            )
            .with_cause(format!("channel {}: {e}", channel.id())));
        }
    };
    Ok(Placed {
        order_no: created.order_no,
        token,
        amount: created.amount,
        quantity: quantity.get(),
        expires_at: created.expires_at,
        channel_id: channel.id().to_string(),
        method,
        action,
    })
}

pub(crate) fn guess_device(ua: Option<&str>) -> Device {
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

#[derive(Deserialize)]
pub struct ReadQuery {
    token: Option<String>,
    /// Long-poll: wait up to this many seconds (max 30) while the order is pending.
    wait: Option<u64>,
}

pub async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let presented = bearer(&headers)
        .or(q.token.as_deref())
        .ok_or_else(ApiError::unauthorized)?;
    let token = SecretToken::from_presented(presented);
    let not_found = || {
        ApiError::not_found(
            "order_not_found",
            "no such order, or the token does not match",
        )
    };
    let order_no = OrderNo::parse(&order_no).map_err(|_| not_found())?;

    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(30));
    let mut order = state.store.order(&order_no).await?.ok_or_else(not_found)?;
    if !token.matches(&order.access_token_hash) {
        return Err(not_found());
    }
    if order.status == kami_core::OrderStatus::Pending && !wait.is_zero() {
        // Subscribe, then re-read, so a change between the two reads is not missed.
        let handle = state.watch.subscribe(order_no.as_str());
        {
            let notified = handle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            order = state.store.order(&order_no).await?.ok_or_else(not_found)?;
            if order.status == kami_core::OrderStatus::Pending
                && tokio::time::timeout(wait, notified).await.is_ok()
            {
                order = state.store.order(&order_no).await?.ok_or_else(not_found)?;
            }
        }
        state.watch.unsubscribe(order_no.as_str(), handle);
    }
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(order_json(&order, false)),
    ))
}

/// The JSON view of an order. Keys appear only once delivered; `admin` adds internals.
pub(crate) fn order_json(o: &Order, admin: bool) -> serde_json::Value {
    let mut v = json!({
        "order_no": o.order_no.as_str(),
        "status": o.status.as_str(),
        "product": o.product_slug,
        "product_title": o.product_title,
        "quantity": o.quantity,
        "amount": o.amount.minor(),
        "currency": o.amount.currency().code(),
        "method": o.method,
        "created_at": rfc3339(o.created_at),
        "expires_at": rfc3339(o.expires_at),
        "paid_at": o.paid_at.map(rfc3339),
        "delivered_at": o.delivered_at.map(rfc3339),
    });
    if let Some(cards) = &o.cards {
        v["cards"] = json!(cards);
    }
    if admin {
        v["email"] = json!(o.email);
        v["channel"] = json!(o.channel_id);
        v["note"] = json!(o.note);
    }
    v
}
