//! kami's test kit (dev only): everything the integration tests of `kami-server` and `kami`
//! share, so that no test crate carries its own copy.
//!
//! - [`TestDb`]: a throw-away database on either [`Backend`] (SQLite in a temp dir, or a fresh
//!   PostgreSQL database dropped afterwards).
//! - [`TestApp`]: a real kami server on 127.0.0.1:0 over a fresh database, with an admin token;
//!   it derefs to a [`Shop`], the HTTP side.
//! - [`Shop`]: a kami shop reached over HTTP, driven like a seller (products, keys, admin
//!   orders, refunds), a buyer (orders, long-polls) and a gateway (signed notifications, paying
//!   through the simulators' pages like a browser); it serves a separate `kami serve` as well.
//! - [`process`]: the real `kami` binary as a child process (one-shot commands, `serve`).
//! - [`faulty`]: sandbox channels whose create calls fail or hang on command (failover).
//! - [`both_backends!`]: `sqlite` and `postgres` variants of one async test body.
//!
//! Tests that need something outside Cargo (PostgreSQL, the SMTP sink, Chromium) are
//! `#[ignore = "needs ..."]`; run with `--include-ignored`, they fail with a message saying
//! what is missing instead of passing quietly ([`require`]).

// A test kit: a failed expectation is a failed test, which is what `unwrap` reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod db;
pub mod faulty;
mod gateway;
pub mod html;
pub mod inspect;
pub mod process;
pub mod seed;
mod shop;
mod sims;

pub use app::{TestApp, RAISED_RISK};
pub use db::{hex_rand, pg_admin_url, Backend, TestDb};
pub use gateway::{notification_params, payment_page, SANDBOX_SECRET};
/// The gateway simulators (their merchant ids, for channels tests add through the API).
pub use kami_sim;
pub use shop::{assert_no_key_twice, cards, Shop};
pub use sims::{sandbox_on_clock, simulators, simulators_keeping, GatewaysSlot, KeptSims, Sims};

/// Fail the running test because an outside prerequisite is missing. Tests needing one are
/// `#[ignore]`d; whoever runs them anyway asked for them, so missing means failed, not passed.
#[track_caller]
pub fn require(what: &str, how: &str, why_missing: impl std::fmt::Display) -> ! {
    panic!("this test needs {what}, and it is not there: {why_missing}. {how}")
}

/// The workspace root (the test kit sits in `crates/kami-testkit`).
pub fn workspace_root() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `sqlite` and `postgres` test variants of an async test body `async fn NAME(Backend)`, in a
/// module `NAME`. The PostgreSQL variant is ignored by default (run it with `--include-ignored`).
///
/// `both_backends!(NAME, ignore = "why", postgres = "why, and PostgreSQL")` ignores both
/// variants, for bodies that need another outside service as well.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs PostgreSQL at KAMI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)"]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    };
    ($name:ident, ignore = $why:literal, postgres = $pg_why:literal) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = $why]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = $pg_why]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    };
}
