//! Request extractors shared by the API and the pages: who the client is (`ClientIp`), that
//! the caller holds an admin token (`AdminAuth`), and a JSON body with the API's precise
//! error (`AppJson`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use kami_core::SecretToken;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::config::{ServerConfig, ShopConfig};
use crate::limits::RetryAfter;
use crate::state::AppState;

/// The client's address. The TCP peer, unless the peer is one of `server.trusted_proxies`:
/// then `X-Forwarded-For` is read right to left, skipping our own (trusted) hops, and the
/// first address that is not ours is the client (all ours: the leftmost). With no trusted
/// proxies the header is ignored. The deprecated `shop.trust_proxy_headers` (only while
/// `trusted_proxies` is empty) keeps its old meaning for one release: the last entry (or
/// `X-Real-IP`) is believed from any peer.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn from_parts(parts: &Parts, server: &ServerConfig, shop: &ShopConfig) -> ClientIp {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let xff = || {
            parts
                .headers
                .get_all(header::HeaderName::from_static("x-forwarded-for"))
                .iter()
                .collect::<Vec<_>>()
        };
        if !server.trusted_proxies.is_empty() {
            let Some(peer) = peer.filter(|p| server.is_trusted_proxy(*p)) else {
                return ClientIp(peer);
            };
            // Later header lines were appended later: read them last to first.
            let mut client = peer;
            for line in xff().into_iter().rev() {
                let Ok(line) = line.to_str() else {
                    return ClientIp(Some(client));
                };
                for entry in line.rsplit(',') {
                    match entry.trim().parse::<IpAddr>() {
                        Ok(ip) => {
                            client = ip;
                            if !server.is_trusted_proxy(ip) {
                                return ClientIp(Some(ip));
                            }
                        }
                        // Garbage from beyond our proxies: the hop that passed it on is the
                        // client as far as we can tell.
                        Err(_) => return ClientIp(Some(client)),
                    }
                }
            }
            return ClientIp(Some(client));
        }
        // Deprecated `shop.trust_proxy_headers`: believed only from a loopback or private
        // peer (where a proxy of one's own sits), so a server exposed directly cannot be
        // talked out of its limits with a forged header.
        if !shop.trust_proxy_headers || !peer.is_some_and(is_local_or_private) {
            return ClientIp(peer);
        }
        // The last entry is the one our own proxy appended; earlier ones (and earlier header
        // lines) are whatever the client sent.
        let forwarded = xff()
            .into_iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HeaderName::from_static("x-real-ip"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
            });
        ClientIp(forwarded.or(peer))
    }
}

/// Loopback, private (RFC 1918, IPv6 unique-local) or link-local: not on the open internet.
fn is_local_or_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp::from_parts(
            parts,
            &state.config.server,
            &state.config.shop,
        ))
    }
}

/// The caller presented a live admin API token (`Authorization: Bearer ...`); holds its name.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub String);

impl FromRequestParts<Arc<AppState>> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<AdminAuth, ApiError> {
        let ip = ClientIp::from_parts(parts, &state.config.server, &state.config.shop).0;
        check_admin(state, parts, ip).await.map(AdminAuth)
    }
}

/// The name of the live admin token `parts` presents. A client that failed
/// `limits::ADMIN_FAILURES_PER_MINUTE` times this minute gets `429` whatever it presents; every
/// failure is logged with the address and the path (never the token).
pub async fn check_admin(
    state: &AppState,
    parts: &Parts,
    ip: Option<IpAddr>,
) -> Result<String, ApiError> {
    let now = state.now_ms();
    if let Some(RetryAfter(s)) = state.limits.admin_locked_out(ip, now) {
        return Err(ApiError::too_many(
            "rate_limited",
            "too many failed admin token attempts from this address; try again later",
            s,
        ));
    }
    let name = match bearer(&parts.headers) {
        Some(token) => {
            state
                .store
                .admin_token(&SecretToken::from_presented(token).hash())
                .await?
        }
        None => None,
    };
    name.ok_or_else(|| {
        state.limits.admin_failed(ip, now);
        tracing::warn!(
            ip = %ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            path = parts.uri.path(),
            "admin authentication failed"
        );
        ApiError::unauthorized()
    })
}

/// A JSON request body. Malformed JSON is `400 invalid_json` with serde's precise message.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<AppJson<T>, ApiError> {
        require_json(req.headers())?;
        let AppBytes(body) = AppBytes::from_request(req, state).await?;
        parse_json(&body).map(AppJson)
    }
}

/// A body the API parses as JSON must say so (`Content-Type: application/json`, or a
/// `+json` type): otherwise `415 unsupported_media_type`. Browsers send `text/plain` and
/// form bodies cross-site without asking; this keeps other sites' pages from posting here.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the request body must be JSON (Content-Type: application/json), got {}",
                if ct.is_empty() {
                    "no Content-Type".to_owned()
                } else {
                    format!("`{}`", ct.chars().take(100).collect::<String>())
                }
            ),
        ))
    }
}

/// A raw request body whose failures are the API's JSON errors: too large is `413`, too
/// slow (the server's body timeout) `408 body_timeout`.
#[derive(Debug)]
pub struct AppBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<AppBytes, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(AppBytes)
            .map_err(|e| body_error(e.status(), &e))
    }
}

/// The API's error for a request body that could not be read.
pub fn body_error(status: StatusCode, e: &(dyn std::error::Error + 'static)) -> ApiError {
    if super::serve::is_body_timeout(e) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        );
    }
    ApiError::new(status, "invalid_body", format!("request body: {e}"))
}

/// Parse a JSON body with a precise, user-facing error (`invalid_json`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))
}

/// A JSON body (checked by [`require_json`]) read as `T`: malformed JSON is
/// `400 invalid_json`, an unknown field or a wrong type `422 invalid_field`.
pub fn parse_json_fields<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    require_json(headers)?;
    let v: serde_json::Value = parse_json(body)?;
    serde_json::from_value(v)
        .map_err(|e| ApiError::unprocessable("invalid_field", format!("request body: {e}")))
}

/// A JSON body (checked by [`require_json`]) that must be an object of keys, for bodies that
/// may hold a secret and so are never echoed: malformed JSON is `400 invalid_json` (only its
/// position is told), anything but an object `422 {code}` with `message`.
pub fn json_object(
    headers: &HeaderMap,
    body: &[u8],
    code: &'static str,
    message: &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    require_json(headers)?;
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::unprocessable(code, message)),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!(
                "request body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )),
    }
}

/// The bearer token of a request, from `Authorization: Bearer ...`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, xff: &[&str], trusted: &[&str], legacy: bool) -> Option<String> {
        let mut req = axum::http::Request::builder();
        for line in xff {
            req = req.header("x-forwarded-for", *line);
        }
        let (mut parts, ()) = req.body(()).unwrap_or_default().into_parts();
        let peer: SocketAddr = format!("{peer}:4000")
            .parse()
            .or_else(|_| format!("[{peer}]:4000").parse())
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        parts.extensions.insert(ConnectInfo(peer));
        let server = ServerConfig {
            trusted_proxies: trusted
                .iter()
                .filter_map(|t| {
                    t.parse::<ipnet::IpNet>()
                        .or_else(|_| t.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .ok()
                })
                .collect(),
            ..ServerConfig::default()
        };
        let shop = ShopConfig {
            trust_proxy_headers: legacy,
            ..ShopConfig::default()
        };
        ClientIp::from_parts(&parts, &server, &shop)
            .0
            .map(|ip| ip.to_string())
    }

    #[test]
    fn forwarded_for_is_read_through_trusted_proxies_only() {
        let some = |s: &str| Some(s.to_owned());
        // No trusted proxies: the header is ignored.
        assert_eq!(
            client("127.0.0.1", &["198.51.100.7"], &[], false),
            some("127.0.0.1")
        );
        // A trusted peer: the first untrusted address from the right.
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        assert_eq!(
            client(
                "127.0.0.1",
                &["6.6.6.6, 198.51.100.7, 10.1.2.3"],
                &trusted,
                false
            ),
            some("198.51.100.7")
        );
        // Several header lines: the later ones were appended later.
        assert_eq!(
            client(
                "127.0.0.1",
                &["6.6.6.6", "198.51.100.7, 10.0.0.1"],
                &trusted,
                false
            ),
            some("198.51.100.7")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            client("192.0.2.1", &["198.51.100.7"], &trusted, false),
            some("192.0.2.1")
        );
        // Garbage beyond our proxies: the last hop we could read is the client.
        assert_eq!(
            client("127.0.0.1", &["junk, 10.0.0.9"], &trusted, false),
            some("10.0.0.9")
        );
        // No header from a trusted peer: the peer.
        assert_eq!(client("127.0.0.1", &[], &trusted, false), some("127.0.0.1"));
        // IPv6 peers and clients.
        assert_eq!(
            client("::1", &["2001:db8::7"], &["::1"], false),
            some("2001:db8::7")
        );
        // Deprecated `trust_proxy_headers`: the last entry, from a loopback or private peer...
        assert_eq!(
            client("10.0.0.5", &["6.6.6.6, 198.51.100.7"], &[], true),
            some("198.51.100.7")
        );
        assert_eq!(
            client("::1", &["198.51.100.7"], &[], true),
            some("198.51.100.7")
        );
        // ...never from a peer on the open internet.
        assert_eq!(
            client("192.0.2.1", &["6.6.6.6, 198.51.100.7"], &[], true),
            some("192.0.2.1")
        );
        // ...but `trusted_proxies`, when set, wins.
        assert_eq!(
            client("192.0.2.1", &["198.51.100.7"], &["127.0.0.1"], true),
            some("192.0.2.1")
        );
    }
}
