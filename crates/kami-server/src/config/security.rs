//! `[security]`: the master key that seals card keys and other stored secrets at rest.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{invalid, ConfigError, Origins, ServerConfig};

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// 32 random bytes (or 64 hex digits); created with mode 0600 on first start when missing.
    /// Default `<server.data_dir>/master.key`; a relative path is resolved against the
    /// configuration file's directory (already resolved after loading).
    pub master_key_file: Option<PathBuf>,
}

impl SecurityConfig {
    /// Where the master key lives: `master_key_file`, or `master.key` in the data directory.
    pub fn master_key_path(&self, server: &ServerConfig) -> PathBuf {
        match &self.master_key_file {
            Some(p) => p.clone(),
            None => server.data_dir.join("master.key"),
        }
    }
}

/// Resolves `master_key_file` against `base_dir`; an empty path is refused.
pub(super) fn check_security(
    mut security: SecurityConfig,
    base_dir: &Path,
    origins: &Origins,
) -> Result<SecurityConfig, ConfigError> {
    if let Some(p) = security.master_key_file.take() {
        if p.as_os_str().is_empty() {
            return Err(invalid(
                origins,
                "security.master_key_file",
                "must not be empty (leave it out for <data_dir>/master.key)".into(),
            ));
        }
        security.master_key_file = Some(base_dir.join(p));
    }
    Ok(security)
}
