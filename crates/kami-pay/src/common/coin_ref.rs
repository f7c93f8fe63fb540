//! What a USDT gateway's create answered that kami must hold it to later, kept as the
//! attempt's `gateway_ref` (epusdt, BEpusdt, TokenPay): the gateway's id of the trade, the
//! fiat amount it was created for and the coin amount it asked the buyer for. Text form
//! `"<id> <fiat> <CUR> <coin> <UNIT>"`, e.g.
//! `b3d2477c-d945-41da-96b7-f925bbd1b415 28.88 CNY 4.25 USDT`: readable where the
//! console shows it, parsed back for the query, the close and the underpayment check.

use std::fmt;

use kami_core::{CoinAmount, Currency, Money};

use crate::PayError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinRef {
    /// epusdt / BEpusdt `trade_id`, TokenPay `Id`.
    pub id: String,
    pub fiat: Money,
    pub coin: CoinAmount,
}

impl CoinRef {
    pub fn parse(s: &str) -> Result<CoinRef, PayError> {
        let bad = || {
            PayError::Malformed("the attempt's gateway reference is not a coin reference".into())
        };
        let parts: Vec<&str> = s.split(' ').collect();
        let [id, fiat, cur, coin, unit] = parts[..] else {
            return Err(bad());
        };
        if id.is_empty() {
            return Err(bad());
        }
        let currency = Currency::parse(cur).map_err(|_| bad())?;
        Ok(CoinRef {
            id: id.to_owned(),
            fiat: Money::from_major_str(fiat, currency).map_err(|_| bad())?,
            coin: CoinAmount::parse(coin, unit).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for CoinRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.id,
            self.fiat.to_major_string(),
            self.fiat.currency().code(),
            self.coin
        )
    }
}

/// An id as a gateway returned it, safe to keep in a space-separated reference.
pub fn gateway_id(id: &str) -> Result<String, PayError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(PayError::Malformed(format!(
            "gateway trade id `{}` is not 1-64 letters, digits, `-` or `_`",
            crate::common::text::clip(id, 64)
        )));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_text() {
        let r = CoinRef {
            id: "b3d2477c-d945-41da-96b7-f925bbd1b415".into(),
            fiat: Money::new(2888, Currency::Cny).unwrap_or_else(|e| panic!("{e}")),
            coin: CoinAmount::parse("4.2500", "USDT").unwrap_or_else(|e| panic!("{e}")),
        };
        let text = r.to_string();
        assert_eq!(
            text,
            "b3d2477c-d945-41da-96b7-f925bbd1b415 28.88 CNY 4.25 USDT"
        );
        assert_eq!(CoinRef::parse(&text).ok(), Some(r));
        for bad in [
            "",
            "id",
            "id 28.88 CNY 4.25",
            "id x CNY 4.25 USDT",
            " 1 CNY 1 USDT",
        ] {
            assert!(CoinRef::parse(bad).is_err(), "{bad:?}");
        }
        assert!(gateway_id("a b").is_err());
        assert!(gateway_id("").is_err());
        assert_eq!(
            gateway_id("644bc479-df0c_3f1c").ok().as_deref(),
            Some("644bc479-df0c_3f1c")
        );
    }
}
