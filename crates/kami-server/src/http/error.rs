//! The one HTTP error type. Users see a stable code and a clear message; the cause is logged
//! and never sent (it may hold internals).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kami_store::StoreError;

use crate::services::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    cause: Option<String>,
    /// Seconds for `Retry-After` (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; it has been logged".into(),
            cause: Some(cause.to_string()),
            retry_after: None,
        }
    }
    /// `429` with `Retry-After: seconds`.
    pub fn too_many(code: &'static str, message: impl Into<String>, seconds: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
        e.retry_after = Some(seconds.max(1));
        e
    }
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> ApiError {
        self.cause = Some(cause.to_string());
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ProductNotFound => {
                ApiError::not_found("product_not_found", "no such product")
            }
            StoreError::ProductExists => ApiError::new(
                StatusCode::CONFLICT,
                "product_exists",
                "a product with this slug already exists",
            ),
            StoreError::OutOfStock => ApiError::new(
                StatusCode::CONFLICT,
                "out_of_stock",
                "not enough stock for this quantity",
            ),
            StoreError::InvalidQuantity(m) => ApiError::unprocessable("invalid_quantity", m),
            StoreError::InvalidInput(m) => ApiError::unprocessable("invalid_request", m),
            StoreError::InvalidPricing(m) => ApiError::unprocessable("invalid_pricing", m),
            StoreError::InvalidFields(m) => ApiError::unprocessable("invalid_fields", m),
            StoreError::InvalidCoupon(r) => ApiError::unprocessable("invalid_coupon", r.to_string()),
            StoreError::InvalidCouponSettings(m) => {
                ApiError::unprocessable("invalid_coupon_settings", m)
            }
            StoreError::CouponNotFound => ApiError::not_found("coupon_not_found", "no such coupon"),
            StoreError::CouponExists => ApiError::new(
                StatusCode::CONFLICT,
                "coupon_exists",
                "a coupon with this code already exists",
            ),
            StoreError::CardNotFound => {
                ApiError::not_found("card_not_found", "this product has no such card key")
            }
            StoreError::CardSold => ApiError::new(
                StatusCode::CONFLICT,
                "card_sold",
                "the card key is reserved by a pending order or sold; only unsold keys can be deleted",
            ),
            StoreError::BatchNotFound => {
                ApiError::not_found("batch_not_found", "this product has no such import batch")
            }
            StoreError::OrderNotFound => ApiError::not_found("order_not_found", "no such order"),
            StoreError::NotRefundable(m) => {
                ApiError::new(StatusCode::CONFLICT, "not_refundable", m)
            }
            StoreError::InvalidAmount(m) => ApiError::unprocessable("invalid_amount", m),
            StoreError::InvalidStatus(m) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_status", m)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { code, message } => ApiError::unprocessable(code, message),
            ServiceError::NotFound { code, message } => ApiError::not_found(code, message),
            ServiceError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::ChannelUnavailable { cause } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "channel_unavailable",
                "the payment channel could not create the payment; please try again",
            )
            .with_cause(cause),
            ServiceError::Limited {
                code,
                message,
                retry_after,
            } => ApiError::too_many(code, message, retry_after),
            ServiceError::Blocked => ApiError::new(
                StatusCode::FORBIDDEN,
                "blocked",
                "orders from this address or email are not accepted",
            ),
            ServiceError::Store(e) => e.into(),
            ServiceError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match (&self.cause, self.status.is_server_error()) {
            (Some(c), true) => tracing::error!(code = self.code, "request failed: {c}"),
            (Some(c), false) => tracing::info!(code = self.code, "request refused: {c}"),
            _ => {}
        }
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Under `/api/` every error is JSON: an error answer that is not (axum's own `405`, a body
/// limit's `413`, ...) gets the API's error body with the same status and headers.
pub async fn json_errors_under_api(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::header;
    let api = req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not accept this method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the request body must be application/json",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; try again later"),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the server is busy; try again later"),
        s if s.is_server_error() => ("internal", "internal error; it has been logged"),
        _ => ("bad_request", "the request could not be served"),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}
