//! The webhook signature (appendix A.2, paypalrestsdk `WebhookEvent._get_expected_sig`): the
//! signed message is `transmission_id|transmission_time|webhook_id|crc32(raw body)` with the
//! CRC32 (IEEE) of the body bytes exactly as received, written as an unsigned decimal; the
//! `PAYPAL-TRANSMISSION-SIG` header is the standard base64 of its SHA256withRSA (PKCS#1 v1.5)
//! signature by the certificate at `PAYPAL-CERT-URL`.

use crate::crypto::{RsaHash, RsaSigner, RsaVerifier};
use crate::{PayError, RawNotification};

/// The only `PAYPAL-AUTH-ALGO` PayPal sends.
pub const AUTH_ALGO: &str = "SHA256withRSA";

pub const H_TRANSMISSION_ID: &str = "paypal-transmission-id";
pub const H_TRANSMISSION_TIME: &str = "paypal-transmission-time";
pub const H_TRANSMISSION_SIG: &str = "paypal-transmission-sig";
pub const H_CERT_URL: &str = "paypal-cert-url";
pub const H_AUTH_ALGO: &str = "paypal-auth-algo";

/// CRC32 (IEEE, as zlib's `crc32`) of `body`, unsigned decimal.
pub fn crc32_decimal(body: &[u8]) -> String {
    crc32fast::hash(body).to_string()
}

/// The signed message of one webhook delivery.
pub fn expected_message(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
) -> String {
    format!(
        "{transmission_id}|{transmission_time}|{webhook_id}|{}",
        crc32_decimal(body)
    )
}

/// The transmission headers of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission<'a> {
    pub id: &'a str,
    pub time: &'a str,
    pub sig: &'a str,
    pub cert_url: &'a str,
    pub auth_algo: &'a str,
}

impl<'a> Transmission<'a> {
    /// Every header present and non-empty, the algorithm PayPal's.
    pub fn from_raw(raw: &'a RawNotification) -> Result<Transmission<'a>, PayError> {
        let get = |name: &'static str| {
            raw.header(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| PayError::Malformed(format!("missing header {name}")))
        };
        let t = Transmission {
            id: get(H_TRANSMISSION_ID)?,
            time: get(H_TRANSMISSION_TIME)?,
            sig: get(H_TRANSMISSION_SIG)?,
            cert_url: get(H_CERT_URL)?,
            auth_algo: get(H_AUTH_ALGO)?,
        };
        if t.auth_algo != AUTH_ALGO {
            return Err(PayError::Malformed(format!(
                "{H_AUTH_ALGO} must be {AUTH_ALGO}"
            )));
        }
        // The message joins fields with `|`: a field holding one could shift the others.
        if t.id.contains('|') || t.time.contains('|') {
            return Err(PayError::Malformed(
                "transmission id or time contains `|`".into(),
            ));
        }
        Ok(t)
    }

    /// Whether the signature verifies over this delivery's message for `webhook_id`.
    pub fn verify(&self, key: &RsaVerifier, webhook_id: &str, body: &[u8]) -> bool {
        let msg = expected_message(self.id, self.time, webhook_id, body);
        key.verify_base64(RsaHash::Sha256, msg.as_bytes(), self.sig)
    }
}

/// The headers PayPal sends with a webhook (simulator, tests): signs the message with `key`.
pub fn sign_headers(
    key: &RsaSigner,
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    cert_url: &str,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, crate::crypto::KeyError> {
    let msg = expected_message(transmission_id, transmission_time, webhook_id, body);
    let sig = key.sign_base64(RsaHash::Sha256, msg.as_bytes())?;
    Ok(vec![
        (H_TRANSMISSION_ID, transmission_id.to_owned()),
        (H_TRANSMISSION_TIME, transmission_time.to_owned()),
        (H_TRANSMISSION_SIG, sig),
        (H_CERT_URL, cert_url.to_owned()),
        (H_AUTH_ALGO, AUTH_ALGO.to_owned()),
    ])
}
