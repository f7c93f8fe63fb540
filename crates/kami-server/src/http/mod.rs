//! The HTTP edge: the JSON API (`api/`), the storefront pages (`web/`), the extractors they
//! share and the one HTTP error type. Handlers translate requests into service calls and
//! service results into responses; the rules live in [`crate::services`].

pub mod api;
pub mod error;
pub mod extract;
pub mod web;

use std::sync::Arc;

use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with request ids (`X-Request-Id`, kept when a proxy sent one) and a tracing
/// span per request that names the id, method and path.
pub fn router(state: Arc<AppState>) -> Router {
    api::routes()
        .merge(web::routes())
        .fallback(web::fallback)
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", id, method = %req.method(), path = req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
