//! Prices in other currencies (issue 12 part 5). An order is priced in its product's currency;
//! a channel that cannot take that currency (PayPal never takes CNY) is charged in one it can,
//! at the product's own price in that currency when the seller set one, else through the
//! shop's rate table `[fx]` with its explicit rounding rule. Exact integer arithmetic on minor
//! units, never floating point (DESIGN invariant 6).

use std::collections::BTreeMap;
use std::fmt;

use crate::money::{Currency, Money, MoneyError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FxError {
    #[error(
        "rate {0:?} is not a positive decimal with at most 12 digits, 8 of them after the point"
    )]
    BadRate(String),
    #[error("rounding {0:?} is not one of: up, nearest, down")]
    BadRounding(String),
    #[error("the rate table has no rate for {0}")]
    NoRate(Currency),
    #[error("the base currency {0} has no rate of its own (it is 1)")]
    BaseRate(Currency),
    #[error("{0} converts to nothing: the amount is below one minor unit of {1}")]
    Vanishes(Money, Currency),
    #[error("the product's price in its own currency is zero; it cannot be scaled")]
    ZeroListPrice,
    #[error("a price in {0} is the product's own price, not another currency's")]
    OwnCurrency(Currency),
    #[error("the price in {0} must be above zero")]
    ZeroPrice(Currency),
    #[error("two prices in {0}")]
    TwoPrices(Currency),
    #[error("stored prices {0:?} are not CODE:MINOR,...")]
    BadPrices(String),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// How an amount that falls between two minor units is settled. `Up` is the default: the
/// seller never receives less than the rate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    #[default]
    Up,
    /// Half a minor unit and more goes up.
    Nearest,
    Down,
}

impl Rounding {
    pub const ALL: [Rounding; 3] = [Rounding::Up, Rounding::Nearest, Rounding::Down];

    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::Up => "up",
            Rounding::Nearest => "nearest",
            Rounding::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Result<Rounding, FxError> {
        Rounding::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| FxError::BadRounding(s.chars().take(16).collect()))
    }

    /// `num / den` rounded by this rule (`den > 0`).
    fn divide(self, num: u128, den: u128) -> u128 {
        let (q, r) = (num / den, num % den);
        let up = match self {
            Rounding::Up => r > 0,
            Rounding::Nearest => r >= den - r,
            Rounding::Down => false,
        };
        q + u128::from(up)
    }
}

/// Significant digits of a rate, at most: keeps every product of the conversion inside u128.
const RATE_DIGITS: usize = 12;
/// Digits after the point, at most.
const RATE_SCALE: usize = 8;

/// How many units of the base currency one unit of another costs (`USD = "7.245"` in a CNY
/// shop: US$1 = ¥7.245). Exact: `mantissa / 10^scale`, positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    mantissa: u64,
    scale: u32,
}

impl Rate {
    pub const ONE: Rate = Rate {
        mantissa: 1,
        scale: 0,
    };

    /// A plain decimal: `7.245`, `0.0485`, `150`. No sign, exponent or spaces.
    pub fn parse(s: &str) -> Result<Rate, FxError> {
        let bad = || FxError::BadRate(s.chars().take(32).collect());
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty()
            || (s.contains('.') && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > RATE_SCALE
        {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        let digits = format!("{}{frac}", int.trim_start_matches('0'));
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() || digits.len() > RATE_DIGITS {
            return Err(bad());
        }
        let mantissa = digits.parse::<u64>().map_err(|_| bad())?;
        Ok(Rate {
            mantissa,
            scale: frac.len() as u32,
        })
    }
}

impl fmt::Display for Rate {
    /// Canonical: no leading zeros, no trailing fraction zeros (`7.245`, `0.0485`, `150`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&s);
        }
        let padded = format!("{s:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{int}.{frac}")
    }
}

/// The shop's rate table: a rate per currency against `base`, and the rounding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxTable {
    base: Currency,
    rates: BTreeMap<Currency, Rate>,
    rounding: Rounding,
}

impl Default for FxTable {
    /// No rates: only the products' own prices convert.
    fn default() -> FxTable {
        FxTable {
            base: Currency::Cny,
            rates: BTreeMap::new(),
            rounding: Rounding::Up,
        }
    }
}

impl FxTable {
    pub fn new(
        base: Currency,
        rates: BTreeMap<Currency, Rate>,
        rounding: Rounding,
    ) -> Result<FxTable, FxError> {
        if rates.contains_key(&base) {
            return Err(FxError::BaseRate(base));
        }
        Ok(FxTable {
            base,
            rates,
            rounding,
        })
    }

    pub fn base(&self) -> Currency {
        self.base
    }

    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// The rates other than the base's, by currency.
    pub fn rates(&self) -> &BTreeMap<Currency, Rate> {
        &self.rates
    }

    /// Base units per unit of `c` (the base itself: 1).
    pub fn rate(&self, c: Currency) -> Option<Rate> {
        if c == self.base {
            return Some(Rate::ONE);
        }
        self.rates.get(&c).copied()
    }

    /// Whether `from` converts to `to` with this table.
    pub fn converts(&self, from: Currency, to: Currency) -> bool {
        from == to || (self.rate(from).is_some() && self.rate(to).is_some())
    }

    /// `amount` in `to`, through the base currency, rounded by the table's rule. A positive
    /// amount that would round to zero is refused rather than charged as nothing.
    pub fn convert(&self, amount: Money, to: Currency) -> Result<Money, FxError> {
        let from = amount.currency();
        if from == to {
            return Ok(amount);
        }
        let rf = self.rate(from).ok_or(FxError::NoRate(from))?;
        let rt = self.rate(to).ok_or(FxError::NoRate(to))?;
        // minor_to = minor_from × rf / rt × 10^(exp_to − exp_from), kept integral:
        // num = minor × m_f × 10^(s_t + e_t), den = m_t × 10^(s_f + e_f). With at most 12
        // rate digits, 8 + 2 extra powers of ten and amounts below 10^12, num < 10^34.
        let num = u128::from(amount.minor().unsigned_abs())
            * u128::from(rf.mantissa)
            * 10u128.pow(rt.scale + to.exponent());
        let den = u128::from(rt.mantissa) * 10u128.pow(rf.scale + from.exponent());
        let minor = self.rounding.divide(num, den);
        if minor == 0 && amount.minor() > 0 {
            return Err(FxError::Vanishes(amount, to));
        }
        let minor = i64::try_from(minor).map_err(|_| MoneyError::Overflow)?;
        Ok(Money::new(minor, to)?)
    }

    /// `total` (an order's amount after tiers and coupon, in its product's currency, whose
    /// list unit price is `list`) in the currency of `own`, the product's own unit price
    /// there: scaled by `own / list`, so a quantity of the list price is exactly that
    /// quantity of the own price and a discount carries over in proportion.
    pub fn scale(&self, total: Money, list: Money, own: Money) -> Result<Money, FxError> {
        if list.minor() == 0 {
            return Err(FxError::ZeroListPrice);
        }
        let num = u128::from(total.minor().unsigned_abs()) * u128::from(own.minor().unsigned_abs());
        let minor = self
            .rounding
            .divide(num, u128::from(list.minor().unsigned_abs()));
        if minor == 0 && total.minor() > 0 {
            return Err(FxError::Vanishes(total, own.currency()));
        }
        let minor = i64::try_from(minor).map_err(|_| MoneyError::Overflow)?;
        Ok(Money::new(minor, own.currency())?)
    }

    /// What a payment in `to` charges for an order of `total` (list unit price `list`): the
    /// same amount in the same currency; the product's own price in `to` (`own`) scaled;
    /// or the rate table's conversion. How, in words, goes with it for the order's record.
    pub fn charge(
        &self,
        total: Money,
        list: Money,
        own: Option<Money>,
        to: Currency,
    ) -> Result<Charge, FxError> {
        if total.currency() == to {
            return Ok(Charge {
                money: total,
                basis: None,
            });
        }
        if let Some(own) = own.filter(|o| o.currency() == to) {
            return Ok(Charge {
                money: self.scale(total, list, own)?,
                basis: Some(format!(
                    "the product's {to} price {}",
                    own.to_major_string()
                )),
            });
        }
        let money = self.convert(total, to)?;
        let mut rates: Vec<String> = [total.currency(), to]
            .into_iter()
            .filter(|c| *c != self.base)
            .filter_map(|c| self.rate(c).map(|r| format!("1 {c} = {r} {}", self.base)))
            .collect();
        rates.push(format!("rounded {}", self.rounding.as_str()));
        Ok(Charge {
            money,
            basis: Some(rates.join(", ")),
        })
    }
}

/// A product's own prices in currencies other than its own, per unit: what a channel that
/// cannot take the product's currency charges before the rate table is asked. Stored as
/// `USD:999,JPY:1500` (minor units, currencies in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnPrices(Vec<Money>);

impl OwnPrices {
    /// At most one price per currency, none in the product's own (`own`), none zero.
    pub fn new(mut prices: Vec<Money>, own: Currency) -> Result<OwnPrices, FxError> {
        prices.sort_by_key(|m| m.currency().code());
        for (i, p) in prices.iter().enumerate() {
            if p.currency() == own {
                return Err(FxError::OwnCurrency(own));
            }
            if p.minor() == 0 {
                return Err(FxError::ZeroPrice(p.currency()));
            }
            if i > 0 && prices[i - 1].currency() == p.currency() {
                return Err(FxError::TwoPrices(p.currency()));
            }
        }
        Ok(OwnPrices(prices))
    }

    /// The stored form; `""` is none.
    pub fn parse(s: &str, own: Currency) -> Result<OwnPrices, FxError> {
        let bad = || FxError::BadPrices(s.chars().take(64).collect());
        let prices = s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (code, minor) = p.split_once(':').ok_or_else(bad)?;
                let c = Currency::parse(code).map_err(|_| bad())?;
                let minor = minor.parse::<i64>().map_err(|_| bad())?;
                Ok(Money::new(minor, c)?)
            })
            .collect::<Result<Vec<_>, FxError>>()?;
        OwnPrices::new(prices, own)
    }

    /// The price in `c`, if the seller set one.
    pub fn get(&self, c: Currency) -> Option<Money> {
        self.0.iter().copied().find(|m| m.currency() == c)
    }

    pub fn iter(&self) -> impl Iterator<Item = Money> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for OwnPrices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", m.currency().code(), m.minor())?;
        }
        Ok(())
    }
}

/// The currency a channel charges an order priced in each currency kami knows (PayPal: CNY
/// becomes USD; a mainland gateway: everything becomes CNY). Built from the channel once per
/// checkout, so the store can price the order in the transaction that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeCurrencies([Currency; Currency::ALL.len()]);

impl ChargeCurrencies {
    /// `charge_in(c)`: what an order priced in `c` is charged in.
    pub fn new(charge_in: impl Fn(Currency) -> Currency) -> ChargeCurrencies {
        ChargeCurrencies(Currency::ALL.map(charge_in))
    }

    /// What an order priced in `c` is charged in.
    pub fn of(&self, c: Currency) -> Currency {
        Currency::ALL
            .iter()
            .position(|k| *k == c)
            .map_or(c, |i| self.0[i])
    }
}

impl Default for ChargeCurrencies {
    /// Every currency charged as itself.
    fn default() -> ChargeCurrencies {
        ChargeCurrencies(Currency::ALL)
    }
}

/// What one payment charges: the money, and how it follows from the order's amount (`None`:
/// the order's own amount and currency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub money: Money,
    pub basis: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(minor: i64, c: Currency) -> Money {
        Money::new(minor, c).unwrap()
    }

    fn table(rounding: Rounding) -> FxTable {
        let rates = BTreeMap::from([
            (Currency::Usd, Rate::parse("7.245").unwrap()),
            (Currency::Jpy, Rate::parse("0.0485").unwrap()),
        ]);
        FxTable::new(Currency::Cny, rates, rounding).unwrap()
    }

    #[test]
    fn rates_parse_exactly_and_print_canonically() {
        for (s, shown) in [
            ("7.245", "7.245"),
            ("7.2450", "7.245"),
            ("007.20", "7.2"),
            ("0.0485", "0.0485"),
            ("150", "150"),
            ("0.00000001", "0.00000001"),
            ("999999999999", "999999999999"),
        ] {
            assert_eq!(Rate::parse(s).unwrap().to_string(), shown, "{s}");
        }
        for s in [
            "",
            "0",
            "0.000",
            "-1",
            "+1",
            "1.",
            ".5",
            "1e3",
            " 1",
            "1 ",
            "1,5",
            "NaN",
            "0.000000001",
            "1234567890123",
            "７",
        ] {
            assert!(Rate::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn converts_through_the_base_with_each_rounding() {
        // ¥69.00 / 7.245 = US$9.5238…
        let cny = m(6900, Currency::Cny);
        assert_eq!(
            table(Rounding::Up).convert(cny, Currency::Usd).unwrap(),
            m(953, Currency::Usd)
        );
        assert_eq!(
            table(Rounding::Down).convert(cny, Currency::Usd).unwrap(),
            m(952, Currency::Usd)
        );
        assert_eq!(
            table(Rounding::Nearest)
                .convert(cny, Currency::Usd)
                .unwrap(),
            m(952, Currency::Usd)
        );
        // US$10.00 = ¥72.45 exactly: no rounding either way.
        for r in Rounding::ALL {
            assert_eq!(
                table(r)
                    .convert(m(1000, Currency::Usd), Currency::Cny)
                    .unwrap(),
                m(7245, Currency::Cny)
            );
        }
        // JPY has no minor digits: ¥10.00 CNY / 0.0485 = 206.18… yen.
        assert_eq!(
            table(Rounding::Up)
                .convert(cny_of(1000), Currency::Jpy)
                .unwrap(),
            m(207, Currency::Jpy)
        );
        assert_eq!(
            table(Rounding::Down)
                .convert(cny_of(1000), Currency::Jpy)
                .unwrap(),
            m(206, Currency::Jpy)
        );
        // Between two quoted currencies: US$1.00 = ¥7.245 = 149.38… yen.
        assert_eq!(
            table(Rounding::Nearest)
                .convert(m(100, Currency::Usd), Currency::Jpy)
                .unwrap(),
            m(149, Currency::Jpy)
        );
        // 1000 yen = ¥48.50 = US$6.694…
        assert_eq!(
            table(Rounding::Up)
                .convert(m(1000, Currency::Jpy), Currency::Usd)
                .unwrap(),
            m(670, Currency::Usd)
        );
    }

    fn cny_of(minor: i64) -> Money {
        m(minor, Currency::Cny)
    }

    #[test]
    fn nearest_rounds_half_up() {
        // 1 yen = ¥0.0485 = 4.85 fen → 5 fen.
        let t = table(Rounding::Nearest);
        assert_eq!(
            t.convert(m(1, Currency::Jpy), Currency::Cny).unwrap(),
            cny_of(5)
        );
        // An exact half: ¥0.05 at 0.1 per unit of a quoted currency = 0.5 units → 1.
        let half = FxTable::new(
            Currency::Cny,
            BTreeMap::from([(Currency::Jpy, Rate::parse("0.1").unwrap())]),
            Rounding::Nearest,
        )
        .unwrap();
        assert_eq!(
            half.convert(cny_of(5), Currency::Jpy).unwrap(),
            m(1, Currency::Jpy)
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let t = table(Rounding::Up);
        assert_eq!(
            t.convert(cny_of(100), Currency::Eur),
            Err(FxError::NoRate(Currency::Eur))
        );
        assert_eq!(
            t.convert(m(100, Currency::Hkd), Currency::Usd),
            Err(FxError::NoRate(Currency::Hkd))
        );
        // A fen in yen at Down is nothing: refused, never charged as zero.
        assert!(matches!(
            table(Rounding::Down).convert(cny_of(1), Currency::Jpy),
            Err(FxError::Vanishes(..))
        ));
        assert_eq!(
            t.convert(cny_of(0), Currency::Usd).unwrap(),
            m(0, Currency::Usd)
        );
        assert_eq!(
            FxTable::new(
                Currency::Cny,
                BTreeMap::from([(Currency::Cny, Rate::ONE)]),
                Rounding::Up
            ),
            Err(FxError::BaseRate(Currency::Cny))
        );
        // The largest amount at a tiny rate overflows Money, not the arithmetic.
        let tiny = FxTable::new(
            Currency::Cny,
            BTreeMap::from([(Currency::Jpy, Rate::parse("0.00000001").unwrap())]),
            Rounding::Up,
        )
        .unwrap();
        assert!(matches!(
            tiny.convert(cny_of(crate::money::MAX_MINOR), Currency::Jpy),
            Err(FxError::Money(MoneyError::Overflow))
        ));
    }

    #[test]
    fn the_products_own_price_wins_and_scales_discounts() {
        let t = table(Rounding::Up);
        let list = cny_of(6900);
        let own = m(999, Currency::Usd);
        // Three at list price: exactly three own prices.
        let c = t
            .charge(list.times(3).unwrap(), list, Some(own), Currency::Usd)
            .unwrap();
        assert_eq!(c.money, m(2997, Currency::Usd));
        assert_eq!(c.basis.as_deref(), Some("the product's USD price 9.99"));
        // A 10 % coupon on one: US$8.991, rounded up to 9.00.
        let c = t
            .charge(cny_of(6210), list, Some(own), Currency::Usd)
            .unwrap();
        assert_eq!(c.money, m(900, Currency::Usd));
        // No own price in that currency: the rate table, and the rates named.
        let c = t
            .charge(list, list, Some(m(500, Currency::Eur)), Currency::Usd)
            .unwrap();
        assert_eq!(c.money, m(953, Currency::Usd));
        assert_eq!(c.basis.as_deref(), Some("1 USD = 7.245 CNY, rounded up"));
        // The same currency: the order's amount, no basis.
        let c = t.charge(list, list, None, Currency::Cny).unwrap();
        assert_eq!((c.money, c.basis), (list, None));
        assert_eq!(t.scale(list, cny_of(0), own), Err(FxError::ZeroListPrice));
    }

    #[test]
    fn charge_currencies_map_each_currency() {
        let paypal = ChargeCurrencies::new(|c| if c == Currency::Cny { Currency::Usd } else { c });
        assert_eq!(paypal.of(Currency::Cny), Currency::Usd);
        assert_eq!(paypal.of(Currency::Jpy), Currency::Jpy);
        let mainland = ChargeCurrencies::new(|_| Currency::Cny);
        assert!(Currency::ALL
            .iter()
            .all(|c| mainland.of(*c) == Currency::Cny));
        assert!(Currency::ALL
            .iter()
            .all(|c| ChargeCurrencies::default().of(*c) == *c));
    }

    #[test]
    fn own_prices_round_trip_and_refuse_nonsense() {
        let p = OwnPrices::parse("USD:999,JPY:1500", Currency::Cny).unwrap();
        assert_eq!(p.get(Currency::Jpy), Some(m(1500, Currency::Jpy)));
        assert_eq!(p.get(Currency::Eur), None);
        // Stored in currency order whatever order they came in.
        let q = OwnPrices::new(
            vec![m(1500, Currency::Jpy), m(999, Currency::Usd)],
            Currency::Cny,
        )
        .unwrap();
        assert_eq!(q.to_string(), "JPY:1500,USD:999");
        assert_eq!(OwnPrices::parse(&q.to_string(), Currency::Cny).unwrap(), q);
        assert!(OwnPrices::parse("", Currency::Cny).unwrap().is_empty());
        assert_eq!(
            OwnPrices::parse("CNY:100", Currency::Cny),
            Err(FxError::OwnCurrency(Currency::Cny))
        );
        assert_eq!(
            OwnPrices::parse("USD:0", Currency::Cny),
            Err(FxError::ZeroPrice(Currency::Usd))
        );
        assert_eq!(
            OwnPrices::parse("USD:1,USD:2", Currency::Cny),
            Err(FxError::TwoPrices(Currency::Usd))
        );
        for s in [
            "USD",
            "USD:",
            "XXX:1",
            "USD:-1",
            "USD:1.5",
            ":1",
            "USD:1;EUR:2",
        ] {
            assert!(
                OwnPrices::parse(s, Currency::Cny).is_err(),
                "{s:?} accepted"
            );
        }
    }

    proptest! {
        /// Up never charges less than the exact value, Down never more, and they differ by
        /// at most one minor unit; Nearest lies between them.
        #[test]
        fn roundings_bracket_the_exact_value(minor in 1i64..10_000_000_000, cur in 1usize..5) {
            let to = Currency::ALL[cur];
            let t = FxTable::new(
                Currency::Cny,
                BTreeMap::from([(to, Rate::parse("7.2451").unwrap())]),
                Rounding::Up,
            ).unwrap();
            let up = t.convert(cny_of(minor), to);
            let down = FxTable { rounding: Rounding::Down, ..t.clone() }.convert(cny_of(minor), to);
            let near = FxTable { rounding: Rounding::Nearest, ..t.clone() }.convert(cny_of(minor), to);
            if let (Ok(up), Ok(near)) = (&up, &near) {
                prop_assert!(up.minor() >= near.minor());
                if let Ok(down) = &down {
                    prop_assert!(up.minor() - down.minor() <= 1);
                    prop_assert!(near.minor() >= down.minor());
                }
            }
            // Converting back up never loses the seller money.
            if let Ok(up) = up {
                let back = t.convert(up, Currency::Cny).unwrap();
                prop_assert!(back.minor() >= minor);
            }
        }
    }
}
