//! Money as integer minor units. Conversions to and from decimal strings ("12.30") happen
//! only here, exactly, never through floating point (DESIGN invariant 6).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency kami can price in. Each knows its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "CNY")]
    Cny,
    #[serde(rename = "USD")]
    Usd,
    #[serde(rename = "EUR")]
    Eur,
    #[serde(rename = "HKD")]
    Hkd,
    #[serde(rename = "JPY")]
    Jpy,
}

impl Currency {
    pub const ALL: [Currency; 5] = [
        Currency::Cny,
        Currency::Usd,
        Currency::Eur,
        Currency::Hkd,
        Currency::Jpy,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Hkd => "HKD",
            Currency::Jpy => "JPY",
        }
    }

    /// Digits after the decimal point in the major-unit notation.
    pub fn exponent(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            _ => 2,
        }
    }

    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(16).collect()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("amount {0:?} is not a decimal number with at most the currency's digits")]
    BadDecimal(String),
    #[error("amount must not be negative")]
    Negative,
    #[error("amount is too large")]
    Overflow,
}

/// The largest amount kami accepts in minor units: well inside i64 so sums of a few
/// thousand items cannot overflow, and far above any real single order.
pub const MAX_MINOR: i64 = 1_000_000_000_000;

/// A non-negative amount in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        if minor > MAX_MINOR {
            return Err(MoneyError::Overflow);
        }
        Ok(Money { minor, currency })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    /// Price × quantity, checked.
    pub fn times(self, quantity: u32) -> Result<Money, MoneyError> {
        let minor = self
            .minor
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::Overflow)?;
        Money::new(minor, self.currency)
    }

    /// Parse a major-unit decimal string as gateways send it: "12.30", "12.3", "12", "0.01".
    /// Rejects signs, exponents, whitespace, more fraction digits than the currency has,
    /// and anything that is not plain ASCII digits.
    pub fn from_major_str(s: &str, currency: Currency) -> Result<Money, MoneyError> {
        let bad = || MoneyError::BadDecimal(s.chars().take(32).collect());
        let exp = currency.exponent() as usize;
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        if int_part.is_empty()
            || int_part.len() > 13
            || !int_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let mut minor: i64 = 0;
        for b in int_part.bytes() {
            minor = minor * 10 + i64::from(b - b'0');
        }
        let mut frac_digits = 0usize;
        if let Some(f) = frac_part {
            if f.is_empty() || f.len() > exp || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            frac_digits = f.len();
            for b in f.bytes() {
                minor = minor * 10 + i64::from(b - b'0');
            }
        }
        for _ in frac_digits..exp {
            minor *= 10;
        }
        Money::new(minor, currency)
    }

    /// The canonical major-unit string with exactly the currency's digits: 1230 fen → "12.30".
    pub fn to_major_string(self) -> String {
        let exp = self.currency.exponent();
        if exp == 0 {
            return self.minor.to_string();
        }
        let div = 10i64.pow(exp);
        format!(
            "{}.{:0width$}",
            self.minor / div,
            self.minor % div,
            width = exp as usize
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_major_string(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_and_parses_known_values() {
        let cases = [
            (0, "0.00"),
            (1, "0.01"),
            (10, "0.10"),
            (1230, "12.30"),
            (100_000, "1000.00"),
        ];
        for (minor, s) in cases {
            let m = Money::new(minor, Currency::Cny).unwrap();
            assert_eq!(m.to_major_string(), s);
            assert_eq!(Money::from_major_str(s, Currency::Cny).unwrap(), m);
        }
        assert_eq!(
            Money::from_major_str("12.3", Currency::Cny)
                .unwrap()
                .minor(),
            1230
        );
        assert_eq!(
            Money::from_major_str("12", Currency::Cny).unwrap().minor(),
            1200
        );
        assert_eq!(
            Money::from_major_str("500", Currency::Jpy).unwrap().minor(),
            500
        );
        assert_eq!(
            Money::new(500, Currency::Jpy).unwrap().to_major_string(),
            "500"
        );
    }

    #[test]
    fn rejects_malformed_decimals() {
        for s in [
            "",
            ".",
            "1.",
            ".5",
            "-1.00",
            "+1.00",
            "1.001",
            "1e3",
            " 1.00",
            "1.00 ",
            "1,00",
            "0x10",
            "１.00",
            "1..0",
            "NaN",
            "99999999999999.00",
        ] {
            assert!(
                Money::from_major_str(s, Currency::Cny).is_err(),
                "{s:?} accepted"
            );
        }
        assert!(Money::from_major_str("1.0", Currency::Jpy).is_err());
    }

    #[test]
    fn rejects_negative_and_huge() {
        assert_eq!(Money::new(-1, Currency::Cny), Err(MoneyError::Negative));
        assert_eq!(
            Money::new(MAX_MINOR + 1, Currency::Cny),
            Err(MoneyError::Overflow)
        );
        let m = Money::new(MAX_MINOR, Currency::Cny).unwrap();
        assert_eq!(m.times(2), Err(MoneyError::Overflow));
    }

    proptest! {
        #[test]
        fn minor_round_trips_through_string(minor in 0i64..=MAX_MINOR, cur in 0usize..5) {
            let c = Currency::ALL[cur];
            let m = Money::new(minor, c).unwrap();
            let s = m.to_major_string();
            prop_assert_eq!(Money::from_major_str(&s, c).unwrap(), m);
        }

        #[test]
        fn string_round_trips_through_minor(int in 0i64..1_000_000_000, frac in 0i64..100) {
            let s = format!("{int}.{frac:02}");
            let m = Money::from_major_str(&s, Currency::Cny).unwrap();
            prop_assert_eq!(m.minor(), int * 100 + frac);
            prop_assert_eq!(m.to_major_string(), s);
        }

        #[test]
        fn short_fraction_means_tens(int in 0i64..1_000_000, d in 0i64..10) {
            let m = Money::from_major_str(&format!("{int}.{d}"), Currency::Cny).unwrap();
            prop_assert_eq!(m.minor(), int * 100 + d * 10);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,24}") {
            let _ = Money::from_major_str(&s, Currency::Cny);
        }

        #[test]
        fn parsed_value_is_never_negative_or_over_max(s in "[0-9.\\-+e]{0,20}") {
            if let Ok(m) = Money::from_major_str(&s, Currency::Cny) {
                prop_assert!(m.minor() >= 0 && m.minor() <= MAX_MINOR);
            }
        }
    }
}
