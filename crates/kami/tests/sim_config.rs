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
use std::time::{Duration, Instant};

use kami_testkit::process::{self, Proc};
use kami_testkit::Shop;
use serde_json::{json, Value};

/// Bound of any single step (process start, one-shot command, HTTP exchange).
const STEP: Duration = Duration::from_secs(120);
/// A broken configuration must make `kami serve` exit within this.
const QUICK_EXIT: Duration = Duration::from_secs(30);

/// Each (method, device) flavour: the expected payment action, the channel serving it, and how
/// its QR code / redirect URL starts (`SIM` stands for the simulator's base URL).
const FLAVOURS: [(&str, &str, &str, &str, &str); 7] = [
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
    // Stripe Checkout: the hosted page; the webhook finds kami beside its return URL
    (
        "card",
        "pc",
        "redirect",
        "stripe-sim",
        "SIM/sim/stripe/c/pay/",
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

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kami"))
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
        bin(),
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
// The shop

/// `kami admin token create` then `kami serve --config CONFIG`; the shop pays through the
/// simulators at `sim_base`.
async fn start_shop(config: &Path, cwd: &Path, sim_base: &str, log: PathBuf) -> (Proc, Shop) {
    let token = process::admin_token(bin(), config, cwd).await;
    let (proc, base) = Proc::serve(bin(), config, cwd, &[], log).await;
    let mut shop = Shop::new(base, token).with_simulators(sim_base);
    shop.http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    (proc, shop)
}

/// A product with `n` fresh keys; returns the keys.
async fn product_with_keys(shop: &Shop, slug: &str, price: i64, n: usize) -> HashSet<String> {
    shop.create_product(slug, price, "auto").await;
    shop.import_keys(slug, n).await.into_iter().collect()
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

    // What was written: five channels, key files in sim.toml.keys/, paths relative to the config file.
    for (id, kind) in [
        ("alipay-sim", "alipay"),
        ("wechat-sim", "wechatpay"),
        ("epay-sim", "epay"),
        ("stripe-sim", "stripe"),
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
        ("stripe-sim", "secret_key_file"),
        ("stripe-sim", "webhook_secret_file"),
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
    let (shop_proc, shop) = start_shop(&config, d, &sim.base, d.join("serve.log")).await;
    let shop_ready = started.elapsed();

    let keys = product_with_keys(&shop, "cfg", 1230, 20).await;
    // The catalogue offers every configured method.
    let product = shop.product("cfg").await;
    let methods: HashSet<&str> = product["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in ["alipay", "wxpay", "qqpay", "card", "sandbox"] {
        assert!(methods.contains(m), "{m} not offered: {product}");
    }

    let mut seen = HashSet::new();
    let mut delivered = Vec::new();
    for (method, device, action, channel, starts) in FLAVOURS {
        let order = shop.order_via("cfg", method, device).await;
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
        let (s, body) = shop.pay_in_browser(&order, "normal").await;
        assert_eq!(s, 200, "{method}/{device}: paying: {body}");
        let v = shop.wait_settled_for(&order, 60).await;
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
        let o = shop.admin_order(no).await;
        assert_eq!(o["status"], "refunded", "{method}/{device}: {o}");
    }
    let refunded = shop.admin_get("/api/v1/admin/orders?status=refunded").await;
    assert_eq!(
        refunded["orders"].as_array().unwrap().len(),
        FLAVOURS.len(),
        "{refunded}"
    );

    shop_proc.stop().await;
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
        let process::Output {
            status,
            stdout,
            stderr,
        } = process::output(
            bin(),
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
    let (shop_proc, shop) = start_shop(&config, d, &sim.base, d.join("wrong.log")).await;
    product_with_keys(&shop, "wrong", 500, 5).await;
    // Alipay wap.pay: the redirect is signed with the (right) app key; the notification is
    // signed with the gateway key that kami does not have.
    let ali = shop.order_via("wrong", "alipay", "mobile").await;
    let (s, body) = shop.pay_in_browser(&ali, "normal").await;
    assert_eq!(s, 200, "alipay: paying: {body}");
    // WeChat Native: the API answers are signed with the right platform key; the notification
    // resource is encrypted with the APIv3 key that kami does not have.
    let wx = shop.order_via("wrong", "wxpay", "pc").await;
    let (s, body) = shop.pay_in_browser(&wx, "normal").await;
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
            shop_proc.log_text()
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
    let (s, v) = shop
        .read_order(
            ali["order_no"].as_str().unwrap(),
            ali["access_token"].as_str().unwrap(),
            2,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "pending", "alipay with the wrong key: {v}");
    assert!(v.get("cards").is_none_or(Value::is_null), "{v}");
    let log = shop_proc.log_text();
    for id in ["alipay-sim", "wechat-sim"] {
        assert!(
            log.lines()
                .any(|l| l.contains("notification rejected") && l.contains(id)),
            "no rejected notification logged for {id}:\n{log}"
        );
    }

    shop_proc.stop().await;
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
    // `Proc::serve` checks the listen line: the server started with the written key paths.
    let (shop, _base) = Proc::serve(
        bin(),
        Path::new("conf/sim.toml"),
        d,
        &[
            ("KAMI__SERVER__LISTEN", "127.0.0.1:0"),
            ("KAMI__DATABASE__URL", &db),
        ],
        d.join("serve.log"),
    )
    .await;
    shop.stop().await;
    sim.proc.stop().await;
}
