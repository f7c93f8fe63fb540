//! What every protocol module needs and none owns: the strict form parser ([`form`]), the
//! sorted `k=v&...` sign string and the one-`sign` check ([`sign`]), the plain-text
//! `success`/`fail` acknowledgement ([`ack`]), the gateway's pay time read leniently
//! ([`pay_time`]), small text helpers ([`text`]) and what the bill parsers share
//! ([`bill_text`]).

pub mod ack;
pub mod bill_text;
pub mod coin_ref;
pub mod form;
pub mod pay_time;
pub mod settings;
pub mod sign;
pub mod text;

#[cfg(test)]
pub(crate) mod test_support;
