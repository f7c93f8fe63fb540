//! Protocol-faithful gateway simulators for kami's payment channels. Each protocol folder owns
//! one gateway side (`mod.rs`: state and wiring, `api.rs`: the merchant API, `pages.rs`: the
//! buyer's cashier pages) and exposes an axum router mounted under `/sim/{kind}/...`, so a
//! simulator can be merged into kami's own server (`kami serve --demo`) or served alone
//! (`kami sim --listen ADDR`). What they share — notification delivery, test controls, the
//! page templates — lives in [`common`].

pub mod alipay;
pub mod common;
pub mod epay;
pub mod epusdt;
pub mod gateways;
pub mod paypal;
pub mod sandbox;
pub mod stripe;
pub mod tokenpay;
pub mod wechatpay;

/// Every simulator on one router, for `kami sim --listen`. Default options (the real-ish
/// notification retry schedule).
pub fn standalone_router(sandbox_secret: Vec<u8>) -> axum::Router {
    sandbox::SandboxSim::new(sandbox_secret, sandbox::SimOptions::default()).router()
}
