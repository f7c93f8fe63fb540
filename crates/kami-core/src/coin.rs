//! A crypto-currency amount as a USDT gateway states it (`4.25 USDT`): a plain decimal and
//! the coin's unit. Kept as exact text, never a float: the gateways compare coin amounts to
//! the last atomic unit, so kami does too. Equality ignores trailing fraction zeros (epusdt
//! prints `4.2500`, BEpusdt `4.25`).

use std::fmt;
use std::str::FromStr;

/// Longest decimal accepted (digits and the point): a coin amount, not a document.
const MAX_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoinError {
    #[error("coin amount `{0}` is not a plain positive decimal")]
    Amount(String),
    #[error("coin unit `{0}` is not 1-16 letters or digits")]
    Unit(String),
}

/// An exact coin amount with its unit. Displays and parses as `"<decimal> <UNIT>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoinAmount {
    /// Canonical: no leading zeros (one before the point), no trailing fraction zeros.
    value: String,
    unit: String,
}

impl CoinAmount {
    /// `value` a plain decimal (`4.25`, `4.2500`, `10`), positive; `unit` letters and digits,
    /// upper-cased.
    pub fn parse(value: &str, unit: &str) -> Result<CoinAmount, CoinError> {
        let bad = || CoinError::Amount(value.chars().take(MAX_LEN).collect());
        if value.is_empty() || value.len() > MAX_LEN {
            return Err(bad());
        }
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (value.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let int = if int.is_empty() { "0" } else { int };
        let value = if frac.is_empty() {
            int.to_owned()
        } else {
            format!("{int}.{frac}")
        };
        if unit.is_empty() || unit.len() > 16 || !unit.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CoinError::Unit(unit.chars().take(16).collect()));
        }
        Ok(CoinAmount {
            value,
            unit: unit.to_ascii_uppercase(),
        })
    }

    /// The canonical decimal (`4.25`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The coin (`USDT`).
    pub fn unit(&self) -> &str {
        &self.unit
    }
}

impl fmt::Display for CoinAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value, self.unit)
    }
}

impl FromStr for CoinAmount {
    type Err = CoinError;

    /// `"4.25 USDT"`, as [`Display`](fmt::Display) writes it.
    fn from_str(s: &str) -> Result<CoinAmount, CoinError> {
        let (value, unit) = s
            .split_once(' ')
            .ok_or_else(|| CoinError::Amount(s.chars().take(MAX_LEN).collect()))?;
        CoinAmount::parse(value, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_equal_whatever_the_trailing_zeros() {
        let a = CoinAmount::parse("4.2500", "usdt").map(|c| c.to_string());
        assert_eq!(a.as_deref(), Ok("4.25 USDT"));
        assert_eq!(
            CoinAmount::parse("004.25", "USDT"),
            CoinAmount::parse("4.25", "USDT")
        );
        assert_eq!(
            CoinAmount::parse("10.0", "TRX")
                .map(|c| c.to_string())
                .as_deref(),
            Ok("10 TRX")
        );
        assert_eq!(
            CoinAmount::parse("0.5", "TRX")
                .map(|c| c.value().to_owned())
                .as_deref(),
            Ok("0.5")
        );
        assert_ne!(
            CoinAmount::parse("4.25", "USDT"),
            CoinAmount::parse("4.2499", "USDT")
        );
        assert_eq!(
            "4.25 USDT".parse::<CoinAmount>(),
            CoinAmount::parse("4.25", "USDT")
        );
    }

    #[test]
    fn only_plain_positive_decimals() {
        for bad in [
            "", "0", "0.000", "-1", "1e3", "4.", ".5", "4,25", " 4", "NaN", "1.2.3",
        ] {
            assert!(CoinAmount::parse(bad, "USDT").is_err(), "{bad:?}");
        }
        assert!(CoinAmount::parse("1", "US DT").is_err());
        assert!(CoinAmount::parse("1", "").is_err());
        assert!("4.25".parse::<CoinAmount>().is_err());
    }
}
