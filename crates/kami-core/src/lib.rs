//! kami's domain: money, identifiers, and the order, payment, refund and card-key state
//! machines. No I/O.

pub mod clock;
pub mod ids;
pub mod money;
pub mod order;
pub mod pricing;
pub mod refund;

pub use cards::{CardEvent, CardStatus, CardTransitionError};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{ChannelId, Email, IdError, Method, OrderNo, Quantity, SecretToken, Slug};
pub use money::{Currency, Money, MoneyError};
pub use order::{
    OrderEvent, OrderStatus, PaymentEvent, PaymentStatus, PaymentTransitionError, TransitionError,
};
pub use pricing::{PriceTiers, Pricing, PricingError, Tier};
pub use refund::{RefundEvent, RefundStatus, RefundTransitionError};

/// Milliseconds since the Unix epoch (UTC). The one time representation stored and compared.
pub type Millis = i64;

pub mod cards;
