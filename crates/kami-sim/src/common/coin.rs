//! What the USDT simulators (epusdt, TokenPay) share: coin amounts in 1e-4 units and the
//! cashier page's test controls.

use std::time::Duration;

use kami_core::{CoinAmount, Money};
use kami_pay::epay::field;

use super::NotifyMode;

/// How a payment is made on the cashier (test controls).
#[derive(Debug, Clone, Copy, Default)]
pub struct PayOptions {
    /// Coin sent, in 1e-4 units, instead of the asked amount.
    pub coin_units: Option<i64>,
    /// The fiat amount the notification states instead of the order's.
    pub fiat: Option<Money>,
    pub notify: NotifyMode,
}

impl PayOptions {
    /// The cashier form's controls: `coin` (the amount actually sent, empty: the asked one)
    /// and `notify` (`normal`, `drop`, `duplicate`).
    pub fn from_cashier_form(form: &[(String, String)]) -> Result<PayOptions, &'static str> {
        let coin_units = match field(form, "coin").filter(|v| !v.is_empty()) {
            None => None,
            Some(c) => Some(
                CoinAmount::parse(c, "USDT")
                    .ok()
                    .and_then(|c| units_of(c.value()))
                    .ok_or("coin must be a decimal with at most 4 digits")?,
            ),
        };
        let notify = NotifyMode::parse(
            field(form, "notify").unwrap_or(""),
            Duration::ZERO,
            &["normal", "drop", "duplicate"],
        )
        .unwrap_or_default();
        Ok(PayOptions {
            coin_units,
            fiat: None,
            notify,
        })
    }
}

/// `4.1258` → 41258 (at most 4 decimals).
pub fn units_of(value: &str) -> Option<i64> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 4 {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let frac: i64 = format!("{frac:0<4}").parse().ok()?;
    int.checked_mul(10_000)?.checked_add(frac)
}
