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
use crate::state::AppState;

/// The client's address: the TCP peer, or — with `shop.trust_proxy_headers` — the entry our
/// own proxy appended to `X-Forwarded-For` (or its `X-Real-IP`).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn from_parts(parts: &Parts, trust_proxy_headers: bool) -> ClientIp {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !trust_proxy_headers {
            return ClientIp(peer);
        }
        // The last entry is the one our own proxy appended; earlier ones (and earlier header
        // lines) are whatever the client sent.
        let forwarded = parts
            .headers
            .get_all(header::HeaderName::from_static("x-forwarded-for"))
            .iter()
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

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp::from_parts(
            parts,
            state.config.shop.trust_proxy_headers,
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
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        state
            .store
            .admin_token(&SecretToken::from_presented(token).hash())
            .await?
            .map(AdminAuth)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// A JSON request body. Malformed JSON is `400 invalid_json` with serde's precise message.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<AppJson<T>, ApiError> {
        let AppBytes(body) = AppBytes::from_request(req, state).await?;
        parse_json(&body).map(AppJson)
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

/// The bearer token of a request, from `Authorization: Bearer ...`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
