//! What a create call's result says about the channel. A refusal of this one payment (its
//! parameters, a flavour the merchant did not enable) is the buyer's, not the channel's: it
//! neither fails over nor counts against the channel's health, or any buyer could take a
//! method down by asking for something odd three times. Everything else — unreachable,
//! timed out, garbage, a bad signature, the gateway's own system errors, a merchant account
//! that is blocked or misconfigured — is the channel's.

use crate::PayError;

/// One create call's outcome as health and scores count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Created, after `latency_ms`.
    Success { latency_ms: i64 },
    /// Failed; `code` is the gateway's error code when it gave one.
    Error { code: Option<String> },
    /// No answer within the attempt's time.
    Timeout,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success { .. })
    }

    /// The gateway code, `TIMEOUT`, or `None`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Success { .. } => None,
            Outcome::Error { code } => code.as_deref(),
            Outcome::Timeout => Some("TIMEOUT"),
        }
    }
}

/// Whose fault a failed create call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// This payment's parameters: no failover, no health change.
    Buyer,
    /// The channel's: try the next candidate, count it.
    Channel(Outcome),
}

/// Gateway codes that mean the gateway (or the merchant's account) failed, not the request:
/// Alipay's system errors and merchant-level refusals, WeChat Pay's, the sandbox's.
const CHANNEL_CODES: [&str; 22] = [
    "20000",
    "20001",
    "ACQ.SYSTEM_ERROR",
    "ACQ.ACCESS_FORBIDDEN",
    "ACQ.SELLER_BEEN_BLOCKED",
    "ACQ.PARTNER_ERROR",
    "ACQ.TRADE_SETTLE_ERROR",
    "isp.unknow-error",
    "aop.unknow-error",
    "isv.invalid-app-id",
    "isv.invalid-signature",
    "INVALID_APP_ID",
    "SYSTEM_ERROR",
    "SYSTEMERROR",
    "SIGN_ERROR",
    "NOAUTH",
    "MCH_NOT_EXISTS",
    "APPID_MCHID_NOT_MATCH",
    "FREQUENCY_LIMITED",
    "BAD_SIGNATURE",
    "UNAVAILABLE",
    "TIMEOUT",
];

/// Is this gateway code the channel's fault?
pub fn is_channel_code(code: &str) -> bool {
    code.starts_with("HTTP_5")
        || code.starts_with("isp.")
        || code.starts_with("aop.")
        || CHANNEL_CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// Attribute a failed create call.
pub fn attribute(err: &PayError) -> Attribution {
    match err {
        PayError::Unsupported(_) => Attribution::Buyer,
        PayError::Gateway { code, .. } if !is_channel_code(code) => Attribution::Buyer,
        PayError::Gateway { code, .. } => Attribution::Channel(Outcome::Error {
            code: Some(code.clone()),
        }),
        PayError::Transport(m) if m.contains("timed out") || m.contains("timeout") => {
            Attribution::Channel(Outcome::Timeout)
        }
        PayError::Transport(_) => Attribution::Channel(Outcome::Error {
            code: Some("UNREACHABLE".into()),
        }),
        PayError::BadResponseSignature | PayError::BadSignature => {
            Attribution::Channel(Outcome::Error {
                code: Some("BAD_RESPONSE_SIGNATURE".into()),
            })
        }
        PayError::Malformed(_) => Attribution::Channel(Outcome::Error {
            code: Some("MALFORMED".into()),
        }),
        PayError::WrongMerchant | PayError::Stale | PayError::Config(_) => {
            Attribution::Channel(Outcome::Error {
                code: Some("CONFIG".into()),
            })
        }
    }
}
