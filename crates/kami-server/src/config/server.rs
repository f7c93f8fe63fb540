//! `[server]`: where kami listens and the URL gateways and buyers reach it at.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use url::Url;

use super::{invalid, ConfigError, Origins};

const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
const DEFAULT_DATA_DIR: &str = "./data";

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Default `127.0.0.1:8080`.
    #[serde(deserialize_with = "listen")]
    pub listen: SocketAddr,
    /// Base for notify_url / return_url sent to gateways; http(s), no query or fragment.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Option<Url>,
    /// Default `./data`.
    pub data_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(DEFAULT_LISTEN),
            public_url: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// `listen`: an IP address and port.
fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "`{s}` is not an IP address and port (expected e.g. 127.0.0.1:8080)"
        ))
    })
}

/// `public_url`: see [`parse_public_url`].
fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let s = String::deserialize(d)?;
    parse_public_url(&s).map(Some).map_err(de::Error::custom)
}

/// Checks what deserializing cannot.
pub(super) fn check_server(server: &ServerConfig, origins: &Origins) -> Result<(), ConfigError> {
    if server.data_dir.as_os_str().is_empty() {
        return Err(invalid(
            origins,
            "server.data_dir",
            "must not be empty".into(),
        ));
    }
    Ok(())
}

fn parse_public_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL, got scheme `{}`",
            url.scheme()
        ));
    }
    if url.query().is_some() {
        return Err("must not contain a query string (`?…`)".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment (`#…`)".into());
    }
    Ok(url)
}
