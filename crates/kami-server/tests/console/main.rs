//! Seller console tests over real HTTP with a cookie-keeping client, each on SQLite and on
//! PostgreSQL: sign-in, limits and locks, session cookie and expiry (on the app's manual
//! clock, never by sleeping), revocation, CSRF, TOTP with replay and recovery codes, the
//! `next` redirect and the dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod admins;
mod alerts;
mod cards;
mod catalog;
mod channel_measures;
mod channels;
mod coupons;
mod csrf;
mod dashboard;
mod order_actions;
mod order_page;
mod orders_list;
mod people;
mod products;
mod reconciliations;
mod search;
mod sessions;
mod sign_in;
mod totp;
// Settings (issue 10 part 8).
mod settings;
