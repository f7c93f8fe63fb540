//! What every protocol module needs and none owns: the strict form parser ([`form`]), the
//! sorted `k=v&...` sign string and the one-`sign` check ([`sign`]), the plain-text
//! `success`/`fail` acknowledgement ([`ack`]) and small text helpers ([`text`]).

pub mod ack;
pub mod form;
pub mod sign;
pub mod text;

use kami_core::Clock;

/// Wall-clock seconds, for callers that hold no clock (the simulators, at the historical
/// paths `epay::now_secs` and `wechatpay::now_secs`). Channels never call it: they read the
/// [`kami_core::SharedClock`] they were given.
pub fn now_secs() -> i64 {
    kami_core::SystemClock.now_secs()
}

#[cfg(test)]
pub(crate) mod test_support;
