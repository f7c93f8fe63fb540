//! `[fx]`: the shop's rate table (issue 12 part 5). A channel that cannot take a product's
//! currency (PayPal never takes CNY; mainland gateways take only CNY) charges the product's
//! own price in its currency when the seller set one, else the total converted here:
//!
//! ```toml
//! [fx]
//! base = "CNY"          # the currency the rates are quoted in (default CNY)
//! rounding = "up"       # up (default) | nearest | down, to the charged currency's minor unit
//! [fx.rates]            # units of `base` one unit of each currency costs
//! USD = "7.245"
//! JPY = "0.0485"
//! ```
//!
//! Rates are strings: exact decimals, never floats. The console's settings page edits
//! `fx.rounding` and `fx.rates` over these (`overlay.rs`).

use std::collections::BTreeMap;

use kami_core::{Currency, FxTable, Rate, Rounding};
use serde::Deserialize;

use super::{invalid, ConfigError, Origins};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawFx {
    base: Option<String>,
    rounding: Option<String>,
    rates: BTreeMap<String, String>,
}

pub(super) fn build_fx(raw: RawFx, origins: &Origins) -> Result<FxTable, ConfigError> {
    let base = match raw.base.as_deref().map(str::trim) {
        None => Currency::Cny,
        Some(code) => Currency::parse(code)
            .map_err(|e| invalid(origins, "fx.base", format!("{e}; {}", known())))?,
    };
    let rounding = match raw.rounding.as_deref().map(str::trim) {
        None => Rounding::default(),
        Some(r) => {
            Rounding::parse(r).map_err(|e| invalid(origins, "fx.rounding", e.to_string()))?
        }
    };
    let mut rates = BTreeMap::new();
    for (code, rate) in &raw.rates {
        let key = format!("fx.rates.{code}");
        let (c, r) = parse_rate(code, rate).map_err(|m| invalid(origins, &key, m))?;
        if c == base {
            return Err(invalid(
                origins,
                &key,
                format!("{c} is the base currency (`fx.base`): its rate is 1"),
            ));
        }
        rates.insert(c, r);
    }
    FxTable::new(base, rates, rounding).map_err(|e| invalid(origins, "fx", e.to_string()))
}

/// One rate as the file or the console gives it: a currency code (any case) and a decimal.
pub fn parse_rate(code: &str, rate: &str) -> Result<(Currency, Rate), String> {
    let c = Currency::parse(&code.trim().to_ascii_uppercase())
        .map_err(|e| format!("{e}; {}", known()))?;
    let r = Rate::parse(rate.trim()).map_err(|e| e.to_string())?;
    Ok((c, r))
}

/// A console line `USD 7.245` (or `USD = 7.245`, `USD=7.245`), normalised to `USD 7.245`.
pub fn parse_rate_line(line: &str) -> Result<(Currency, Rate), String> {
    let line = line.trim();
    let (code, rate) = line
        .split_once(['=', ' ', '\t'])
        .map(|(c, r)| (c.trim(), r.trim().trim_start_matches('=').trim()))
        .ok_or_else(|| format!("`{line}` is not `CODE RATE` (e.g. `USD 7.245`)"))?;
    parse_rate(code, rate)
}

fn known() -> String {
    format!(
        "kami knows {}",
        Currency::ALL
            .iter()
            .map(|c| c.code())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
