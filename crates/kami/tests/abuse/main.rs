//! The abuse suite: each attack of issue 9 replayed against the real server, bounded in count
//! and time, loopback only, asserting the defence.

mod connections;
