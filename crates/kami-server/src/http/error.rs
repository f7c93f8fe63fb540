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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
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
        }
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
            ServiceError::ChannelUnavailable { cause } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "channel_unavailable",
                "the payment channel could not create the payment; please try again",
            )
            .with_cause(cause),
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
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
