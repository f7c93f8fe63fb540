//! Alipay signatures (A.2, A.4, A.3): the `sign_type`, the request and notification sign
//! strings (the shared sorted `k=v&...` string with different keys left out), RSA signing
//! and verification of them and of a response node, and the signed common parameters of
//! every API call.

use serde_json::Value;

use super::wire::{self, owned};
use super::AlipayChannel;
use crate::common::sign::{sign_string, unique_sign, without};
use crate::crypto::{RsaHash, RsaSigner, RsaVerifier};
use crate::PayError;

/// `sign_type`: `RSA2` = SHA256withRSA (recommended), `RSA` = legacy SHA1withRSA (A.1).
/// Both are RSASSA-PKCS1-v1_5, base64 (standard alphabet, padded, one line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlipaySignType {
    Rsa2,
    Rsa,
}

impl AlipaySignType {
    /// The wire value: `RSA2` or `RSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlipaySignType::Rsa2 => "RSA2",
            AlipaySignType::Rsa => "RSA",
        }
    }

    /// Exactly `RSA2` or `RSA` (case-sensitive, as the gateway is).
    pub fn parse(s: &str) -> Option<AlipaySignType> {
        match s {
            "RSA2" => Some(AlipaySignType::Rsa2),
            "RSA" => Some(AlipaySignType::Rsa),
            _ => None,
        }
    }

    pub fn hash(self) -> RsaHash {
        match self {
            AlipaySignType::Rsa2 => RsaHash::Sha256,
            AlipaySignType::Rsa => RsaHash::Sha1,
        }
    }
}

/// Request parameters excluded from the request sign string (A.2 step 1): only `sign`.
pub const REQUEST_UNSIGNED: &[&str] = &["sign"];
/// Notification parameters excluded from the notify sign string (A.4 "rsaCheckV1"): `sign`
/// AND `sign_type`.
pub const NOTIFY_UNSIGNED: &[&str] = &["sign", "sign_type"];
/// The canonical string (A.2 steps 1-4, A.4): every parameter whose key is not in `exclude`
/// and whose value is non-empty, sorted by key bytewise (ASCII), joined as `k=v` with `&`,
/// raw values (decoded, not re-encoded). Keys are unique in every message kami accepts;
/// equal keys would be ordered by value.
pub fn sign_content<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)], exclude: &[&str]) -> String {
    sign_string(params, exclude)
}

/// The request sign string (A.2): all parameters except `sign` — `sign_type` included.
pub fn request_sign_content<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    sign_content(params, REQUEST_UNSIGNED)
}

/// The notification sign string (A.4): all parameters except `sign` and `sign_type`.
pub fn notify_sign_content<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    sign_content(params, NOTIFY_UNSIGNED)
}

pub(super) fn sign_error() -> PayError {
    PayError::Config("RSA signing failed".into())
}

/// Standard base64 RSA signature of `content` with the algorithm of `sign_type`.
fn sign_base64(
    signer: &RsaSigner,
    sign_type: AlipaySignType,
    content: &str,
) -> Result<String, PayError> {
    signer
        .sign_base64(sign_type.hash(), content.as_bytes())
        .map_err(|_| sign_error())
}

/// `params` without `sign`, `sign_type` and empty values: what is about to be signed and sent.
fn unsigned_non_empty(params: Vec<(String, String)>) -> Vec<(String, String)> {
    without(params, NOTIFY_UNSIGNED)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// `params` with `sign_type` set to `sign_type` and a fresh `sign` appended (any previous
/// `sign`/`sign_type` replaced), signed with the request rule (A.2). Empty values are
/// dropped from the returned list too: the client must never send them.
pub fn signed_request(
    signer: &RsaSigner,
    sign_type: AlipaySignType,
    params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PayError> {
    let mut params = unsigned_non_empty(params);
    params.push(("sign_type".into(), sign_type.as_str().into()));
    let sign = sign_base64(signer, sign_type, &request_sign_content(&params))?;
    params.push(("sign".into(), sign));
    Ok(params)
}

/// `params` (a notification or return-URL message) with `sign_type` and `sign` appended,
/// signed with the notify rule (A.4: `sign_type` not signed).
pub fn signed_notify(
    signer: &RsaSigner,
    sign_type: AlipaySignType,
    params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PayError> {
    let mut params = unsigned_non_empty(params);
    let sign = sign_base64(signer, sign_type, &notify_sign_content(&params))?;
    params.push(("sign_type".into(), sign_type.as_str().into()));
    params.push(("sign".into(), sign));
    Ok(params)
}

/// True iff `params` has exactly one non-empty `sign` that verifies over the sign string
/// built with `exclude` (use [`REQUEST_UNSIGNED`] or [`NOTIFY_UNSIGNED`]), and no key twice.
pub fn verify_params<K: AsRef<str>, V: AsRef<str>>(
    verifier: &RsaVerifier,
    sign_type: AlipaySignType,
    params: &[(K, V)],
    exclude: &[&str],
) -> bool {
    match unique_sign(params) {
        Some(sig) if !sig.is_empty() => {
            let content = sign_content(params, exclude);
            verifier.verify_base64(sign_type.hash(), content.as_bytes(), sig)
        }
        _ => false,
    }
}

/// Verify a response node's signature (A.3): over the raw node text; if that fails and the
/// text contains `\/`, once more with `\/` unescaped to `/` (the Java SDK's fallback, for
/// gateways that signed before escaping). A signature is required: `None`/empty fails.
pub fn verify_response_node(
    verifier: &RsaVerifier,
    sign_type: AlipaySignType,
    node_raw: &str,
    sign: Option<&str>,
) -> bool {
    let Some(sign) = sign.filter(|s| !s.is_empty()) else {
        return false;
    };
    let hash = sign_type.hash();
    if verifier.verify_base64(hash, node_raw.as_bytes(), sign) {
        return true;
    }
    node_raw.contains("\\/")
        && verifier.verify_base64(hash, node_raw.replace("\\/", "/").as_bytes(), sign)
}

impl AlipayChannel {
    /// Common parameters (A.1) plus `extra` and `biz_content`, signed (A.2).
    pub fn signed_params(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
        now_ms: i64,
    ) -> Result<Vec<(String, String)>, PayError> {
        let timestamp = wire::beijing_time(now_ms)
            .ok_or_else(|| PayError::Config("clock out of range".into()))?;
        let mut params = owned(&[
            ("app_id", &self.cfg.app_id),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("timestamp", &timestamp),
            ("version", "1.0"),
        ]);
        if let Some(t) = &self.cfg.app_auth_token {
            params.push(("app_auth_token".into(), t.clone()));
        }
        params.extend(owned(extra));
        params.push(("biz_content".into(), biz.to_string()));
        signed_request(&self.cfg.app_private_key, self.cfg.sign_type, params)
    }
}
