//! WeChat Pay notifications (B.3): headers verified over the raw body within the clock
//! window, `resource` decrypted with the APIv3 key, merchant and app checked; and the reply.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::sign::{signed_headers, verify_signature, SignatureFailure};
use super::wire::{clip, json, Transaction};
use super::{WechatPayChannel, MAX_NOTIFY_BYTES, RESOURCE_ALGORITHM};
use crate::crypto::aes256gcm_decrypt;
use crate::{Ack, AckResponse, NotifyVerdict, PayError, RawNotification};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The `resource` of a notification (B.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub original_type: Option<String>,
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    pub nonce: String,
}

/// A notification envelope (B.3).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Envelope {
    event_type: String,
    #[serde(default)]
    resource_type: Option<String>,
    pub(super) resource: Resource,
}

/// Decrypt a `resource` (AEAD_AES_256_GCM, B.3) with the APIv3 key.
pub fn decrypt_resource(apiv3_key: &[u8], r: &Resource) -> Result<Vec<u8>, PayError> {
    if r.algorithm != RESOURCE_ALGORITHM {
        return Err(PayError::Malformed(format!(
            "unsupported resource algorithm {}",
            clip(&r.algorithm)
        )));
    }
    if apiv3_key.len() != 32 {
        return Err(PayError::Config(
            "wechatpay: the APIv3 key must be exactly 32 bytes".into(),
        ));
    }
    let ct = B64
        .decode(r.ciphertext.as_bytes())
        .map_err(|_| PayError::Malformed("resource ciphertext is not base64".into()))?;
    let aad = r.associated_data.as_deref().unwrap_or("");
    aes256gcm_decrypt(apiv3_key, r.nonce.as_bytes(), aad.as_bytes(), &ct)
        .map_err(|_| PayError::Malformed("resource does not decrypt with the APIv3 key".into()))
}

/// B.3 reply: 204 for success, 400 `{"code":"FAIL",...}` to have WeChat resend.
pub(super) fn ack(ack: Ack) -> AckResponse {
    match ack {
        Ack::Success => AckResponse {
            status: 204,
            content_type: crate::common::ack::TEXT_PLAIN,
            body: String::new(),
        },
        Ack::Failure => AckResponse {
            status: 400,
            content_type: "application/json",
            body: r#"{"code":"FAIL","message":"失败"}"#.to_owned(),
        },
    }
}

impl WechatPayChannel {
    /// [`crate::PaymentChannel::verify_notification`] at an explicit unix time (tests, replays of
    /// recorded vectors).
    pub fn verify_notification_at(
        &self,
        raw: &RawNotification,
        now: i64,
    ) -> Result<NotifyVerdict, PayError> {
        if !raw.method.eq_ignore_ascii_case("POST") {
            return Err(PayError::Malformed(format!(
                "unsupported method {}",
                clip(&raw.method)
            )));
        }
        if raw.body.len() > MAX_NOTIFY_BYTES {
            return Err(PayError::Malformed("notification too large".into()));
        }
        let headers = signed_headers(|name| {
            let mut it = raw
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str());
            let first = it.next();
            if it.next().is_some() {
                return Err(format!("duplicate header {name}"));
            }
            Ok(first)
        })
        .map_err(PayError::Malformed)?;
        match verify_signature(&self.cfg.platform, &headers, &raw.body, now) {
            Ok(()) => {}
            Err(SignatureFailure::Stale) => return Err(PayError::Stale),
            Err(SignatureFailure::BadTimestamp) => {
                return Err(PayError::Malformed(
                    "Wechatpay-Timestamp is not a unix time".into(),
                ))
            }
            Err(_) => return Err(PayError::BadSignature),
        }
        let env: Envelope = json(&raw.body, "notification")?;
        if env
            .resource_type
            .as_deref()
            .is_some_and(|t| t != "encrypt-resource")
        {
            return Err(PayError::Malformed(
                "resource_type is not encrypt-resource".into(),
            ));
        }
        let plain = decrypt_resource(&self.cfg.apiv3_key, &env.resource)?;
        let tx: Transaction = json(&plain, "notification resource")?;
        match tx.mchid.as_deref() {
            Some(m) if m == self.cfg.mchid => {}
            Some(_) => return Err(PayError::WrongMerchant),
            None => return Err(PayError::Malformed("resource has no mchid".into())),
        }
        if tx.appid.as_deref().is_some_and(|a| a != self.cfg.appid) {
            return Err(PayError::WrongMerchant);
        }
        let paid =
            env.event_type == "TRANSACTION.SUCCESS" && tx.trade_state.as_deref() == Some("SUCCESS");
        if paid {
            return self.confirmation(&tx, None).map(NotifyVerdict::Paid);
        }
        let status = tx
            .trade_state
            .clone()
            .or_else(|| tx.refund_status.clone())
            .unwrap_or_else(|| env.event_type.clone());
        Ok(NotifyVerdict::NotPaid {
            trade_no: tx.out_trade_no.unwrap_or_default(),
            status: clip(&status),
        })
    }
}
