//! The storefront: server-rendered pages (DESIGN 4.3 "Pages"), their theme, languages and
//! assets. Pages read and write through the same store and channels as the JSON API; they
//! work without JavaScript, and the page script adds live updates, the running total and
//! copy buttons.

mod pages;
pub mod request;
mod switch;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::catalogue))
        .route("/p/{slug}", get(pages::product).post(pages::place))
        .route("/orders/{order_no}", get(pages::order))
        .route("/orders/{order_no}/keys.txt", get(pages::keys_txt))
        .route(
            "/orders/{order_no}/check",
            axum::routing::post(pages::check_payment),
        )
        .route(
            "/orders/{order_no}/switch",
            axum::routing::post(switch::switch_method),
        )
        .route("/lookup", get(pages::lookup_form).post(pages::lookup))
        .route("/assets/{*path}", get(asset))
        .route("/media/{name}", get(media))
}

/// `GET /media/<sha256>.<jpg|png>`: a product picture. Its name is its content, so it is
/// cached for a year; a name that is not strictly a media name, or no such file, is `404`.
async fn media(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match crate::services::product_images::read(&state, &name).await {
        Ok(Some((bytes, mime))) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such picture").into_response(),
        Err(e) => {
            tracing::error!("serving a picture: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the picture could not be read",
            )
                .into_response()
        }
    }
}

pub use pages::fallback;

async fn asset(State(state): State<Arc<AppState>>, Path(path): Path<String>) -> Response {
    match state.theme.asset(&path) {
        Some((bytes, mime)) => {
            let mut resp = bytes.into_owned().into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// What the order page says about the delivery mail: `off` (no `[smtp]`), `pending`, `sent`;
/// `none` (nothing said) for orders without a delivery mail, one given up, or a failed read.
async fn mail_line(state: &AppState, order: &kami_store::Order) -> &'static str {
    use crate::services::mail::{status, MailStatus};
    use kami_store::MailState;
    let Ok(no) = kami_core::OrderNo::parse(order.order_no.as_str()) else {
        return "none";
    };
    match status(state, &no).await {
        Ok(MailStatus::Disabled) => "off",
        Ok(MailStatus::Known(MailState::Sent { .. })) => "sent",
        Ok(MailStatus::Known(MailState::Pending { .. })) => "pending",
        Ok(MailStatus::Known(MailState::Failed { .. })) => "failed",
        Ok(MailStatus::NotApplicable) => "none",
        Err(e) => {
            tracing::warn!(order = %order.order_no, "reading the delivery mail state: {e}");
            "none"
        }
    }
}
