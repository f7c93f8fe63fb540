//! Channel settings: what a `[[channels]]` block says about one protocol, typed.
//!
//! Each protocol owns its settings in `<protocol>/settings.rs` (one serde struct, so every key
//! name is spelled once, in its field) and knows how to build its [`PaymentChannel`] from
//! them, reading its key files with errors that name the channel and the key. This module
//! holds what they share: the [`ChannelSettings`] enum tagged by `kind`, [`Secret`], the
//! value helpers (`text`, `path`, `http_url`, `one_of`) and the errors. The routing keys every
//! channel takes (`id`, `methods`, `priority`, `enabled`) belong to the server.

use std::fmt;
use std::path::{Path, PathBuf};

use kami_core::{ChannelId, Method};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

pub use crate::alipay::settings::AlipaySettings;
use crate::crypto::{RsaSigner, RsaVerifier};
pub use crate::epay::settings::{EpaySettings, EpayVersion};
pub use crate::sandbox::settings::SandboxSettings;
pub use crate::wechatpay::settings::WechatPaySettings;

/// The protocol a channel speaks (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Alipay,
    Wechatpay,
    Epay,
    Sandbox,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Alipay,
        ChannelKind::Wechatpay,
        ChannelKind::Epay,
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
            ChannelKind::Sandbox => "sandbox",
        }
    }

    /// The kind-specific keys: the field names of its settings struct.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Alipay => keys_of::<AlipaySettings>(),
            ChannelKind::Wechatpay => keys_of::<WechatPaySettings>(),
            ChannelKind::Epay => keys_of::<EpaySettings>(),
            ChannelKind::Sandbox => keys_of::<SandboxSettings>(),
        }
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
    Sandbox(SandboxSettings),
}

impl ChannelSettings {
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelSettings::Alipay(_) => ChannelKind::Alipay,
            ChannelSettings::Wechatpay(_) => ChannelKind::Wechatpay,
            ChannelSettings::Epay(_) => ChannelKind::Epay,
            ChannelSettings::Sandbox(_) => ChannelKind::Sandbox,
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
            ChannelKind::Sandbox => ChannelSettings::Sandbox(SandboxSettings::deserialize(d)?),
        })
    }

    /// Checks that need more than one key, or the channel's `methods`.
    pub fn validate(&self, methods: &[Method]) -> Result<(), SettingsError> {
        match self {
            ChannelSettings::Epay(s) => s.validate(),
            ChannelSettings::Sandbox(s) => s.validate(methods),
            ChannelSettings::Alipay(_) | ChannelSettings::Wechatpay(_) => Ok(()),
        }
    }

    /// Resolves relative `*_file` paths against `base_dir` and reads the secrets that load
    /// with the configuration (sandbox `secret_file`).
    pub fn resolve_files(&mut self, base_dir: &Path) -> Result<(), SettingsError> {
        match self {
            ChannelSettings::Alipay(s) => s.resolve_files(base_dir),
            ChannelSettings::Wechatpay(s) => s.resolve_files(base_dir),
            ChannelSettings::Epay(s) => s.resolve_files(base_dir),
            ChannelSettings::Sandbox(s) => return s.resolve_files(base_dir),
        }
        Ok(())
    }
}

/// A settings problem found after deserializing (`key` is relative to the channel).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing required key `{key}` ({requirement})")]
    Missing {
        key: &'static str,
        requirement: String,
    },
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("both `{key}` and `{key}_file` are set; set only one")]
    SecretConflict { key: &'static str },
    #[error("cannot read `{key}` file `{}`: {source}", .path.display())]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{key}` file `{}` is empty", .path.display())]
    EmptySecretFile { key: &'static str, path: PathBuf },
}

/// Why a channel could not be built from its settings (a key file is missing or holds no
/// usable key). Messages name the channel and the key, never a file's content.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("channel `{id}`: cannot read `{key}` file {path}: {err}")]
    File {
        id: String,
        key: &'static str,
        path: String,
        err: std::io::Error,
    },
    #[error("channel `{id}`: `{key}`: {message}")]
    Key {
        id: String,
        key: &'static str,
        message: String,
    },
}

/// What every channel gets besides its settings: its routing identity and the HTTP client.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub id: &'a ChannelId,
    pub methods: &'a [Method],
    pub priority: i32,
    pub http: &'a reqwest::Client,
}

impl BuildContext<'_> {
    pub(crate) fn err(&self, key: &'static str, message: &str) -> SetupError {
        SetupError::Key {
            id: self.id.to_string(),
            key,
            message: message.to_owned(),
        }
    }

    /// The text of the key file `path` set by `key`.
    pub(crate) fn read(&self, key: &'static str, path: &Path) -> Result<String, SetupError> {
        std::fs::read_to_string(path).map_err(|err| SetupError::File {
            id: self.id.to_string(),
            key,
            path: path.display().to_string(),
            err,
        })
    }

    pub(crate) fn signer(&self, key: &'static str, path: &Path) -> Result<RsaSigner, SetupError> {
        RsaSigner::from_text(&self.read(key, path)?).map_err(|e| self.err(key, &e.to_string()))
    }

    pub(crate) fn verifier(
        &self,
        key: &'static str,
        path: &Path,
    ) -> Result<RsaVerifier, SetupError> {
        RsaVerifier::from_text(&self.read(key, path)?).map_err(|e| self.err(key, &e.to_string()))
    }
}

/// A secret string (HMAC key, password, ...). `Debug` prints `***`; there is no `Display`,
/// so the value only leaves through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        text(d).map(Secret)
    }
}

/// Reads a `*_file` secret: trimmed, never empty.
pub fn read_secret_file(key: &'static str, path: PathBuf) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::SecretFile {
        key,
        path: path.clone(),
        source,
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SettingsError::EmptySecretFile { key, path });
    }
    Ok(value.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Value helpers for `#[serde(deserialize_with)]`
// ---------------------------------------------------------------------------------------------

/// A string; integers are accepted too (`pid = 1001`, `mchid = 1900000001`).
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// A required string that is not blank.
pub fn required_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = text(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(s)
}

pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d).map(Some)
}

/// A required, non-empty file path (resolved against the configuration's directory later).
pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    required_text(d).map(PathBuf::from)
}

pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    path(d).map(Some)
}

/// An http:// or https:// URL, kept as written.
pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = text(d)?;
    let url = url::Url::parse(s.trim())
        .map_err(|e| de::Error::custom(format!("`{s}` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(de::Error::custom(format!(
            "must be an http:// or https:// URL, got scheme `{}`",
            url.scheme()
        )));
    }
    Ok(s)
}

pub fn opt_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    http_url(d).map(Some)
}

/// One of a fixed set of names; anything else is an error listing them.
pub fn one_of<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    allowed: &[(&str, T)],
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    allowed
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            de::Error::custom(format!("`{s}` is not one of: {}", names.join(", ")))
        })
}

/// Joins `p` onto `base_dir` (absolute paths stay as they are).
pub(crate) fn resolve(base_dir: &Path, p: &mut PathBuf) {
    *p = base_dir.join(&*p);
}

/// The field names a derived `Deserialize` struct asks for: the keys it knows (spelled once,
/// in its fields).
pub fn keys_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _probe_always_fails = T::deserialize(Probe(&mut fields));
    fields
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
