//! The shop's use cases, called by the HTTP handlers and by the background jobs alike:
//! placing an order, applying what a channel says about a payment, refunding, checking
//! pending payments, looking orders up, mailing keys. Services decide; the store keeps the
//! decision atomic; the HTTP layer only translates requests and [`ServiceError`]s.

pub mod admin_users;
pub mod alert_admin;
pub mod alert_checks;
pub mod alerts;
pub mod audit_log;
pub mod card_stock;
pub mod categories;
pub mod channel_admin;
pub mod channel_calls;
pub mod channel_measures;
pub mod checkout;
pub mod checks;
pub mod console;
pub mod coupons;
pub mod dashboard;
pub mod fulfilment;
pub mod lookup;
pub mod mail;
pub mod order_actions;
pub mod order_detail;
pub mod order_search;
pub mod orders;
pub mod passwords;
pub mod payer;
pub mod payments;
pub mod product_images;
pub mod products;
pub mod reconciliation;
pub mod reconciliation_match;
pub mod recovery;
pub mod refunds;
pub mod retention;
pub mod risk;
pub mod routing;
pub mod settings;
pub mod stats;
pub mod switch;
pub mod totp;
pub mod two_factor;

use kami_store::StoreError;

/// Why a use case did not happen. `code`s are the stable API error codes (DESIGN 4.3).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is well-formed but not acceptable (HTTP 422).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// What the request names does not exist, or is not the caller's to see (HTTP 404).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The request conflicts with the current state of what it names (HTTP 409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The payment channel could not create the payment (HTTP 502); `cause` is for the log.
    #[error("the payment channel could not create the payment: {cause}")]
    ChannelUnavailable { cause: String },
    /// Too many requests or unpaid orders (HTTP 429): retry after `retry_after` seconds.
    #[error("{message}")]
    Limited {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// The client address or the email is on a `[risk]` block list (HTTP 403).
    #[error("this order is not accepted")]
    Blocked,
    /// The store refused or failed (its own variants say which).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not happen; the message is for the log only.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::NotFound {
            code,
            message: message.into(),
        }
    }
    pub fn internal(cause: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal(cause.to_string())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
