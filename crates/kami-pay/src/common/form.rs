//! Strict `application/x-www-form-urlencoded` parsing for everything gateways send (Epay and
//! Alipay notifications, sandbox messages, simulator requests): one parser for untrusted bytes,
//! so a duplicated key, bad percent-encoding or invalid UTF-8 is refused the same way everywhere.

use std::collections::HashSet;

use crate::{PayError, RawNotification};

/// Largest form (notification body or query string) [`parse_form`] accepts.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Most fields [`parse_form`] accepts.
pub const MAX_FORM_FIELDS: usize = 64;

/// At most 64 characters of outside text, for error messages.
pub(crate) fn clip(s: &str) -> String {
    super::text::clip(s, 64)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_component(raw: &[u8]) -> Result<String, PayError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_val);
                let lo = raw.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(PayError::Malformed("bad percent-encoding".into())),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PayError::Malformed("form is not UTF-8".into()))
}

/// Strictly parse an `application/x-www-form-urlencoded` form (or a query string): at most
/// [`MAX_FORM_BYTES`] bytes and [`MAX_FORM_FIELDS`] fields, valid percent-encoding, UTF-8
/// after decoding, non-empty and unique keys. Never panics.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, PayError> {
    if input.len() > MAX_FORM_BYTES {
        return Err(PayError::Malformed("form too large".into()));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for part in input.split(|b| *b == b'&') {
        if part.is_empty() {
            continue;
        }
        if out.len() >= MAX_FORM_FIELDS {
            return Err(PayError::Malformed("too many fields".into()));
        }
        let (k, v) = match part.iter().position(|b| *b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        let k = decode_component(k)?;
        let v = decode_component(v)?;
        if k.is_empty() {
            return Err(PayError::Malformed("empty field name".into()));
        }
        if !seen.insert(k.clone()) {
            return Err(PayError::Malformed(format!("duplicate field {}", clip(&k))));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// The value of `key` in a parsed form.
pub fn field<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The form of a notification sent as a POST body or as the query string of a GET (Alipay
/// A.4, sandbox): the POST's query string is not the message.
pub(crate) fn body_or_query(raw: &RawNotification) -> Result<Vec<(String, String)>, PayError> {
    let input: &[u8] = if raw.method.eq_ignore_ascii_case("POST") {
        &raw.body
    } else if raw.method.eq_ignore_ascii_case("GET") {
        raw.query.as_bytes()
    } else {
        return Err(PayError::Malformed(format!(
            "unsupported method {}",
            clip(&raw.method)
        )));
    };
    parse_form(input)
}

pub(crate) fn required<'a>(params: &'a [(String, String)], key: &str) -> Result<&'a str, PayError> {
    // Empty counts as missing: signing skips empty values, so an empty field is unsigned.
    field(params, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PayError::Malformed(format!("missing field {key}")))
}
