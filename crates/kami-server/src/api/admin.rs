//! Admin API (bearer admin token).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use kami_core::{cards::parse_keys, Currency, Money, OrderNo, OrderStatus, SecretToken, Slug};
use kami_store::{Delivery, NewProduct, OrderFilter};
use serde::Deserialize;
use serde_json::json;

use super::buyer::order_json;
use super::{bearer, parse_json};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::time::now_ms;

/// Checks the admin bearer token; returns the token's name.
async fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    state
        .store
        .admin_token(&SecretToken::from_presented(token).hash())
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// Far above any real stock, far below integer overflow in stock arithmetic.
const MAX_MANUAL_STOCK: i64 = 1_000_000_000;

#[derive(Deserialize)]
struct NewProductBody {
    slug: String,
    title: String,
    price: i64,
    currency: String,
    delivery: String,
    #[serde(default)]
    description: String,
    /// Manual products only: how many may be sold (absent = unlimited).
    stock: Option<i64>,
}

pub async fn create_product(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    authorize(&state, &headers).await?;
    let b: NewProductBody = parse_json(&body)?;
    let slug =
        Slug::parse(&b.slug).map_err(|e| ApiError::unprocessable("invalid_slug", e.to_string()))?;
    let title = b.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_title",
            "title must be 1 to 200 characters",
        ));
    }
    if b.description.len() > 64 * 1024 {
        return Err(ApiError::unprocessable(
            "invalid_description",
            "description is longer than 64 KiB",
        ));
    }
    let currency = Currency::parse(&b.currency)
        .map_err(|e| ApiError::unprocessable("invalid_currency", e.to_string()))?;
    let price = Money::new(b.price, currency)
        .map_err(|e| ApiError::unprocessable("invalid_price", e.to_string()))?;
    let delivery = Delivery::parse(&b.delivery).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_delivery",
            "delivery must be \"auto\" or \"manual\"",
        )
    })?;
    let manual_stock =
        match (delivery, b.stock) {
            (Delivery::Auto, Some(_)) => return Err(ApiError::unprocessable(
                "invalid_stock",
                "auto-delivery stock is the imported card keys; stock applies to manual products",
            )),
            (_, Some(n)) if !(0..=MAX_MANUAL_STOCK).contains(&n) => {
                return Err(ApiError::unprocessable(
                    "invalid_stock",
                    format!("stock must be between 0 and {MAX_MANUAL_STOCK}"),
                ))
            }
            (_, s) => s,
        };
    let p = NewProduct {
        slug: slug.clone(),
        title: title.to_owned(),
        description: b.description,
        price,
        delivery,
        manual_stock,
    };
    state.store.create_product(p, now_ms()).await?;
    let body = json!({
        "slug": slug.as_str(),
        "title": title,
        "price": price.minor(),
        "currency": currency.code(),
        "delivery": delivery.as_str(),
    });
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    /// `loop=true`: the keys are reusable and never run out.
    #[serde(default, rename = "loop")]
    is_loop: bool,
}

pub async fn import_cards(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    authorize(&state, &headers).await?;
    let slug = Slug::parse(&slug)
        .map_err(|_| ApiError::not_found("product_not_found", "no such product"))?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::bad_request(
            "invalid_encoding",
            "card keys must be UTF-8 text, one per line",
        )
    })?;
    let parsed = parse_keys(text);
    let r = state
        .store
        .import_cards(slug.as_str(), parsed.keys, q.is_loop, now_ms(), &|_| {})
        .await?;
    Ok(Json(json!({
        "imported": r.imported,
        "duplicates": r.duplicates + parsed.duplicates_in_file,
        "rejected": parsed.rejected,
    })))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

pub async fn list_orders(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    authorize(&state, &headers).await?;
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            OrderStatus::parse(s).ok_or_else(|| {
                ApiError::unprocessable("invalid_status", format!("unknown status {s:?}"))
            })
        })
        .transpose()?;
    let before = q
        .before
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            OrderNo::parse(s).map_err(|_| {
                ApiError::unprocessable("invalid_cursor", "before must be an order number")
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let orders = state
        .store
        .list_orders(OrderFilter {
            status,
            before,
            limit,
        })
        .await?;
    let next = (orders.len() == limit as usize)
        .then(|| orders.last().map(|o| o.order_no.to_string()))
        .flatten();
    let list: Vec<_> = orders.iter().map(|o| order_json(o, true)).collect();
    Ok(Json(json!({ "orders": list, "next_before": next })))
}

pub async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(order_no): Path<String>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    authorize(&state, &headers).await?;
    let no = OrderNo::parse(&order_no)
        .map_err(|_| ApiError::not_found("order_not_found", "no such order"))?;
    let order = state
        .store
        .order(&no)
        .await?
        .ok_or_else(|| ApiError::not_found("order_not_found", "no such order"))?;
    let events: Vec<_> = state
        .store
        .payment_events(&no)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "channel": e.channel_id,
                "received_at": crate::time::rfc3339(e.received_at),
                "verified": e.verified,
                "outcome": e.outcome,
                "detail": e.detail,
            })
        })
        .collect();
    let mut body = order_json(&order, true);
    body["payment_events"] = json!(events);
    Ok(Json(body))
}
