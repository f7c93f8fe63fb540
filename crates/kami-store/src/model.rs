//! The store's public records.

use std::collections::BTreeMap;
use std::sync::Arc;

use kami_core::{
    CardStatus, ChannelId, ChargeCurrencies, CoinAmount, CouponCode, Email, FxTable, InputFields,
    Method, Millis, Money, OrderNo, OrderStatus, OwnPrices, PriceTiers, Pricing, Quantity, Slug,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Card keys from stock, delivered the moment payment is verified.
    Auto,
    /// The seller fulfils by hand.
    Manual,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Auto => "auto",
            Delivery::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Delivery> {
        match s {
            "auto" => Some(Delivery::Auto),
            "manual" => Some(Delivery::Manual),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub slug: Slug,
    pub title: String,
    pub description: String,
    pub price: Money,
    pub delivery: Delivery,
    /// For manual products: how many can be sold (`None` = unlimited).
    pub manual_stock: Option<i64>,
    /// Catalogue group ("" = none) and position within the catalogue (lower first).
    pub category: String,
    pub sort_order: i64,
    /// Wholesale tiers and quantity limits; `price` is the base unit price.
    pub tiers: PriceTiers,
    pub min_quantity: i64,
    pub max_quantity: i64,
    /// The product's own unit prices in other currencies (checked against `price`'s
    /// currency: [`StoreError::InvalidPricing`](crate::StoreError::InvalidPricing)).
    pub prices: Vec<Money>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stock {
    Count(i64),
    Unlimited,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub slug: Slug,
    pub title: String,
    pub description: String,
    pub price: Money,
    pub delivery: Delivery,
    pub stock: Stock,
    pub category: String,
    pub sort_order: i64,
    /// Base price, wholesale tiers and quantity limits: what an order of N costs.
    pub pricing: Pricing,
    /// Its own unit prices in other currencies, for channels that cannot take `price`'s.
    pub prices: OwnPrices,
    /// What the buyer is asked when ordering (checked on order creation).
    pub input_fields: InputFields,
    /// The picture's media file name (`<sha256>.<ext>`) and its thumbnail's; `None`: none.
    pub image: Option<String>,
    pub image_thumb: Option<String>,
}

/// A product as the seller manages it: hidden ones too, with its stock by status.
#[derive(Debug, Clone)]
pub struct AdminProduct {
    pub product: Product,
    /// Listed in the catalogue and orderable.
    pub visible: bool,
    /// Manual products: how many may still be sold (`None`: unlimited, or an auto product).
    pub manual_stock: Option<i64>,
    pub cards: CardCounts,
    /// Some order (of any status) is for this product: it can be hidden, not deleted.
    pub has_orders: bool,
}

/// A product's card keys by status (loop keys counted apart: they never run out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardCounts {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    pub loop_keys: i64,
}

/// Who makes a change, for its audit row: `actor` is `user:NAME`, `token:NAME`, `cli`.
#[derive(Debug, Clone)]
pub struct Actor {
    pub actor: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn new(actor: impl Into<String>, ip: Option<String>) -> Actor {
        Actor {
            actor: actor.into(),
            ip,
        }
    }

    /// The audit row for `action` on `target` by this actor.
    pub fn entry(
        &self,
        action: &str,
        target: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.actor.clone(),
            action: action.to_owned(),
            target,
            ip: self.ip.clone(),
            before,
            after,
        }
    }
}

/// A seller's change to a product: `None` keeps the field. Each value is already parsed;
/// what depends on the current row (the price in its currency, tiers and limits together) is
/// checked by the store against it, in the transaction that writes.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub title: Option<String>,
    /// Minor units of the product's currency.
    pub price: Option<i64>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub visible: Option<bool>,
    pub tiers: Option<PriceTiers>,
    pub min_quantity: Option<i64>,
    pub max_quantity: Option<i64>,
    pub sort_order: Option<i64>,
    pub input_fields: Option<InputFields>,
    /// Replaces the own prices in other currencies (empty: none).
    pub prices: Option<Vec<Money>>,
}

/// What deleting a product did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductRemoval {
    /// It had no orders: gone, with its unsold keys and import batches.
    Deleted,
    /// It has orders, which keep pointing at it: hidden instead.
    Hidden,
}

/// One card key as the seller sees it (the secret opened).
#[derive(Debug, Clone)]
pub struct CardRecord {
    pub id: i64,
    pub secret: String,
    pub status: CardStatus,
    /// The import it came from (`None` for keys imported before batches were recorded).
    pub batch: Option<i64>,
    pub is_loop: bool,
    pub created_at: Millis,
    pub sold_at: Option<Millis>,
    /// The order holding it (reserved or sold).
    pub order_no: Option<OrderNo>,
}

/// Which keys of a product to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct CardFilter {
    pub status: Option<CardStatus>,
    pub batch: Option<i64>,
    /// Page backwards: only keys with a smaller id.
    pub before: Option<i64>,
    pub limit: u32,
}

/// Which unsold keys of a product to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardSelection {
    Batch(i64),
    AllUnsold,
}

/// One import of card keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBatch {
    pub id: i64,
    pub is_loop: bool,
    pub imported: u64,
    pub duplicates: u64,
    pub actor: String,
    pub created_at: Millis,
}

/// An import under way: [`crate::Store::begin_card_batch`] opened it, chunks go in with
/// [`crate::Store::import_into_batch`], [`crate::Store::finish_card_batch`] audits it.
#[derive(Debug, Clone)]
pub struct OpenBatch {
    pub id: i64,
    pub(crate) product_id: i64,
    pub(crate) slug: String,
    pub(crate) is_loop: bool,
    pub(crate) actor: Actor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportResult {
    pub imported: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_no: OrderNo,
    pub product: Slug,
    pub quantity: Quantity,
    pub email: Email,
    pub method: Method,
    pub channel_id: ChannelId,
    pub access_token_hash: String,
    pub query_password_hash: Option<String>,
    /// The buyer's language tag (`zh-CN`, `en`), for mail.
    pub locale: String,
    pub now: Millis,
    pub expires_at: Millis,
    /// When the payment-check worker first asks the channel about this payment.
    pub first_check_at: Millis,
    /// The client key the order is placed under (an IPv4 address, or an IPv6 /64 as
    /// `2001:db8:1:2::/64`); `None` when unknown.
    pub client_ip: Option<String>,
    /// The buyer's answers to the product's input fields, checked against them by the store
    /// (in the creating transaction, against the fields the product has then) and sealed.
    pub fields: BTreeMap<String, String>,
    /// Caps on the unpaid orders this client and this email may hold, checked in the
    /// transaction that creates the order.
    pub pending_caps: PendingCaps,
    /// The coupon the buyer typed, applied to the total (after wholesale tiers) in the
    /// creating transaction.
    pub coupon: Option<CouponCode>,
    /// `channel_id` is a stored channel (added through the admin API), not one of the
    /// configuration file's: the order requires its row, under its key lock, so it cannot
    /// land on a channel deleted meanwhile (`StoreError::ChannelGone`).
    pub stored_channel: bool,
    /// The routed candidates in the order to try them, each with its amount limits: the
    /// order goes to the first that admits its total (known only here, after tiers and
    /// coupon); none → [`crate::StoreError::NoChannelForAmount`], nothing kept. Empty: use
    /// `channel_id` / `stored_channel`.
    pub route: Vec<RouteChoice>,
    /// The shop's rate table, for a candidate that charges in another currency.
    pub fx: Arc<FxTable>,
}

/// One routed candidate channel of a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChoice {
    pub channel_id: ChannelId,
    /// A stored channel (see [`NewOrder::stored_channel`]).
    pub stored: bool,
    /// Limits on what the channel is charged (in `charge_in`).
    pub limits: kami_core::AmountLimits,
    /// The currency the channel charges an order in, by the product's currency: when it
    /// differs, the total is converted with the product's own price there or `NewOrder::fx`.
    pub charges: ChargeCurrencies,
}

/// How many unexpired pending orders one client key and one email may hold at once
/// (`None`: no cap). Counted in the creating transaction, so concurrent orders cannot overshoot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCaps {
    pub per_client: Option<u32>,
    pub per_email: Option<u32>,
}

/// Which cap a refused order hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingScope {
    Client,
    Email,
}

#[derive(Debug, Clone)]
pub struct CreatedOrder {
    pub order_no: OrderNo,
    /// The channel the order went to (the first of `NewOrder::route` its total fits).
    pub channel_id: ChannelId,
    /// What the buyer pays (after the coupon), in the product's currency.
    pub amount: Money,
    /// What the first attempt charges: `amount`, or it in the channel's currency.
    pub charge: Money,
    /// What the coupon took off (`None`: no coupon).
    pub discount: Option<Money>,
    pub product_title: String,
    pub expires_at: Millis,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub order_no: OrderNo,
    pub product_slug: Slug,
    pub product_title: String,
    pub quantity: i64,
    /// What the order costs in its product's currency (after the coupon).
    pub amount: Money,
    /// What the buyer is charged when the channel takes another currency (`None`: `amount`).
    pub charge: Option<Money>,
    pub email: Email,
    pub method: Method,
    pub channel_id: ChannelId,
    pub status: OrderStatus,
    pub access_token_hash: String,
    pub query_password_hash: Option<String>,
    pub note: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub paid_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub locale: String,
    /// How the buyer pays, as the channel answered at creation (`qr` / `redirect` and the
    /// code or URL); `None` for orders created through the API.
    pub pay_action: Option<(String, String)>,
    /// Delivered keys: `Some` only when the order was delivered and its keys were loaded
    /// (single-order reads); lists leave them out.
    pub cards: Option<Vec<String>>,
    /// What the seller gave the buyer for a manual order; `Some` once it was fulfilled.
    pub fulfilment: Option<String>,
    /// The buyer's answers to the product's input fields (opened; empty when none).
    pub fields: BTreeMap<String, String>,
    /// The coupon applied and what it took off (`amount` is after it).
    pub coupon: Option<AppliedCoupon>,
}

/// A coupon as an order recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCoupon {
    pub code: String,
    pub discount: Money,
}

/// Which orders the seller lists, newest first by creation. Every filter is an exact match
/// (or a creation-time range) backed by an index (migration 0013), so a page stays cheap
/// with any number of orders; there is deliberately no total count.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// An order number, an email or a gateway trade number (see [`OrderQuery`]).
    pub query: Option<OrderQuery>,
    pub status: Option<OrderStatus>,
    pub channel: Option<ChannelId>,
    pub method: Option<Method>,
    pub product: Option<Slug>,
    /// Created at or after this instant (inclusive).
    pub created_from: Option<Millis>,
    /// Created before this instant (exclusive).
    pub created_before: Option<Millis>,
    /// Page backwards: only orders created before this one (newest first, by creation).
    pub before: Option<OrderNo>,
    pub limit: u32,
}

/// The seller's search box, decided by the shape of what was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderQuery {
    OrderNo(OrderNo),
    Email(Email),
    /// The channel's own number for a payment (支付宝交易号, transaction_id, ...).
    GatewayTradeNo(String),
}

/// A notification exactly as received, for the payment event log.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub channel_id: String,
    pub http_method: String,
    pub query: String,
    /// JSON object of the headers.
    pub headers: String,
    pub body: Vec<u8>,
    pub received_at: Millis,
}

/// What the payment layer concluded about a notification.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Authentic, says paid. The store still checks binding, amount and currency.
    Paid {
        trade_no: String,
        gateway_trade_no: String,
        amount: Money,
        /// When the gateway says the buyer paid (unix ms), if it said.
        gateway_paid_at: Option<Millis>,
        /// The coin amount a crypto gateway reports paid; must equal the payment's
        /// `coin_amount` (what its create asked for) when both are known.
        coin_amount: Option<CoinAmount>,
    },
    /// Authentic and says paid, but the channel's own query does not confirm it
    /// (`confirm_by_query`): recorded (`unconfirmed`) and alerted, never applied; the order
    /// stays as it is and its checks keep asking.
    Unconfirmed {
        trade_no: String,
        gateway_trade_no: String,
        amount: Money,
        /// What the query said instead (no secrets: a state, an amount, an error kind).
        reason: String,
    },
    /// Authentic, but not a payment.
    NotPaid { trade_no: String, status: String },
    /// Failed verification (signature, merchant, format): logged, changes nothing.
    Rejected { reason: String },
}

/// What recording a notification did. `acknowledge()` says whether the gateway may stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    Delivered {
        order_no: OrderNo,
        late: bool,
    },
    AwaitingFulfilment {
        order_no: OrderNo,
    },
    /// Paid, but no stock could be found: the seller must act.
    Exception {
        order_no: OrderNo,
    },
    /// Already processed; nothing changed.
    Duplicate {
        order_no: OrderNo,
    },
    /// A second, different payment for an order that was already paid: recorded for the seller.
    ConflictingPayment {
        order_no: OrderNo,
    },
    NotPaid,
    UnknownOrder,
    AmountMismatch {
        expected: String,
        got: String,
    },
    Rejected,
    /// A signed success the channel's query did not confirm: held, the gateway retries.
    Unconfirmed,
}

impl NotifyOutcome {
    /// True when the outcome is durably recorded and the gateway must not resend.
    pub fn acknowledge(&self) -> bool {
        !matches!(
            self,
            NotifyOutcome::UnknownOrder
                | NotifyOutcome::AmountMismatch { .. }
                | NotifyOutcome::Rejected
                | NotifyOutcome::Unconfirmed
        )
    }

    pub fn code(&self) -> &'static str {
        match self {
            NotifyOutcome::Delivered { late: false, .. } => "delivered",
            NotifyOutcome::Delivered { late: true, .. } => "late_delivered",
            NotifyOutcome::AwaitingFulfilment { .. } => "awaiting_fulfilment",
            NotifyOutcome::Exception { .. } => "exception",
            NotifyOutcome::Duplicate { .. } => "duplicate",
            NotifyOutcome::ConflictingPayment { .. } => "conflicting_payment",
            NotifyOutcome::NotPaid => "not_paid",
            NotifyOutcome::UnknownOrder => "unknown_order",
            NotifyOutcome::AmountMismatch { .. } => "amount_mismatch",
            NotifyOutcome::Rejected => "rejected",
            NotifyOutcome::Unconfirmed => "unconfirmed",
        }
    }

    /// The order whose state changed, if any (for waking waiters).
    pub fn changed_order(&self) -> Option<&OrderNo> {
        match self {
            NotifyOutcome::Delivered { order_no, .. }
            | NotifyOutcome::AwaitingFulfilment { order_no }
            | NotifyOutcome::Exception { order_no } => Some(order_no),
            _ => None,
        }
    }
}

/// What found a payment: how a confirmation reached [`crate::Store::record_payment_signal`]
/// (stored as `payments.found_by`). Anything but `Notify` is a payment the gateway did not
/// (or not yet) tell kami about: a lost notification (掉单) recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FoundBy {
    /// The gateway's notification.
    Notify,
    /// An active query (the payment checks, the buyer's "I have paid").
    Query,
    /// The close before expiry found it paid.
    Close,
    /// The seller's "check payment" (补单).
    SellerCheck,
    /// The channel's bill (reconciliation).
    Bill,
}

impl FoundBy {
    pub const ALL: [FoundBy; 5] = [
        FoundBy::Notify,
        FoundBy::Query,
        FoundBy::Close,
        FoundBy::SellerCheck,
        FoundBy::Bill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Notify => "notify",
            FoundBy::Query => "query",
            FoundBy::Close => "close",
            FoundBy::SellerCheck => "seller_check",
            FoundBy::Bill => "bill",
        }
    }

    pub fn parse(s: &str) -> Option<FoundBy> {
        FoundBy::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A payment that moved its order to paid, as the post-commit steps need it (metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedPayment {
    pub method: Method,
    /// The gateway's pay time, if it said.
    pub gateway_paid_at: Option<Millis>,
    /// When kami received the signal that confirmed it.
    pub confirmed_at: Millis,
}

/// What recording a payment signal did: the outcome, and the payment it confirmed when the
/// order moved to paid (not for duplicates, conflicts or refusals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub outcome: NotifyOutcome,
    pub confirmed: Option<ConfirmedPayment>,
}

/// Counts for `/metrics` and the admin.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub orders_by_status: Vec<(OrderStatus, i64)>,
    pub cards_available: i64,
    pub cards_sold: i64,
}

/// One logged notification, as the admin sees it (the raw body stays in the database).
#[derive(Debug, Clone)]
pub struct PaymentEventSummary {
    pub channel_id: ChannelId,
    pub received_at: Millis,
    pub verified: bool,
    pub outcome: String,
    pub detail: Option<String>,
    /// The notification as received (a rejected one as truncated when it was stored).
    pub http_method: String,
    pub query: String,
    /// JSON object of the headers.
    pub headers: String,
    pub body: Vec<u8>,
}

/// One change for the audit log (`audit.rs`). `before` / `after` hold the changed fields as
/// JSON, never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// `user:NAME` (console), `token:NAME` (admin API), `cli`, `system`.
    pub actor: String,
    /// What was done, `noun.verb`: `product.update`, `order.refund`, `session.revoke`, ...
    pub action: String,
    /// What it was done to, `kind:id`: `product:vip`, `order:K20261206…`, `user:owner`.
    pub target: String,
    pub ip: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit log row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: Millis,
    pub entry: AuditEntry,
}

/// Which audit rows to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Page backwards: only rows older than this id.
    pub before_id: Option<i64>,
    pub target: Option<String>,
    pub actor: Option<String>,
    /// `at` in `[from, to)`.
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub limit: u32,
}
