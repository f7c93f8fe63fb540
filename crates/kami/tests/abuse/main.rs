#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The abuse suite (issue 9): each attack found against `kami serve` replayed against the real
//! server — in this process through the test kit, or as the `kami` binary where its memory and
//! sockets matter — bounded in count and time, loopback only, asserting the defence.

mod connections;
mod events;
mod risk;
mod risk_edges;
mod secrets;
