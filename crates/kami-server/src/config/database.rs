//! `[database]`: which database, through how many connections; the URL may come from a
//! file (`url_file`) and never shows in `Debug` output or errors.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::secrets::value_or_file;
use super::{check_range, invalid, ConfigError, Origins};

const DEFAULT_DATABASE_URL: &str = "sqlite://data/kami.db";
const DEFAULT_MAX_CONNECTIONS: u32 = 16;
const MAX_CONNECTIONS_RANGE: (u32, u32) = (1, 200);
const DATABASE_SCHEMES: [&str; 3] = ["sqlite://", "postgres://", "postgresql://"];

/// `[database]`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://…`, `postgres://…` or `postgresql://…`; default `sqlite://data/kami.db`.
    /// May hold a password: `Debug` hides it.
    pub url: String,
    /// Pool size, 1..=200, default 16.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> DatabaseConfig {
        DatabaseConfig {
            url: DEFAULT_DATABASE_URL.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_database_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawDatabase {
    url: Option<String>,
    url_file: Option<PathBuf>,
    max_connections: Option<u32>,
}

pub(super) fn build_database(
    raw: RawDatabase,
    base_dir: &Path,
    origins: &Origins,
) -> Result<DatabaseConfig, ConfigError> {
    let url = value_or_file(
        origins,
        ("database.url", "database.url_file"),
        raw.url,
        raw.url_file,
        base_dir,
    )?
    .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    if !DATABASE_SCHEMES.iter().any(|s| url.starts_with(s)) {
        // Only the scheme is shown: the rest of the URL may hold a password.
        let scheme = url.split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && s.len() <= 20
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let got = match scheme {
            Some(s) => format!("got scheme `{s}`"),
            None => "value not shown".to_owned(),
        };
        return Err(invalid(
            origins,
            "database.url",
            format!("must start with sqlite://, postgres:// or postgresql:// ({got})"),
        ));
    }
    let max_connections = check_range(
        origins,
        "database.max_connections",
        raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        MAX_CONNECTIONS_RANGE,
    )?;
    Ok(DatabaseConfig {
        url,
        max_connections,
    })
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`; also hides a `password`
/// query parameter.
fn redact_database_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "***".to_owned();
            }
            if parsed.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "***".to_owned(),
    }
}
