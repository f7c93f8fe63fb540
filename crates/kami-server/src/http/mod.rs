//! The HTTP edge: the JSON API (`api/`), the storefront pages (`web/`), the extractors they
//! share and the one HTTP error type. Handlers translate requests into service calls and
//! service results into responses; the rules live in [`crate::services`].

pub mod api;
pub mod console;
pub mod error;
pub mod extract;
pub mod serve;
pub mod web;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, Request};
use axum::Router;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with a request id on every request and response (`X-Request-Id`, kept when
/// a proxy sent one) and a tracing span per request naming the id, method and path.
///
/// The span is at DEBUG (`RUST_LOG=info,kami_server=debug,tower_http=debug` shows it, with
/// the services' spans inside): at INFO it cost ~8 µs of CPU per request, 13 % of the
/// catalogue page's throughput (BENCHMARKS.md, issue 8).
pub fn router(state: Arc<AppState>) -> Router {
    api::routes()
        .merge(web::routes())
        .merge(console::routes())
        .fallback(web::fallback)
        .with_state(state)
        .layer(axum::middleware::from_fn(error::json_errors_under_api))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // The path only: query strings carry order access tokens.
                tracing::debug_span!("request", id, method = %req.method(), path = req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
}

/// Request ids without a system call per request: a random prefix drawn once per process and
/// a counter (`5f1c0e9a2b7d4c36-1f`), unique across the processes sharing a database.
#[derive(Clone)]
struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> RequestIds {
        RequestIds {
            prefix: rand::random(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:016x}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
