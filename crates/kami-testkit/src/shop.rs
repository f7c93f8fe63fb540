//! A kami shop reached over HTTP, driven like its seller (catalogue, keys, admin orders,
//! refunds, metrics) and its buyers (orders, long-polls). The gateway's side is in `gateway.rs`.
//! It serves an in-process [`crate::TestApp`] and a separate `kami serve` alike.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::hex_rand;

/// A kami shop at `base`, with an admin API token.
pub struct Shop {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    /// Where the gateway simulators' pages live: the shop itself (in-process simulators), or
    /// a separate `kami sim` ([`Shop::with_simulators`]).
    pub sim_base: String,
}

impl Shop {
    pub fn new(base: impl Into<String>, admin_token: impl Into<String>) -> Shop {
        let base = base.into();
        Shop {
            sim_base: base.clone(),
            base,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            admin_token: admin_token.into(),
        }
    }

    /// The gateway simulators run elsewhere (`kami sim`), at `sim_base`.
    pub fn with_simulators(mut self, sim_base: impl Into<String>) -> Shop {
        self.sim_base = sim_base.into();
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    // -- the seller ------------------------------------------------------------------------

    /// An admin GET that must answer 200 with JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    /// An admin POST of JSON; (status, body), a body that is not JSON as `{"raw": text}`.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin_send(reqwest::Method::POST, path, Some(body))
            .await
    }

    /// An admin PATCH of JSON; (status, body) as [`Shop::admin_post`].
    pub async fn admin_patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin_send(reqwest::Method::PATCH, path, Some(body))
            .await
    }

    /// An admin DELETE; (status, body) as [`Shop::admin_post`].
    pub async fn admin_delete(&self, path: &str) -> (u16, Value) {
        self.admin_send(reqwest::Method::DELETE, path, None).await
    }

    async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.admin_token);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        (status, v)
    }

    pub async fn create_product(&self, slug: &str, price: i64, delivery: &str) {
        let (status, v) = self
            .admin_post(
                "/api/v1/admin/products",
                json!({"slug": slug, "title": format!("Product {slug}"), "price": price,
                       "currency": "CNY", "delivery": delivery}),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }

    /// A product on sale with `keys` fresh keys, delivered automatically.
    pub async fn stocked_product(&self, slug: &str, price: i64, keys: usize) {
        self.create_product(slug, price, "auto").await;
        self.import_keys(slug, keys).await;
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

    /// POST an admin refund; (status, body).
    pub async fn refund(&self, order_no: &str, body: Value) -> (u16, Value) {
        self.admin_post(&format!("/api/v1/admin/orders/{order_no}/refund"), body)
            .await
    }

    pub async fn admin_order(&self, order_no: &str) -> Value {
        self.admin_get(&format!("/api/v1/admin/orders/{order_no}"))
            .await
    }

    /// All orders with a status (`""`: any), through the paged admin list.
    pub async fn admin_orders(&self, status: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut before = String::new();
        for _ in 0..10_000 {
            let r = self
                .admin_get(&format!(
                    "/api/v1/admin/orders?status={status}&limit=100&before={before}"
                ))
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
        panic!("the admin order list does not end");
    }

    /// The value of the first `/metrics` line starting with `line_prefix` (0 when absent),
    /// read with the admin token. The database's gauges may be a few seconds old.
    pub async fn metric(&self, line_prefix: &str) -> u64 {
        self.metrics_text()
            .await
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `/metrics` as text, read with the admin token.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    // -- the buyer -------------------------------------------------------------------------

    /// GET a JSON document, whatever the status.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.json().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A product as the public catalogue lists it.
    pub async fn product(&self, slug: &str) -> Value {
        let r = self.get_json("/api/v1/products").await;
        r["products"]
            .as_array()
            .expect("products array")
            .iter()
            .find(|p| p["slug"] == slug)
            .unwrap_or_else(|| panic!("{slug} not in the catalogue: {r}"))
            .clone()
    }

    pub async fn stock(&self, slug: &str) -> Value {
        self.product(slug).await["stock"].clone()
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

    /// A created order paid with the `sandbox` method.
    pub async fn order(&self, slug: &str, quantity: u32) -> Value {
        let (status, body) = self
            .try_order(json!({"product": slug, "quantity": quantity,
                              "email": "buyer@example.com", "method": "sandbox"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// One key, paid with `method` from a `device` ("pc" | "mobile"); the order is pending.
    pub async fn order_via(&self, slug: &str, method: &str, device: &str) -> Value {
        let (status, v) = self
            .try_order(
                json!({"product": slug, "quantity": 1, "email": "buyer@example.com",
                              "method": method, "device": device}),
            )
            .await;
        assert_eq!(status, 201, "{method}/{device}: {v}");
        assert_eq!(v["status"], "pending", "{v}");
        v
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
        panic!("order {no} still pending after {secs} s");
    }
}

/// The keys an order shows (`cards`), which it must have.
pub fn cards(order: &Value) -> Vec<String> {
    order["cards"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys in {order}"))
        .iter()
        .map(|c| c.as_str().expect("a key is a string").to_owned())
        .collect()
}

/// Keys of delivered orders must never repeat; returns every key seen.
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
