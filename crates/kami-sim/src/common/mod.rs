//! What every simulator shares: notification delivery ([`notify`]), test controls
//! ([`faults`]), the USDT simulators' coin amounts and cashier controls ([`coin`]), HTML pages ([`html`]), bill days and the bill's test controls ([`bill`]) and
//! the zip writer of Alipay's bill ([`zip`]).

pub mod bill;
pub mod coin;
pub mod faults;
pub mod html;
pub mod notify;
pub mod zip;

pub use notify::{NotifyMode, NotifyStats};
