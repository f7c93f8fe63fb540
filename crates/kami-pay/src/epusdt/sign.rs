//! The epusdt signature (A.3, A.4): every parameter but `signature`, formatted `k=v`, the
//! strings sorted, joined with `&`, the API token appended with no separator, lower-case hex
//! MD5. What differs between the gateways is how a JSON value becomes `v`:
//!
//! * epusdt (`src/util/sign/sign.go`) unmarshals the body into `map[string]interface{}` (so
//!   every number is a `float64`) and formats numbers with `strconv.FormatFloat(v,'f',-1,64)`:
//!   the shortest decimal that reads back, never an exponent (`28.80` → `28.8`). It skips only
//!   `null`; an empty string signs as `k=`.
//! * BEpusdt (`app/utils/utils.go`) formats with Go's `%v`, which is `%g` with the shortest
//!   precision: the same digits, but `d.ddde+XX` once the decimal exponent is below -4 or at
//!   least 6 (a fiat amount of 1,000,000 signs as `1e+06`) — see [`go_v`]. It skips `null` and
//!   `""`.
//!
//! Both need the token, so a verifier may accept either rendering of one message.

use serde_json::{Map, Value};

use crate::crypto::{ct_eq, md5_hex};

/// Which gateway's formatting a sign string follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// assimon/epusdt: `FormatFloat(v,'f',-1,64)`, empty strings signed.
    Epusdt,
    /// BEpusdt: `fmt.Sprintf("%v", v)`, empty strings skipped.
    Bepusdt,
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, plain decimal.
/// Rust's `Display` for `f64` prints exactly that (shortest digits, no exponent).
pub fn go_f(v: f64) -> String {
    format!("{v}")
}

/// Go's `fmt.Sprintf("%v", v)` for a `float64`: `strconv.FormatFloat(v, 'g', -1, 64)`, whose
/// shortest form switches to `%e` when the decimal exponent is < -4 or >= 6 (strconv's
/// `eprec = 6` for the shortest precision), e.g. `28.88`, `123456`, `1e+06`, `1.2345675e+06`,
/// `1e-05`.
pub fn go_v(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    // `{:e}` gives the shortest digits as `d.ddde<exp>`.
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return go_f(v);
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return go_f(v);
    };
    if (-4..6).contains(&exp) {
        return go_f(v);
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// The `v` of one JSON value, or `None` when the value is skipped. `Err` for values the
/// gateway cannot sign (objects, arrays; epusdt also refuses booleans).
fn render(value: &Value, flavor: Flavor) -> Result<Option<String>, ()> {
    Ok(match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() && flavor == Flavor::Bepusdt => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => {
            let f = n.as_f64().ok_or(())?;
            Some(match flavor {
                Flavor::Epusdt => go_f(f),
                Flavor::Bepusdt => go_v(f),
            })
        }
        Value::Bool(b) if flavor == Flavor::Bepusdt => Some(b.to_string()),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => return Err(()),
    })
}

/// The sorted `k=v&…` string of a JSON object (without `signature`), or `None` when a value
/// cannot be signed.
pub fn sign_string(params: &Map<String, Value>, flavor: Flavor) -> Option<String> {
    let mut parts = Vec::with_capacity(params.len());
    for (k, v) in params {
        if k == "signature" {
            continue;
        }
        if let Some(v) = render(v, flavor).ok()? {
            parts.push(format!("{k}={v}"));
        }
    }
    // epusdt sorts the `k=v` strings themselves (Go `sort.Strings`); BEpusdt sorts keys. With
    // unique keys and `=` sorting below every key character kami meets, both orders agree.
    parts.sort_unstable();
    Some(parts.join("&"))
}

/// `md5(sign_string + token)`, lower-case hex.
pub fn signature(params: &Map<String, Value>, token: &str, flavor: Flavor) -> Option<String> {
    let s = sign_string(params, flavor)?;
    Some(md5_hex(format!("{s}{token}").as_bytes()))
}

/// Whether `params["signature"]` is the token's signature of `params` in either gateway's
/// formatting (compared in constant time, hex in either case).
pub fn verify(params: &Map<String, Value>, token: &str) -> bool {
    let Some(Value::String(sig)) = params.get("signature") else {
        return false;
    };
    let sig = sig.to_ascii_lowercase();
    [Flavor::Epusdt, Flavor::Bepusdt].into_iter().any(|flavor| {
        signature(params, token, flavor).is_some_and(|want| ct_eq(want.as_bytes(), sig.as_bytes()))
    })
}

/// `params` with its `signature` set for `flavor`.
pub fn signed(mut params: Map<String, Value>, token: &str, flavor: Flavor) -> Map<String, Value> {
    params.remove("signature");
    if let Some(sig) = signature(&params, token, flavor) {
        params.insert("signature".into(), Value::String(sig));
    }
    params
}
