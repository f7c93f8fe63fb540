#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash test (DESIGN 3): the real `kami` binary receives a stream of payment notifications and
//! is killed with SIGKILL in the middle of it, twice; after each restart every notification not
//! acknowledged is sent again, as a gateway would. kami commits before it answers `success`, so:
//! every acknowledged payment is delivered (checked right after each restart, before anything is
//! resent), every order ends delivered exactly once, and no key is handed out twice or lost.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SECRET: &str = "test-only-crash-secret";
const SLUG: &str = "crash";
const KEYS: usize = 300;
const ORDERS: usize = 200;
/// Every DUP_EVERY-th order gets a second, distinct notification for the same payment.
const DUP_EVERY: usize = 5;
const SENDERS: usize = 32;
/// Acknowledgements (within the round) after which the server is killed, one kill per entry.
const KILL_AFTER: [usize; 2] = [60, 40];
/// Final round: resend attempts per notification before giving up.
const MAX_ATTEMPTS: usize = 20;
const STEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_sqlite() {
    bounded(crash_scenario(Backend::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_postgres() {
    bounded(crash_scenario(Backend::Postgres)).await;
}

/// The whole scenario has ten minutes; dropping it on timeout kills the server (see `Server`).
async fn bounded(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(600), f)
        .await
        .expect("crash scenario timed out");
}

// ---------------------------------------------------------------------------------------------
// Database

fn pg_admin_url() -> String {
    std::env::var("KAMI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Swap the database name in a postgres URL.
fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn hex_rand() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A PostgreSQL database created for this run and dropped with it.
struct PgDb {
    name: String,
}

impl PgDb {
    /// `None` (after printing why) when PostgreSQL is unreachable and not required.
    fn create() -> Option<(PgDb, String)> {
        let name = format!("kami_crash_{}", hex_rand());
        let admin = pg_admin_url();
        let n = name.clone();
        // The postgres crate must not run on an async runtime thread.
        let created = std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls)?;
            c.batch_execute(&format!("CREATE DATABASE {n}"))
        })
        .join()
        .expect("postgres setup thread");
        if let Err(e) = created {
            if std::env::var("KAMI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "PostgreSQL is required (KAMI_REQUIRE_POSTGRES=1) but unreachable at {}: {e}",
                    pg_admin_url()
                );
            }
            println!(
                "SKIPPED: PostgreSQL not reachable at {} ({e}); set KAMI_TEST_PG_URL",
                pg_admin_url()
            );
            return None;
        }
        let url = replace_db(&pg_admin_url(), &name);
        Some((PgDb { name }, url))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort; a leftover test database is harmless.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&pg_admin_url(), postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------------------
// The binary

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kami")
}

/// Run a one-shot `kami` command; returns its stdout.
async fn kami(config: &Path, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        STEP,
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("kami {args:?} timed out"))
    .expect("kami runs");
    assert!(
        out.status.success(),
        "kami {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A running `kami serve`. Dropping it kills the process, so no server outlives the test, even
/// when an assertion fails.
struct Server {
    /// Shared so that the notification senders can kill it the moment they count enough
    /// acknowledgements; `None` once killed and reaped.
    child: Arc<Mutex<Option<Child>>>,
    base: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Server {
    async fn start(config: &Path, log: PathBuf) -> Server {
        let log_file = std::fs::File::create(&log).expect("server log file");
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("kami serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        // Find the machine-readable line, then keep draining so the pipe never fills.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let mut server = Server {
            child: Arc::new(Mutex::new(Some(child))),
            base: String::new(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(SENDERS * 2)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            log,
        };
        match tokio::time::timeout(STEP, rx).await {
            Ok(Ok(base)) => {
                assert!(base.starts_with("http://"), "odd listen line: {base}");
                server.base = base;
            }
            Ok(Err(_)) => panic!("kami serve exited before listening"),
            Err(_) => panic!("kami serve did not report its address in time"),
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGKILL (what `Child::start_kill` sends on unix) at once when called.
    fn killer(&self) -> impl Fn() + Send + 'static {
        let child = Arc::clone(&self.child);
        move || {
            if let Some(c) = child.lock().unwrap().as_mut() {
                c.start_kill().expect("SIGKILL");
            }
        }
    }

    /// SIGKILL (if not sent yet) and reap the process.
    async fn kill(&mut self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            // Fails harmlessly if the signal was already delivered by `killer`.
            let _ = child.start_kill();
            let status = tokio::time::timeout(STEP, child.wait())
                .await
                .expect("the killed server did not exit in time")
                .expect("wait for the server");
            assert!(!status.success(), "the server exited cleanly: {status}");
        }
    }

    async fn admin_get(&self, token: &str, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// One order through the admin API.
    async fn admin_order(&self, token: &str, no: &str) -> Value {
        self.admin_get(token, &format!("/api/v1/admin/orders/{no}"))
            .await
    }

    /// All orders with a status, through the paged admin list.
    async fn admin_orders(&self, token: &str, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut before = String::new();
        for _ in 0..100 {
            let r = self
                .admin_get(
                    token,
                    &format!("/api/v1/admin/orders?status={status}&limit=500&before={before}"),
                )
                .await;
            out.extend(
                r["orders"]
                    .as_array()
                    .expect("orders array")
                    .iter()
                    .cloned(),
            );
            match r["next_before"].as_str() {
                Some(n) => before = n.to_owned(),
                None => return out,
            }
        }
        panic!("admin order list does not end");
    }

    async fn metric(&self, line_prefix: &str) -> Option<u64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            if let Some(c) = child.as_mut() {
                let _ = c.start_kill();
            }
        }
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- last lines of {} ---", self.log.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Notifications

/// One notification as the gateway sends it: the order it pays and the signed form body.
#[derive(Clone)]
struct Notification {
    order: usize,
    body: String,
}

fn notification(order: usize, order_no: &str) -> Notification {
    let params = vec![
        ("trade_no".to_owned(), order_no.to_owned()),
        ("gateway_trade_no".to_owned(), format!("SBX{order_no}")),
        ("amount".to_owned(), "1.00".to_owned()),
        ("currency".to_owned(), "CNY".to_owned()),
        ("status".to_owned(), "paid".to_owned()),
        ("paid_at".to_owned(), "1795000000000".to_owned()),
        ("notify_id".to_owned(), hex_rand()),
    ];
    let signed = kami_pay::sandbox::signed(SECRET.as_bytes(), params);
    Notification {
        order,
        body: serde_urlencoded::to_string(signed).unwrap(),
    }
}

#[derive(Debug)]
enum Reply {
    /// HTTP 200 with the exact body `success`: the payment is committed.
    Acked,
    /// An HTTP answer that is not the acknowledgement.
    Refused(u16, String),
    /// No answer: not acknowledged. `cut` when the request reached the server (the connection
    /// broke mid-request, or it timed out) rather than being refused at connect.
    Lost { cut: bool },
}

async fn send(http: &reqwest::Client, url: &str, body: &str) -> Reply {
    let r = match http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Reply::Lost {
                cut: !e.is_connect(),
            }
        }
    };
    let status = r.status().as_u16();
    match r.text().await {
        Ok(text) if status == 200 && text == "success" => Reply::Acked,
        Ok(text) => Reply::Refused(status, text),
        Err(_) => Reply::Lost { cut: true },
    }
}

#[derive(Default, Debug)]
struct RoundStats {
    /// Notifications in the round.
    total: usize,
    /// Actually sent; the rest were due after the kill (a gateway cannot reach a dead server).
    sent: usize,
    acked: usize,
    lost: usize,
    /// Of `lost`: requests in flight when the server died (the rest found no server).
    cut: usize,
    refused: Vec<(usize, u16, String)>,
    /// Acknowledgements counted when SIGKILL was sent.
    acked_at_kill: Option<usize>,
}

/// Send `items` (indices into `notes`) with `SENDERS` concurrent senders in a random order.
/// With `kill_after = Some(n)`, SIGKILL the server the moment the `n`th acknowledgement arrives,
/// while up to `SENDERS` requests are in flight and the rest is still to be sent; then reap it.
/// Nothing new is sent after the kill: the dead server's port is free, and a connection to a
/// free ephemeral port can end up connected to itself and hang until the client timeout.
/// Returns the indices acknowledged and the round's statistics.
async fn send_round(
    server: &mut Server,
    notes: &Arc<Vec<Notification>>,
    mut items: Vec<usize>,
    kill_after: Option<usize>,
) -> (HashSet<usize>, RoundStats) {
    items.shuffle(&mut rand::thread_rng());
    let total = items.len();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let dead = Arc::new(AtomicBool::new(false));
    let url = server.url("/pay/notify/sandbox");
    let http = server.http.clone();
    let notes2 = Arc::clone(notes);
    let acked2 = Arc::clone(&acked);
    let killer = server.killer();
    let sender = tokio::spawn(async move {
        let mut stats = RoundStats {
            total,
            ..RoundStats::default()
        };
        let mut replies = futures::stream::iter(items)
            .map(|i| {
                let (http, url, notes) = (http.clone(), url.clone(), Arc::clone(&notes2));
                let dead = Arc::clone(&dead);
                async move {
                    if dead.load(Ordering::SeqCst) {
                        return (i, None);
                    }
                    (i, Some(send(&http, &url, &notes[i].body).await))
                }
            })
            .buffer_unordered(SENDERS);
        while let Some((i, reply)) = replies.next().await {
            let Some(reply) = reply else { continue };
            stats.sent += 1;
            match reply {
                Reply::Acked => {
                    let count = {
                        let mut acked = acked2.lock().unwrap();
                        acked.insert(i);
                        acked.len()
                    };
                    if kill_after == Some(count) {
                        killer();
                        dead.store(true, Ordering::SeqCst);
                        stats.acked_at_kill = Some(count);
                    }
                }
                Reply::Lost { cut } => {
                    stats.lost += 1;
                    stats.cut += usize::from(cut);
                }
                Reply::Refused(status, body) => stats.refused.push((i, status, body)),
            }
        }
        stats
    });
    let mut stats = tokio::time::timeout(STEP * 3, sender)
        .await
        .expect("senders did not finish in time")
        .expect("sender task");
    if let Some(n) = kill_after {
        assert_eq!(
            stats.acked_at_kill,
            Some(n),
            "the stream ended before {n} acknowledgements arrived"
        );
        server.kill().await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    stats.acked = acked.len();
    (acked, stats)
}

// ---------------------------------------------------------------------------------------------
// The scenario

async fn crash_scenario(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_pg, db_url) = match backend {
        Backend::Sqlite => (
            None,
            format!("sqlite://{}", dir.path().join("kami.db").display()),
        ),
        Backend::Postgres => match PgDb::create() {
            Some((db, url)) => (Some(db), url),
            None => return,
        },
    };
    let config = dir.path().join("kami.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{db_url}\"\n\
             [[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
             secret = \"{SECRET}\"\nallow_sandbox = true\n"
        ),
    )
    .unwrap();

    kami(&config, &["migrate"]).await;
    let token = kami(&config, &["admin", "token", "create", "crash-test"]).await;
    let token = token.lines().last().expect("token line").trim().to_owned();
    assert!(!token.is_empty());

    let started = std::time::Instant::now();
    let mut generation = 0;
    let log = |g: usize| dir.path().join(format!("serve-{g}.log"));
    let mut server = Server::start(&config, log(generation)).await;

    // Catalogue: one auto-delivered product with KEYS keys.
    let r = server
        .http
        .post(server.url("/api/v1/admin/products"))
        .bearer_auth(&token)
        .json(&json!({"slug": SLUG, "title": "Crash", "price": 100, "currency": "CNY", "delivery": "auto"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("CRASH-{i:04}-{}", hex_rand()))
        .collect();
    let r = server
        .http
        .post(server.url(&format!("/api/v1/admin/products/{SLUG}/cards")))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(keys.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let imported: Value = r.json().await.unwrap();
    assert_eq!(imported["imported"], KEYS as u64, "{imported}");
    let keys: HashSet<String> = keys.into_iter().collect();

    // ORDERS orders, created a few at a time.
    let http = server.http.clone();
    let orders_url = server.url("/api/v1/orders");
    let order_nos: Vec<String> = futures::stream::iter(0..ORDERS)
        .map(|_| {
            let (http, url) = (http.clone(), orders_url.clone());
            async move {
                let r = http
                    .post(url)
                    .json(&json!({"product": SLUG, "quantity": 1, "email": "c@example.com", "method": "sandbox"}))
                    .send()
                    .await
                    .expect("create order");
                let status = r.status();
                let v: Value = r.json().await.unwrap();
                assert_eq!(status, 201, "{v}");
                assert_eq!(v["amount"], 100, "{v}");
                v["order_no"].as_str().expect("order_no").to_owned()
            }
        })
        .buffered(8)
        .collect()
        .await;
    assert_eq!(
        order_nos.iter().collect::<HashSet<_>>().len(),
        ORDERS,
        "order numbers repeat"
    );

    // The notification stream: one per order, and a second one for every DUP_EVERY-th order.
    let mut notes = Vec::new();
    for (i, no) in order_nos.iter().enumerate() {
        let copies = if i % DUP_EVERY == 0 { 2 } else { 1 };
        for _ in 0..copies {
            notes.push(notification(i, no));
        }
    }
    let notes = Arc::new(notes);

    let mut acked: HashSet<usize> = HashSet::new(); // notification indices
    let mut paid_orders: HashSet<usize> = HashSet::new(); // orders with an acknowledgement
    let mut delivered: HashMap<usize, String> = HashMap::new(); // order -> its key
    let mut report = Vec::new();

    for (round, &kill_after) in KILL_AFTER.iter().enumerate() {
        let unacked: Vec<usize> = (0..notes.len()).filter(|i| !acked.contains(i)).collect();
        let (got, stats) = send_round(&mut server, &notes, unacked, Some(kill_after)).await;
        assert!(
            stats.refused.is_empty(),
            "round {round}: valid notifications refused: {:?}",
            stats.refused
        );
        acked.extend(&got);
        paid_orders.extend(got.iter().map(|&i| notes[i].order));
        let unpaid = ORDERS - paid_orders.len();
        report.push(format!(
            "[{:.1}s] kill {}: {} due, {} sent, {} acked (SIGKILL at {:?}), {} sent but not acked \
             ({} cut mid-request), {} not sent after the kill; orders paid {}, unpaid {}",
            started.elapsed().as_secs_f64(),
            round + 1,
            stats.total,
            stats.sent,
            stats.acked,
            stats.acked_at_kill,
            stats.sent - stats.acked,
            stats.cut,
            stats.total - stats.sent,
            paid_orders.len(),
            unpaid
        ));
        // Mid-stream: something was acknowledged and something was not. (Whether requests were
        // cut inside the server is a matter of timing; typically a few dozen are.)
        assert!(stats.acked >= 1, "round {round}: nothing acknowledged");
        assert!(
            stats.acked < stats.total && unpaid >= 1,
            "round {round}: the kill was not mid-stream: {stats:?}"
        );

        // Restart; before resending anything, every acknowledged payment must be delivered.
        generation += 1;
        server = Server::start(&config, log(generation)).await;
        check_acknowledged(&server, &token, &order_nos, &paid_orders, &mut delivered).await;
        let now_delivered = server.admin_orders(&token, "delivered").await.len();
        assert!(now_delivered >= paid_orders.len());
        report.push(format!(
            "  [{:.1}s] after restart {}: {now_delivered} orders delivered ({} committed but never acknowledged)",
            started.elapsed().as_secs_f64(),
            round + 1,
            now_delivered - paid_orders.len()
        ));
    }

    // Final round: resend everything not acknowledged until it is, and every acknowledged
    // notification once more, which must be answered `success` as a duplicate.
    let mut pending: Vec<usize> = (0..notes.len()).collect();
    let mut attempts = 0;
    let mut final_lost = 0;
    while !pending.is_empty() {
        attempts += 1;
        assert!(
            attempts <= MAX_ATTEMPTS,
            "notifications never acknowledged: {pending:?}"
        );
        let (got, stats) = send_round(&mut server, &notes, pending.clone(), None).await;
        assert!(
            stats.refused.is_empty(),
            "final round: valid notifications refused: {:?}",
            stats.refused
        );
        final_lost += stats.lost;
        pending.retain(|i| !got.contains(i));
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    report.push(format!(
        "[{:.1}s] final: {} notifications resent and acknowledged in {attempts} attempt(s), {final_lost} lost",
        started.elapsed().as_secs_f64(),
        notes.len()
    ));

    // Every order delivered exactly once, every key at most once, nothing changed for orders
    // delivered before the resends.
    // The list gives the statuses; the keys come from each order's own view (the list shows no
    // keys).
    let all = server.admin_orders(&token, "delivered").await;
    let listed: HashSet<&str> = all
        .iter()
        .map(|o| o["order_no"].as_str().expect("order_no"))
        .collect();
    assert_eq!(listed.len(), all.len(), "an order is listed twice");
    assert_eq!(all.len(), ORDERS, "delivered orders");
    let everything: Vec<usize> = (0..ORDERS).collect();
    let full = admin_orders_by_index(&server, &token, &order_nos, &everything).await;
    let mut seen = HashSet::new();
    for (i, o) in full {
        let no = &order_nos[i];
        assert!(listed.contains(no.as_str()), "order {no} not listed");
        assert_eq!(o["status"], "delivered", "{o}");
        let cards = o["cards"].as_array().expect("cards of a delivered order");
        assert_eq!(cards.len(), 1, "order {no} got {} keys", cards.len());
        let card = cards[0].as_str().expect("key text").to_owned();
        assert!(keys.contains(&card), "order {no} got a key never imported");
        assert!(seen.insert(card.clone()), "key {card} delivered twice");
        if let Some(before) = delivered.get(&i) {
            assert_eq!(before, &card, "order {no} was delivered again");
        }
    }
    assert_eq!(seen.len(), ORDERS);
    for status in ["pending", "paid", "expired"] {
        let rest = server.admin_orders(&token, status).await;
        assert!(rest.is_empty(), "{} orders {status}", rest.len());
    }

    // The catalogue: exactly ORDERS keys gone.
    let products: Value = server
        .http
        .get(server.url("/api/v1/products"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = products["products"]
        .as_array()
        .expect("products")
        .iter()
        .find(|p| p["slug"] == SLUG)
        .expect("crash product listed");
    assert_eq!(product["stock"], (KEYS - ORDERS) as u64, "{product}");
    assert_eq!(
        server.metric("kami_cards{status=\"sold\"}").await,
        Some(ORDERS as u64)
    );
    assert_eq!(
        server.metric("kami_cards{status=\"available\"}").await,
        Some((KEYS - ORDERS) as u64)
    );

    server.kill().await;
    println!(
        "crash test ({backend:?}) in {:.1}s:\n  {}",
        started.elapsed().as_secs_f64(),
        report.join("\n  ")
    );
}

/// After a restart: each order with an acknowledged notification is delivered with one key,
/// the same key it had after any earlier restart.
async fn check_acknowledged(
    server: &Server,
    token: &str,
    order_nos: &[String],
    paid: &HashSet<usize>,
    delivered: &mut HashMap<usize, String>,
) {
    let paid: Vec<usize> = paid.iter().copied().collect();
    for (i, o) in admin_orders_by_index(server, token, order_nos, &paid).await {
        let no = &order_nos[i];
        assert_eq!(
            o["status"], "delivered",
            "order {no} was acknowledged but is not delivered after the restart: {o}"
        );
        let cards = o["cards"].as_array().expect("cards of a delivered order");
        assert_eq!(cards.len(), 1, "order {no}: {o}");
        let card = cards[0].as_str().expect("key text").to_owned();
        if let Some(before) = delivered.insert(i, card.clone()) {
            assert_eq!(before, card, "order {no} changed its key across a restart");
        }
    }
}

/// `GET /api/v1/admin/orders/{no}` for the given orders, a few at a time.
async fn admin_orders_by_index(
    server: &Server,
    token: &str,
    order_nos: &[String],
    which: &[usize],
) -> Vec<(usize, Value)> {
    futures::stream::iter(which.iter().copied())
        .map(|i| async move { (i, server.admin_order(token, &order_nos[i]).await) })
        .buffer_unordered(8)
        .collect()
        .await
}
