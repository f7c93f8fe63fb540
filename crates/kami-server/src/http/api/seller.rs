//! Seller operations on products and card keys (DESIGN 4.3), admin token: thin handlers over
//! `services::products` and `services::card_stock`, which the console calls as well.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kami_core::Slug;
use kami_store::{
    Actor, AdminProduct, CardBatch, CardFilter, CardRecord, CardSelection, ProductRemoval,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{parse_json_fields, AdminAuth, AppBytes, ClientIp};
use crate::services::card_stock::{self, parse_status};
use crate::services::product_images;
use crate::services::products::{self, ProductChanges};
use crate::state::AppState;
use crate::time::rfc3339;

/// Who an admin-token call acts as, for the audit log.
pub(super) fn actor(admin: &AdminAuth, ip: ClientIp) -> Actor {
    Actor::new(format!("token:{}", admin.0), ip.0.map(|ip| ip.to_string()))
}

pub(super) fn slug_or_404(slug: &str) -> ApiResult<Slug> {
    Slug::parse(slug).map_err(|_| ApiError::not_found("product_not_found", "no such product"))
}

pub(super) fn product_json(a: &AdminProduct) -> Value {
    let p = &a.product;
    json!({
        "slug": p.slug,
        "title": p.title,
        "price": p.price.minor(),
        "currency": p.price.currency().code(),
        "delivery": p.delivery.as_str(),
        "category": p.category,
        "sort_order": p.sort_order,
        "visible": a.visible,
        "description": p.description,
        "min_quantity": p.pricing.min_quantity(),
        "max_quantity": p.pricing.max_quantity(),
        "tiers": p.pricing.tiers().tiers().iter().map(|t| json!({
            "min_quantity": t.min_quantity(),
            "price": t.unit_minor(),
        })).collect::<Vec<_>>(),
        "input_fields": p.input_fields.specs(),
        "stock": {
            "available": a.cards.available,
            "reserved": a.cards.reserved,
            "sold": a.cards.sold,
            "loop": a.cards.loop_keys,
            "manual": a.manual_stock,
        },
        "has_orders": a.has_orders,
        "image": p.image.as_deref().map(product_images::url),
        "image_thumb": p.image_thumb.as_deref().map(product_images::url),
    })
}

/// `GET /api/v1/admin/products`: every product, hidden ones too.
pub async fn list_products(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let list: Vec<Value> = products::list(&state)
        .await?
        .iter()
        .map(product_json)
        .collect();
    Ok(Json(json!({ "products": list })))
}

/// `PATCH /api/v1/admin/products/{slug}`: malformed JSON is `400 invalid_json`; a field that
/// does not exist or has the wrong type `422 invalid_field`; a bad value its own 422 code.
pub async fn update_product(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    AppBytes(body): AppBytes,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let changes: ProductChanges = parse_json_fields(&headers, &body)?;
    let p = products::update(&state, slug.as_str(), changes, &actor(&admin, ip)).await?;
    Ok(Json(product_json(&p)))
}

/// `DELETE /api/v1/admin/products/{slug}`: `{"deleted": true, "hidden": false}`, or, for a
/// product with orders, `{"deleted": false, "hidden": true}`.
pub async fn delete_product(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let removal = products::remove(&state, slug.as_str(), &actor(&admin, ip)).await?;
    let deleted = removal == ProductRemoval::Deleted;
    Ok(Json(json!({ "deleted": deleted, "hidden": !deleted })))
}

#[derive(Deserialize)]
pub struct CardsQuery {
    status: Option<String>,
    batch: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
}

fn card_json(c: &CardRecord) -> Value {
    let mut v = json!({
        "id": c.id,
        "secret": c.secret,
        "status": c.status,
        "batch": c.batch,
        "is_loop": c.is_loop,
        "created_at": rfc3339(c.created_at),
        "sold_at": c.sold_at.map(rfc3339),
    });
    if let Some(no) = &c.order_no {
        v["order_no"] = json!(no);
    }
    v
}

/// `GET /api/v1/admin/products/{slug}/cards?status=&batch=&before=&limit=`: newest first;
/// `next_before` pages on.
pub async fn list_cards(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    Query(q): Query<CardsQuery>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_status)
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = CardFilter {
        status,
        batch: q.batch,
        before: q.before,
        limit,
    };
    let cards = card_stock::list(&state, slug.as_str(), filter).await?;
    let next = (cards.len() == limit as usize)
        .then(|| cards.last().map(|c| c.id))
        .flatten();
    let list: Vec<Value> = cards.iter().map(card_json).collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "cards": list, "next_before": next })),
    ))
}

pub(super) fn batch_json(b: &CardBatch) -> Value {
    json!({
        "id": b.id,
        "created_at": rfc3339(b.created_at),
        "imported": b.imported,
        "duplicates": b.duplicates,
        "is_loop": b.is_loop,
        "actor": b.actor,
    })
}

/// `GET /api/v1/admin/products/{slug}/batches`: import batches, newest first.
pub async fn list_batches(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    _admin: AdminAuth,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let list: Vec<Value> = card_stock::batches(&state, slug.as_str(), 1000)
        .await?
        .iter()
        .map(batch_json)
        .collect();
    Ok(Json(json!({ "batches": list })))
}

/// `DELETE /api/v1/admin/products/{slug}/cards/{id}`: an unsold key; `409 card_sold` if an
/// order holds it.
pub async fn delete_card(
    State(state): State<Arc<AppState>>,
    Path((slug, id)): Path<(String, String)>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("card_not_found", "this product has no such card key"))?;
    card_stock::delete_one(&state, slug.as_str(), id, &actor(&admin, ip)).await?;
    Ok(Json(json!({ "deleted": 1 })))
}

#[derive(Deserialize)]
pub struct DeleteCardsQuery {
    batch: Option<i64>,
    all: Option<String>,
}

/// `DELETE /api/v1/admin/products/{slug}/cards?batch=ID` or `?all=unsold`: `{"deleted": N}`.
pub async fn delete_cards(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    Query(q): Query<DeleteCardsQuery>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let which = match (q.batch, q.all.as_deref()) {
        (Some(b), None) => CardSelection::Batch(b),
        (None, Some("unsold")) => CardSelection::AllUnsold,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_selection",
                "say which keys: ?batch=ID or ?all=unsold (one of them)",
            ))
        }
    };
    let n = card_stock::delete_many(&state, slug.as_str(), which, &actor(&admin, ip)).await?;
    Ok(Json(json!({ "deleted": n })))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    status: Option<String>,
}

/// `GET /api/v1/admin/products/{slug}/cards.csv?status=available`: unsold keys as a CSV
/// attachment, streamed.
pub async fn export_cards(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    Query(q): Query<ExportQuery>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let status = parse_status(q.status.as_deref().unwrap_or("available"))?;
    let stream = card_stock::export_csv(&state, slug.as_str(), status, &actor(&admin, ip)).await?;
    let disposition = format!(
        "attachment; filename=\"{}-{}.csv\"",
        slug.as_str(),
        status.as_str()
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    ))
}
