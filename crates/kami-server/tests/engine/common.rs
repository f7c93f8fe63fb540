//! Test harness: a real kami server on 127.0.0.1:0 with a fresh database, on SQLite or
//! PostgreSQL, plus helpers that drive it over HTTP like a buyer, a seller and a gateway.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kami_server::{AppState, Application, BuildOptions, Config};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generate `sqlite` and `postgres` variants of an async test body `fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    };
}

pub const SANDBOX_SECRET: &str = "test-only-sandbox-secret";

pub fn pg_admin_url() -> String {
    std::env::var("KAMI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that disappears with the test.
pub enum TestDb {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { name: String },
}

impl TestDb {
    /// `None` (with a message) when PostgreSQL is not reachable and not required.
    pub async fn new(backend: Backend) -> Option<(TestDb, String)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/kami.db", dir.path().display());
                Some((TestDb::Sqlite(dir), url))
            }
            Backend::Postgres => {
                let name = format!("kami_t_{}", hex_rand());
                let admin = pg_admin_url();
                let n = name.clone();
                let created = tokio::task::spawn_blocking(move || {
                    let mut c = postgres::Client::connect(&admin, postgres::NoTls)?;
                    c.batch_execute(&format!("CREATE DATABASE {n}"))
                })
                .await
                .unwrap();
                if let Err(e) = created {
                    if std::env::var("KAMI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                        panic!("PostgreSQL is required (KAMI_REQUIRE_POSTGRES=1) but unreachable at {}: {e}", pg_admin_url());
                    }
                    eprintln!(
                        "SKIPPED: PostgreSQL not reachable at {} ({e}); set KAMI_TEST_PG_URL",
                        pg_admin_url()
                    );
                    return None;
                }
                let url = replace_db(&pg_admin_url(), &name);
                Some((TestDb::Postgres { name }, url))
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name } = self {
            let name = name.clone();
            // Best effort; a leftover test database is harmless.
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = postgres::Client::connect(&pg_admin_url(), postgres::NoTls) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            })
            .join();
        }
    }
}

/// Swap the database name in a postgres URL.
pub fn replace_db(url: &str, db: &str) -> String {
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

pub fn hex_rand() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The sandbox's pay page on the server itself, and with `gateways` every gateway simulator
/// with one channel of each kind wired to it (fast notification retries).
pub fn sim_options(gateways: bool) -> BuildOptions {
    BuildOptions {
        demo: false,
        extension: Some(Box::new(move |cx: &kami_server::ExtensionContext<'_>| {
            let mut extra = kami_server::Extra::default();
            if gateways {
                let gw = kami_sim::gateways::Gateways::generate(
                    cx.public_url,
                    kami_sim::gateways::GatewayOptions { fast_retries: true },
                )
                .map_err(|e| e.to_string())?;
                let http = cx.http.clone();
                extra.channels = vec![
                    Arc::new(kami_pay::alipay::AlipayChannel::new(
                        gw.alipay_config("alipay-sim").map_err(|e| e.to_string())?,
                        http.clone(),
                    )),
                    Arc::new(kami_pay::wechatpay::WechatPayChannel::new(
                        gw.wechatpay_config("wechat-sim")
                            .map_err(|e| e.to_string())?,
                        http.clone(),
                    )),
                    Arc::new(kami_pay::epay::EpayChannel::new(
                        gw.epay_config("epay-sim").map_err(|e| e.to_string())?,
                        http,
                    )),
                ];
                extra.routes = gw.router.clone();
                extra.qr_link = Some(Box::new(kami_sim::gateways::payer_page));
            }
            for local in cx.local_sandboxes {
                let sim =
                    kami_sim::sandbox::SandboxSim::new(local.secret.clone(), Default::default());
                extra.routes = extra.routes.merge(sim.router());
            }
            Ok(extra)
        })),
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub state: Arc<AppState>,
    #[allow(dead_code)]
    pub backend: Backend,
    /// The database URL, to open a second store as another process would.
    pub db_url: String,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        TestApp::spawn_with(backend, "").await
    }

    /// `extra` is appended to the generated TOML configuration.
    pub async fn spawn_with(backend: Backend, extra: &str) -> Option<TestApp> {
        TestApp::spawn_opts(backend, extra, sim_options(false)).await
    }

    /// With every gateway simulator mounted and one channel of each kind wired to it
    /// (`alipay` → Alipay, `wxpay` → WeChat Pay, `qqpay` → Epay, `sandbox`), fast retries.
    pub async fn spawn_gateways(backend: Backend, extra: &str) -> Option<TestApp> {
        TestApp::spawn_opts(backend, extra, sim_options(true)).await
    }

    pub async fn spawn_opts(backend: Backend, extra: &str, opts: BuildOptions) -> Option<TestApp> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ))
            .with_test_writer()
            .try_init();
        let (db, url) = TestDb::new(backend).await?;
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{url}\"\nmax_connections = 16\n\
             [[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\nsecret = \"{SANDBOX_SECRET}\"\nallow_sandbox = true\n{extra}"
        );
        let config: Config = Config::from_toml_str(&toml).expect("test config").config;
        let db_url = url.clone();
        let app = Application::build_with(config, opts)
            .await
            .expect("app builds");
        let state = app.state();
        let base = state.public_url.clone();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(app.run(rx));
        let token = kami_core::SecretToken::generate();
        state
            .store
            .create_admin_token("test", &token.hash(), 0)
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Some(TestApp {
            base,
            http,
            admin_token: token.expose().to_owned(),
            state,
            backend,
            db_url,
            _shutdown: tx,
            _db: db,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create_product(&self, slug: &str, price: i64, delivery: &str) {
        let r = self
            .http
            .post(self.url("/api/v1/admin/products"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"slug": slug, "title": format!("Product {slug}"), "price": price, "currency": "CNY", "delivery": delivery}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// Import `n` fresh keys; returns them.
    pub async fn import_keys(&self, slug: &str, n: usize) -> Vec<String> {
        let keys: Vec<String> = (0..n)
            .map(|i| format!("KEY-{slug}-{i:05}-{}", hex_rand()))
            .collect();
        let r = self.import_text(slug, &keys.join("\n"), false).await;
        assert_eq!(r["imported"], n as u64, "{r}");
        keys
    }

    pub async fn import_text(&self, slug: &str, text: &str, is_loop: bool) -> Value {
        let r = self
            .http
            .post(self.url(&format!(
                "/api/v1/admin/products/{slug}/cards?loop={is_loop}"
            )))
            .bearer_auth(&self.admin_token)
            .header("content-type", "text/plain")
            .body(text.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// POST /api/v1/orders; returns (status, body).
    pub async fn try_order(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/api/v1/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn order(&self, slug: &str, quantity: u32) -> Value {
        let (status, body) = self
            .try_order(json!({"product": slug, "quantity": quantity, "email": "buyer@example.com", "method": "sandbox"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Press "Pay" in the simulator for a created order.
    pub async fn pay(&self, order: &Value) {
        let (status, body) = self.pay_with(order, "normal").await;
        assert_eq!(status, 200, "{body}");
    }

    /// Press "Pay" with a simulator control (`normal`, `drop`, `duplicate`); (status, body).
    pub async fn pay_with(&self, order: &Value, notify: &str) -> (u16, String) {
        let url = order["payment"]["url"].as_str().unwrap();
        let r = self
            .http
            .post(url)
            .header("accept", "application/json")
            .form(&[("notify", notify)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Pay like a buyer's browser: open the payment page (a QR code's page for QR actions),
    /// then submit its first form with the simulator's `notify` control. (status, body)
    pub async fn pay_in_browser(&self, order: &Value, notify: &str) -> (u16, String) {
        self.pay_in_browser_with(order, &[("notify", notify)]).await
    }

    /// As `pay_in_browser`, with any simulator controls (e.g. `amount` to pay a different sum).
    pub async fn pay_in_browser_with(
        &self,
        order: &Value,
        fields: &[(&str, &str)],
    ) -> (u16, String) {
        let notify = fields
            .iter()
            .find(|(k, _)| *k == "notify")
            .map_or("normal", |(_, v)| *v);
        let p = &order["payment"];
        if p["channel"] == "sandbox" {
            return self.pay_with(order, notify).await;
        }
        let target = p["url"]
            .as_str()
            .or(p["qr_code"].as_str())
            .unwrap()
            .to_owned();
        let target = if target.starts_with(kami_sim::wechatpay::CODE_URL_PREFIX) {
            kami_sim::wechatpay::scan_page_url(&self.base, &target).unwrap()
        } else {
            target
        };
        let page = self.http.get(&target).send().await.unwrap();
        let page_url = page.url().clone();
        let html = page.text().await.unwrap();
        let action = html
            .split("<form method=\"post\" action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form on {page_url}: {html}"))
            .replace("&amp;", "&");
        let url = page_url.join(&action).unwrap();
        let r = self.http.post(url).form(fields).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POST an admin refund; (status, body).
    pub async fn refund(&self, order_no: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/admin/orders/{order_no}/refund")))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    pub async fn read_order(&self, order_no: &str, token: &str, wait: u64) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/orders/{order_no}?wait={wait}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    /// Long-poll until the order leaves `pending` (or 20 s).
    pub async fn wait_settled(&self, order: &Value) -> Value {
        self.wait_settled_for(order, 20).await
    }

    /// Long-poll until the order leaves `pending` (or `secs`).
    pub async fn wait_settled_for(&self, order: &Value, secs: u32) -> Value {
        let no = order["order_no"].as_str().unwrap();
        let token = order["access_token"].as_str().unwrap();
        for _ in 0..secs {
            let (s, v) = self.read_order(no, token, 1).await;
            assert_eq!(s, 200, "{v}");
            if v["status"] != "pending" {
                return v;
            }
        }
        panic!("order {no} still pending");
    }

    pub async fn admin_order(&self, order_no: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/admin/orders/{order_no}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// All orders with a status, through the paged admin list.
    pub async fn admin_orders(&self, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut before = String::new();
        loop {
            let r: Value = self
                .http
                .get(self.url(&format!(
                    "/api/v1/admin/orders?status={status}&limit=100&before={before}"
                )))
                .bearer_auth(&self.admin_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.extend(r["orders"].as_array().unwrap().iter().cloned());
            match r["next_before"].as_str() {
                Some(n) => before = n.to_owned(),
                None => return out,
            }
        }
    }

    pub async fn stock(&self, slug: &str) -> Value {
        let r: Value = self
            .http
            .get(self.url("/api/v1/products"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["slug"] == slug)
            .unwrap()["stock"]
            .clone()
    }

    /// A notification signed with the sandbox secret, as the gateway would send it.
    pub fn notification(
        &self,
        trade_no: &str,
        amount: &str,
        currency: &str,
        gateway_trade_no: &str,
    ) -> Vec<(String, String)> {
        notification_params(
            trade_no,
            amount,
            currency,
            gateway_trade_no,
            SANDBOX_SECRET.as_bytes(),
        )
    }

    /// POST a form notification; returns (status, body).
    pub async fn send_notification(&self, params: &[(String, String)]) -> (u16, String) {
        let r = self
            .http
            .post(self.url("/pay/notify/sandbox"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(params).unwrap())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn metric(&self, line_prefix: &str) -> u64 {
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

pub fn notification_params(
    trade_no: &str,
    amount: &str,
    currency: &str,
    gateway_trade_no: &str,
    secret: &[u8],
) -> Vec<(String, String)> {
    let params = vec![
        ("trade_no".to_owned(), trade_no.to_owned()),
        ("gateway_trade_no".to_owned(), gateway_trade_no.to_owned()),
        ("amount".to_owned(), amount.to_owned()),
        ("currency".to_owned(), currency.to_owned()),
        ("status".to_owned(), "paid".to_owned()),
        ("paid_at".to_owned(), "1795000000000".to_owned()),
        ("notify_id".to_owned(), hex_rand()),
    ];
    kami_pay::sandbox::signed(secret, params)
}

/// Cards of delivered orders must never repeat.
pub fn assert_no_key_twice(orders: &[Value]) -> HashSet<String> {
    let mut seen = HashSet::new();
    for o in orders {
        for c in o["cards"].as_array().map(Vec::as_slice).unwrap_or_default() {
            assert!(
                seen.insert(c.as_str().unwrap().to_owned()),
                "key {c} delivered twice"
            );
        }
    }
    seen
}
