//! What every protocol's settings share: the errors, the build context (routing identity and
//! HTTP client), secrets and the deserializers that check values as they are read. The
//! protocol folders own their keys (`<protocol>/settings.rs`); the crate's top-level
//! `settings` module combines them.

use std::fmt;
use std::path::{Path, PathBuf};

use kami_core::{ChannelId, Method};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::crypto::{RsaSigner, RsaVerifier};

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

    /// The text of key material given as text or as a file, and the key that gave it (to
    /// name in errors). Neither given: `missing` (validation has refused that already).
    pub(crate) fn material(
        &self,
        m: KeyMaterial<'_>,
    ) -> Result<(String, &'static str), SetupError> {
        match (m.text, m.file) {
            (Some(text), _) => Ok((text.expose().to_owned(), m.name)),
            (None, Some(path)) => Ok((self.read(m.file_name, path)?, m.file_name)),
            (None, None) => Err(self.err(m.file_name, "missing")),
        }
    }

    pub(crate) fn signer(&self, m: KeyMaterial<'_>) -> Result<RsaSigner, SetupError> {
        let (text, key) = self.material(m)?;
        RsaSigner::from_text(&text).map_err(|e| self.err(key, &e.to_string()))
    }

    pub(crate) fn verifier(&self, m: KeyMaterial<'_>) -> Result<RsaVerifier, SetupError> {
        let (text, key) = self.material(m)?;
        RsaVerifier::from_text(&text).map_err(|e| self.err(key, &e.to_string()))
    }
}

/// Key material a channel takes either as text (`name`, e.g. `app_private_key`: what the
/// admin API stores, sealed) or as a file (`file_name`, e.g. `app_private_key_file`: what a
/// configuration file names). Exactly one of the two is set once validated ([`one_key`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyMaterial<'a> {
    pub name: &'static str,
    pub file_name: &'static str,
    pub text: Option<&'a Secret>,
    pub file: Option<&'a Path>,
}

impl<'a> KeyMaterial<'a> {
    pub fn new(
        name: &'static str,
        file_name: &'static str,
        text: &'a Option<Secret>,
        file: &'a Option<PathBuf>,
    ) -> KeyMaterial<'a> {
        KeyMaterial {
            name,
            file_name,
            text: text.as_ref(),
            file: file.as_deref(),
        }
    }
}

/// A required key given exactly once: as text or as a file, not both, not neither.
pub(crate) fn one_key(m: KeyMaterial<'_>, requirement: &str) -> Result<(), SettingsError> {
    match (m.text, m.file) {
        (Some(_), Some(_)) => Err(SettingsError::SecretConflict { key: m.name }),
        (None, None) => Err(SettingsError::Missing {
            key: m.file_name,
            requirement: format!("{requirement}; or the key itself as `{}`", m.name),
        }),
        _ => Ok(()),
    }
}

/// An optional key given at most once.
pub(crate) fn at_most_one_key(m: KeyMaterial<'_>) -> Result<(), SettingsError> {
    match (m.text, m.file) {
        (Some(_), Some(_)) => Err(SettingsError::SecretConflict { key: m.name }),
        _ => Ok(()),
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

/// Key material given as text: not blank, kept as given (PEM line breaks matter).
pub fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let s = text(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(Some(Secret(s)))
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
