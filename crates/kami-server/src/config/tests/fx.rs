//! `[fx]`: defaults, values, and a precise refusal (naming the key) for each bad value.

use kami_core::{Currency, Rounding};

use super::{parse, parse_err};

#[test]
fn fx_defaults_and_values() {
    let fx = parse("").config.fx;
    assert_eq!((fx.base(), fx.rounding()), (Currency::Cny, Rounding::Up));
    assert!(fx.rates().is_empty());
    let l = parse("[fx]\nrounding = \"nearest\"\n[fx.rates]\nUSD = \"7.2450\"\njpy = \"0.0485\"\n");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let fx = l.config.fx;
    assert_eq!(fx.rounding(), Rounding::Nearest);
    let rates: Vec<String> = fx.rates().iter().map(|(c, r)| format!("{c} {r}")).collect();
    assert_eq!(rates, ["USD 7.245", "JPY 0.0485"]);
    let usd = parse("[fx]\nbase = \"USD\"\n[fx.rates]\nCNY = \"0.138\"\n")
        .config
        .fx;
    assert_eq!(usd.base(), Currency::Usd);
}

#[test]
fn bad_fx_values_are_refused_naming_the_key() {
    for (toml, key) in [
        ("[fx]\nbase = \"XXX\"\n", "fx.base"),
        ("[fx]\nrounding = \"sideways\"\n", "fx.rounding"),
        ("[fx.rates]\nUSD = \"abc\"\n", "fx.rates.USD"),
        ("[fx.rates]\nUSD = \"-7\"\n", "fx.rates.USD"),
        ("[fx.rates]\nUSD = \"0\"\n", "fx.rates.USD"),
        ("[fx.rates]\nUSD = \"0.000000001\"\n", "fx.rates.USD"),
        ("[fx.rates]\nXXX = \"1\"\n", "fx.rates.XXX"),
        ("[fx.rates]\nCNY = \"1\"\n", "fx.rates.CNY"),
        ("[fx.rates]\nUSD = 7.245\n", "fx.rates.USD"),
    ] {
        let e = parse_err(toml);
        assert!(e.contains(key), "{toml:?}: {e}");
    }
}
