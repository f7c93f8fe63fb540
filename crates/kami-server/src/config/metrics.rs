//! `[metrics]`: who may read `/metrics`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::secrets::{read_secret_file, Secret};
use super::ConfigError;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// The bearer token `/metrics` accepts besides admin API tokens (read from `token_file`);
    /// `None`: admin API tokens only. `/metrics` is never public.
    pub token: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawMetrics {
    token_file: Option<PathBuf>,
}

/// Reads `token_file` (relative to `base_dir`).
pub(super) fn build_metrics(
    raw: RawMetrics,
    base_dir: &Path,
) -> Result<MetricsConfig, ConfigError> {
    let token = raw
        .token_file
        .map(|f| read_secret_file("metrics.token_file", base_dir.join(f)))
        .transpose()?
        .map(Secret::new);
    Ok(MetricsConfig { token })
}
