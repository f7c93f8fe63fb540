//! Coupons: the code a buyer types, what it takes off, and when it applies. Pure rules and
//! integer arithmetic; counting uses (total cap, once per email) is the store's, under the
//! coupon's row lock.
//!
//! Rounding (DESIGN note): a percent coupon takes `floor(total × bp / 10000)` minor units off
//! the order total (after wholesale tiers), computed in `i128`, so the discount never exceeds
//! the advertised share and no fraction of a minor unit is ever created. A fixed coupon takes
//! its amount off exactly. The buyer always pays at least one minor unit: a coupon that would
//! bring the order to zero (or below) is refused ([`CouponRefusal::FreeOrder`]), because the
//! payment channels cannot charge 0.

use std::fmt;

use crate::ids::Slug;
use crate::money::{Currency, Money};
use crate::Millis;

/// Shortest and longest coupon code.
pub const MIN_CODE_CHARS: usize = 3;
pub const MAX_CODE_CHARS: usize = 32;
/// A whole order's worth of basis points (100 %).
pub const FULL_BP: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponError {
    #[error(
        "coupon code must be {MIN_CODE_CHARS}-{MAX_CODE_CHARS} characters of A-Z, 0-9, '-' or '_'"
    )]
    BadCode,
    #[error("percent must be 1 to 10000 basis points (0.01 % to 100 %)")]
    BadPercent,
    #[error("the validity window ends before it starts")]
    BadWindow,
}

/// A coupon code, upper-cased: buyers may type it in any case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CouponCode(String);

impl CouponCode {
    pub fn parse(s: &str) -> Result<CouponCode, CouponError> {
        let s = s.trim();
        let ok = (MIN_CODE_CHARS..=MAX_CODE_CHARS).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(CouponCode(s.to_ascii_uppercase()))
        } else {
            Err(CouponError::BadCode)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A share of the total in basis points: 1 (0.01 %) to 10000 (100 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BasisPoints(u32);

impl BasisPoints {
    pub fn new(bp: i64) -> Result<BasisPoints, CouponError> {
        u32::try_from(bp)
            .ok()
            .filter(|bp| (1..=FULL_BP).contains(bp))
            .map(BasisPoints)
            .ok_or(CouponError::BadPercent)
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

/// What a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponValue {
    /// An amount in one currency; orders in other currencies are refused.
    Fixed(Money),
    Percent(BasisPoints),
}

impl CouponValue {
    /// Stored / API form of the kind.
    pub fn kind(self) -> &'static str {
        match self {
            CouponValue::Fixed(_) => "fixed",
            CouponValue::Percent(_) => "percent",
        }
    }
}

/// Why a coupon does not apply to this order. The text is what the buyer reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponRefusal {
    #[error("there is no coupon with this code")]
    Unknown,
    #[error("this coupon is no longer active")]
    Disabled,
    #[error("this coupon is not valid yet")]
    NotYetValid,
    #[error("this coupon has expired")]
    Expired,
    #[error("this coupon is not for this product")]
    NotForProduct,
    #[error("this coupon is only for orders in {0}")]
    WrongCurrency(Currency),
    #[error("this coupon needs an order total of at least {0}")]
    BelowMinimum(Money),
    #[error("this coupon has been used up")]
    UsedUp,
    #[error("this coupon was already used with this email")]
    AlreadyUsedByEmail,
    #[error("this coupon would make the order free, and a payment cannot be for 0: order more or leave the coupon out")]
    FreeOrder,
}

impl CouponRefusal {
    /// A stable name per reason (tests, translations).
    pub fn reason(&self) -> &'static str {
        match self {
            CouponRefusal::Unknown => "unknown",
            CouponRefusal::Disabled => "disabled",
            CouponRefusal::NotYetValid => "not_yet_valid",
            CouponRefusal::Expired => "expired",
            CouponRefusal::NotForProduct => "not_for_product",
            CouponRefusal::WrongCurrency(_) => "wrong_currency",
            CouponRefusal::BelowMinimum(_) => "below_minimum",
            CouponRefusal::UsedUp => "used_up",
            CouponRefusal::AlreadyUsedByEmail => "used_by_email",
            CouponRefusal::FreeOrder => "free_order",
        }
    }
}

/// An order total with a coupon applied: `discount + total` is the total before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discounted {
    pub discount: Money,
    pub total: Money,
}

/// The discount arithmetic alone (see the module comment for the rounding rule).
pub fn apply(value: CouponValue, total: Money) -> Result<Discounted, CouponRefusal> {
    let off = match value {
        CouponValue::Fixed(m) => {
            if m.currency() != total.currency() {
                return Err(CouponRefusal::WrongCurrency(m.currency()));
            }
            m.minor()
        }
        CouponValue::Percent(bp) => {
            let off = i128::from(total.minor()) * i128::from(bp.get()) / i128::from(FULL_BP);
            // ≤ total, which is an i64.
            i64::try_from(off).unwrap_or(i64::MAX)
        }
    };
    let left = total.minor().saturating_sub(off);
    if left < 1 {
        return Err(CouponRefusal::FreeOrder);
    }
    let cur = total.currency();
    match (Money::new(off, cur), Money::new(left, cur)) {
        (Ok(discount), Ok(total)) => Ok(Discounted { discount, total }),
        _ => Err(CouponRefusal::FreeOrder),
    }
}

/// A coupon's rules, as the seller set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRules {
    pub value: CouponValue,
    /// Empty: every product.
    pub products: Vec<Slug>,
    /// `[valid_from, valid_to)`, either end open.
    pub valid_from: Option<Millis>,
    pub valid_to: Option<Millis>,
    /// The order total (before the discount) must reach this.
    pub min_amount: Option<Money>,
    pub enabled: bool,
}

impl CouponRules {
    /// Does the coupon apply to `total` of `product` at `now`, and what is left to pay?
    /// Checked in the order a buyer can act on: active, window, product, currency, minimum,
    /// then the arithmetic.
    pub fn check(
        &self,
        now: Millis,
        product: &Slug,
        total: Money,
    ) -> Result<Discounted, CouponRefusal> {
        if !self.enabled {
            return Err(CouponRefusal::Disabled);
        }
        if self.valid_from.is_some_and(|from| now < from) {
            return Err(CouponRefusal::NotYetValid);
        }
        if self.valid_to.is_some_and(|to| now >= to) {
            return Err(CouponRefusal::Expired);
        }
        if !self.products.is_empty() && !self.products.contains(product) {
            return Err(CouponRefusal::NotForProduct);
        }
        if let Some(min) = self.min_amount {
            if min.currency() != total.currency() {
                return Err(CouponRefusal::WrongCurrency(min.currency()));
            }
            if total.minor() < min.minor() {
                return Err(CouponRefusal::BelowMinimum(min));
            }
        }
        apply(self.value, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::MAX_MINOR;
    use proptest::prelude::*;

    fn cny(m: i64) -> Money {
        Money::new(m, Currency::Cny).unwrap()
    }
    fn pct(bp: i64) -> CouponValue {
        CouponValue::Percent(BasisPoints::new(bp).unwrap())
    }

    #[test]
    fn codes_are_case_insensitive_and_checked() {
        assert_eq!(
            CouponCode::parse("spring-10").unwrap().as_str(),
            "SPRING-10"
        );
        assert_eq!(
            CouponCode::parse("Spring-10").unwrap(),
            CouponCode::parse("SPRING-10").unwrap()
        );
        assert_eq!(CouponCode::parse("A_1").unwrap().as_str(), "A_1");
        for bad in ["", "AB", "A B C", "ÄBC", "ABC!", &"A".repeat(33), "折扣码"] {
            assert_eq!(CouponCode::parse(bad), Err(CouponError::BadCode), "{bad:?}");
        }
        assert!(CouponCode::parse(&"A".repeat(32)).is_ok());
    }

    #[test]
    fn basis_points_are_bounded() {
        for bad in [0, -1, 10_001, i64::MAX] {
            assert_eq!(BasisPoints::new(bad), Err(CouponError::BadPercent));
        }
        assert_eq!(BasisPoints::new(10_000).unwrap().get(), 10_000);
    }

    #[test]
    fn percent_rounds_the_discount_down() {
        // 12.30 × 15 % = 1.845 → 1.84 off, 10.46 to pay.
        let d = apply(pct(1500), cny(1230)).unwrap();
        assert_eq!((d.discount.minor(), d.total.minor()), (184, 1046));
        // 0.01 × 50 % = 0.005 → nothing off: still one fen.
        let d = apply(pct(5000), cny(1)).unwrap();
        assert_eq!((d.discount.minor(), d.total.minor()), (0, 1));
        assert_eq!(apply(pct(10_000), cny(1230)), Err(CouponRefusal::FreeOrder));
        // 99.99 % of 1.00 = 0.9999 → 0.99 off, 0.01 left.
        assert_eq!(apply(pct(9999), cny(100)).unwrap().total.minor(), 1);
    }

    #[test]
    fn fixed_is_exact_and_never_free() {
        assert_eq!(
            apply(CouponValue::Fixed(cny(500)), cny(1230))
                .unwrap()
                .total,
            cny(730)
        );
        assert_eq!(
            apply(CouponValue::Fixed(cny(1229)), cny(1230))
                .unwrap()
                .total,
            cny(1)
        );
        assert_eq!(
            apply(CouponValue::Fixed(cny(1230)), cny(1230)),
            Err(CouponRefusal::FreeOrder)
        );
        assert_eq!(
            apply(CouponValue::Fixed(cny(5000)), cny(1230)),
            Err(CouponRefusal::FreeOrder)
        );
        let usd = Money::new(100, Currency::Usd).unwrap();
        assert_eq!(
            apply(CouponValue::Fixed(usd), cny(1230)),
            Err(CouponRefusal::WrongCurrency(Currency::Usd))
        );
    }

    #[test]
    fn rules_are_checked_in_order() {
        let slug = Slug::parse("vip").unwrap();
        let rules = CouponRules {
            value: pct(1000),
            products: vec![slug.clone()],
            valid_from: Some(100),
            valid_to: Some(200),
            min_amount: Some(cny(1000)),
            enabled: true,
        };
        assert_eq!(rules.check(150, &slug, cny(1000)).unwrap().total, cny(900));
        assert_eq!(
            rules.check(99, &slug, cny(1000)),
            Err(CouponRefusal::NotYetValid)
        );
        assert_eq!(
            rules.check(200, &slug, cny(1000)),
            Err(CouponRefusal::Expired)
        );
        let other = Slug::parse("other").unwrap();
        assert_eq!(
            rules.check(150, &other, cny(1000)),
            Err(CouponRefusal::NotForProduct)
        );
        assert_eq!(
            rules.check(150, &slug, cny(999)),
            Err(CouponRefusal::BelowMinimum(cny(1000)))
        );
        let off = CouponRules {
            enabled: false,
            ..rules.clone()
        };
        assert_eq!(
            off.check(150, &slug, cny(1000)),
            Err(CouponRefusal::Disabled)
        );
        let all = CouponRules {
            products: vec![],
            ..rules
        };
        assert!(all.check(150, &other, cny(1000)).is_ok());
    }

    proptest! {
        #[test]
        fn discount_never_exceeds_total_and_leaves_at_least_one_unit(
            total in 0i64..=MAX_MINOR, bp in 1i64..=10_000, fixed in 0i64..=MAX_MINOR,
        ) {
            for value in [pct(bp), CouponValue::Fixed(cny(fixed))] {
                match apply(value, cny(total)) {
                    Ok(d) => {
                        prop_assert!(d.discount.minor() <= total);
                        prop_assert!(d.total.minor() >= 1);
                        prop_assert_eq!(d.discount.minor() + d.total.minor(), total);
                    }
                    Err(e) => {
                        prop_assert_eq!(e, CouponRefusal::FreeOrder);
                        // Refused only when nothing would be left to pay.
                        let off = match value {
                            CouponValue::Fixed(m) => m.minor(),
                            CouponValue::Percent(p) => {
                                (i128::from(total) * i128::from(p.get()) / 10_000) as i64
                            }
                        };
                        prop_assert!(total - off < 1);
                    }
                }
            }
        }

        #[test]
        fn percent_is_floor_and_monotonic(total in 1i64..=MAX_MINOR, a in 1i64..=10_000, b in 1i64..=10_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            let off = |bp: i64| apply(pct(bp), cny(total)).map(|d| d.discount.minor());
            if let (Ok(x), Ok(y)) = (off(lo), off(hi)) {
                prop_assert!(x <= y, "more percent, no less discount");
                // floor: x × 10000 ≤ total × bp < (x + 1) × 10000
                let exact = i128::from(total) * i128::from(lo);
                prop_assert!(i128::from(x) * 10_000 <= exact);
                prop_assert!(exact < (i128::from(x) + 1) * 10_000);
            }
            // Monotonic in the total too: a larger order never gets a smaller discount.
            if let (Ok(x), Ok(y)) = (off(lo), apply(pct(lo), cny(total.saturating_add(1).min(MAX_MINOR))).map(|d| d.discount.minor())) {
                prop_assert!(x <= y);
            }
        }

        #[test]
        fn fixed_takes_exactly_its_amount(
            (total, fixed) in (1i64..=MAX_MINOR).prop_flat_map(|t| (Just(t), 0..t)),
        ) {
            let d = apply(CouponValue::Fixed(cny(fixed)), cny(total)).unwrap();
            prop_assert_eq!(d.discount.minor(), fixed);
            prop_assert_eq!(d.total.minor(), total - fixed);
        }
    }
}
