//! `[server]`: where kami listens and the URL gateways and buyers reach it at.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use url::Url;

use super::{check_range, invalid, ConfigError, Origins};

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
    /// Peers whose `X-Forwarded-For` is believed (CIDRs; a bare address is its /32 or /128).
    /// Default: none, and the header is ignored.
    #[serde(deserialize_with = "cidrs")]
    pub trusted_proxies: Vec<IpNet>,
    /// Seconds a client has to send a request's head (from connecting, or from its first byte
    /// on a kept-alive connection). Default 10.
    pub header_timeout_secs: u32,
    /// Seconds a client has to send a request's whole body (the card import: between two
    /// chunks), and to take each chunk of a response. Default 30.
    pub body_timeout_secs: u32,
    /// Seconds an idle kept-alive connection is kept open for its next request. Default 60.
    pub keepalive_secs: u32,
    /// Open connections at most; more are closed at once. Default 4096 (and at most what the
    /// open-files limit allows).
    pub max_connections: u32,
    /// Open connections from one client address (IPv6: its /64) at most; trusted proxies
    /// and this host (127.0.0.1, ::1) have no such cap. Default 64.
    pub max_connections_per_ip: u32,
    /// Requests being answered at once at most; beyond it `503` + `Retry-After`. Gateway
    /// notifications may use the last eighth, which other requests may not. Default 1024.
    pub max_in_flight: u32,
    /// Requests being answered at once for one client (IPv6: its /64; through a trusted
    /// proxy, the client it forwards for) at most, notifications included, and of the
    /// notifications' eighth no more than a quarter; beyond it `429` + `Retry-After`. This
    /// host (127.0.0.1, ::1) has no such cap. Default 16.
    pub max_in_flight_per_ip: u32,
}

impl ServerConfig {
    /// Is this TCP peer one of our own proxies?
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(DEFAULT_LISTEN),
            public_url: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            trusted_proxies: Vec::new(),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            keepalive_secs: 60,
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_in_flight: 1024,
            max_in_flight_per_ip: 16,
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

/// A list of CIDRs (`10.0.0.0/8`, `::1/128`) or bare addresses.
pub(super) fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_cidr(s).map_err(de::Error::custom))
        .collect()
}

/// One CIDR or bare IP address.
pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            format!("`{s}` is not an IP address or CIDR (expected e.g. 10.0.0.0/8 or ::1)")
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
    for (key, value, range) in [
        (
            "server.header_timeout_secs",
            server.header_timeout_secs,
            (1, 3600),
        ),
        (
            "server.body_timeout_secs",
            server.body_timeout_secs,
            (1, 3600),
        ),
        ("server.keepalive_secs", server.keepalive_secs, (1, 3600)),
        (
            "server.max_connections",
            server.max_connections,
            (1, 1_000_000),
        ),
        (
            "server.max_connections_per_ip",
            server.max_connections_per_ip,
            (1, 1_000_000),
        ),
        ("server.max_in_flight", server.max_in_flight, (2, 1_000_000)),
        (
            "server.max_in_flight_per_ip",
            server.max_in_flight_per_ip,
            (1, 1_000_000),
        ),
    ] {
        check_range(origins, key, value, range)?;
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
