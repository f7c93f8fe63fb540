#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The abuse suite (issue 9): each attack replayed against the real server, bounded in count
//! and time, loopback only, asserting the defence.

mod secrets;
