//! The accept loop: hyper's HTTP/1 connection driver under the router, with what an open
//! internet needs and `axum::serve` does not give — a header-read timeout, a keep-alive idle
//! timeout, a request-body timeout, a global and a per-IP connection cap (connections beyond
//! them are closed at once, before any work is spawned), a global in-flight request cap that
//! sheds load with `503` + `Retry-After` (gateway notifications keep a share of it), and a
//! per-client one answering `429` + `Retry-After`, so that a few addresses holding requests
//! open take neither the capacity nor the notifications' share.
//!
//! - `conn.rs`: the connection caps and the watchdog on a connection's socket;
//! - `admit.rs`: the in-flight caps and what they answer;
//! - `body.rs`: the request-body deadline.

mod admit;
mod body;
mod conn;

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::extract::ClientIp;
use crate::config::{ServerConfig, ShopConfig};
use crate::limits::client_key;

pub use admit::Class;
pub use body::{is_body_timeout, BodyTimeout};

use admit::{InFlight, Refusal};
use body::{BodyRule, TimedBody};
use conn::{is_this_host, Activity, ConnCaps, Started, Watched};

/// Kept free for the database pool, log files and the like when capping connections to the
/// open-files limit.
const RESERVED_FDS: u64 = 256;

/// The limits of [`serve`], from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_in_flight: usize,
    pub max_in_flight_per_ip: usize,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        Limits {
            header_timeout: secs(c.header_timeout_secs),
            body_timeout: secs(c.body_timeout_secs),
            keepalive: secs(c.keepalive_secs),
            max_connections: c.max_connections as usize,
            max_connections_per_ip: c.max_connections_per_ip as usize,
            max_in_flight: c.max_in_flight as usize,
            max_in_flight_per_ip: c.max_in_flight_per_ip as usize,
        }
    }
}

/// Raise the open-files soft limit to the hard limit; returns the limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            tracing::debug!(limit = n, "open files limit (RLIMIT_NOFILE)");
            Some(n)
        }
        Err(e) => {
            tracing::warn!("cannot raise the open files limit (RLIMIT_NOFILE): {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Serve `router` on `listener` until `shutdown` turns true (or forever if its sender is
/// gone); then stop accepting, let each connection finish its current request, and return
/// once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut limits = Limits::from_config(config);
    if let Some(fds) = raise_open_files_limit() {
        let room = usize::try_from(fds.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
        if limits.max_connections > room {
            tracing::warn!(
                "server.max_connections = {} is more than the open files limit ({fds}) allows; \
                 using {}",
                limits.max_connections,
                room.max(1)
            );
            limits.max_connections = room.max(1);
        }
    }
    let shared = Arc::new(Shared {
        caps: ConnCaps::new(
            limits.max_connections,
            limits.max_connections_per_ip,
            config.trusted_proxies.clone(),
        ),
        in_flight: InFlight::new(limits.max_in_flight, limits.max_in_flight_per_ip),
        router,
        limits,
        server: config.clone(),
        refused: AtomicU64::new(0),
        shed: AtomicU64::new(0),
        busy: AtomicU64::new(0),
    });
    let reporter = tokio::spawn(report(shared.clone()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // hyper times the wait for the next request head from the moment the connection
        // is idle: that is the keep-alive timeout. The head itself gets `header_timeout` from
        // its first byte (and a new connection from accepting it): the watchdog's job.
        .header_read_timeout(shared.limits.keepalive.max(shared.limits.header_timeout));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown_signal(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_error(e, &mut shutdown).await;
                continue;
            }
        };
        let Some(slot) = shared.caps.admit(peer.ip()) else {
            // Over a cap: closed before anything is spawned for it.
            tracing::debug!(%peer, "connection refused: connection cap reached");
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let activity = Arc::new(Activity::default());
        let io = Watched::new(
            stream,
            activity.clone(),
            shared.limits.header_timeout,
            shared.limits.body_timeout,
        );
        let shared2 = shared.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            // Counted as soon as hyper has the head, before the handler first runs.
            let started = activity.request_started();
            handle(shared2.clone(), started, peer, req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(%peer, "connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    reporter.abort();
    Ok(())
}

/// Once a minute, what the caps refused (if anything): one line, however large the attack.
async fn report(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.tick().await;
    loop {
        every.tick().await;
        let refused = shared.refused.swap(0, Ordering::Relaxed);
        let shed = shared.shed.swap(0, Ordering::Relaxed);
        let busy = shared.busy.swap(0, Ordering::Relaxed);
        if refused > 0 || shed > 0 || busy > 0 {
            tracing::warn!(
                refused,
                shed,
                busy,
                "in the last minute: {refused} connections closed at the connection caps \
                 (server.max_connections, max_connections_per_ip), {shed} requests answered \
                 503 at server.max_in_flight, {busy} answered 429 at \
                 server.max_in_flight_per_ip"
            );
        }
    }
}

/// What every connection shares.
struct Shared {
    caps: ConnCaps,
    in_flight: InFlight,
    router: Router,
    limits: Limits,
    server: ServerConfig,
    /// Connections closed at a cap, requests shed (`503`) or refused per client (`429`):
    /// since the last report.
    refused: AtomicU64,
    shed: AtomicU64,
    busy: AtomicU64,
}

/// The key a request counts against under the per-client in-flight cap: the peer's
/// (IPv6: its /64), or through one of our proxies the client it forwards for. `None`
/// (exempt) for this host and our proxies' own requests, as for the connection cap.
/// `X-Forwarded-For` is read only from `server.trusted_proxies` (never under the
/// deprecated `shop.trust_proxy_headers`: any client could pick its key with it).
fn client_of(
    server: &ServerConfig,
    peer: IpAddr,
    parts: &axum::http::request::Parts,
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let client = if server.is_trusted_proxy(peer) {
        // With trusted proxies set, the shop's legacy setting is not consulted.
        ClientIp::from_parts(parts, server, &ShopConfig::default())
            .0?
            .to_canonical()
    } else {
        peer
    };
    if is_this_host(client) || server.is_trusted_proxy(client) {
        return None;
    }
    Some(client_key(Some(client)))
}

/// One request: admitted (or shed), its body under a deadline, the peer's address for the
/// extractors; the guards ride on the response body until hyper has sent it.
async fn handle(
    shared: Arc<Shared>,
    started: Started,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<admit::GuardedBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let path = parts.uri.path();
    let client = client_of(&shared.server, peer.ip(), &parts);
    let permit = match shared.in_flight.admit(Class::of(path), client) {
        Ok(permit) => permit,
        Err(refusal) => {
            let count = match refusal {
                Refusal::Overloaded => &shared.shed,
                Refusal::ClientBusy => &shared.busy,
            };
            count.fetch_add(1, Ordering::Relaxed);
            return Ok(admit::refused(path, started, refusal));
        }
    };
    let rule = if is_card_import(&parts.method, path) {
        // Very large files stream in: the deadline is between two chunks, not for the whole.
        BodyRule::BetweenChunks(shared.limits.body_timeout)
    } else {
        BodyRule::Whole(tokio::time::Instant::now() + shared.limits.body_timeout)
    };
    let req = Request::from_parts(parts, Body::new(TimedBody::new(body, rule)));
    let response = match shared.router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    Ok(response.map(|b| admit::GuardedBody::new(b, started, Some(permit))))
}

/// `POST /api/v1/admin/products/{slug}/cards` and the console's
/// `POST /admin/products/{slug}/cards/import`.
fn is_card_import(method: &Method, path: &str) -> bool {
    let slug = path
        .strip_prefix("/api/v1/admin/products/")
        .and_then(|rest| rest.strip_suffix("/cards"))
        .or_else(|| {
            path.strip_prefix("/admin/products/")
                .and_then(|rest| rest.strip_suffix("/cards/import"))
        });
    method == Method::POST && slug.is_some_and(|slug| !slug.is_empty() && !slug.contains('/'))
}

/// Resolves once `shutdown` is true; never if its sender is gone.
async fn shutdown_signal(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A failed `accept`: a peer that gave up is nothing; anything else (out of file
/// descriptors) is logged and waited out for a second, as hyper did.
async fn accept_error(e: io::Error, shutdown: &mut watch::Receiver<bool>) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = shutdown_signal(shutdown) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_key_is_the_client_behind_our_proxies_and_this_host_is_exempt() {
        let server = ServerConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())],
            ..ServerConfig::default()
        };
        let key = |peer: &str, xff: &[&str]| {
            let mut req = Request::builder();
            for line in xff {
                req = req.header("x-forwarded-for", *line);
            }
            let peer: SocketAddr = format!("{peer}:1000")
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
            let (mut parts, ()) = req.body(()).unwrap_or_else(|e| panic!("{e}")).into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            client_of(&server, peer.ip(), &parts).map(|ip| ip.to_string())
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(key("192.0.2.7", &[]), some("192.0.2.7"));
        assert_eq!(
            key("192.0.2.7", &["198.51.100.1"]),
            some("192.0.2.7"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(key("[2001:db8:1:2::9]", &[]), some("2001:db8:1:2::"));
        assert_eq!(key("[::ffff:192.0.2.7]", &[]), some("192.0.2.7"));
        assert_eq!(
            key("10.1.1.1", &["203.0.113.5, 198.51.100.1, 10.2.2.2"]),
            some("198.51.100.1"),
            "through our proxies: the client they forward for"
        );
        assert_eq!(key("10.1.1.1", &[]), None, "a proxy's own requests");
        assert_eq!(key("127.0.0.1", &["198.51.100.1"]), None, "this host");
        assert_eq!(key("[::1]", &[]), None, "this host");
        assert_eq!(
            key("127.0.0.2", &[]),
            some("127.0.0.2"),
            "a client like any other"
        );
    }

    #[test]
    fn the_card_import_route_is_recognised() {
        let post = Method::POST;
        assert!(is_card_import(&post, "/api/v1/admin/products/vip/cards"));
        assert!(!is_card_import(
            &Method::GET,
            "/api/v1/admin/products/vip/cards"
        ));
        assert!(!is_card_import(&post, "/api/v1/admin/products//cards"));
        assert!(!is_card_import(&post, "/api/v1/admin/products/a/b/cards"));
        assert!(!is_card_import(&post, "/api/v1/admin/products"));
        assert!(!is_card_import(&post, "/api/v1/orders"));
        assert!(is_card_import(&post, "/admin/products/vip/cards/import"));
        assert!(!is_card_import(&post, "/admin/products/vip/cards"));
        assert!(!is_card_import(&post, "/admin/products/a/b/cards/import"));
    }
}
