//! WeChat Pay API v3 signatures (B.1, B.2): the request message and `Authorization` header
//! kami signs, the response/notification message it verifies, and the platform keys that
//! verify it, selected by `Wechatpay-Serial`.

use super::wire::clip;
use super::{MAX_CLOCK_SKEW_SECS, SIGNATURE_SCHEME, SIGNTEST_PREFIX};
use crate::crypto::{Certificate, KeyError, RsaHash, RsaSigner, RsaVerifier};

/// The keys that verify WeChat's signatures, selected by `Wechatpay-Serial` (B.2).
#[derive(Debug, Clone)]
pub enum PlatformKeys {
    /// "WeChat Pay public key" mode: `pub_key.pem` and its `PUB_KEY_ID_…`.
    PublicKey { id: String, key: RsaVerifier },
    /// Platform certificates (old mode), looked up by serial (hex, case-insensitive) and only
    /// within their validity window.
    Certificates(Vec<Certificate>),
}

impl PlatformKeys {
    /// The key for `serial` at unix time `now`, if any.
    pub fn find(&self, serial: &str, now: i64) -> Option<&RsaVerifier> {
        match self {
            PlatformKeys::PublicKey { id, key } => (!id.is_empty() && serial == id).then_some(key),
            PlatformKeys::Certificates(certs) => {
                let want = normalize_serial(serial)?;
                certs
                    .iter()
                    .find(|c| {
                        normalize_serial(&c.serial_hex).as_deref() == Some(want.as_str())
                            && c.not_before <= now
                            && now <= c.not_after
                    })
                    .map(|c| &c.verifier)
            }
        }
    }
}

/// Upper-case hex without leading zeros; `None` unless `s` is non-empty hex.
pub(super) fn normalize_serial(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let t = s.trim_start_matches('0').to_ascii_uppercase();
    Some(if t.is_empty() { "0".to_owned() } else { t })
}

/// A fresh request nonce: 32 upper-case hex characters (as the official SDKs make them).
pub fn nonce_str() -> String {
    hex::encode_upper(rand::random::<[u8; 16]>())
}

/// The B.1 request message: `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`.
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The B.2 response/notification message: `TIMESTAMP\nNONCE\nBODY\n` over raw body bytes.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The parameters of a B.1 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationParams {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

impl AuthorizationParams {
    /// The header value, parameters in the SDKs' order.
    pub fn header_value(&self) -> String {
        format!(
            "{SIGNATURE_SCHEME} mchid=\"{}\",nonce_str=\"{}\",signature=\"{}\",timestamp=\"{}\",serial_no=\"{}\"",
            self.mchid, self.nonce_str, self.signature, self.timestamp, self.serial_no
        )
    }

    /// Parse `WECHATPAY2-SHA256-RSA2048 k="v",...`: the five parameters in any order, each
    /// exactly once, optional spaces around the commas; values may not contain `"`.
    pub fn parse(header: &str) -> Result<AuthorizationParams, String> {
        let rest = header
            .strip_prefix(SIGNATURE_SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| format!("scheme must be {SIGNATURE_SCHEME}"))?;
        let mut fields: [Option<String>; 5] = Default::default();
        const NAMES: [&str; 5] = ["mchid", "nonce_str", "signature", "timestamp", "serial_no"];
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=').ok_or("parameter without '='")?;
            let name = rest[..eq].trim();
            let after = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("parameter value must be quoted")?;
            let close = after.find('"').ok_or("unterminated parameter value")?;
            let value = &after[..close];
            let slot = NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("unknown parameter {}", clip(name)))?;
            if fields[slot].replace(value.to_owned()).is_some() {
                return Err(format!("duplicate parameter {name}"));
            }
            rest = after[close + 1..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
                if rest.is_empty() {
                    return Err("trailing comma".into());
                }
            } else if !rest.is_empty() {
                return Err("parameters must be separated by commas".into());
            }
        }
        let [mchid, nonce_str, signature, timestamp, serial_no] = fields;
        let need = |v: Option<String>, n: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| format!("missing parameter {n}"))
        };
        Ok(AuthorizationParams {
            mchid: need(mchid, "mchid")?,
            nonce_str: need(nonce_str, "nonce_str")?,
            signature: need(signature, "signature")?,
            timestamp: need(timestamp, "timestamp")?,
            serial_no: need(serial_no, "serial_no")?,
        })
    }
}

/// Sign one request (B.1) and return the whole `Authorization` header value.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    signer: &RsaSigner,
    mchid: &str,
    serial_no: &str,
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> Result<String, KeyError> {
    let message = request_message(method, canonical_url, timestamp, nonce, body);
    let signature = signer.sign_base64(RsaHash::Sha256, message.as_bytes())?;
    Ok(AuthorizationParams {
        mchid: mchid.to_owned(),
        nonce_str: nonce.to_owned(),
        signature,
        timestamp: timestamp.to_owned(),
        serial_no: serial_no.to_owned(),
    }
    .header_value())
}

/// The signature headers of a response or notification (B.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
    pub signature_type: Option<String>,
}

/// Why a B.2 signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFailure {
    /// `Wechatpay-Timestamp` is not a unix time.
    BadTimestamp,
    /// `Wechatpay-Signature-Type` is not [`SIGNATURE_SCHEME`].
    UnsupportedType,
    /// A `WECHATPAY/SIGNTEST/` probe.
    Probe,
    /// No platform key for `Wechatpay-Serial`.
    UnknownSerial,
    /// The signature does not verify.
    Invalid,
    /// Authentic but older or newer than [`MAX_CLOCK_SKEW_SECS`].
    Stale,
}

/// Verify a B.2 signature over `body` at unix time `now`: type, probe, serial → key,
/// SHA256withRSA, then the clock window. Never panics.
pub fn verify_signature(
    keys: &PlatformKeys,
    h: &SignedHeaders,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureFailure> {
    if h.signature_type
        .as_deref()
        .is_some_and(|t| t != SIGNATURE_SCHEME)
    {
        return Err(SignatureFailure::UnsupportedType);
    }
    if h.signature.starts_with(SIGNTEST_PREFIX) {
        return Err(SignatureFailure::Probe);
    }
    let ts = parse_unix(&h.timestamp).ok_or(SignatureFailure::BadTimestamp)?;
    let key = keys
        .find(&h.serial, now)
        .ok_or(SignatureFailure::UnknownSerial)?;
    let message = response_message(&h.timestamp, &h.nonce, body);
    if !key.verify_base64(RsaHash::Sha256, &message, &h.signature) {
        return Err(SignatureFailure::Invalid);
    }
    if ts.abs_diff(now) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(SignatureFailure::Stale);
    }
    Ok(())
}

/// Decimal unix seconds, at most 12 digits.
fn parse_unix(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Collect the B.2 headers through `get` (which reports duplicates/non-text as `Err`).
pub(super) fn signed_headers<'a>(
    get: impl Fn(&'static str) -> Result<Option<&'a str>, String>,
) -> Result<SignedHeaders, String> {
    let need = |name: &'static str| -> Result<String, String> {
        get(name)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("missing header {name}"))
    };
    Ok(SignedHeaders {
        timestamp: need("wechatpay-timestamp")?,
        nonce: need("wechatpay-nonce")?,
        signature: need("wechatpay-signature")?,
        serial: need("wechatpay-serial")?,
        signature_type: get("wechatpay-signature-type")?.map(|v| v.trim().to_owned()),
    })
}
