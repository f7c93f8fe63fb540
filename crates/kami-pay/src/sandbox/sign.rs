//! Sandbox signatures: lowercase hex HMAC-SHA256 with the shared secret over the sign string
//! of every parameter but `sign` ([`crate::common::sign`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::sign::{sign_string, unique_sign, without};

type HmacSha256 = Hmac<Sha256>;

/// Every parameter but `sign` with a non-empty value, sorted by key, `k=v` joined by `&`.
pub(crate) fn canonical<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    sign_string(params, &["sign"])
}

fn mac(secret: &[u8], params_canonical: &str) -> Option<HmacSha256> {
    // HMAC accepts keys of any length; the error branch is unreachable in practice.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    mac.update(params_canonical.as_bytes());
    Some(mac)
}

/// The sandbox signature of `params`: lowercase hex HMAC-SHA256 of the canonical string
/// (every parameter but `sign` with a non-empty value, sorted by key, `k=v` joined by `&`).
pub fn sign<K: AsRef<str>, V: AsRef<str>>(secret: &[u8], params: &[(K, V)]) -> String {
    match mac(secret, &canonical(params)) {
        Some(m) => hex::encode(m.finalize().into_bytes()),
        None => String::new(),
    }
}

/// True iff `params` carries exactly one `sign` that is the lowercase-hex signature of the
/// other parameters, and no key appears twice. Constant-time comparison.
pub fn verify<K: AsRef<str>, V: AsRef<str>>(secret: &[u8], params: &[(K, V)]) -> bool {
    let Some(sig) = unique_sign(params) else {
        return false;
    };
    if sig.len() != 64 || !sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return false;
    }
    let Ok(bytes) = hex::decode(sig) else {
        return false;
    };
    match mac(secret, &canonical(params)) {
        Some(m) => m.verify_slice(&bytes).is_ok(),
        None => false,
    }
}

/// Params with a fresh `sign` appended (any existing `sign` is replaced).
pub fn signed(secret: &[u8], params: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut params = without(params, &["sign"]);
    let s = sign(secret, &params);
    params.push(("sign".to_owned(), s));
    params
}
