//! Operations endpoints.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::app::AppState;
use crate::error::ApiError;

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

pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let counts = state.store.counts().await?;
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE kami_orders_created_total counter");
    let _ = writeln!(
        out,
        "kami_orders_created_total {}",
        m.orders_created.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE kami_orders_out_of_stock_total counter");
    let _ = writeln!(
        out,
        "kami_orders_out_of_stock_total {}",
        m.orders_out_of_stock.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE kami_orders_expired_total counter");
    let _ = writeln!(
        out,
        "kami_orders_expired_total {}",
        m.orders_expired.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE kami_notifications_total counter");
    for (outcome, n) in m
        .notifications
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(out, "kami_notifications_total{{outcome=\"{outcome}\"}} {n}");
    }
    let _ = writeln!(out, "# TYPE kami_orders gauge");
    for (status, n) in &counts.orders_by_status {
        let _ = writeln!(out, "kami_orders{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(out, "# TYPE kami_cards gauge");
    let _ = writeln!(
        out,
        "kami_cards{{status=\"available\"}} {}",
        counts.cards_available
    );
    let _ = writeln!(out, "kami_cards{{status=\"sold\"}} {}", counts.cards_sold);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
