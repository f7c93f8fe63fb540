//! The small attacks of issue 9: cross-site order creation (9), `/metrics` (10), lookup
//! lock-out and limiter memory (7, 8), password-hash floods (6), JSON errors under `/api`
//! and failed admin tokens (11).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kami_testkit::process::{self, Proc};
use kami_testkit::{both_backends, Backend, TestApp, TestDb};
use serde_json::{json, Value};

const BEHIND_PROXY: &str = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

fn order_body(slug: &str) -> Value {
    json!({"product": slug, "quantity": 1, "email": "x@example.com", "method": "sandbox"})
}

/// Bodies another site's page can make a browser send (`text/plain`, forms) or that name no
/// type are refused with `415` before anything happens; every API error is JSON.
async fn json_api_refuses_other_content_types(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("xs", 100, "auto").await;
    app.import_keys("xs", 3).await;
    let json = order_body("xs").to_string();
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = app.http.post(app.url("/api/v1/orders")).body(json.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{ct:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_media_type", "{ct:?}: {v}");
    }
    assert!(app.admin_orders("pending").await.is_empty());
    // With the right type the same body is an order (`application/json; charset=utf-8` too).
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Every error under /api is JSON: unknown path, wrong method, oversized body.
    let r = app
        .http
        .get(app.url("/api/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
    let r = app
        .http
        .get(app.url("/api/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let big = format!("{{\"product\": \"{}\"}}", "a".repeat(3 << 20));
    let r = app
        .http
        .post(app.url("/api/v1/orders"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["error"]["code"].is_string());
}
both_backends!(json_api_refuses_other_content_types);

/// `/metrics` answers only with the metrics token or an admin token, and scrapes reuse the
/// database's counts instead of counting all orders per hit.
async fn metrics_need_a_token(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("metrics-{}", kami_testkit::hex_rand());
    let token_file = dir.path().join("metrics-token");
    std::fs::File::create(&token_file)
        .and_then(|mut f| writeln!(f, "{token}"))
        .unwrap();
    let extra = format!("[metrics]\ntoken_file = \"{}\"\n", token_file.display());
    let app = TestApp::spawn_with(backend, &extra).await;
    let get = |bearer: Option<String>| {
        let mut req = app.http.get(app.url("/metrics"));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let (s, body) = get(None).await;
    assert_eq!(s, 401, "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    assert_eq!(get(Some("wrong".into())).await.0, 401);
    assert_eq!(get(Some(format!("{token}x"))).await.0, 401);
    let (s, body) = get(Some(token.clone())).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("kami_orders_created_total"), "{body}");
    let (s, _) = get(Some(app.admin_token.clone())).await;
    assert_eq!(s, 200);

    let before = app.state.metrics.counts_reads();
    for _ in 0..20 {
        assert_eq!(get(Some(token.clone())).await.0, 200);
    }
    assert!(
        app.state.metrics.counts_reads() - before <= 1,
        "20 scrapes read the counts {} times",
        app.state.metrics.counts_reads() - before
    );
}
both_backends!(metrics_need_a_token);

async fn lookup(app: &TestApp, client: &str, q: &str, password: &str) -> (u16, String) {
    let r = app
        .http
        .post(app.url("/lookup"))
        .header("x-forwarded-for", client)
        .form(&[("q", q), ("password", password)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Ten wrong guesses from one address lock that address out, not the buyer; search text
/// longer than an email is refused before any limiter remembers it.
async fn lookup_guesses_do_not_lock_out_the_buyer(backend: Backend) {
    let app = TestApp::spawn_with(backend, BEHIND_PROXY).await;
    app.create_product("lk", 100, "auto").await;
    app.import_keys("lk", 2).await;
    let (s, order) = app
        .try_order(
            json!({"product": "lk", "quantity": 1, "email": "buyer@example.com",
                          "method": "sandbox", "query_password": "right-pass"}),
        )
        .await;
    assert_eq!(s, 201, "{order}");
    let no = order["order_no"].as_str().unwrap().to_owned();

    let attacker = "203.0.113.66";
    for i in 0..10 {
        let (s, page) = lookup(&app, attacker, &no, &format!("guess-{i}")).await;
        assert_eq!(s, 200, "guess {i}");
        assert!(
            !page.contains("data-testid=\"order-"),
            "a wrong guess found the order"
        );
    }
    let (s, _) = lookup(&app, attacker, &no, "right-pass").await;
    assert_eq!(s, 429, "the guessing address is limited");
    let (s, page) = lookup(&app, "198.51.100.7", &no, "right-pass").await;
    assert_eq!(s, 200);
    assert!(page.contains(&no), "the buyer finds the order: {page}");

    // Too long: a precise refusal, and no limiter key for it.
    let keys = app.state.limits.lookup_keys();
    let (s, page) = lookup(&app, "198.51.100.8", &"a".repeat(255), "x").await;
    assert_eq!(s, 400);
    assert!(page.contains("254"), "{page}");
    let huge = "b".repeat(2 * 1024 * 1024 - 64);
    let t = Instant::now();
    let (s, _) = lookup(&app, "198.51.100.8", &huge, "x").await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(s == 400 || s == 413, "{s}");
    // Only the client's own per-address key may have been added.
    assert!(app.state.limits.lookup_keys() <= keys + 1);

    // Many distinct targets from many addresses: a bounded number of fixed-size keys.
    let before = app.state.limits.lookup_keys();
    for i in 0..30u32 {
        let q = format!("{}{i}@example.com", "c".repeat(230));
        lookup(&app, &format!("198.18.0.{}", i + 1), &q, "pw").await;
    }
    assert!(app.state.limits.lookup_keys().saturating_sub(before) <= 3 * 30);
}
both_backends!(lookup_guesses_do_not_lock_out_the_buyer);

/// A flood of orders with query passwords (an argon2 hash each) from one address is held to
/// its share of the hashing; an order from another address is still served promptly.
async fn password_hash_flood_leaves_room_for_others(backend: Backend) {
    let extra = format!(
        "{BEHIND_PROXY}[risk]\nmax_pending_orders_per_ip = 1000\nmax_pending_orders_per_email = 1000\n\
         orders_per_minute_per_ip = 1000\npassword_checks_per_minute_per_ip = 1000\n\
         password_hashes_at_once_per_ip = 2\n"
    );
    let app = Arc::new(TestApp::spawn_with(backend, &extra).await);
    app.create_product("hash", 100, "auto").await;
    app.import_keys("hash", 100).await;
    let order = |client: &'static str, pw: String| {
        let app = app.clone();
        async move {
            let t = Instant::now();
            let r = app
                .http
                .post(app.url("/api/v1/orders"))
                .header("x-forwarded-for", client)
                .json(
                    &json!({"product": "hash", "quantity": 1, "email": "h@example.com",
                              "method": "sandbox", "query_password": pw}),
                )
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (s, v, t.elapsed())
        }
    };
    // Baseline: one order with a password, alone.
    let (s, _, alone) = order("198.51.100.1", "baseline-pw".into()).await;
    assert_eq!(s, 201);

    let flood = tokio::spawn(join_all(
        (0..32).map(|i| order("203.0.113.99", format!("flood-pw-{i}"))),
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (s, v, during) = order("198.51.100.7", "buyer-pw".into()).await;
    let flood = flood.await.unwrap();
    assert_eq!(s, 201, "{v}");
    let refused = flood
        .iter()
        .filter(|(s, v, _)| *s == 429 && v["error"]["code"] == "rate_limited")
        .count();
    assert!(
        refused >= 20,
        "the flooding address was limited: {refused} of 32 refused"
    );
    assert!(
        during < alone * 4 + Duration::from_millis(500),
        "the other buyer waited {during:?} (alone: {alone:?})"
    );

    // The per-minute share: a fresh address with 3 checks a minute gets its 4th refused.
    let app2 = TestApp::spawn_with(
        backend,
        &format!("{BEHIND_PROXY}[risk]\nmax_pending_orders_per_ip = 1000\npassword_checks_per_minute_per_ip = 3\n"),
    )
    .await;
    app2.create_product("hash", 100, "auto").await;
    app2.import_keys("hash", 10).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = app2
            .http
            .post(app2.url("/api/v1/orders"))
            .header("x-forwarded-for", "203.0.113.5")
            .json(
                &json!({"product": "hash", "email": format!("p{i}@example.com"),
                          "method": "sandbox", "query_password": "pw-pw-pw"}),
            )
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
}
both_backends!(password_hash_flood_leaves_room_for_others);

/// Wrong admin tokens are logged (address and path, never the token) and, after ten a
/// minute, refused with `429` whatever is presented; other addresses are not affected. The
/// real `kami serve`, to read its log.
async fn failed_admin_tokens_are_limited_and_logged(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = TestDb::create(backend).await;
    let config = d.join("kami.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
             [database]\nurl = \"{}\"\n",
            db.url()
        ),
    )
    .unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_kami"));
    process::run(bin, &["migrate", "--config", config.to_str().unwrap()], d).await;
    let token = process::admin_token(bin, &config, d).await;
    let (proc, base) = Proc::serve(bin, &config, d, &[], d.join("serve.log")).await;
    let http = reqwest::Client::new();
    let guess = |client: &'static str, token: String| {
        let req = http
            .get(format!("{base}/api/v1/admin/orders"))
            .header("x-forwarded-for", client)
            .bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let attacker = "203.0.113.201";
    let secret_guess = format!("guess-{}", kami_testkit::hex_rand());
    for _ in 0..10 {
        let r = guess(attacker, secret_guess.clone()).await;
        assert_eq!(r.status(), 401);
    }
    let r = guess(attacker, token.clone()).await;
    assert_eq!(r.status(), 429, "locked out even with the right token");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    // /metrics counts against the same budget.
    let r = http
        .get(format!("{base}/metrics"))
        .header("x-forwarded-for", attacker)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = guess("198.51.100.7", token.clone()).await;
    assert_eq!(r.status(), 200, "another address is not affected");

    let text = proc.log_text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("admin authentication failed") && l.contains(attacker))
        .collect();
    assert!(lines.len() >= 10, "failed attempts logged: {text}");
    assert!(
        lines.iter().all(|l| l.contains("/api/v1/admin/orders")),
        "{lines:?}"
    );
    assert!(
        !text.contains(&secret_guess),
        "the presented token was logged"
    );
    proc.stop().await;
}
both_backends!(failed_admin_tokens_are_limited_and_logged);
