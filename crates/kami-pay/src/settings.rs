//! Channel settings: what a `[[channels]]` block says about one protocol, typed.
//!
//! Each protocol owns its settings in `<protocol>/settings.rs` (one serde struct, so every key
//! name is spelled once, in its field) and knows how to build its [`PaymentChannel`] from
//! them, reading its key files with errors that name the channel and the key. This module
//! holds what they share: the [`ChannelSettings`] enum tagged by `kind`, [`Secret`], the
//! value helpers (`text`, `path`, `http_url`, `one_of`) and the errors. The routing keys every
//! channel takes (`id`, `methods`, `priority`, `enabled`) belong to the server.

use std::fmt;
use std::path::Path;

use kami_core::Method;
use serde::de::Deserializer;
use serde::Deserialize;

pub use crate::alipay::settings::AlipaySettings;
pub use crate::common::settings::*;
pub use crate::epay::settings::{EpaySettings, EpayVersion};
pub use crate::epusdt::settings::EpusdtSettings;
pub use crate::paypal::settings::PaypalSettings;
pub use crate::sandbox::settings::SandboxSettings;
pub use crate::stripe::settings::StripeSettings;
pub use crate::tokenpay::settings::TokenPaySettings;
pub use crate::wechatpay::settings::WechatPaySettings;

/// The protocol a channel speaks (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Alipay,
    Wechatpay,
    Epay,
    Epusdt,
    Tokenpay,
    Stripe,
    Paypal,
    Sandbox,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 8] = [
        ChannelKind::Alipay,
        ChannelKind::Wechatpay,
        ChannelKind::Epay,
        ChannelKind::Epusdt,
        ChannelKind::Tokenpay,
        ChannelKind::Stripe,
        ChannelKind::Paypal,
        ChannelKind::Sandbox,
    ];

    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Alipay => "alipay",
            ChannelKind::Wechatpay => "wechatpay",
            ChannelKind::Epay => "epay",
            ChannelKind::Stripe => "stripe",
            ChannelKind::Sandbox => "sandbox",
            ChannelKind::Epusdt => "epusdt",
            ChannelKind::Tokenpay => "tokenpay",
            ChannelKind::Paypal => "paypal",
        }
    }

    /// The kind-specific keys: the field names of its settings struct.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Alipay => keys_of::<AlipaySettings>(),
            ChannelKind::Wechatpay => keys_of::<WechatPaySettings>(),
            ChannelKind::Epay => keys_of::<EpaySettings>(),
            ChannelKind::Stripe => keys_of::<StripeSettings>(),
            ChannelKind::Sandbox => keys_of::<SandboxSettings>(),
            ChannelKind::Epusdt => keys_of::<EpusdtSettings>(),
            ChannelKind::Tokenpay => keys_of::<TokenPaySettings>(),
            ChannelKind::Paypal => keys_of::<PaypalSettings>(),
        }
    }

    /// The keys that hold key material as text (`app_private_key`, `key`, `secret`, ...):
    /// those that may also be given as a file, `<key>_file`. Stored sealed, never shown.
    pub fn secret_keys(self) -> Vec<&'static str> {
        let keys = self.keys();
        keys.iter()
            .copied()
            .filter(|k| {
                keys.iter()
                    .any(|f| f.strip_suffix("_file").is_some_and(|base| base == *k))
            })
            .collect()
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One channel's kind-specific settings, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChannelSettings {
    Alipay(AlipaySettings),
    Wechatpay(WechatPaySettings),
    Epay(EpaySettings),
    Stripe(StripeSettings),
    Sandbox(SandboxSettings),
    Epusdt(EpusdtSettings),
    Tokenpay(TokenPaySettings),
    Paypal(PaypalSettings),
}

impl ChannelSettings {
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelSettings::Alipay(_) => ChannelKind::Alipay,
            ChannelSettings::Wechatpay(_) => ChannelKind::Wechatpay,
            ChannelSettings::Epay(_) => ChannelKind::Epay,
            ChannelSettings::Stripe(_) => ChannelKind::Stripe,
            ChannelSettings::Sandbox(_) => ChannelKind::Sandbox,
            ChannelSettings::Epusdt(_) => ChannelKind::Epusdt,
            ChannelSettings::Tokenpay(_) => ChannelKind::Tokenpay,
            ChannelSettings::Paypal(_) => ChannelKind::Paypal,
        }
    }

    /// Reads the settings of a known `kind` from a table holding only that kind's keys (the
    /// server takes `kind` and the routing keys out first).
    pub fn deserialize_kind<'de, D: Deserializer<'de>>(
        kind: ChannelKind,
        d: D,
    ) -> Result<ChannelSettings, D::Error> {
        Ok(match kind {
            ChannelKind::Alipay => ChannelSettings::Alipay(AlipaySettings::deserialize(d)?),
            ChannelKind::Wechatpay => {
                ChannelSettings::Wechatpay(WechatPaySettings::deserialize(d)?)
            }
            ChannelKind::Epay => ChannelSettings::Epay(EpaySettings::deserialize(d)?),
            ChannelKind::Stripe => ChannelSettings::Stripe(StripeSettings::deserialize(d)?),
            ChannelKind::Sandbox => ChannelSettings::Sandbox(SandboxSettings::deserialize(d)?),
            ChannelKind::Epusdt => ChannelSettings::Epusdt(EpusdtSettings::deserialize(d)?),
            ChannelKind::Tokenpay => ChannelSettings::Tokenpay(TokenPaySettings::deserialize(d)?),
            ChannelKind::Paypal => ChannelSettings::Paypal(PaypalSettings::deserialize(d)?),
        })
    }

    /// Checks that need more than one key, or the channel's `methods`.
    pub fn validate(&self, methods: &[Method]) -> Result<(), SettingsError> {
        match self {
            ChannelSettings::Alipay(s) => s.validate(),
            ChannelSettings::Wechatpay(s) => s.validate(),
            ChannelSettings::Epay(s) => s.validate(),
            ChannelSettings::Stripe(s) => s.validate(),
            ChannelSettings::Sandbox(s) => s.validate(methods),
            ChannelSettings::Epusdt(s) => s.validate(),
            ChannelSettings::Tokenpay(s) => s.validate(),
            ChannelSettings::Paypal(s) => s.validate(),
        }
    }

    /// Resolves relative `*_file` paths against `base_dir` and reads the secrets that load
    /// with the configuration (sandbox `secret_file`).
    pub fn resolve_files(&mut self, base_dir: &Path) -> Result<(), SettingsError> {
        match self {
            ChannelSettings::Alipay(s) => s.resolve_files(base_dir),
            ChannelSettings::Wechatpay(s) => s.resolve_files(base_dir),
            ChannelSettings::Epay(s) => s.resolve_files(base_dir),
            ChannelSettings::Paypal(s) => s.resolve_files(base_dir),
            ChannelSettings::Stripe(s) => s.resolve_files(base_dir),
            ChannelSettings::Sandbox(s) => return s.resolve_files(base_dir),
            ChannelSettings::Epusdt(s) => s.resolve_files(base_dir),
            ChannelSettings::Tokenpay(s) => s.resolve_files(base_dir),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_knows_its_keys() {
        assert!(ChannelKind::Alipay.keys().contains(&"app_private_key_file"));
        assert!(ChannelKind::Wechatpay.keys().contains(&"apiv3_key_file"));
        assert!(ChannelKind::Epay.keys().contains(&"version"));
        assert!(ChannelKind::Sandbox.keys().contains(&"allow_sandbox"));
        assert!(!ChannelKind::Sandbox.keys().contains(&"app_id"));
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn secret_keys_are_those_that_may_be_files() {
        assert_eq!(
            ChannelKind::Alipay.secret_keys(),
            ["app_private_key", "alipay_public_key"]
        );
        assert_eq!(
            ChannelKind::Wechatpay.secret_keys(),
            [
                "merchant_private_key",
                "apiv3_key",
                "wechatpay_public_key",
                "appsecret"
            ]
        );
        assert_eq!(
            ChannelKind::Epay.secret_keys(),
            ["key", "merchant_private_key", "platform_public_key"]
        );
        assert_eq!(
            ChannelKind::Stripe.secret_keys(),
            ["secret_key", "webhook_secret"]
        );
        assert_eq!(ChannelKind::Sandbox.secret_keys(), ["secret"]);
        assert_eq!(ChannelKind::Epusdt.secret_keys(), ["token"]);
        assert_eq!(ChannelKind::Tokenpay.secret_keys(), ["secret"]);
        assert_eq!(ChannelKind::Paypal.secret_keys(), ["client_secret"]);
    }

    #[test]
    fn settings_are_tagged_by_kind() {
        let json = r#"{"kind": "sandbox", "allow_sandbox": true, "secret": "hunter2"}"#;
        let settings: ChannelSettings = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(settings.kind(), ChannelKind::Sandbox);
        assert!(!format!("{settings:?}").contains("hunter2"));
        match &settings {
            ChannelSettings::Sandbox(s) => assert!(s.allow_sandbox),
            other => panic!("{other:?}"),
        }
        let json = r#"{"kind": "epay", "gateway": "https://pay.example.com/", "pid": 1001,
                       "key_file": "k", "version": 3}"#;
        let err = serde_json::from_str::<ChannelSettings>(json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("must be 1 or 2, got 3"), "{err}");
        let json = r#"{"kind": "alipay", "app_id": "1", "app_private_key_file": "a",
                       "alipay_public_key_file": "b", "mode": "h5"}"#;
        let err = serde_json::from_str::<ChannelSettings>(json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("`h5` is not one of: qr, page, wap, auto"),
            "{err}"
        );
        let json = r#"{"kind": "wechatpay", "mchid": "1", "appid": "a", "merchant_serial_no": "s",
                       "merchant_private_key_file": "k", "apiv3_key_file": "v",
                       "wechatpay_public_key_file": "p", "api_base": "ftp://x"}"#;
        let err = serde_json::from_str::<ChannelSettings>(json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("must be an http:// or https:// URL, got scheme `ftp`"),
            "{err}"
        );
    }

    #[test]
    fn secret_debug_is_hidden() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }
}
