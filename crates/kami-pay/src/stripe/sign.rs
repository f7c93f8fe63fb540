//! `Stripe-Signature` (appendix A.1): `t=<unix>,v1=<hex>[,v1=<hex>…]`, each `v1` the lowercase
//! hex HMAC-SHA256 of `"<t>.<raw body>"` keyed with the endpoint secret string as it is (the
//! whole `whsec_…` text as UTF-8 bytes, not base64-decoded). Verification follows stripe-python
//! (`stripe/_webhook.py`): any `v1` may match (Stripe sends one per live secret while a secret
//! is rolled), other schemes (`v0`, …) are ignored, the comparison is constant-time, and only a
//! timestamp OLDER than `now - tolerance` is refused (a future one passes).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signature scheme kami checks; every other scheme in the header is ignored.
pub const SCHEME: &str = "v1";
/// stripe-python's `WebhookSignature` default tolerance, seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a `Stripe-Signature` header does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFailure {
    /// No `t=` or no `v1=` in the header (stripe-python: "Unable to extract timestamp and
    /// signatures from header").
    Unparsable,
    /// No `v1` signature matches the body.
    NoMatch,
    /// The timestamp is older than the tolerance allows.
    TooOld,
}

/// The `v1` signature of `body` sent at unix time `t`: lowercase hex HMAC-SHA256 over
/// `"<t>.<body>"` keyed with `secret` as given.
pub fn v1_signature(secret: &str, t: i64, body: &[u8]) -> String {
    match mac(secret, t, body) {
        Some(m) => hex::encode(m.finalize().into_bytes()),
        None => String::new(),
    }
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length: the error branch cannot happen.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

/// A header as Stripe sends it: `t=<t>,v1=<sig>` with one `v1` per secret (several while a
/// secret is being rolled).
pub fn signature_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut h = format!("t={t}");
    for s in secrets {
        h.push_str(&format!(",{SCHEME}={}", v1_signature(s, t, body)));
    }
    h
}

/// The header's timestamp and its `v1` signatures, split exactly as stripe-python does:
/// items by `,` (no trimming), each item's name before its first `=` and its value up to the
/// next `=`, the first `t` counting. A `t` that is not a whole number is unparsable (Python's
/// `int()` would also take `+5` or `1_0`; Stripe sends plain digits).
pub fn parse_header(header: &str) -> Result<(i64, Vec<&str>), SignatureFailure> {
    let mut t = None;
    let mut sigs = Vec::new();
    for item in header.split(',') {
        let mut parts = item.splitn(3, '=');
        let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
            continue;
        };
        match k {
            "t" if t.is_none() => t = Some(v),
            SCHEME => sigs.push(v),
            _ => {}
        }
    }
    let t = t
        .filter(|v| !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or(SignatureFailure::Unparsable)?;
    if sigs.is_empty() {
        return Err(SignatureFailure::Unparsable);
    }
    Ok((t, sigs))
}

/// Verify `header` over the raw `body` with `secret` at unix time `now`; `Ok(t)` is the signed
/// timestamp. The signature is checked before the age, as stripe-python does, so a stale but
/// authentic event is told apart from a forged one.
pub fn verify_header(
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureFailure> {
    let (t, sigs) = parse_header(header)?;
    let Some(expected) = mac(secret, t, body) else {
        return Err(SignatureFailure::NoMatch);
    };
    let expected = hex::encode(expected.finalize().into_bytes());
    // Lowercase hex strings compared in constant time, every candidate, as stripe-python's
    // `hmac.compare_digest(expected, sig)` (upper-case hex matches nothing there either).
    let matched = sigs.iter().fold(false, |acc, s| {
        acc | crate::crypto::ct_eq(s.as_bytes(), expected.as_bytes())
    });
    if !matched {
        return Err(SignatureFailure::NoMatch);
    }
    if tolerance_secs > 0 && t < now - tolerance_secs {
        return Err(SignatureFailure::TooOld);
    }
    Ok(t)
}
