//! Order-engine tests through HTTP, each run on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod api_errors;
mod channel_ops;
mod channels;
mod flash_sale;
mod happy_path;
mod late_and_expiry;
mod mail;
mod notify_storm;
mod tampering;
