#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Slow, idle and oversized connections against the real `kami serve` (its descriptors and
//! memory read from /proc): the header timeout, the keep-alive timeout, the body timeout, the
//! per-IP connection cap, the in-flight cap, admin authentication before any body, and the
//! streamed card import.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kami_testkit::process::{self, Proc};
use kami_testkit::{Backend, Shop, TestDb};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SECRET: &str = "test-only-abuse-secret";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kami"))
}

/// Each test has this long, start-up included; dropping it kills the server.
async fn bounded(secs: u64, f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s"));
}

/// A running `kami serve` on a fresh SQLite database.
struct Server {
    proc: Proc,
    addr: SocketAddr,
    shop: Shop,
    pid: u32,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    _db: TestDb,
}

impl Server {
    /// `server` is extra `[server]` keys; SQLite.
    async fn start(server: &str) -> Server {
        Server::start_on(Backend::Sqlite, server).await
    }

    async fn start_on(backend: Backend, server: &str) -> Server {
        // This process opens thousands of sockets too.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let db = TestDb::create(backend).await;
        let config = d.join("kami.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[database]\nurl = \"{}\"\n\
                 [[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
                 secret = \"{SECRET}\"\nallow_sandbox = true\n",
                db.url()
            ),
        )
        .unwrap();
        let config_arg = config.to_str().unwrap();
        process::run(bin(), &["migrate", "--config", config_arg], d).await;
        let token = process::admin_token(bin(), &config, d).await;
        let (proc, base) = Proc::serve(bin(), &config, d, &[], d.join("serve.log")).await;
        let addr = base.trim_start_matches("http://").parse().unwrap();
        let pid = proc.pid().expect("server pid");
        Server {
            proc,
            addr,
            shop: Shop::new(base, token),
            pid,
            dir,
            config,
            _db: db,
        }
    }

    /// Open descriptors of the server process.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("server /proc fd")
            .count()
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// A connection from a chosen loopback address (127.0.0.0/8 is all ours).
async fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((ip, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the peer closes (or resets); what arrived and how long it took, `None` if
/// still open after `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some((got, started.elapsed()))
}

/// One response's head and as much body as arrived with it.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// POST a sandbox `paid` notification for `order`, signed as the gateway signs it, from
/// `from` (default: 127.0.0.1); the answer's status and body.
async fn notify(s: &Server, from: Option<Ipv4Addr>, order: &Value) -> (u16, String) {
    let no = order["order_no"].as_str().expect("order_no");
    let minor = order["amount"].as_i64().expect("amount");
    let amount = format!("{}.{:02}", minor / 100, minor % 100);
    let params = kami_testkit::notification_params(
        no,
        &amount,
        "CNY",
        &format!("SBX{no}"),
        SECRET.as_bytes(),
    );
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some(ip) = from {
        client = client.local_address(std::net::IpAddr::from(ip));
    }
    let r = client
        .build()
        .unwrap()
        .post(s.shop.url("/pay/notify/sandbox"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

const IDLE: usize = 2000;
const HALF_SENT: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_sockets_are_closed_by_the_header_timeout() {
    bounded(90, async {
        // The header timeout outlasts opening the attack's 2,300 sockets on a loaded machine:
        // with 3 s, the first ones were accepted and already closed before the last were open,
        // and the test could not see them held.
        let s = Server::start(
            "header_timeout_secs = 10\nkeepalive_secs = 15\n\
             max_connections = 10000\nmax_connections_per_ip = 10000\n",
        )
        .await;
        // The background jobs open their database connections in the first seconds: count
        // from a steady state (the same count twice, a second apart).
        let mut before = s.fds();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = s.fds();
            if now == before {
                break;
            }
            before = now;
        }
        let mut attack = Vec::with_capacity(IDLE + HALF_SENT);
        for i in 0..IDLE + HALF_SENT {
            let mut t = TcpStream::connect(s.addr).await.unwrap();
            if i >= IDLE {
                t.write_all(b"GET / HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
                    .await
                    .unwrap();
            }
            attack.push(t);
        }
        // A buyer during the attack is answered at once.
        let started = Instant::now();
        let r = reqwest::get(s.shop.url("/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "healthz took {took:?} during the attack"
        );
        // (Accepting thousands takes a moment on a loaded machine.)
        let mut held = s.fds();
        let deadline = Instant::now() + Duration::from_secs(10);
        while held < before + IDLE && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            held = s.fds();
        }
        assert!(
            held >= before + IDLE,
            "the attack's sockets were not even accepted: {before} -> {held} descriptors"
        );
        // Every attacking socket is closed by the server, within the timeout (and a margin).
        let closed = futures::future::join_all(
            attack
                .iter_mut()
                .map(|t| until_closed(t, Duration::from_secs(20))),
        )
        .await;
        let open = closed.iter().filter(|c| c.is_none()).count();
        assert_eq!(open, 0, "{open} attacking sockets still open after 20 s");
        let answered = closed
            .iter()
            .flatten()
            .filter(|(bytes, _)| bytes.starts_with(b"HTTP/1.1 2"))
            .count();
        assert_eq!(answered, 0, "an incomplete request was answered");
        drop(attack);
        // ... and holds none of them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = s.fds();
        while now > before + 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = s.fds();
        }
        assert!(
            now <= before + 2,
            "server holds {now} descriptors, {before} before the attack"
        );

        // A kept-alive connection waits for its next request for keepalive_secs (15), not for
        // the header timeout (10).
        let mut kept = TcpStream::connect(s.addr).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n")
            .await
            .unwrap();
        let head = read_response(&mut kept, Duration::from_secs(5)).await;
        assert_eq!(status_of(&head), 200, "{head}");
        let (_, idle) = until_closed(&mut kept, Duration::from_secs(25))
            .await
            .expect("an idle kept-alive connection is closed");
        assert!(
            idle >= Duration::from_millis(14_500) && idle < Duration::from_secs(20),
            "idle kept-alive connection closed after {idle:?}, keepalive_secs = 15"
        );
        s.proc.stop().await;
    })
    .await;
}

const UPLOADS: usize = 16;
const UPLOAD_BYTES: usize = 60 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_uploads_are_refused_before_their_body_is_read() {
    bounded(90, async {
        let s = Server::start("").await;
        s.shop.create_product("vip", 100, "auto").await;
        let rss_before = s.rss_kib();
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let pid = s.pid;
            let done = done.clone();
            tokio::spawn(async move {
                let mut peak = 0u64;
                // Until the uploads are over, and once more after (at most 20 s).
                for _ in 0..800 {
                    let last = done.load(Ordering::Acquire);
                    let status =
                        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    let rss = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap_or(0);
                    peak = peak.max(rss);
                    if last {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                peak
            })
        };
        let uploads = (0..UPLOADS).map(|_| async {
            let t = TcpStream::connect(s.addr).await.unwrap();
            let (mut r, mut w) = t.into_split();
            let head = format!(
                "POST /api/v1/admin/products/vip/cards HTTP/1.1\r\nHost: shop\r\n\
                 Content-Type: text/plain\r\nContent-Length: {UPLOAD_BYTES}\r\n\r\n"
            );
            w.write_all(head.as_bytes()).await.unwrap();
            let writer = tokio::spawn(async move {
                let chunk = vec![b'k'; 64 * 1024];
                let mut sent = 0;
                while sent < UPLOAD_BYTES {
                    if w.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                sent
            });
            let mut response = Vec::new();
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => response.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            let sent = tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .expect("the upload did not stop")
                .unwrap();
            (String::from_utf8_lossy(&response).into_owned(), sent)
        });
        let results = futures::future::join_all(uploads).await;
        // Past 10 failed tokens a minute the address is locked out (429) before its token is
        // even looked at: either way the body is never read.
        for (response, sent) in &results {
            match status_of(response) {
                401 => assert!(response.contains("\"unauthorized\""), "{response}"),
                429 => assert!(response.contains("\"rate_limited\""), "{response}"),
                _ => panic!("an unauthenticated upload was not refused: {response}"),
            }
            assert!(
                sent < &UPLOAD_BYTES,
                "the server read a whole unauthenticated upload"
            );
        }
        let unauthorized = results.iter().filter(|(r, _)| status_of(r) == 401).count();
        assert!(
            unauthorized >= 10,
            "{unauthorized} of {UPLOADS} refused as unauthorized"
        );
        done.store(true, Ordering::Release);
        let peak = sampler.await.unwrap();
        assert!(peak >= rss_before, "the sampler read no RSS: {peak} KiB");
        let grown = peak - rss_before;
        assert!(
            grown < 20 * 1024,
            "RSS peaked {grown} KiB above its start ({rss_before} -> {peak}) during refused \
             uploads"
        );
        s.proc.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_capped_while_others_are_served_and_load_is_shed_but_not_notifications() {
    bounded(60, async {
        let s = Server::start(
            "max_connections_per_ip = 4\nmax_in_flight = 8\ntrusted_proxies = [\"127.0.0.4\"]\n\
             header_timeout_secs = 20\nbody_timeout_secs = 20\n",
        )
        .await;
        // An order to be paid while the server sheds load.
        s.shop.create_product("vip", 100, "auto").await;
        s.shop.import_keys("vip", 2).await;
        let order = s.shop.order("vip", 1).await;
        let greedy = Ipv4Addr::new(127, 0, 0, 2);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect_from(greedy, s.addr).await);
        }
        // The fifth from the same address is closed at once, unanswered.
        let mut fifth = connect_from(greedy, s.addr).await;
        let _ = fifth
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n")
            .await;
        let (bytes, _) = until_closed(&mut fifth, Duration::from_secs(3))
            .await
            .expect("a connection over the per-IP cap is closed at once");
        assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
        // Another client is served.
        let other = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 3)))
            .build()
            .unwrap();
        let r = other.get(s.shop.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // A trusted proxy carries many clients: no per-IP cap (6 connections, 6 answers).
        let proxy = Ipv4Addr::new(127, 0, 0, 4);
        let mut via_proxy = Vec::new();
        for _ in 0..6 {
            let mut t = connect_from(proxy, s.addr).await;
            t.write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n")
                .await
                .unwrap();
            via_proxy.push(t);
        }
        for t in &mut via_proxy {
            let head = read_response(t, Duration::from_secs(5)).await;
            assert_eq!(status_of(&head), 200, "{head}");
        }
        drop((held, via_proxy));

        // In flight: 8 at most, the last of them only for notifications. Seven requests
        // whose bodies never finish fill what the rest may use.
        let token = s.shop.admin_token.clone();
        let mut hogs = Vec::new();
        for _ in 0..7 {
            let mut t = connect_from(proxy, s.addr).await;
            let head = format!(
                "POST /api/v1/admin/products HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"slug\": "
            );
            t.write_all(head.as_bytes()).await.unwrap();
            hogs.push(t);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let api = reqwest::get(s.shop.url("/api/v1/products")).await.unwrap();
        assert_eq!(api.status(), 503);
        let retry = api.headers().get("retry-after").cloned();
        assert!(retry.is_some(), "503 without Retry-After");
        let body: Value = api.json().await.unwrap();
        assert_eq!(body["error"]["code"], "overloaded", "{body}");
        let page = reqwest::get(s.shop.url("/")).await.unwrap();
        assert_eq!(page.status(), 503);
        assert!(page.headers().contains_key("retry-after"));
        assert!(page.text().await.unwrap().contains("busy"));
        // A gateway's notification still gets through: answered as the protocol wants, the
        // order paid.
        let (status, body) = notify(&s, None, &order).await;
        assert_eq!((status, body.as_str()), (200, "success"), "a notification was shed");
        drop(hogs);
        // The capacity comes back.
        let mut status = 0;
        for _ in 0..50 {
            status = reqwest::get(s.shop.url("/api/v1/products"))
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200, "the shed capacity did not come back");
        let settled = s.shop.wait_settled(&order).await;
        assert_eq!(settled["status"], "delivered", "{settled}");
        s.proc.stop().await;
    })
    .await;
}

/// Addresses holding requests open; each has `max_in_flight_per_ip = 2` places: with the two
/// that do not read their responses, 16 at most, less than the 21 of `max_in_flight = 24`
/// that requests other than notifications may use (the 72 requests they hold open would
/// fill it three times over).
const HOLDERS: u8 = 6;
const HELD_EACH: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_addresses_holding_bodies_and_responses_take_neither_the_capacity_nor_the_notifications(
) {
    bounded(60, async {
        let s = Server::start(
            "max_in_flight = 24\nmax_in_flight_per_ip = 2\n\
             header_timeout_secs = 20\nbody_timeout_secs = 20\n",
        )
        .await;
        s.shop.create_product("vip", 100, "auto").await;
        s.shop.import_keys("vip", 3).await;
        let holder = |i: u8| Ipv4Addr::new(127, 0, 0, 2 + i);

        // Each holder: requests whose small bodies never finish, half of them to the
        // notification endpoint (what a gateway would use).
        let mut held = Vec::new();
        for i in 0..HOLDERS {
            for j in 0..HELD_EACH {
                let mut t = connect_from(holder(i), s.addr).await;
                let path = if j % 2 == 0 {
                    "/api/v1/orders"
                } else {
                    "/pay/notify/sandbox"
                };
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n\
                     Content-Length: 1000\r\n\r\n{{\"product\": "
                );
                t.write_all(head.as_bytes()).await.unwrap();
                held.push((i, path, t));
            }
        }
        // Two of each holder's requests wait for their bodies; the others are refused at
        // once with 429 (and their connections closed).
        let answers = futures::future::join_all(
            held.iter_mut()
                .map(|(_, _, t)| read_response(t, Duration::from_secs(2))),
        )
        .await;
        for i in 0..HOLDERS {
            let mine: Vec<(&str, &String)> = held
                .iter()
                .zip(&answers)
                .filter(|((h, _, _), _)| *h == i)
                .map(|((_, path, _), a)| (*path, a))
                .collect();
            let waiting = mine.iter().filter(|(_, a)| a.is_empty()).count();
            assert_eq!(waiting, 2, "holder {i}: {mine:?}");
            for (path, a) in mine.iter().filter(|(_, a)| !a.is_empty()) {
                assert_eq!(status_of(a), 429, "{path}: {a}");
                assert!(a.to_ascii_lowercase().contains("retry-after: 2"), "{a}");
            }
        }
        // Two more addresses send requests without reading what comes back.
        let mut unread = Vec::new();
        for i in 0..2 {
            for _ in 0..4 {
                let mut t = connect_from(holder(HOLDERS + i), s.addr).await;
                let many = "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\n\r\n".repeat(200);
                t.write_all(many.as_bytes()).await.unwrap();
                unread.push(t);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A holder is at its own cap...
        let at_cap = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(holder(0)))
            .build()
            .unwrap()
            .get(s.shop.url("/api/v1/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(at_cap.status(), 429);
        let v: Value = at_cap.json().await.unwrap();
        assert_eq!(v["error"]["code"], "too_many_in_flight", "{v}");

        // ... while a buyer elsewhere is served at once: the catalogue, a new order ...
        let started = Instant::now();
        let buyer = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 20)))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let r = buyer
            .get(s.shop.url("/api/v1/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = buyer
            .post(s.shop.url("/api/v1/orders"))
            .json(&serde_json::json!({"product": "vip", "quantity": 1,
                  "email": "buyer@example.com", "method": "sandbox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let order: Value = r.json().await.unwrap();
        // ... and so is the gateway's notification of its payment, with the protocol's answer.
        let (status, body) = notify(&s, Some(Ipv4Addr::new(127, 0, 0, 21)), &order).await;
        assert_eq!((status, body.as_str()), (200, "success"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "buyer and gateway took {took:?} during the attack"
        );
        let settled = s.shop.wait_settled(&order).await;
        assert_eq!(settled["status"], "delivered", "{settled}");

        // Gone, the holders' places come back.
        drop((held, unread));
        let mut status = 0;
        for _ in 0..50 {
            status = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from(holder(0)))
                .build()
                .unwrap()
                .get(s.shop.url("/api/v1/products"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200, "a holder's places did not come back");
        s.proc.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_body_is_cut_off_by_the_body_timeout_and_body_errors_are_json() {
    bounded(60, async {
        let s = Server::start("body_timeout_secs = 2\n").await;
        let mut t = TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/admin/products HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
            s.shop.admin_token
        );
        t.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (mut r, mut w) = t.into_split();
        // One byte every 200 ms: the whole would take 20 s.
        let dribbler = tokio::spawn(async move {
            for _ in 0..100 {
                if w.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut response = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut response)).await;
        let took = started.elapsed();
        assert!(read.is_ok(), "the connection was not cut within 10 s");
        let response = String::from_utf8_lossy(&response);
        assert_eq!(status_of(&response), 408, "{response}");
        assert!(response.contains("\"body_timeout\""), "{response}");
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
            "cut after {took:?} with body_timeout_secs = 2"
        );
        dribbler.abort();

        // Too large is refused in JSON too, once past the limit (2 MiB).
        let t = TcpStream::connect(s.addr).await.unwrap();
        let size = 3 * 1024 * 1024;
        let head = format!(
            "POST /api/v1/admin/products HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n",
            s.shop.admin_token,
        );
        let (mut r, mut w) = t.into_split();
        let writer = tokio::spawn(async move {
            let _ = w.write_all(head.as_bytes()).await;
            let _ = w.write_all(&vec![b' '; size]).await;
            w
        });
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut response)).await;
        assert!(read.is_ok(), "a refused body closes its connection");
        drop(writer);
        let response = String::from_utf8_lossy(&response);
        assert_eq!(status_of(&response), 413, "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
        assert_eq!(v["error"]["code"], "invalid_body", "{v}");
        s.proc.stop().await;
    })
    .await;
}

/// Keys in the large import: 240-byte lines, some repeated in later batches.
const IMPORT_KEYS: usize = 100_000;
const REPEAT_EVERY: usize = 997;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_streams_in_batches_with_bounded_memory_sqlite() {
    large_import(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at KAMI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)"]
async fn a_large_import_streams_in_batches_with_bounded_memory_postgres() {
    large_import(Backend::Postgres).await;
}

async fn large_import(backend: Backend) {
    bounded(240, async {
        let s = Server::start_on(backend, "").await;
        s.shop.create_product("bulk", 100, "auto").await;
        let key = |i: usize| format!("BULK-{i:08}-{}", "x".repeat(220));
        let mut text = String::with_capacity(IMPORT_KEYS * 250);
        let mut repeats = 0;
        for i in 0..IMPORT_KEYS {
            text.push_str(&key(i));
            text.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
            if i % REPEAT_EVERY == 0 && i > 0 {
                // A key of an earlier batch (a thousand keys per batch), and a blank line.
                text.push_str(&key(i / 3));
                text.push_str("\n\n");
                repeats += 1;
            }
        }
        let bytes = text.len();
        assert!(bytes > 20 * 1024 * 1024, "{bytes}");
        let rss_before = s.rss_kib();
        let started = Instant::now();
        let r = s
            .shop
            .http
            .post(s.shop.url("/api/v1/admin/products/bulk/cards"))
            .bearer_auth(&s.shop.admin_token)
            .header("content-type", "text/plain")
            .body(text.into_bytes())
            .timeout(Duration::from_secs(200))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let took = started.elapsed();
        assert_eq!(v["imported"], IMPORT_KEYS as u64, "{v}");
        assert_eq!(v["duplicates"], repeats as u64, "{v}");
        assert_eq!(v["rejected"], 0, "{v}");
        let grown = s.rss_kib().saturating_sub(rss_before);
        eprintln!("imported {IMPORT_KEYS} keys ({bytes} bytes) in {took:?}; RSS +{grown} KiB");
        assert!(
            (grown as usize) < bytes / 1024 / 2,
            "RSS grew {grown} KiB importing a {bytes}-byte file"
        );

        // The command line streams its file the same way: all of them are known now.
        let file = s.dir.path().join("again.txt");
        let again: String = (0..5000).map(|i| key(i * 7) + "\n").collect();
        std::fs::write(&file, again).unwrap();
        let out = process::run(
            bin(),
            &[
                "cards",
                "import",
                "--product",
                "bulk",
                "--config",
                s.config.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
            s.dir.path(),
        )
        .await;
        assert!(
            out.contains("imported 0 keys; 5000 duplicates skipped; 0 lines rejected"),
            "{out}"
        );

        // A line no key could be is refused with a precise error, after the lines before it.
        let mut bad = (0..1500).map(|i| format!("NEW-{i}\n")).collect::<String>();
        bad.push_str(&"y".repeat(100 * 1024));
        let r = s
            .shop
            .http
            .post(s.shop.url("/api/v1/admin/products/bulk/cards"))
            .bearer_auth(&s.shop.admin_token)
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "line_too_long", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("line 1501") && message.contains("1000 keys were imported before it"),
            "{message}"
        );
        s.proc.stop().await;
    })
    .await;
}
