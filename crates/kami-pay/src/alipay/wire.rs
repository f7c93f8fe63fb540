//! Alipay OpenAPI (`gateway.do`) bytes, shared by the channel ([`super::AlipayChannel`]) and
//! the gateway simulator (`kami_sim::alipay`): extraction of the signed raw node of a
//! synchronous response (A.3), building such a response, Beijing-time formatting (A.1, A.6),
//! and the translation of answers to kami's facts. The sign strings and signatures live in
//! the private `sign` module and are re-exported here, where the simulator has always found them.
//!
//! Everything here is pure and never panics on any input.

use std::collections::HashSet;
use std::ops::Range;

use kami_core::{Currency, Money};
use serde_json::{Map, Value};
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::crypto::RsaSigner;
use crate::{PayError, PaymentConfirmation, TradeState};

use super::sign::sign_error;
pub use super::sign::{
    notify_sign_content, request_sign_content, sign_content, signed_notify, signed_request,
    verify_params, verify_response_node, AlipaySignType, NOTIFY_UNSIGNED, REQUEST_UNSIGNED,
};
pub use crate::common::form::field;
pub use crate::common::text::clip;
pub(super) use crate::common::text::owned;

/// Longest `subject` Alipay accepts (characters).
const MAX_SUBJECT_CHARS: usize = 256;

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

pub(super) fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn required_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, PayError> {
    match map.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(PayError::Malformed(format!("gateway response lacks {key}"))),
    }
}

pub(super) fn cny(amount: &str) -> Result<Money, PayError> {
    Money::from_major_str(amount, Currency::Cny).map_err(|e| PayError::Malformed(e.to_string()))
}

/// True for the User-Agents of phones and tablets (and the Alipay app's own browser).
pub fn is_mobile_user_agent(ua: &str) -> bool {
    [
        "Mobile",
        "Android",
        "iPhone",
        "iPad",
        "iPod",
        "HarmonyOS",
        "AlipayClient",
    ]
    .iter()
    .any(|m| ua.contains(m))
}

pub(super) fn clean_subject(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let s = s.trim();
    if s.is_empty() {
        return "order".to_owned();
    }
    s.chars().take(MAX_SUBJECT_CHARS).collect()
}

pub(super) fn check_echo(map: &Map<String, Value>, trade_no: &str) -> Result<(), PayError> {
    match map.get("out_trade_no").and_then(Value::as_str) {
        Some(t) if t != trade_no => Err(PayError::Malformed(
            "gateway answered for another trade".into(),
        )),
        _ => Ok(()),
    }
}

pub(super) fn trade_state(
    map: &Map<String, Value>,
    trade_no: &str,
) -> Result<TradeState, PayError> {
    let echoed = required_str(map, "out_trade_no")?;
    if echoed != trade_no {
        return Err(PayError::Malformed(
            "gateway answered for another trade".into(),
        ));
    }
    match required_str(map, "trade_status")? {
        "WAIT_BUYER_PAY" => Ok(TradeState::Waiting),
        "TRADE_CLOSED" => Ok(TradeState::Closed),
        "TRADE_SUCCESS" | "TRADE_FINISHED" => Ok(TradeState::Paid(PaymentConfirmation {
            trade_no: trade_no.to_owned(),
            gateway_trade_no: required_str(map, "trade_no")?.to_owned(),
            amount: cny(required_str(map, "total_amount")?)?,
            paid_at: crate::common::pay_time::pay_time(
                "alipay",
                "send_pay_date",
                map.get("send_pay_date").and_then(Value::as_str),
                parse_beijing_time,
            ),
            coin_amount: None,
        })),
        other => Err(PayError::Malformed(format!(
            "unknown trade_status {}",
            clip(other, 32)
        ))),
    }
}
