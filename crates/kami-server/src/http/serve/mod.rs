//! The accept loop: hyper's HTTP/1 connection driver under the router, with what an open
//! internet needs and `axum::serve` does not give — a header-read timeout, a keep-alive idle
//! timeout, a request-body timeout, a global and a per-IP connection cap (connections beyond
//! them are closed at once, before any work is spawned), and a global in-flight request cap
//! that sheds load with `503` + `Retry-After` (gateway notifications keep a share of it).
//!
//! - `conn.rs`: the connection caps and the watchdog on a connection's socket;
//! - `admit.rs`: the in-flight cap and the `503` it answers;
//! - `body.rs`: the request-body deadline.

mod admit;
mod body;
mod conn;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
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

use crate::config::ServerConfig;

pub use admit::Class;
pub use body::{is_body_timeout, BodyTimeout};

use admit::InFlight;
use body::{BodyRule, TimedBody};
use conn::{Activity, ConnCaps, Started, Watched};

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
        in_flight: InFlight::new(limits.max_in_flight),
        router,
        limits,
        refused: AtomicU64::new(0),
        shed: AtomicU64::new(0),
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
        if refused > 0 || shed > 0 {
            tracing::warn!(
                refused,
                shed,
                "in the last minute: {refused} connections closed at the connection caps \
                 (server.max_connections, max_connections_per_ip), {shed} requests answered \
                 503 at server.max_in_flight"
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
    /// Connections closed at a cap, requests shed: since the last report.
    refused: AtomicU64,
    shed: AtomicU64,
}

/// One request: admitted (or shed), its body under a deadline, the peer's address for the
/// extractors; the guards ride on the response body until hyper has sent it.
async fn handle(
    shared: Arc<Shared>,
    started: Started,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<admit::GuardedBody>, Infallible> {
    let path = req.uri().path();
    let class = Class::of(path);
    let Some(permit) = shared.in_flight.admit(class) else {
        shared.shed.fetch_add(1, Ordering::Relaxed);
        return Ok(admit::overloaded(path, started));
    };
    let rule = if is_card_import(req.method(), path) {
        // Very large files stream in: the deadline is between two chunks, not for the whole.
        BodyRule::BetweenChunks(shared.limits.body_timeout)
    } else {
        BodyRule::Whole(tokio::time::Instant::now() + shared.limits.body_timeout)
    };
    let mut req = req.map(|b| Body::new(TimedBody::new(b, rule)));
    req.extensions_mut().insert(ConnectInfo(peer));
    let response = match shared.router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    Ok(response.map(|b| admit::GuardedBody::new(b, started, Some(permit))))
}

/// `POST /api/v1/admin/products/{slug}/cards`.
fn is_card_import(method: &Method, path: &str) -> bool {
    method == Method::POST
        && path
            .strip_prefix("/api/v1/admin/products/")
            .and_then(|rest| rest.strip_suffix("/cards"))
            .is_some_and(|slug| !slug.is_empty() && !slug.contains('/'))
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
    }
}
