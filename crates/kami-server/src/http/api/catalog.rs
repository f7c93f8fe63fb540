//! Admin API for the catalogue's shape (issue 10 part 3): a product's picture (raw image
//! body in, `DELETE` to remove), moving a product within its group, and the groups
//! themselves (list, create, rename or reposition, move, delete). Thin handlers over
//! `services::product_images`, `services::products` and `services::categories`, which the
//! console calls as well.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use http_body_util::BodyExt;
use kami_store::Category;
use serde::Deserialize;
use serde_json::{json, Value};

use super::seller::{actor, product_json, slug_or_404};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{body_error, AdminAuth, AppJson, ClientIp};
use crate::media::MAX_UPLOAD_BYTES;
use crate::services::categories::{self, CategoryChanges};
use crate::services::{product_images, products};
use crate::state::AppState;

type St = State<Arc<AppState>>;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "image_too_large",
        format!(
            "the image is larger than {} MB",
            MAX_UPLOAD_BYTES / (1024 * 1024)
        ),
    )
}

/// Read an upload of at most [`MAX_UPLOAD_BYTES`]: a larger declared length is refused before
/// a byte is read, a longer body as soon as it passes the cap.
async fn read_capped(headers: &HeaderMap, body: Body) -> ApiResult<Vec<u8>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BYTES as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(StatusCode::BAD_REQUEST, &e))?;
        if let Ok(chunk) = frame.into_data() {
            if out.len() + chunk.len() > MAX_UPLOAD_BYTES {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

/// `PUT /api/v1/admin/products/{slug}/image`: the picture as the raw body (`Content-Type:
/// image/png`, `image/jpeg`, `image/webp` or `image/gif`, at most 5 MB) → the product, with
/// `image` and `image_thumb` URLs. A file that is not such a picture: `422` with a precise
/// code (`not_an_image`, `unsupported_image`, `image_too_many_pixels`, `damaged_image`);
/// too large: `413 image_too_large`. Nothing is stored then.
pub async fn put_image(
    State(state): St,
    Path(slug): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let is_image = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("image/"));
    if !is_image {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the picture as the body with Content-Type image/png, image/jpeg, image/webp \
             or image/gif",
        ));
    }
    let bytes = read_capped(&headers, body).await?;
    let p = product_images::set(&state, slug.as_str(), bytes, &actor(&admin, ip)).await?;
    Ok(Json(product_json(&p)))
}

/// `DELETE /api/v1/admin/products/{slug}/image` → the product, without a picture.
pub async fn delete_image(
    State(state): St,
    Path(slug): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let p = product_images::clear(&state, slug.as_str(), &actor(&admin, ip)).await?;
    Ok(Json(product_json(&p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    direction: String,
}

/// `POST /api/v1/admin/products/{slug}/move` `{"direction": "up"|"down"}`: one place within
/// its category (`409 cannot_move` at an end) → the product.
pub async fn move_product(
    State(state): St,
    Path(slug): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<MoveBody>,
) -> ApiResult<impl IntoResponse> {
    let slug = slug_or_404(&slug)?;
    let dir = products::parse_direction(&b.direction)?;
    let p = products::move_product(&state, slug.as_str(), dir, &actor(&admin, ip)).await?;
    Ok(Json(product_json(&p)))
}

fn category_json(c: &Category) -> Value {
    json!({ "name": c.name, "sort_order": c.sort_order, "products": c.products })
}

/// `GET /api/v1/admin/categories` → `{"categories": [{"name", "sort_order", "products"}]}`,
/// in the storefront's order.
pub async fn list_categories(State(state): St, _admin: AdminAuth) -> ApiResult<impl IntoResponse> {
    let list: Vec<Value> = categories::list(&state)
        .await?
        .iter()
        .map(category_json)
        .collect();
    Ok(Json(json!({ "categories": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    name: String,
    sort_order: Option<i64>,
}

/// `POST /api/v1/admin/categories` `{"name", "sort_order"?}` → `201` (last unless placed;
/// `409 category_exists`).
pub async fn create_category(
    State(state): St,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<NewCategory>,
) -> ApiResult<impl IntoResponse> {
    let c = categories::create(&state, &b.name, b.sort_order, &actor(&admin, ip)).await?;
    Ok((StatusCode::CREATED, Json(category_json(&c))))
}

/// `PATCH /api/v1/admin/categories/{name}` `{"name"?, "sort_order"?}`: rename (its products
/// follow) or reposition.
pub async fn update_category(
    State(state): St,
    Path(name): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<CategoryChanges>,
) -> ApiResult<impl IntoResponse> {
    let c = categories::update(&state, &name, b, &actor(&admin, ip)).await?;
    Ok(Json(category_json(&c)))
}

/// `DELETE /api/v1/admin/categories/{name}` → `{"deleted": true, "uncategorised": N}`: its
/// products stay in the shop, without a category.
pub async fn delete_category(
    State(state): St,
    Path(name): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
) -> ApiResult<impl IntoResponse> {
    let n = categories::delete(&state, &name, &actor(&admin, ip)).await?;
    Ok(Json(json!({ "deleted": true, "uncategorised": n })))
}

/// `POST /api/v1/admin/categories/{name}/move` `{"direction": "up"|"down"}`.
pub async fn move_category(
    State(state): St,
    Path(name): Path<String>,
    admin: AdminAuth,
    ip: ClientIp,
    AppJson(b): AppJson<MoveBody>,
) -> ApiResult<impl IntoResponse> {
    let dir = products::parse_direction(&b.direction)?;
    let c = categories::move_one(&state, &name, dir, &actor(&admin, ip)).await?;
    Ok(Json(category_json(&c)))
}
