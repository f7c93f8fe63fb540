//! The abuse suite: each attack of issue 9 replayed against a real server (in-process
//! `TestApp` or the `kami serve` binary), bounded in count and time, loopback only, asserting
//! the defence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod risk;
mod risk_edges;
