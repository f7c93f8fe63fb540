//! Secrets in the configuration: [`Secret`] (hidden from `Debug`), `*_file` keys read at load
//! time, and which keys' values must never appear in an error.

use std::path::{Path, PathBuf};

use serde::de::Deserializer;

pub use kami_pay::settings::Secret;

use super::{ConfigError, Origins};

/// Reads a `*_file` secret (trimmed, never empty); errors name `key` and the path.
pub(super) fn read_secret_file(key: &'static str, path: PathBuf) -> Result<String, ConfigError> {
    kami_pay::settings::read_secret_file(key, path).map_err(|e| match e {
        kami_pay::settings::SettingsError::SecretFile { path, source, .. } => {
            ConfigError::SecretFile {
                key: key.to_owned(),
                path,
                source,
            }
        }
        kami_pay::settings::SettingsError::EmptySecretFile { path, .. } => {
            ConfigError::EmptySecretFile {
                key: key.to_owned(),
                path,
            }
        }
        other => ConfigError::Invalid {
            key: key.to_owned(),
            message: other.to_string(),
            origin: None,
        },
    })
}

/// A secret given either as `key` or as a file at `key_file` (relative to `base_dir`), not
/// both.
pub(super) fn value_or_file(
    origins: &Origins,
    (key, key_file): (&'static str, &'static str),
    value: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::SecretConflict {
            key: key.to_owned(),
            origin: origins.of(key_file).or_else(|| origins.of(key)),
        }),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => read_secret_file(key_file, base_dir.join(f)).map(Some),
        (None, None) => Ok(None),
    }
}

/// `channels[0].secret`, `database.url`: values that must not appear in messages.
pub(super) fn is_secret_key(key: &str) -> bool {
    key == "database.url"
        || key == "smtp.password"
        || (key.starts_with("channels[") && key.ends_with(".secret"))
        || (key.starts_with("alerts[") && (key.ends_with(".secret") || key.ends_with(".bot_token")))
}

/// A string; integers are accepted too (`username = 10001`).
pub(super) fn string_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    kami_pay::settings::text(d).map(Some)
}
