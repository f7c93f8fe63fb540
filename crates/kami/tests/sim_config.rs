#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A shop owner's real configuration path, through the real `kami` binary (DESIGN 4.1-4.2):
//! `kami sim --write-config` generates gateway keys and writes `[[channels]]` for every protocol
//! with PEM key files next to it; that TOML, appended to a `[server]`/`[database]` header, is the
//! configuration of a separate `kami serve` (not `--demo`). Buyers then pay through each
//! simulator's own pages like a browser, the simulators notify kami over HTTP, and kami verifies
//! every notification with the keys it loaded from those files, delivers, and refunds through
//! each channel's API. Broken key files stop `kami serve` at once with an error naming the channel
//! and the key; a valid key that is the wrong one makes kami refuse the notifications.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound of any single step (process start, one-shot command, HTTP exchange).
const STEP: Duration = Duration::from_secs(120);
/// A broken configuration must make `kami serve` exit within this.
const QUICK_EXIT: Duration = Duration::from_secs(30);

/// Each (method, device) flavour: the expected payment action, the channel serving it, and how
/// its QR code / redirect URL starts (`SIM` stands for the simulator's base URL).
const FLAVOURS: [(&str, &str, &str, &str, &str); 6] = [
    // 当面付 precreate
    ("alipay", "pc", "qr", "alipay-sim", "SIM/sim/alipay/qr/"),
    // wap.pay
    (
        "alipay",
        "mobile",
        "redirect",
        "alipay-sim",
        "SIM/sim/alipay/gateway.do?",
    ),
    // Native
    ("wxpay", "pc", "qr", "wechat-sim", WX_CODE_PREFIX),
    // H5
    (
        "wxpay",
        "mobile",
        "redirect",
        "wechat-sim",
        "SIM/sim/wechatpay/h5/",
    ),
    // Epay page jump
    (
        "qqpay",
        "pc",
        "redirect",
        "epay-sim",
        "SIM/sim/epay/submit.php?",
    ),
    (
        "sandbox",
        "pc",
        "redirect",
        "sandbox-sim",
        "SIM/sim/sandbox/pay/",
    ),
];

const WX_CODE_PREFIX: &str = "weixin://wxpay/bizpayurl?pr=";

/// The whole scenario must finish in this; dropping it kills every process it started.
async fn bounded(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(480), f)
        .await
        .expect("scenario timed out");
}

// ---------------------------------------------------------------------------------------------
// Processes

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kami")
}

/// A running `kami` process. Dropping it kills the process, so nothing outlives the test, even
/// when an assertion fails; on a panic the tail of its log is printed.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Spawn `kami ARGS` (stderr to `log`) and wait for the stdout line starting with `prefix`;
    /// returns the process and the rest of that line.
    async fn start(
        args: &[&str],
        cwd: &Path,
        env: &[(&str, &str)],
        prefix: &'static str,
        log: PathBuf,
    ) -> (Proc, String) {
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(bin())
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("kami starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        // Find the machine-readable line, then keep draining so the pipe never fills.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_owned());
                    }
                }
            }
        });
        let proc = Proc {
            child: Some(child),
            log,
        };
        let rest = match tokio::time::timeout(STEP, rx).await {
            Ok(Ok(rest)) => rest,
            Ok(Err(_)) => panic!(
                "kami {args:?} exited before printing {prefix:?}:\n{}",
                proc.log_text()
            ),
            Err(_) => panic!("kami {args:?} did not print {prefix:?} in time"),
        };
        (proc, rest)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kill and reap.
    async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(STEP, child.wait()).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The exit status, stdout and stderr of a one-shot `kami` command, bounded by `limit`.
async fn kami_output(
    args: &[&str],
    cwd: &Path,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    let out = tokio::time::timeout(
        limit,
        Command::new(bin())
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("kami {args:?} did not exit within {limit:?}"))
    .expect("kami runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Create an admin API token with the CLI (the last stdout line).
async fn admin_token(config: &Path, cwd: &Path) -> String {
    let config = config.to_str().unwrap();
    let (status, stdout, stderr) = kami_output(
        &["admin", "token", "create", "t", "--config", config],
        cwd,
        STEP,
    )
    .await;
    assert!(status.success(), "token create failed: {status}\n{stderr}");
    let token = stdout.lines().last().expect("token line").trim().to_owned();
    assert!(!token.is_empty());
    token
}

/// A running `kami sim --write-config`: its base URL and the TOML it wrote.
struct Sim {
    proc: Proc,
    base: String,
    toml: String,
    keys_dir: PathBuf,
}

/// Start `kami sim --listen 127.0.0.1:0 --write-config WRITE` in `cwd` (`write` may be relative
/// to it) and wait for the written configuration.
async fn start_sim(cwd: &Path, write: &str, log: PathBuf) -> Sim {
    let (proc, base) = Proc::start(
        &["sim", "--listen", "127.0.0.1:0", "--write-config", write],
        cwd,
        &[],
        "simulators listening on ",
        log,
    )
    .await;
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "odd sim line: {base}"
    );
    let file = cwd.join(write);
    let deadline = Instant::now() + STEP;
    let toml = loop {
        if let Ok(t) = std::fs::read_to_string(&file) {
            if t.contains("sandbox-sim") {
                break t;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written in time",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let keys_dir = PathBuf::from(format!("{}.keys", file.display()));
    Sim {
        proc,
        base,
        toml,
        keys_dir,
    }
}

/// `[server]` + `[database]` on a fresh SQLite file in `dir`, then `channels`.
fn write_config(dir: &Path, name: &str, channels: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let db = dir.join(format!("{name}.db"));
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}\"\n{channels}",
            db.display()
        ),
    )
    .unwrap();
    path
}

/// The value of `key = "..."` in the `[[channels]]` table with `id = "{id}"`.
fn channel_value(toml: &str, id: &str, key: &str) -> String {
    let table = toml
        .split("[[channels]]")
        .find(|t| t.contains(&format!("id = \"{id}\"")))
        .unwrap_or_else(|| panic!("no channel {id} in:\n{toml}"));
    table
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {key} in channel {id}:\n{table}"))
        .to_owned()
}

/// `toml` with channel `id`'s `key = "..."` set to `value`.
fn with_channel_value(toml: &str, id: &str, key: &str, value: &str) -> String {
    let old = format!("{key} = \"{}\"", channel_value(toml, id, key));
    assert_eq!(toml.matches(&old).count(), 1, "{old} is not unique");
    toml.replace(&old, &format!("{key} = \"{value}\""))
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Shop {
    proc: Proc,
    base: String,
    token: String,
    http: reqwest::Client,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// `kami admin token create` then `kami serve --config CONFIG`.
async fn start_shop(config: &Path, cwd: &Path, log: PathBuf) -> Shop {
    let token = admin_token(config, cwd).await;
    let (proc, base) = Proc::start(
        &["serve", "--config", config.to_str().unwrap()],
        cwd,
        &[],
        "listening on ",
        log,
    )
    .await;
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "odd listen line: {base}"
    );
    Shop {
        proc,
        base,
        token,
        http: http_client(),
    }
}

impl Shop {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        (status, v)
    }

    async fn admin_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A product with `n` fresh keys; returns the keys.
    async fn product_with_keys(&self, slug: &str, price: i64, n: usize) -> HashSet<String> {
        let (s, v) = self
            .admin_post(
                "/api/v1/admin/products",
                json!({"slug": slug, "title": format!("Product {slug}"), "price": price,
                       "currency": "CNY", "delivery": "auto"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let keys: Vec<String> = (0..n)
            .map(|i| format!("SIMCFG-{slug}-{i:03}-{:016x}", rand::random::<u64>()))
            .collect();
        let r = self
            .http
            .post(self.url(&format!("/api/v1/admin/products/{slug}/cards")))
            .bearer_auth(&self.token)
            .header("content-type", "text/plain")
            .body(keys.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["imported"], n as u64, "{v}");
        keys.into_iter().collect()
    }

    async fn order(&self, slug: &str, method: &str, device: &str) -> Value {
        let r = self
            .http
            .post(self.url("/api/v1/orders"))
            .json(
                &json!({"product": slug, "quantity": 1, "email": "buyer@example.com",
                          "method": method, "device": device}),
            )
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{method}/{device}: {v}");
        assert_eq!(v["status"], "pending", "{v}");
        v
    }

    /// `GET /api/v1/orders/{no}?wait=W` with the order's access token.
    async fn read_order(&self, order: &Value, wait: u64) -> Value {
        let no = order["order_no"].as_str().unwrap();
        let r = self
            .http
            .get(self.url(&format!("/api/v1/orders/{no}?wait={wait}")))
            .bearer_auth(order["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Long-poll until the order leaves `pending` (bounded).
    async fn wait_settled(&self, order: &Value) -> Value {
        for _ in 0..6 {
            let v = self.read_order(order, 10).await;
            if v["status"] != "pending" {
                return v;
            }
        }
        panic!("order {} still pending after 60 s", order["order_no"]);
    }

    async fn metric(&self, line_prefix: &str) -> u64 {
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
            .unwrap_or(0)
    }
}

/// The page a buyer opens for an order's payment: the redirect URL, the QR code's URL, or for a
/// WeChat `weixin://` code the simulator's scan page (what scanning it with the app shows).
fn payment_page(sim_base: &str, order: &Value) -> String {
    let p = &order["payment"];
    match p["action"].as_str() {
        Some("redirect") => p["url"].as_str().expect("redirect url").to_owned(),
        Some("qr") => {
            let code = p["qr_code"].as_str().expect("qr_code");
            match code.strip_prefix(WX_CODE_PREFIX) {
                Some(token) => {
                    assert!(
                        !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric()),
                        "odd WeChat code_url {code}"
                    );
                    format!("{sim_base}/sim/wechatpay/scan/{token}")
                }
                None => code.to_owned(),
            }
        }
        other => panic!("unknown payment action {other:?}: {order}"),
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `name="..."`-style attribute of one tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// Pay like a buyer's browser: open the payment page on the simulator, submit its first
/// `<form method="post">` (its hidden fields plus the simulator's `notify` control).
/// Returns (status, body) of the submission.
async fn pay_in_browser(
    http: &reqwest::Client,
    sim_base: &str,
    order: &Value,
    notify: &str,
) -> (u16, String) {
    let target = payment_page(sim_base, order);
    assert!(
        target.starts_with(sim_base),
        "the payment page {target} is not on the simulator {sim_base}"
    );
    let page = http.get(&target).send().await.unwrap();
    let page_url = page.url().clone();
    let status = page.status();
    let html = page.text().await.unwrap();
    assert_eq!(status, 200, "GET {page_url}: {html}");
    const FORM: &str = "<form method=\"post\" action=\"";
    let form = html
        .split_once(FORM)
        .map(|(_, rest)| rest.split("</form>").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("no form on {page_url}: {html}"));
    let action = unescape(form.split('"').next().unwrap());
    let url = page_url.join(&action).unwrap();
    let mut fields: Vec<(String, String)> = form
        .split("<input")
        .skip(1)
        .filter_map(|t| {
            let tag = t.split('>').next()?;
            if attr(tag, "type").as_deref() != Some("hidden") {
                return None;
            }
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect();
    fields.push(("notify".into(), notify.into()));
    let r = http.post(url).form(&fields).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Every protocol, configured only from what `kami sim --write-config` wrote: purchase (each
/// flavour) with the notification verified by the file-loaded keys, then a refund through the
/// channel's API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_from_written_config() {
    bounded(every_protocol()).await;
}

async fn every_protocol() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = start_sim(d, d.join("sim.toml").to_str().unwrap(), d.join("sim.log")).await;
    let sim_ready = started.elapsed();

    // What was written: four channels, key files in sim.toml.keys/, paths relative to the config file.
    for (id, kind) in [
        ("alipay-sim", "alipay"),
        ("wechat-sim", "wechatpay"),
        ("epay-sim", "epay"),
        ("sandbox-sim", "sandbox"),
    ] {
        assert_eq!(channel_value(&sim.toml, id, "kind"), kind);
    }
    for (id, key) in [
        ("alipay-sim", "app_private_key_file"),
        ("alipay-sim", "alipay_public_key_file"),
        ("wechat-sim", "merchant_private_key_file"),
        ("wechat-sim", "apiv3_key_file"),
        ("wechat-sim", "wechatpay_public_key_file"),
        ("epay-sim", "key_file"),
    ] {
        // Relative to the configuration file's directory, as kami resolves `*_file` keys.
        let written = PathBuf::from(channel_value(&sim.toml, id, key));
        assert!(
            written.is_relative(),
            "{id}.{key} should be relative to the config: {}",
            written.display()
        );
        let path = sim.keys_dir.parent().unwrap().join(&written);
        assert!(
            path.starts_with(&sim.keys_dir) && path.is_file(),
            "{id}.{key} = {} is not a file in {}",
            path.display(),
            sim.keys_dir.display()
        );
    }
    for pem in [
        "alipay_app_private_key.pem",
        "alipay_public_key.pem",
        "wechatpay_merchant_private_key.pem",
        "wechatpay_public_key.pem",
    ] {
        let text = std::fs::read_to_string(sim.keys_dir.join(pem)).unwrap();
        assert!(text.starts_with("-----BEGIN "), "{pem} is not PEM");
    }

    let config = write_config(d, "kami", &sim.toml);
    let shop = start_shop(&config, d, d.join("serve.log")).await;
    let shop_ready = started.elapsed();

    let keys = shop.product_with_keys("cfg", 1230, 20).await;
    // The catalogue offers every configured method.
    let products: Value = shop
        .http
        .get(shop.url("/api/v1/products"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = products["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["slug"] == "cfg")
        .expect("product listed")
        .clone();
    let methods: HashSet<&str> = product["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in ["alipay", "wxpay", "qqpay", "sandbox"] {
        assert!(methods.contains(m), "{m} not offered: {product}");
    }

    let mut seen = HashSet::new();
    let mut delivered = Vec::new();
    for (method, device, action, channel, starts) in FLAVOURS {
        let order = shop.order("cfg", method, device).await;
        let p = &order["payment"];
        assert_eq!(
            (p["action"].as_str(), p["channel"].as_str()),
            (Some(action), Some(channel)),
            "{method}/{device}: {order}"
        );
        let target = p[if action == "qr" { "qr_code" } else { "url" }]
            .as_str()
            .unwrap_or_default();
        assert!(
            target.starts_with(&starts.replace("SIM", &sim.base)),
            "{method}/{device}: {target} does not start with {starts} (SIM = {})",
            sim.base
        );
        let (s, body) = pay_in_browser(&shop.http, &sim.base, &order, "normal").await;
        assert_eq!(s, 200, "{method}/{device}: paying: {body}");
        let v = shop.wait_settled(&order).await;
        assert_eq!(v["status"], "delivered", "{method}/{device}: {v}");
        let cards = v["cards"].as_array().expect("cards");
        assert_eq!(cards.len(), 1, "{method}/{device}: {v}");
        let card = cards[0].as_str().unwrap().to_owned();
        assert!(
            keys.contains(&card),
            "{method}/{device}: foreign key {card}"
        );
        assert!(seen.insert(card.clone()), "key {card} delivered twice");
        delivered.push((method, device, order));
    }
    // Every delivery came from a verified notification (not from an active query).
    assert_eq!(
        shop.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        FLAVOURS.len() as u64
    );
    assert_eq!(
        shop.metric("kami_notifications_total{outcome=\"rejected\"}")
            .await,
        0
    );

    // A full refund through each channel's own API.
    for (method, device, order) in &delivered {
        let no = order["order_no"].as_str().unwrap();
        let (s, r) = shop
            .admin_post(&format!("/api/v1/admin/orders/{no}/refund"), json!({}))
            .await;
        assert_eq!(
            (s, r["order_status"].as_str(), r["amount"].as_i64()),
            (200, Some("refunded"), Some(1230)),
            "{method}/{device}: refund: {r}"
        );
        let o = shop.admin_get(&format!("/api/v1/admin/orders/{no}")).await;
        assert_eq!(o["status"], "refunded", "{method}/{device}: {o}");
    }
    let refunded = shop.admin_get("/api/v1/admin/orders?status=refunded").await;
    assert_eq!(
        refunded["orders"].as_array().unwrap().len(),
        FLAVOURS.len(),
        "{refunded}"
    );

    shop.proc.stop().await;
    sim.proc.stop().await;
    println!(
        "every protocol from the written config: sim ready {:.1}s, shop ready {:.1}s, done {:.1}s",
        sim_ready.as_secs_f64(),
        shop_ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Broken key files: `kami serve` exits non-zero at once, naming the channel and the key, and
/// without echoing the file's content. A valid key that is the wrong one starts, but the
/// notifications signed or encrypted with the real key are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_files() {
    bounded(bad_keys()).await;
}

async fn bad_keys() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = start_sim(d, d.join("sim.toml").to_str().unwrap(), d.join("sim.log")).await;
    let file = |name: &str, text: &str| -> String {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let missing = d.join("no-such-key.pem").display().to_string();
    let garbage_pub = file(
        "garbage_pub.pem",
        "-----BEGIN PUBLIC KEY-----\nNOTAKEYGARBAGEPUBLIC\n-----END PUBLIC KEY-----\n",
    );
    let garbage_priv = file(
        "garbage_priv.pem",
        "-----BEGIN PRIVATE KEY-----\nTOPSECRETGARBAGEPRIVATE\n-----END PRIVATE KEY-----\n",
    );
    let short_apiv3 = file("short_apiv3", "SHORTSECRETAPIV3KEY\n");
    let long_apiv3 = file("long_apiv3", &format!("{}X", "A".repeat(32)));
    // (case, channel, key, value, text that must not appear in the error)
    let cases: [(&str, &str, &str, &str, Option<&str>); 5] = [
        (
            "missing-private",
            "alipay-sim",
            "app_private_key_file",
            &missing,
            None,
        ),
        (
            "garbage-public",
            "alipay-sim",
            "alipay_public_key_file",
            &garbage_pub,
            None,
        ),
        (
            "garbage-private",
            "alipay-sim",
            "app_private_key_file",
            &garbage_priv,
            Some("TOPSECRETGARBAGEPRIVATE"),
        ),
        (
            "short-apiv3",
            "wechat-sim",
            "apiv3_key_file",
            &short_apiv3,
            Some("SHORTSECRETAPIV3KEY"),
        ),
        (
            "long-apiv3",
            "wechat-sim",
            "apiv3_key_file",
            &long_apiv3,
            Some("AAAAAAAAAAAAAAAA"),
        ),
    ];
    for (case, id, key, value, secret) in cases {
        let toml = with_channel_value(&sim.toml, id, key, value);
        let config = write_config(d, case, &toml);
        let t0 = Instant::now();
        let (status, stdout, stderr) = kami_output(
            &["serve", "--config", config.to_str().unwrap()],
            d,
            QUICK_EXIT,
        )
        .await;
        let took = t0.elapsed();
        assert!(
            !status.success(),
            "{case}: kami serve exited successfully\n{stdout}\n{stderr}"
        );
        assert!(
            !stdout.contains("listening on"),
            "{case}: the server started listening: {stdout}"
        );
        assert!(
            stderr.contains(id) && stderr.contains(key),
            "{case}: the error does not name {id} and {key}:\n{stderr}"
        );
        if let Some(secret) = secret {
            assert!(
                !stderr.contains(secret),
                "{case}: the error echoes the key file's content:\n{stderr}"
            );
        }
        println!(
            "{case}: exit {status} in {:.2}s: {}",
            took.as_secs_f64(),
            stderr.lines().last().unwrap_or("")
        );
    }

    // Valid keys that are the wrong ones: the Alipay "gateway public key" is WeChat Pay's, the
    // APIv3 key is another 32 characters. The server starts, and refuses what the real gateway
    // signs or encrypts.
    let wrong_pub = channel_value(&sim.toml, "wechat-sim", "wechatpay_public_key_file");
    let wrong_apiv3 = file("wrong_apiv3", &"Z".repeat(32));
    let toml = with_channel_value(
        &sim.toml,
        "alipay-sim",
        "alipay_public_key_file",
        &wrong_pub,
    );
    let toml = with_channel_value(&toml, "wechat-sim", "apiv3_key_file", &wrong_apiv3);
    let config = write_config(d, "wrong", &toml);
    let shop = start_shop(&config, d, d.join("wrong.log")).await;
    shop.product_with_keys("wrong", 500, 5).await;
    // Alipay wap.pay: the redirect is signed with the (right) app key; the notification is
    // signed with the gateway key that kami does not have.
    let ali = shop.order("wrong", "alipay", "mobile").await;
    let (s, body) = pay_in_browser(&shop.http, &sim.base, &ali, "normal").await;
    assert_eq!(s, 200, "alipay: paying: {body}");
    // WeChat Native: the API answers are signed with the right platform key; the notification
    // resource is encrypted with the APIv3 key that kami does not have.
    let wx = shop.order("wrong", "wxpay", "pc").await;
    let (s, body) = pay_in_browser(&shop.http, &sim.base, &wx, "normal").await;
    assert_eq!(s, 200, "wxpay: paying: {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rejected = shop
            .metric("kami_notifications_total{outcome=\"rejected\"}")
            .await;
        if rejected >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rejected} notification(s) rejected after 30 s; expected both\n{}",
            shop.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        shop.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        0,
        "a notification was accepted with the wrong key"
    );
    // Nor can the payment be confirmed by querying Alipay: its answers fail verification too.
    let v = shop.read_order(&ali, 2).await;
    assert_eq!(v["status"], "pending", "alipay with the wrong key: {v}");
    assert!(v.get("cards").is_none_or(Value::is_null), "{v}");
    let log = shop.proc.log_text();
    for id in ["alipay-sim", "wechat-sim"] {
        assert!(
            log.lines()
                .any(|l| l.contains("notification rejected") && l.contains(id)),
            "no rejected notification logged for {id}:\n{log}"
        );
    }

    shop.proc.stop().await;
    sim.proc.stop().await;
    println!("bad key files: {:.1}s", started.elapsed().as_secs_f64());
}

/// `kami sim --write-config conf/sim.toml`, then `kami serve --config conf/sim.toml` from the
/// same directory, as the simulator's own hint suggests ("use it as kami's --config"): the key
/// paths it wrote must resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_config_in_a_subdirectory() {
    bounded(subdirectory()).await;
}

async fn subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("conf")).unwrap();
    let sim = start_sim(d, "conf/sim.toml", d.join("sim.log")).await;
    let db = format!("sqlite://{}", d.join("sub.db").display());
    let (shop, base) = Proc::start(
        &["serve", "--config", "conf/sim.toml"],
        d,
        &[
            ("KAMI__SERVER__LISTEN", "127.0.0.1:0"),
            ("KAMI__DATABASE__URL", &db),
        ],
        "listening on ",
        d.join("serve.log"),
    )
    .await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    shop.stop().await;
    sim.proc.stop().await;
}
