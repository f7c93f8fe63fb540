//! Alipay OpenAPI (`gateway.do`) bytes, shared by the channel ([`super::AlipayChannel`]) and
//! the gateway simulator (`kami_sim::alipay`): the canonical sign strings (protocols.md A.2,
//! A.4), RSA signing/verification of them, extraction of the signed raw node of a synchronous
//! response (A.3), building such a response, and Beijing-time formatting (A.1, A.6).
//!
//! Everything here is pure and never panics on any input.

use std::collections::HashSet;
use std::ops::Range;

use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime};

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
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, v)| !v.is_empty() && !exclude.contains(k))
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The request sign string (A.2): all parameters except `sign` — `sign_type` included.
pub fn request_sign_content<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    sign_content(params, REQUEST_UNSIGNED)
}

/// The notification sign string (A.4): all parameters except `sign` and `sign_type`.
pub fn notify_sign_content<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    sign_content(params, NOTIFY_UNSIGNED)
}

fn sign_error() -> PayError {
    PayError::Config("RSA signing failed".into())
}

/// `params` with `sign_type` set to `sign_type` and a fresh `sign` appended (any previous
/// `sign`/`sign_type` replaced), signed with the request rule (A.2). Empty values are
/// dropped from the returned list too: the client must never send them.
pub fn signed_request(
    signer: &RsaSigner,
    sign_type: AlipaySignType,
    params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PayError> {
    let mut params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .collect();
    params.push(("sign_type".into(), sign_type.as_str().into()));
    let content = request_sign_content(&params);
    let sign = signer
        .sign_base64(sign_type.hash(), content.as_bytes())
        .map_err(|_| sign_error())?;
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
    let mut params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .collect();
    let content = notify_sign_content(&params);
    let sign = signer
        .sign_base64(sign_type.hash(), content.as_bytes())
        .map_err(|_| sign_error())?;
    params.push(("sign_type".into(), sign_type.as_str().into()));
    params.push(("sign".into(), sign));
    Ok(params)
}

/// The value of `key`, if present.
pub fn field<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// True iff `params` has exactly one non-empty `sign` that verifies over the sign string
/// built with `exclude` (use [`REQUEST_UNSIGNED`] or [`NOTIFY_UNSIGNED`]), and no key twice.
pub fn verify_params<K: AsRef<str>, V: AsRef<str>>(
    verifier: &RsaVerifier,
    sign_type: AlipaySignType,
    params: &[(K, V)],
    exclude: &[&str],
) -> bool {
    let mut seen = HashSet::new();
    let mut sig = None;
    for (k, v) in params {
        if !seen.insert(k.as_ref()) {
            return false;
        }
        if k.as_ref() == "sign" {
            sig = Some(v.as_ref());
        }
    }
    match sig {
        Some(sig) if !sig.is_empty() => {
            let content = sign_content(params, exclude);
            verifier.verify_base64(sign_type.hash(), content.as_bytes(), sig)
        }
        _ => false,
    }
}

/// The response node name of a method (A.3): `alipay.trade.query` →
/// `alipay_trade_query_response`.
pub fn response_node_name(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The node of an error that is not answered under the method's own node (A.3).
pub const ERROR_NODE: &str = "error_response";

/// A synchronous response split into its parts (A.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseParts<'a> {
    /// Which node was found: the method's node or [`ERROR_NODE`].
    pub node_name: String,
    /// The node's JSON value exactly as it appears in the body — the signed bytes.
    pub node_raw: &'a str,
    /// The top-level `sign` string (decoded JSON string), if present.
    pub sign: Option<String>,
}

fn malformed(m: &str) -> PayError {
    PayError::Malformed(m.to_owned())
}

/// Split a response body: the raw text of `node` (or, if absent, of `error_response`) and the
/// top-level `sign`. The body must be one valid JSON object with unique top-level keys; the
/// node must be an object. Sibling members (e.g. `alipay_cert_sn` between the node and `sign`)
/// are allowed anywhere. The raw text is found by a string-aware scan of the top-level
/// members, never by re-serialising or by searching for `"sign"`.
pub fn split_response<'a>(body: &'a str, node: &str) -> Result<ResponseParts<'a>, PayError> {
    // Validate the whole document first, so the scanner only ever sees well-formed JSON.
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => return Err(malformed("gateway response is not a JSON object")),
    }
    let members =
        top_level_members(body).ok_or_else(|| malformed("gateway response is not an object"))?;
    let mut seen = HashSet::new();
    for (k, _) in &members {
        if !seen.insert(k.as_str()) {
            return Err(malformed("gateway response repeats a key"));
        }
    }
    let find = |name: &str| {
        members
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, r)| body.get(r.clone()))
    };
    let (node_name, node_raw) = match find(node) {
        Some(raw) => (node.to_owned(), raw),
        None => match find(ERROR_NODE) {
            Some(raw) => (ERROR_NODE.to_owned(), raw),
            None => return Err(malformed("gateway response has no response node")),
        },
    };
    if !node_raw.starts_with('{') {
        return Err(malformed("gateway response node is not an object"));
    }
    let sign = match find("sign") {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<String>(raw)
                .map_err(|_| malformed("gateway response sign is not a string"))?,
        ),
    };
    Ok(ResponseParts {
        node_name,
        node_raw,
        sign,
    })
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Index just past the string starting at `b[i] == b'"'`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Index just past the JSON value starting at `b[i]` (the document is known to be valid).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The top-level members of a JSON object: decoded key and the byte range of the raw value.
fn top_level_members(body: &str) -> Option<Vec<(String, Range<usize>)>> {
    let b = body.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_end = string_end(b, i)?;
        let key: String = serde_json::from_str(body.get(i..key_end)?).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = value_end(b, start)?;
        out.push((key, start..end));
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
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

/// Compact JSON of `fields` in the given order, with `/` escaped as `\/` like Alipay does.
pub fn compact_json_object(fields: &[(&str, serde_json::Value)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String((*k).to_owned()).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    // `/` can only occur inside strings in JSON, so this escapes exactly the string content.
    out.replace('/', "\\/")
}

/// A complete signed synchronous response as the gateway sends it (A.3): compact JSON, the
/// node first, `sign` last, the signature over the node's exact text.
pub fn build_response(
    signer: &RsaSigner,
    sign_type: AlipaySignType,
    node_name: &str,
    fields: &[(&str, serde_json::Value)],
) -> Result<String, PayError> {
    let node = compact_json_object(fields);
    let sign = signer
        .sign_base64(sign_type.hash(), node.as_bytes())
        .map_err(|_| sign_error())?;
    let name = serde_json::Value::String(node_name.to_owned()).to_string();
    let sign = serde_json::Value::String(sign).to_string();
    Ok(format!("{{{name}:{node},\"sign\":{sign}}}"))
}

const BEIJING_FMT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Unix milliseconds as Beijing time `yyyy-MM-dd HH:mm:ss` (UTC+8, A.1/A.6), rounded down to
/// the second. `None` outside years 0..=9999.
pub fn beijing_time(unix_ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .ok()?
        .to_offset(offset!(+8));
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    t.format(BEIJING_FMT).ok()
}

/// Parse Beijing time `yyyy-MM-dd HH:mm:ss` to unix milliseconds.
pub fn parse_beijing_time(s: &str) -> Option<i64> {
    let t = PrimitiveDateTime::parse(s, BEIJING_FMT).ok()?;
    Some(t.assume_offset(offset!(+8)).unix_timestamp() * 1000)
}

/// Now, unix milliseconds.
pub fn now_ms() -> i64 {
    let ns = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// At most `max` characters of `s`, control characters replaced, `…` when cut: for error
/// messages built from outside data.
pub fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
