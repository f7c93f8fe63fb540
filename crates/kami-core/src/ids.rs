//! Parsed identifiers: once constructed, each value is known to be well formed.

use std::fmt;

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "slug must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
    )]
    BadSlug,
    #[error("not a valid order number")]
    BadOrderNo,
    #[error("not a valid email address")]
    BadEmail,
    #[error("quantity must be between 1 and {max}")]
    BadQuantity { max: u32 },
    #[error("unknown payment method")]
    BadMethod,
    #[error("channel id must be 1-32 characters of a-z, 0-9, '-' or '_'")]
    BadChannelId,
}

fn is_slug_like(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// A product's URL name: `steam-10`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Slug, IdError> {
        if is_slug_like(s, 64) {
            Ok(Slug(s.to_owned()))
        } else {
            Err(IdError::BadSlug)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable id of a configured payment channel, as it appears in `/pay/notify/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelId(String);

impl ChannelId {
    pub fn parse(s: &str) -> Result<ChannelId, IdError> {
        if is_slug_like(s, 32) {
            Ok(ChannelId(s.to_owned()))
        } else {
            Err(IdError::BadChannelId)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Order number shown to buyers and sent to gateways as `out_trade_no`.
/// Format: `K` + 14-digit UTC timestamp (yyyymmddHHMMSS) + 12 random digits = 27 characters,
/// which fits every gateway's limit (Alipay 64, WeChat 32, Epay 64) and sorts by time.
/// 12 random digits keep collisions negligible (~5e-7 per second at 1,000 orders/s); the
/// unique index catches the rest.
/// It is not a secret: reading an order needs its access token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderNo(String);

impl OrderNo {
    pub const LEN: usize = 27;

    /// `stamp` is the 14-digit UTC time; the caller supplies it so this crate stays clock-free.
    pub fn generate(stamp: &str) -> OrderNo {
        let mut rng = rand::thread_rng();
        let digits: String = (0..12)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect();
        let stamp: String = stamp
            .chars()
            .filter(char::is_ascii_digit)
            .chain(std::iter::repeat('0'))
            .take(14)
            .collect();
        OrderNo(format!("K{stamp}{digits}"))
    }

    pub fn parse(s: &str) -> Result<OrderNo, IdError> {
        let b = s.as_bytes();
        if b.len() == Self::LEN && b[0] == b'K' && b[1..].iter().all(u8::is_ascii_digit) {
            Ok(OrderNo(s.to_owned()))
        } else {
            Err(IdError::BadOrderNo)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Our trade number for one payment attempt of an order, sent to the gateway as
/// `out_trade_no`: the order number for the first attempt, `<order number>A<n>` (n = 2..=99)
/// for later ones (failover, a method switch). At most 30 characters of `[0-9A-Z]`, which
/// every protocol accepts (WeChat ≤ 32, Alipay and Epay ≤ 64, letters and digits). A trade
/// number is never parsed back into an order number: the `payments` table maps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TradeNo(String);

impl TradeNo {
    /// Attempts an order may have (the suffix has two digits at most).
    pub const MAX_ATTEMPTS: u32 = 99;

    /// The first attempt's trade number: the order number itself.
    pub fn first(order: &OrderNo) -> TradeNo {
        TradeNo(order.as_str().to_owned())
    }

    /// The trade number of attempt `n` (1-based; 1 is [`TradeNo::first`]); `None` past
    /// [`TradeNo::MAX_ATTEMPTS`].
    pub fn attempt(order: &OrderNo, n: u32) -> Option<TradeNo> {
        match n {
            0 => None,
            1 => Some(TradeNo::first(order)),
            n if n <= Self::MAX_ATTEMPTS => Some(TradeNo(format!("{order}A{n}"))),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&OrderNo> for TradeNo {
    fn from(order: &OrderNo) -> TradeNo {
        TradeNo::first(order)
    }
}

impl fmt::Display for TradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which order amounts a channel takes, in minor units of the shop's currency: at least
/// `min`, at most `max`, and no more than `room` (what is left of its daily limit today).
/// `None` is no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmountLimits {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub room: Option<i64>,
}

impl AmountLimits {
    pub fn admits(&self, amount_minor: i64) -> bool {
        self.min.is_none_or(|m| amount_minor >= m)
            && self.max.is_none_or(|m| amount_minor <= m)
            && self.room.is_none_or(|r| amount_minor <= r)
    }
}

/// A channel's amount limits as the seller sets them (minor units of the shop's currency):
/// orders below `min_amount` or above `max_amount` skip it, and so do orders that would take
/// the day's paid total past `daily_limit`. Each is at least 1; `min_amount ≤ max_amount`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelLimits {
    min_amount: Option<i64>,
    max_amount: Option<i64>,
    daily_limit: Option<i64>,
}

/// Why limits were refused: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct LimitsError {
    pub key: &'static str,
    pub message: String,
}

impl ChannelLimits {
    pub fn new(
        min_amount: Option<i64>,
        max_amount: Option<i64>,
        daily_limit: Option<i64>,
    ) -> Result<ChannelLimits, LimitsError> {
        for (key, v) in [
            ("min_amount", min_amount),
            ("max_amount", max_amount),
            ("daily_limit", daily_limit),
        ] {
            if let Some(v) = v.filter(|v| *v < 1) {
                return Err(LimitsError {
                    key,
                    message: format!(
                        "must be a whole number of minor units (fen), at least 1, got {v}"
                    ),
                });
            }
        }
        if let (Some(min), Some(max)) = (min_amount, max_amount) {
            if max < min {
                return Err(LimitsError {
                    key: "max_amount",
                    message: format!("must be at least min_amount ({min}), got {max}"),
                });
            }
        }
        Ok(ChannelLimits {
            min_amount,
            max_amount,
            daily_limit,
        })
    }

    pub fn min_amount(&self) -> Option<i64> {
        self.min_amount
    }

    pub fn max_amount(&self) -> Option<i64> {
        self.max_amount
    }

    pub fn daily_limit(&self) -> Option<i64> {
        self.daily_limit
    }

    /// What an order may be today, with `paid_today` already paid through the channel.
    pub fn today(&self, paid_today: i64) -> AmountLimits {
        AmountLimits {
            min: self.min_amount,
            max: self.max_amount,
            room: self.daily_limit.map(|d| d.saturating_sub(paid_today)),
        }
    }
}

/// A buyer's email address. Deliberately modest validation: one `@`, a non-empty local part,
/// a domain with a dot, no whitespace or control characters, at most 254 bytes. Lower-cased
/// so lookups by email match however the buyer typed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, IdError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdError::BadEmail);
        }
        let (local, domain) = s.split_once('@').ok_or(IdError::BadEmail)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || !domain.contains('.')
            || domain.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '"', '\\'])
            || local.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '"', '\\'])
        {
            return Err(IdError::BadEmail);
        }
        Ok(Email(s.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Number of items in one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 100;

    pub fn new(n: i64) -> Result<Quantity, IdError> {
        if (1..=i64::from(Self::MAX)).contains(&n) {
            Ok(Quantity(n as u32))
        } else {
            Err(IdError::BadQuantity { max: Self::MAX })
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Buyer-facing payment methods (DESIGN 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Alipay,
    Wxpay,
    Qqpay,
    /// USDT through a crypto gateway (epusdt, BEpusdt, TokenPay).
    Usdt,
    /// Bank cards through Stripe Checkout.
    Card,
    Paypal,
    Sandbox,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Alipay,
        Method::Wxpay,
        Method::Qqpay,
        Method::Usdt,
        Method::Card,
        Method::Paypal,
        Method::Sandbox,
    ];

    pub fn parse(s: &str) -> Result<Method, IdError> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(IdError::BadMethod)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Alipay => "alipay",
            Method::Wxpay => "wxpay",
            Method::Qqpay => "qqpay",
            Method::Usdt => "usdt",
            Method::Card => "card",
            Method::Paypal => "paypal",
            Method::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bearer secret (order access token, admin API token): 32 random bytes, base64url.
/// Only its SHA-256 is stored, so a database leak does not reveal usable tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn generate() -> SecretToken {
        let bytes: [u8; 32] = rand::random();
        SecretToken(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
    pub fn from_presented(s: &str) -> SecretToken {
        SecretToken(s.to_owned())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Hex SHA-256, the form that is stored and looked up.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
    /// Constant-time comparison against a stored hash.
    pub fn matches(&self, stored_hash: &str) -> bool {
        use subtle::ConstantTimeEq;
        let h = self.hash();
        h.len() == stored_hash.len() && bool::from(h.as_bytes().ct_eq(stored_hash.as_bytes()))
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_round_trip_and_reject_garbage() {
        let n = OrderNo::generate("20261122010203");
        assert_eq!(TradeNo::first(&n).as_str(), n.as_str());
        assert_eq!(TradeNo::attempt(&n, 1), Some(TradeNo::first(&n)));
        let last = TradeNo::attempt(&n, TradeNo::MAX_ATTEMPTS).unwrap();
        assert!(last.as_str().len() <= 30, "fits WeChat's 32");
        assert!(last.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(TradeNo::attempt(&n, 2).unwrap().as_str(), format!("{n}A2"));
        assert_eq!(TradeNo::attempt(&n, 0), None);
        assert_eq!(TradeNo::attempt(&n, 100), None);
        let limits = AmountLimits {
            min: Some(100),
            max: Some(500),
            room: Some(300),
        };
        assert!(limits.admits(100) && limits.admits(300));
        assert!(!limits.admits(99) && !limits.admits(301));
        assert!(AmountLimits::default().admits(i64::MAX));
        let l = ChannelLimits::new(Some(100), Some(500), Some(1000)).unwrap();
        assert_eq!(
            l.today(800),
            AmountLimits {
                min: Some(100),
                max: Some(500),
                room: Some(200)
            }
        );
        assert!(!l.today(1000).admits(100), "daily limit reached");
        assert_eq!(
            ChannelLimits::new(Some(0), None, None).unwrap_err().key,
            "min_amount"
        );
        assert_eq!(
            ChannelLimits::new(None, None, Some(-5)).unwrap_err().key,
            "daily_limit"
        );
        let e = ChannelLimits::new(Some(500), Some(100), None).unwrap_err();
        assert_eq!(e.key, "max_amount");
        assert!(e.message.contains("min_amount (500)"), "{e}");
        assert_eq!(n.as_str().len(), OrderNo::LEN);
        assert!(n.as_str().starts_with("K20261122010203"));
        assert_eq!(OrderNo::parse(n.as_str()).unwrap(), n);
        for bad in [
            "",
            "K123",
            "X2026112201020312345678",
            "K20261122010203123456789",
            "K2026112201020312345a78",
        ] {
            assert!(OrderNo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Buyer@Example.COM ").unwrap().as_str(),
            "buyer@example.com"
        );
        for bad in [
            "", "a", "a@b", "@b.c", "a@@b.c", "a b@c.d", "a@.c", "a@b.", "a@b..c", "<a>@b.c",
            "a@b,c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_quantities_methods() {
        assert!(Slug::parse("steam-10").is_ok());
        for bad in ["", "-a", "A", "a b", "a/b", &"a".repeat(65)] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(101).is_err());
        assert_eq!(Quantity::new(3).unwrap().get(), 3);
        assert_eq!(Method::parse("wxpay").unwrap(), Method::Wxpay);
        assert!(Method::parse("bitcoin").is_err());
    }

    #[test]
    fn tokens_hash_and_compare() {
        let t = SecretToken::generate();
        assert_eq!(t.expose().len(), 43);
        let h = t.hash();
        assert!(t.matches(&h));
        assert!(!SecretToken::from_presented("nope").matches(&h));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "SecretToken(***)");
    }
}
