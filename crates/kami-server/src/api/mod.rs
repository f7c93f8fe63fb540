//! HTTP routes (DESIGN 4.3).

mod admin;
pub(crate) mod buyer;
mod gateway;
mod ops;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/products", get(buyer::products))
        .route("/api/v1/orders", post(buyer::create_order))
        .route("/api/v1/orders/{order_no}", get(buyer::get_order))
        .route("/api/v1/admin/products", post(admin::create_product))
        .route(
            "/api/v1/admin/products/{slug}/cards",
            post(admin::import_cards).layer(DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .route("/api/v1/admin/orders", get(admin::list_orders))
        .route("/api/v1/admin/orders/{order_no}", get(admin::get_order))
        .route(
            "/api/v1/admin/orders/{order_no}/refund",
            post(admin::refund),
        )
        .route(
            "/pay/notify/{channel_id}",
            get(gateway::notify).post(gateway::notify),
        )
        .route("/pay/return/{channel_id}", get(gateway::return_page))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .merge(crate::web::router())
        .fallback(crate::web::fallback)
        .with_state(state)
}

/// The API's 404 for unknown paths.
pub(crate) fn not_found_json() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

/// Parse a JSON body with a precise, user-facing error (`invalid_json`).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))
}

/// The bearer token of a request, from `Authorization: Bearer ...`.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
