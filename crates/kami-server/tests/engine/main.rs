//! Order-engine tests through HTTP, each run on SQLite and on PostgreSQL (the PostgreSQL
//! variants are ignored unless asked for: `cargo test -- --include-ignored`). The harness is
//! `kami-testkit`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerts;
mod api_errors;
mod cached_plans;
mod channel_measures;
mod channel_ops;
mod channels;
mod confirm_by_query;
mod coupons;
mod currencies;
mod flash_sale;
mod fulfilment;
mod gateway_refs;
mod happy_path;
mod late_and_expiry;
mod mail;
mod notify_storm;
mod order_actions;
mod paypal;
mod routing;
mod seller_cards;
mod seller_products;
mod stats;
mod stored_channels;
mod stripe;
mod tampering;
mod usdt;
// WeChat Pay JSAPI inside WeChat (issue 12 part 1).
mod wechat_jsapi;
// Settings (issue 10 part 8).
mod reconciliation;
mod settings;
