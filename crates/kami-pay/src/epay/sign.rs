//! The canonical string both Epay versions sign (G.4) and the per-channel choice of
//! signature: v1 MD5 ([`super::v1`]) or v2 RSA with a timestamp ([`super::v2`]).

use super::{check_timestamp, md5_verify, rsa_verify, signed_md5, signed_rsa};
use super::{EpayChannel, EpayCredentials};
use crate::common::form::field;
use crate::common::sign::sign_string_where;
use crate::PayError;

/// The parameters Epay never signs.
pub(super) const UNSIGNED: [&str; 2] = ["sign", "sign_type"];

/// The G.4 string, or with `drop_zero` the G.6 variant that also leaves out `"0"` values.
pub(super) fn canonical_with<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    drop_zero: bool,
) -> String {
    sign_string_where(params, |k, v| {
        let dropped_zero = drop_zero && v == "0";
        !UNSIGNED.contains(&k) && !dropped_zero
    })
}

/// The canonical string of G.4 steps 1–4: every parameter except `sign` and `sign_type`
/// with a non-empty value, sorted by key (bytewise), `k=v` joined by `&`, raw values.
pub fn canonical<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    canonical_with(params, false)
}

/// Whether the G.6 `"0"`-dropping variant differs from the exact rule (worth a second try).
pub(super) fn has_zero<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> bool {
    params
        .iter()
        .any(|(k, v)| v.as_ref() == "0" && !UNSIGNED.contains(&k.as_ref()))
}

impl EpayChannel {
    /// Sign outgoing parameters with this channel's credentials (v2 adds `timestamp`).
    pub(super) fn sign_request(
        &self,
        mut params: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, PayError> {
        match &self.credentials {
            EpayCredentials::V1 { key } => Ok(signed_md5(key, params)),
            EpayCredentials::V2 {
                merchant_private_key,
                ..
            } => {
                params.push(("timestamp".into(), self.clock.now_secs().to_string()));
                signed_rsa(merchant_private_key, params)
            }
        }
    }

    /// Check the signature of inbound parameters (notification or v2 reply) and, for v2,
    /// the timestamp. `sign_type` may be absent or any case of the version's own type.
    pub(super) fn check_signature(
        &self,
        params: &[(String, String)],
        now: i64,
        bad: PayError,
    ) -> Result<(), PayError> {
        let sign_type = field(params, "sign_type").unwrap_or("");
        match &self.credentials {
            EpayCredentials::V1 { key } => {
                if !(sign_type.is_empty() || sign_type.eq_ignore_ascii_case("MD5"))
                    || !md5_verify(key, params)
                {
                    return Err(bad);
                }
            }
            EpayCredentials::V2 {
                platform_public_key,
                ..
            } => {
                if !(sign_type.is_empty() || sign_type.eq_ignore_ascii_case("RSA"))
                    || !rsa_verify(platform_public_key, params)
                {
                    return Err(bad);
                }
                check_timestamp(field(params, "timestamp"), now)?;
            }
        }
        Ok(())
    }
}
