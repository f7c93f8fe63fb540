//! What an order costs: the product's unit price, lowered by wholesale tiers
//! ("5 or more: ¥9.00 each"), within the product's quantity limits. The product page and
//! order creation both call [`Pricing::total`], so the page shows what the server charges.

use std::fmt;

use crate::money::{Money, MoneyError};
use crate::Quantity;

/// One wholesale tier: from `min_quantity` pieces on, each costs `unit_minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    min_quantity: u32,
    unit_minor: i64,
}

impl Tier {
    pub fn min_quantity(self) -> u32 {
        self.min_quantity
    }
    pub fn unit_minor(self) -> i64 {
        self.unit_minor
    }
}

/// Wholesale tiers, sorted by `min_quantity` (strictly increasing, each ≥ 2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriceTiers(Vec<Tier>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("price tier {0:?} is not MIN:PRICE (e.g. 5:900)")]
    BadTier(String),
    #[error("tier quantities must be between 2 and {max}, strictly increasing")]
    BadTierQuantity { max: u32 },
    #[error("a tier price must not be negative")]
    NegativeTierPrice,
    #[error("quantity limits must satisfy 1 <= min <= max <= {max}")]
    BadLimits { max: u32 },
    #[error("quantity must be between {min} and {max} for this product")]
    OutOfLimits { min: u32, max: u32 },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl PriceTiers {
    /// From `(min_quantity, unit_minor)` pairs in any order.
    pub fn new(mut tiers: Vec<(i64, i64)>) -> Result<PriceTiers, PricingError> {
        tiers.sort_by_key(|t| t.0);
        let mut out: Vec<Tier> = Vec::with_capacity(tiers.len());
        for (min, unit) in tiers {
            if !(2..=i64::from(Quantity::MAX)).contains(&min)
                || out.last().is_some_and(|t| i64::from(t.min_quantity) >= min)
            {
                return Err(PricingError::BadTierQuantity { max: Quantity::MAX });
            }
            if unit < 0 {
                return Err(PricingError::NegativeTierPrice);
            }
            out.push(Tier {
                min_quantity: min as u32,
                unit_minor: unit,
            });
        }
        Ok(PriceTiers(out))
    }

    /// The stored form: `"5:900,10:800"`; `""` for none.
    pub fn parse(s: &str) -> Result<PriceTiers, PricingError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(PriceTiers::default());
        }
        let pairs = s
            .split(',')
            .map(|part| {
                let bad = || PricingError::BadTier(part.chars().take(32).collect());
                let (q, p) = part.trim().split_once(':').ok_or_else(bad)?;
                let q: i64 = q.trim().parse().map_err(|_| bad())?;
                let p: i64 = p.trim().parse().map_err(|_| bad())?;
                Ok((q, p))
            })
            .collect::<Result<Vec<_>, PricingError>>()?;
        PriceTiers::new(pairs)
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PriceTiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", t.min_quantity, t.unit_minor)?;
        }
        Ok(())
    }
}

/// A product's price rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    unit: Money,
    tiers: PriceTiers,
    min_quantity: u32,
    max_quantity: u32,
}

impl Pricing {
    pub fn new(
        unit: Money,
        tiers: PriceTiers,
        min_quantity: i64,
        max_quantity: i64,
    ) -> Result<Pricing, PricingError> {
        let max = i64::from(Quantity::MAX);
        if !(1..=max).contains(&min_quantity) || !(min_quantity..=max).contains(&max_quantity) {
            return Err(PricingError::BadLimits { max: Quantity::MAX });
        }
        for t in tiers.tiers() {
            Money::new(t.unit_minor, unit.currency())?;
        }
        Ok(Pricing {
            unit,
            tiers,
            min_quantity: min_quantity as u32,
            max_quantity: max_quantity as u32,
        })
    }

    pub fn base_unit(&self) -> Money {
        self.unit
    }
    pub fn tiers(&self) -> &PriceTiers {
        &self.tiers
    }
    pub fn min_quantity(&self) -> u32 {
        self.min_quantity
    }
    pub fn max_quantity(&self) -> u32 {
        self.max_quantity
    }

    /// The unit price at this quantity: the tier with the largest `min_quantity` reached.
    pub fn unit_at(&self, quantity: Quantity) -> Money {
        let q = quantity.get();
        let minor = self
            .tiers
            .tiers()
            .iter()
            .rev()
            .find(|t| t.min_quantity <= q)
            .map_or(self.unit.minor(), |t| t.unit_minor);
        // Tier prices were checked against the currency's range in `new`.
        Money::new(minor, self.unit.currency()).unwrap_or(self.unit)
    }

    /// What the buyer pays for `quantity`, or why that quantity cannot be bought.
    pub fn total(&self, quantity: Quantity) -> Result<Money, PricingError> {
        let q = quantity.get();
        if q < self.min_quantity || q > self.max_quantity {
            return Err(PricingError::OutOfLimits {
                min: self.min_quantity,
                max: self.max_quantity,
            });
        }
        Ok(self.unit_at(quantity).times(q)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn cny(m: i64) -> Money {
        Money::new(m, Currency::Cny).unwrap()
    }

    #[test]
    fn tiers_round_trip_and_sort() {
        let t = PriceTiers::parse(" 10:800, 5:900 ").unwrap();
        assert_eq!(t.to_string(), "5:900,10:800");
        assert_eq!(PriceTiers::parse("").unwrap(), PriceTiers::default());
    }

    #[test]
    fn bad_tiers_are_refused() {
        for bad in [
            "5", "5:x", "x:5", "1:100", "101:5", "5:1,5:2", "5:-1", "5:1;6:2",
        ] {
            assert!(PriceTiers::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wholesale_price_applies_from_its_quantity() {
        let p = Pricing::new(cny(1000), PriceTiers::parse("5:900,10:800").unwrap(), 1, 20).unwrap();
        let q = |n| Quantity::new(n).unwrap();
        assert_eq!(p.total(q(4)).unwrap(), cny(4000));
        assert_eq!(p.total(q(5)).unwrap(), cny(4500));
        assert_eq!(p.total(q(9)).unwrap(), cny(8100));
        assert_eq!(p.total(q(10)).unwrap(), cny(8000));
        assert_eq!(
            p.total(q(21)),
            Err(PricingError::OutOfLimits { min: 1, max: 20 })
        );
    }

    #[test]
    fn limits_are_checked() {
        assert!(Pricing::new(cny(1), PriceTiers::default(), 0, 5).is_err());
        assert!(Pricing::new(cny(1), PriceTiers::default(), 6, 5).is_err());
        assert!(Pricing::new(cny(1), PriceTiers::default(), 1, 101).is_err());
        let p = Pricing::new(cny(1), PriceTiers::default(), 3, 5).unwrap();
        assert!(p.total(Quantity::new(2).unwrap()).is_err());
        assert_eq!(p.total(Quantity::new(3).unwrap()).unwrap(), cny(3));
    }

    proptest! {
        #[test]
        fn total_is_quantity_times_the_best_reached_tier(
            base in 0i64..100_000,
            raw in proptest::collection::btree_map(2i64..=100, 0i64..100_000, 0..5),
            q in 1i64..=100,
        ) {
            let tiers = PriceTiers::new(raw.clone().into_iter().collect()).unwrap();
            let p = Pricing::new(cny(base), tiers, 1, 100).unwrap();
            let unit = raw.range(..=q).next_back().map_or(base, |(_, u)| *u);
            prop_assert_eq!(p.total(Quantity::new(q).unwrap()).unwrap().minor(), unit * q);
        }
    }
}
