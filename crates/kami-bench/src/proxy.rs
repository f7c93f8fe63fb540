//! The flaky gateway of the failover benchmark: an HTTP forwarder in front of the Alipay
//! simulator that fails a seeded, reproducible share of `alipay.trade.precreate` calls (the
//! call behind a QR order's creation) and forwards everything else untouched.
//!
//! A failed call is, by default, a dropped connection: the request is read, then the
//! connection closes without an answer, so kami's HTTP client reports a transport error
//! (`PayError::Transport`), which kami counts against the channel's health. An HTTP 502
//! (`--failover-fault http502`) instead becomes `PayError::Gateway { code: "HTTP_502" }`,
//! which main's checkout treats as a refusal of that one payment, not as an unhealthy channel.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The gateway method whose calls may fail.
pub const FAILING_METHOD: &str = "alipay.trade.precreate";

/// How a failed call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// Read the request, close the connection without an answer (a transport failure).
    Drop,
    /// Answer HTTP 502 Bad Gateway (what a load balancer says when the gateway is down).
    Http502,
}

/// Which calls fail: `percent` of them, chosen by a SplitMix64 generator seeded with `seed`.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub percent: u8,
    pub seed: u64,
    pub fault: Fault,
}

/// The `n`-th output of SplitMix64 seeded with `seed` (a pure function of both, so the
/// n-th call fails or not the same way in every run).
fn splitmix64(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FaultPlan {
    /// Whether the `n`-th call of [`FAILING_METHOD`] (0-based, in arrival order) fails.
    pub fn fails(&self, n: u64) -> bool {
        splitmix64(self.seed, n) % 100 < u64::from(self.percent)
    }
}

/// The value of `key` in a query string or `application/x-www-form-urlencoded` body.
pub fn form_value(form: &str, key: &str) -> Option<String> {
    // `Url::query_pairs` is the form-urlencoded parser (`+` and `%XX` decoded).
    let mut url = reqwest::Url::parse("http://form.invalid/").ok()?;
    url.set_query(Some(form));
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The gateway method a request calls (`method` of its query, else of its form body).
pub fn gateway_method(query: Option<&str>, body: &[u8]) -> Option<String> {
    query
        .and_then(|q| form_value(q, "method"))
        .or_else(|| form_value(std::str::from_utf8(body).ok()?, "method"))
}

/// What the proxy did, for the report.
#[derive(Debug, Default, Serialize, Clone)]
pub struct ProxyCounts {
    /// Requests forwarded to the simulator (every method).
    pub forwarded: u64,
    /// `alipay.trade.precreate` calls seen.
    pub precreate_calls: u64,
    /// Of those, failed on purpose.
    pub precreate_failed: u64,
    /// Requests the simulator could not be reached for (answered 502; not planned).
    pub upstream_errors: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    precreate_calls: AtomicU64,
    precreate_failed: AtomicU64,
    upstream_errors: AtomicU64,
}

struct Shared {
    plan: FaultPlan,
    upstream: String,
    client: reqwest::Client,
    counters: Counters,
}

/// A running proxy: its base URL and its counters. Stops when dropped.
pub struct FlakyProxy {
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service answered nothing on purpose: hyper closes the connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

/// Hop-by-hop headers (and the ones the forwarder sets itself) are not copied.
fn copied(name: &hyper::header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host" | "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text.to_owned())));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(Dropped);
    };
    let c = &shared.counters;
    if gateway_method(parts.uri.query(), &body).as_deref() == Some(FAILING_METHOD) {
        let n = c.precreate_calls.fetch_add(1, Ordering::Relaxed);
        if shared.plan.fails(n) {
            c.precreate_failed.fetch_add(1, Ordering::Relaxed);
            return match shared.plan.fault {
                Fault::Drop => Err(Dropped),
                Fault::Http502 => Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway")),
            };
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in parts.headers.iter().filter(|(n, _)| copied(n)) {
        out = out.header(name, value);
    }
    let answer = match out.send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            r.bytes().await.map(|b| (status, headers, b))
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok((status, headers, bytes)) => {
            c.forwarded.fetch_add(1, Ordering::Relaxed);
            let mut resp = Response::new(Full::new(bytes));
            *resp.status_mut() = status;
            for (name, value) in headers.iter().filter(|(n, _)| copied(n)) {
                resp.headers_mut().append(name, value.clone());
            }
            Ok(resp)
        }
        Err(e) => {
            c.upstream_errors.fetch_add(1, Ordering::Relaxed);
            Ok(plain(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")))
        }
    }
}

impl FlakyProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the flaky proxy")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the proxy's HTTP client")?;
        let shared = Arc::new(Shared {
            plan,
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            counters: Counters::default(),
        });
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = for_task.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(req, shared.clone()));
                    // An error here is a dropped call (on purpose) or a client gone.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            base_url,
            shared,
            task,
        })
    }

    pub fn counts(&self) -> ProxyCounts {
        let c = &self.shared.counters;
        ProxyCounts {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            precreate_calls: c.precreate_calls.load(Ordering::Relaxed),
            precreate_failed: c.precreate_failed.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(percent: u8, seed: u64) -> FaultPlan {
        FaultPlan {
            percent,
            seed,
            fault: Fault::Drop,
        }
    }

    fn failures(p: &FaultPlan, calls: u64) -> u64 {
        (0..calls).filter(|&n| p.fails(n)).count() as u64
    }

    #[test]
    fn zero_never_fails_and_hundred_always_fails() {
        assert_eq!(failures(&plan(0, 11), 10_000), 0);
        assert_eq!(failures(&plan(100, 11), 10_000), 10_000);
    }

    #[test]
    fn the_share_of_failures_is_the_percentage() {
        for percent in [1u8, 10, 50, 90] {
            let got = failures(&plan(percent, 7), 100_000);
            let want = u64::from(percent) * 1000;
            // Binomial, n = 100,000: four standard deviations is under 700 calls.
            assert!(got.abs_diff(want) < 700, "{percent} %: {got} of 100,000");
        }
    }

    #[test]
    fn the_choice_is_reproducible_and_follows_the_seed() {
        let a: Vec<bool> = (0..1000).map(|n| plan(50, 11).fails(n)).collect();
        let b: Vec<bool> = (0..1000).map(|n| plan(50, 11).fails(n)).collect();
        let c: Vec<bool> = (0..1000).map(|n| plan(50, 12).fails(n)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Not one long run: failures and successes alternate as a coin's do.
        let switches = a.windows(2).filter(|w| w[0] != w[1]).count();
        assert!((400..600).contains(&switches), "{switches} switches");
    }

    #[test]
    fn the_method_is_read_from_query_or_form() {
        let q = "app_id=1&method=alipay.trade.precreate&sign=a%2Bb";
        assert_eq!(
            gateway_method(Some(q), b"").as_deref(),
            Some(FAILING_METHOD)
        );
        assert_eq!(
            gateway_method(None, b"charset=utf-8&method=alipay%2Etrade%2Equery").as_deref(),
            Some("alipay.trade.query")
        );
        assert_eq!(
            gateway_method(Some("app_id=1"), b"method=alipay.trade.close").as_deref(),
            Some("alipay.trade.close")
        );
        assert_eq!(gateway_method(Some("x=1"), b"\xff\xfe"), None);
        assert_eq!(form_value("a=1+2&b=%E5%8D%A1", "a").as_deref(), Some("1 2"));
        assert_eq!(form_value("a=1+2&b=%E5%8D%A1", "b").as_deref(), Some("卡"));
    }

    /// An upstream that answers every request with its method, path and body.
    async fn echo_upstream() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let head = format!("{} {} ", req.method(), req.uri());
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut resp = Response::new(Full::new(Bytes::from(
                            [head.as_bytes(), &body].concat(),
                        )));
                        resp.headers_mut()
                            .insert("x-upstream", "sim".parse().unwrap());
                        Ok::<_, hyper::Error>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        base
    }

    async fn post(client: &reqwest::Client, url: String) -> reqwest::Result<(u16, String)> {
        let r = client.post(url).body("biz_content=%7B%7D").send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    #[tokio::test]
    async fn forwards_other_calls_and_fails_precreate_as_planned() {
        let upstream = echo_upstream().await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let precreate = "/sim/alipay/gateway.do?method=alipay.trade.precreate";

        // Every precreate dropped: kami's client sees a transport error, not an answer.
        let proxy = FlakyProxy::start(&upstream, plan(100, 1)).await.unwrap();
        let err = post(&client, format!("{}{precreate}", proxy.base_url))
            .await
            .expect_err("dropped");
        assert!(err.status().is_none(), "{err}");
        let (status, body) = post(
            &client,
            format!(
                "{}/sim/alipay/gateway.do?method=alipay.trade.query",
                proxy.base_url
            ),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            body,
            "POST /sim/alipay/gateway.do?method=alipay.trade.query biz_content=%7B%7D"
        );
        let c = proxy.counts();
        assert_eq!(
            (
                c.forwarded,
                c.precreate_calls,
                c.precreate_failed,
                c.upstream_errors
            ),
            (1, 1, 1, 0)
        );

        // 502 flavour, and 0 % forwards every precreate.
        let proxy = FlakyProxy::start(
            &upstream,
            FaultPlan {
                percent: 100,
                seed: 1,
                fault: Fault::Http502,
            },
        )
        .await
        .unwrap();
        let (status, _) = post(&client, format!("{}{precreate}", proxy.base_url))
            .await
            .unwrap();
        assert_eq!(status, 502);
        let proxy = FlakyProxy::start(&upstream, plan(0, 1)).await.unwrap();
        for _ in 0..5 {
            let (status, body) = post(&client, format!("{}{precreate}", proxy.base_url))
                .await
                .unwrap();
            assert_eq!((status, body.starts_with("POST ")), (200, true));
        }
        let c = proxy.counts();
        assert_eq!(
            (c.forwarded, c.precreate_calls, c.precreate_failed),
            (5, 5, 0)
        );
    }

    #[tokio::test]
    async fn an_unreachable_simulator_is_counted_apart() {
        // A port nobody listens on (bound, then released).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let proxy = FlakyProxy::start(&dead, plan(0, 1)).await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (status, _) = post(&client, format!("{}/x?method=y", proxy.base_url))
            .await
            .unwrap();
        assert_eq!(status, 502);
        let c = proxy.counts();
        assert_eq!((c.forwarded, c.upstream_errors), (0, 1));
    }
}
