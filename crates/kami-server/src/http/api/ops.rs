//! Operations endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use axum::http::request::Parts;
use kami_core::SecretToken;

use crate::http::error::ApiError;
use crate::http::extract::{bearer, check_admin, ClientIp};
use crate::limits::RetryAfter;
use crate::metrics::Snapshot;
use crate::services::channel_measures;
use crate::state::AppState;

pub async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "database": state.store.backend_name()})),
        ),
        Err(e) => {
            tracing::error!("health check: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({"status": "unavailable", "database": state.store.backend_name()}),
                ),
            )
        }
    }
}

/// `GET /metrics`: `Authorization: Bearer` with the `[metrics]` token or an admin API token.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    parts: Parts,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(RetryAfter(s)) = state.limits.admin_locked_out(ip, state.now_ms()) {
        return Err(ApiError::too_many(
            "rate_limited",
            "too many failed token attempts from this address; try again later",
            s,
        ));
    }
    let metrics_token = state.config.metrics.token.as_ref().is_some_and(|t| {
        bearer(&parts.headers).is_some_and(|presented| {
            // Both hashed, compared in constant time.
            SecretToken::from_presented(presented)
                .matches(&SecretToken::from_presented(t.expose()).hash())
        })
    });
    if !metrics_token {
        check_admin(&state, &parts, ip).await?;
    }
    let store = state.store.clone();
    let counts = state
        .metrics
        .store_counts(state.now_ms(), || async move { store.counts().await })
        .await?;
    let health = channel_measures::health_samples(&state);
    let text = state
        .metrics
        .encode(&Snapshot {
            orders_by_status: &counts.orders_by_status,
            cards_available: counts.cards_available,
            cards_sold: counts.cards_sold,
            health: &health,
        })
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
