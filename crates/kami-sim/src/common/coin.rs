//! What the USDT simulators (epusdt, TokenPay) share: coin amounts in 1e-4 units and the
//! cashier page's test controls.

use std::collections::HashSet;
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

/// The coin amounts (1e-4 units) that waiting trades hold on the one wallet: a new trade of
/// the same fiat amount takes the next free one (both gateways raise a colliding amount by one
/// unit). Kept as a set beside the trades, so a create costs the collisions it meets, not a
/// scan of every trade the simulator ever held (a load test holds tens of thousands).
#[derive(Debug, Default)]
pub struct HeldUnits(HashSet<i64>);

impl HeldUnits {
    /// The first free amount from `units` on, now held.
    pub fn take_free(&mut self, mut units: i64) -> i64 {
        while !self.0.insert(units) {
            units += 1;
        }
        units
    }

    /// The trade holding `units` stopped waiting (paid, expired, cancelled).
    pub fn release(&mut self, units: i64) {
        self.0.remove(&units);
    }
}

#[cfg(test)]
mod held_tests {
    use super::HeldUnits;

    #[test]
    fn colliding_amounts_move_up_and_come_back_free() {
        let mut h = HeldUnits::default();
        assert_eq!(h.take_free(42_500), 42_500);
        assert_eq!(h.take_free(42_500), 42_501);
        assert_eq!(h.take_free(42_500), 42_502);
        h.release(42_501);
        assert_eq!(h.take_free(42_500), 42_501);
        assert_eq!(h.take_free(10_000), 10_000);
    }
}
