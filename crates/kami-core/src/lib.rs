//! kami's domain: money, identifiers, and the order, payment, refund and card-key state
//! machines. No I/O.

pub mod clock;
pub mod coin;
pub mod coupon;
pub mod fields;
pub mod fx;
pub mod ids;
pub mod money;
pub mod order;
pub mod pricing;
pub mod refund;

pub use cards::{CardEvent, CardStatus, CardTransitionError};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use coin::{CoinAmount, CoinError};
pub use coupon::{
    BasisPoints, CouponCode, CouponError, CouponRefusal, CouponRules, CouponValue, Discounted,
};
pub use fields::{FieldSpec, FieldsError, InputFields};
pub use fx::{Charge, ChargeCurrencies, FxError, FxTable, OwnPrices, Rate, Rounding};
pub use ids::{
    AmountLimits, ChannelId, ChannelLimits, Email, IdError, LimitsError, Method, OrderNo, Quantity,
    SecretToken, Slug, TradeNo,
};
pub use money::{Currency, Money, MoneyError};
pub use order::{
    OrderEvent, OrderStatus, PaymentEvent, PaymentStatus, PaymentTransitionError, TransitionError,
};
pub use pricing::{PriceTiers, Pricing, PricingError, Tier};
pub use refund::{RefundEvent, RefundStatus, RefundTransitionError};

/// Identifiers and statuses serialize as their stored string (`"K2026…"`, `"delivered"`), the
/// form every JSON answer already uses.
macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(
    Slug,
    ChannelId,
    OrderNo,
    TradeNo,
    Email,
    Method,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    CardStatus
);

/// Milliseconds since the Unix epoch (UTC). The one time representation stored and compared.
pub type Millis = i64;

pub mod cards;
