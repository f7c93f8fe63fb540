//! The store's one error type.

use kami_core::{
    CardTransitionError, IdError, MoneyError, PaymentTransitionError, RefundTransitionError,
    TransitionError,
};

/// Everything the store can fail with. Business refusals (`OutOfStock`, ...) are distinct
/// variants so the server can map them to precise HTTP errors; `Database` is an internal
/// failure whose text is logged, never shown to users.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("product not found")]
    ProductNotFound,
    #[error("product already exists")]
    ProductExists,
    #[error("not enough stock")]
    OutOfStock,
    #[error("{0}")]
    InvalidInput(String),
    /// A product's price, tiers and quantity limits do not fit together (or the currency).
    #[error("{0}")]
    InvalidPricing(String),
    /// The buyer's answers do not fit the product's input fields.
    #[error("{0}")]
    InvalidFields(String),
    /// The buyer's coupon does not apply to this order (the refusal says why).
    #[error("{0}")]
    InvalidCoupon(kami_core::CouponRefusal),
    /// A coupon's settings do not fit together.
    #[error("{0}")]
    InvalidCouponSettings(String),
    #[error("coupon not found")]
    CouponNotFound,
    #[error("a coupon with this code already exists")]
    CouponExists,
    #[error("card key not found")]
    CardNotFound,
    #[error("no such stored channel")]
    ChannelNotFound,
    #[error("a stored channel with this id already exists")]
    ChannelExists,
    /// The channel was deleted while payments pointed at it: it is kept, read-only.
    #[error("the channel is archived (deleted while payments point at it) and cannot be changed")]
    ChannelArchived,
    /// An edit started from a revision that is no longer current.
    #[error("the channel was changed meanwhile; read it again and retry")]
    ChannelChanged,
    /// An order was routed to a stored channel that has been deleted since.
    #[error("the payment channel was removed meanwhile")]
    ChannelGone,
    #[error("no such alert target")]
    AlertTargetNotFound,
    #[error("an alert target with this name already exists")]
    AlertTargetExists,
    /// No routed channel's amount limits (min, max, what is left of its daily limit) admit
    /// the order's total.
    #[error("no payment channel takes an order of {amount}")]
    NoChannelForAmount { amount: kami_core::Money },
    /// None of the routed channels takes the order's currency, and neither the product's own
    /// prices nor the rate table convert the total to one they take.
    #[error(
        "no payment channel can be charged {amount} (no price or rate in a currency it takes)"
    )]
    NoChannelForCurrency { amount: kami_core::Money },
    /// The key is reserved by a pending order or sold: it cannot be removed.
    #[error("the card key is reserved or sold")]
    CardSold,
    #[error("import batch not found")]
    BatchNotFound,
    #[error("{0}")]
    InvalidQuantity(String),
    #[error("order not found")]
    OrderNotFound,
    /// The client or the email already holds its cap of unpaid orders; the oldest of them
    /// expires at `oldest_expires_at`.
    #[error("too many unpaid orders for this {}", match .scope { crate::model::PendingScope::Client => "client", crate::model::PendingScope::Email => "email" })]
    TooManyPending {
        scope: crate::model::PendingScope,
        oldest_expires_at: kami_core::Millis,
    },
    #[error("{0}")]
    NotRefundable(String),
    #[error("{0}")]
    InvalidAmount(String),
    /// The order is not in the status the action needs (the text says which it is in).
    #[error("{0}")]
    InvalidStatus(String),
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    BadUrl,
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The master key or its files: wrong, missing, unreadable (never the key itself).
    #[error("master key: {0}")]
    Key(String),
    /// A stored secret names a key (its id, in hex) this process does not hold.
    #[error("a stored secret is sealed under key {0}, which is not in this process's key ring: the master key was rotated after this process started (restart it), or master.key is not this database's key")]
    UnknownKey(String),
    /// The database is in use by other kami processes (`kami keys rotate` refuses to run).
    #[error("{0}")]
    InUse(String),
    /// The state machine refuses this change (kami-core's transition error, as text).
    #[error("refused status change: {0}")]
    IllegalTransition(String),
    /// A compare-and-set on a status matched no row: the row is not in the status it was read
    /// in, although it was read under its row lock.
    #[error("{table} row {id} is no longer {expected:?}; its status changed under the row lock")]
    StatusChanged {
        table: &'static str,
        id: i64,
        expected: &'static str,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Database(format!("connection pool: {e}"))
    }
}

impl From<MoneyError> for StoreError {
    fn from(e: MoneyError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<IdError> for StoreError {
    fn from(e: IdError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Every kami-core transition error is an [`StoreError::IllegalTransition`].
macro_rules! illegal_transition {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::IllegalTransition(e.to_string())
            }
        }
    )*};
}
illegal_transition!(
    TransitionError,
    PaymentTransitionError,
    RefundTransitionError,
    CardTransitionError
);
