//! Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA-1, 6 digits, 30-second
//! steps, one step of clock drift either way — what every authenticator app speaks. No crate
//! here did only this without image features; HMAC-SHA-1 comes from aws-lc-rs.

use aws_lc_rs::hmac;
use data_encoding::BASE32_NOPAD;
use subtle::ConstantTimeEq;

/// Seconds per time step.
pub const STEP_SECS: i64 = 30;
/// Bytes of a secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
const DIGITS: u32 = 6;

/// A new random secret.
pub fn generate_secret() -> Vec<u8> {
    rand::random::<[u8; SECRET_LEN]>().to_vec()
}

/// The secret as authenticator apps take it typed in: base32 without padding.
pub fn base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI a QR code carries.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer).replace('+', "%20"),
        enc(account).replace('+', "%20"),
        base32(secret),
        enc(issuer).replace('+', "%20"),
    )
}

/// The time step of a moment (seconds since the epoch).
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code of one time step (RFC 4226 dynamic truncation).
pub fn code_at(secret: &[u8], step: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", bin % 10u32.pow(DIGITS))
}

/// The time step `code` belongs to, within one step of `unix_secs`, if any. Every candidate
/// is compared in constant time. Whether the step was used before is the store's to say.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_secs);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        if bool::from(code_at(secret, step).as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (the 8-digit codes' last 6 digits).
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(secret, step_at(t)), code, "T = {t}");
        }
    }

    #[test]
    fn accepts_one_step_of_drift_and_nothing_else() {
        let secret = b"12345678901234567890";
        let t = 1_111_111_111;
        let now = step_at(t);
        for d in [-1, 0, 1] {
            let code = code_at(secret, now + d);
            assert_eq!(matching_step(secret, &code, t), Some(now + d));
        }
        assert_eq!(matching_step(secret, &code_at(secret, now + 2), t), None);
        assert_eq!(matching_step(secret, &code_at(secret, now - 2), t), None);
        assert_eq!(matching_step(secret, "12345", t), None);
        assert_eq!(matching_step(secret, "abcdef", t), None);
    }

    #[test]
    fn uri_and_base32() {
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let uri = otpauth_uri("My Shop", "owner", b"12345678901234567890");
        assert!(
            uri.starts_with("otpauth://totp/My%20Shop:owner?secret=GEZDGNBV"),
            "{uri}"
        );
    }
}
