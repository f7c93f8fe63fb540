//! `[server]`: where kami listens and the URL gateways and buyers reach it at.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::{invalid, ConfigError, Origins};

const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
const DEFAULT_DATA_DIR: &str = "./data";

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Base for notify_url / return_url sent to gateways; http(s), no query or fragment.
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
}

pub(super) fn build_server(raw: RawServer, origins: &Origins) -> Result<ServerConfig, ConfigError> {
    let listen = match raw.listen {
        None => SocketAddr::from(DEFAULT_LISTEN),
        Some(s) => s.trim().parse().map_err(|_| {
            invalid(
                origins,
                "server.listen",
                format!("`{s}` is not an IP address and port (expected e.g. 127.0.0.1:8080)"),
            )
        })?,
    };
    let public_url = match raw.public_url {
        None => None,
        Some(s) => {
            Some(parse_public_url(&s).map_err(|m| invalid(origins, "server.public_url", m))?)
        }
    };
    let data_dir = match raw.data_dir {
        None => PathBuf::from(DEFAULT_DATA_DIR),
        Some(d) if d.as_os_str().is_empty() => {
            return Err(invalid(
                origins,
                "server.data_dir",
                "must not be empty".into(),
            ))
        }
        Some(d) => d,
    };
    Ok(ServerConfig {
        listen,
        public_url,
        data_dir,
    })
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
