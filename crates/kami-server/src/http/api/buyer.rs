//! Buyer API: catalogue, order creation, order reading.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_core::{Method, Money, OrderStatus};
use kami_pay::Device;
use kami_store::{Order, Stock};
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bearer, AppJson, ClientIp};
use crate::i18n::Locale;
use crate::services::checkout::{guess_device, place_order, OrderInput, Placed};
use crate::services::orders;
use crate::services::product_images;
use crate::state::AppState;
use crate::time::rfc3339;

pub async fn products(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let (now, fx) = (state.now_ms(), state.settings().fx.clone());
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
                // The methods some channel can charge this product with now.
                "methods": state
                    .channels
                    .methods_for(now, p.price.currency(), &p.prices, &fx)
                    .into_iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>(),
                "prices": p.prices.iter().map(|m| (m.currency().code(), m.minor())).collect::<std::collections::BTreeMap<_, _>>(),
                "category": p.category,
                "min_quantity": p.pricing.min_quantity(),
                "max_quantity": p.pricing.max_quantity(),
                "tiers": p.pricing.tiers().tiers().iter().map(|t| json!({
                    "min_quantity": t.min_quantity(),
                    "price": t.unit_minor(),
                })).collect::<Vec<_>>(),
                // What to send as `fields` when ordering.
                "input_fields": p.input_fields.specs(),
                "image": p.image.as_deref().map(product_images::url),
                "image_thumb": p.image_thumb.as_deref().map(product_images::url),
            })
        })
        .collect();
    Ok(Json(json!({ "products": list })))
}

#[derive(Deserialize)]
pub struct CreateOrderBody {
    product: String,
    #[serde(default = "one")]
    quantity: i64,
    email: String,
    method: String,
    query_password: Option<String>,
    device: Option<String>,
    /// Answers to the product's input fields: `{NAME: VALUE}`.
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// A coupon code (any case).
    coupon: Option<String>,
}

fn one() -> i64 {
    1
}

pub async fn create_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ClientIp(client_ip): ClientIp,
    AppJson(b): AppJson<CreateOrderBody>,
) -> ApiResult<impl IntoResponse> {
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
        .and_then(Locale::negotiate)
        .unwrap_or(Locale::ZhCn);
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
            client_ip,
            fields: b.fields,
            coupon: b.coupon,
        },
    )
    .await?;
    let mut body = json!({
        "order_no": placed.order_no.as_str(),
        "access_token": placed.token.expose(),
        "status": "pending",
        "amount": placed.amount.minor(),
        "currency": placed.amount.currency().code(),
        "quantity": placed.quantity,
        "expires_at": rfc3339(placed.expires_at),
        "payment": payment_json(&placed),
    });
    if let Some(d) = placed.discount {
        body["discount"] = json!(d.minor());
    }
    if placed.charge != placed.amount {
        body["charge"] = charge_json(placed.charge);
    }
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    ))
}

/// The payment part of a created order's JSON.
fn payment_json(p: &Placed) -> serde_json::Value {
    let (channel, method) = (p.channel_id.as_str(), p.method.as_str());
    crate::services::payer::action_json(channel, method, &p.action)
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
    let (no, order) = orders::for_token(&state, &order_no, presented).await?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    let order = orders::wait_while(&state, &no, order, wait, |o| {
        o.status == OrderStatus::Pending
    })
    .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(order_json(&order, false)),
    ))
}

/// The JSON view of an order. Keys appear only once delivered; `admin` adds internals.
/// What the channel charges when it takes another currency than the order's.
fn charge_json(m: Money) -> serde_json::Value {
    json!({"amount": m.minor(), "currency": m.currency().code()})
}

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
    if let Some(c) = o.charge {
        v["charge"] = charge_json(c);
    }
    if let Some(c) = &o.coupon {
        v["coupon"] = json!(c.code);
        v["discount"] = json!(c.discount.minor());
    }
    if let Some(cards) = &o.cards {
        v["cards"] = json!(cards);
    }
    // A JSAPI payment prepared after the wallet sign-in: its bridge parameters.
    if let (false, OrderStatus::Pending, Some((kind, target))) =
        (admin, o.status, o.pay_action.as_ref())
    {
        if kind == "jsapi" {
            if let Ok(params) = serde_json::from_str::<serde_json::Value>(target) {
                v["payment"] = json!({"channel": o.channel_id, "method": o.method,
                                      "action": "jsapi", "jsapi": params});
            }
        }
    }
    // The seller's content is the buyer's once the order is fulfilled.
    if let Some(f) = o
        .fulfilment
        .as_ref()
        .filter(|_| admin || o.status == OrderStatus::Fulfilled)
    {
        v["fulfilment"] = json!(f);
    }
    if admin {
        v["fields"] = json!(o.fields);
        v["email"] = json!(o.email);
        v["channel"] = json!(o.channel_id);
        v["note"] = json!(o.note);
    }
    v
}
