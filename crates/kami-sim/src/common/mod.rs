//! What every simulator shares: notification delivery ([`notify`]), test controls
//! ([`faults`]) and HTML pages ([`html`]).

pub mod faults;
pub mod html;
pub mod notify;

pub use notify::{NotifyMode, NotifyStats};
