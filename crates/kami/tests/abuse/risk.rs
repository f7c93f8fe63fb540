//! Stock hoarding and order floods (issue 9, attack 1): pending-order caps per client IP
//! (IPv6 per /64) and per email, one order rate for the JSON API and the form, block lists,
//! and client IPs read through trusted proxies only.

use futures::future::join_all;
use kami_testkit::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

/// The in-process test server connects from 127.0.0.1: it is the trusted proxy here, and
/// `X-Forwarded-For` names the client.
const BEHIND_PROXY: &str = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

fn risk(pending_ip: u32, pending_email: u32, per_minute: u32) -> String {
    format!(
        "[risk]\nmax_pending_orders_per_ip = {pending_ip}\n\
         max_pending_orders_per_email = {pending_email}\norders_per_minute_per_ip = {per_minute}\n"
    )
}

fn body(slug: &str, email: &str) -> Value {
    json!({"product": slug, "quantity": 1, "email": email, "method": "sandbox"})
}

/// `POST /api/v1/orders` from `client` (via `X-Forwarded-For`, when given):
/// (status, Retry-After, JSON body).
async fn api_order(app: &TestApp, client: Option<&str>, b: &Value) -> (u16, Option<u64>, Value) {
    let mut req = app.http.post(app.url("/api/v1/orders")).json(b);
    if let Some(ip) = client {
        req = req.header("x-forwarded-for", ip);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = retry_after(&r);
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, retry, v)
}

fn retry_after(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The product page's form from `client`: (status, Retry-After, page).
async fn form_order(
    app: &TestApp,
    client: &str,
    slug: &str,
    email: &str,
) -> (u16, Option<u64>, String) {
    // The form answers an order with `303 See Other`: see it, do not follow it.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(app.url(&format!("/p/{slug}")))
        .header("x-forwarded-for", client)
        .form(&[
            ("quantity", "1"),
            ("email", email),
            ("method", "sandbox"),
            ("query_password", ""),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = retry_after(&r);
    (status, retry, r.text().await.unwrap())
}

async fn pending(app: &TestApp) -> usize {
    app.admin_orders("pending").await.len()
}

/// One client hammering the API in parallel gets exactly its cap of pending orders, the
/// rest `429 too_many_pending_orders` with a Retry-After until the oldest one expires; the
/// form is held to the same cap; and a buyer elsewhere still buys the last key.
async fn one_client_cannot_hoard_the_stock(backend: Backend) {
    let extra = format!(
        "{BEHIND_PROXY}{}[orders]\nexpire_minutes = 15\n",
        risk(3, 1000, 1000)
    );
    let app = TestApp::spawn_with(backend, &extra).await;
    app.create_product("hoard", 100, "auto").await;
    app.import_keys("hoard", 7).await;

    let hoarder = "203.0.113.9";
    let answers = join_all((0..50).map(|i| {
        let app = &app;
        async move {
            api_order(
                app,
                Some(hoarder),
                &body("hoard", &format!("h{i}@example.com")),
            )
            .await
        }
    }))
    .await;
    let created = answers.iter().filter(|(s, _, _)| *s == 201).count();
    assert_eq!(created, 3, "{answers:?}");
    for (status, retry, v) in answers.iter().filter(|(s, _, _)| *s != 201) {
        assert_eq!(*status, 429, "{v}");
        assert_eq!(v["error"]["code"], "too_many_pending_orders", "{v}");
        let retry = retry.expect("Retry-After on a 429");
        assert!(
            (800..=900).contains(&retry),
            "Retry-After {retry}: the oldest expires in ~900 s"
        );
    }
    assert_eq!(pending(&app).await, 3);

    // The same cap through the product page's form, from another hoarder.
    let form_hoarder = "203.0.113.10";
    let mut page_created = 0;
    for i in 0..5 {
        let (status, retry, page) =
            form_order(&app, form_hoarder, "hoard", &format!("f{i}@example.com")).await;
        match status {
            303 => page_created += 1,
            429 => {
                assert!(retry.is_some_and(|s| s >= 800), "Retry-After {retry:?}");
                assert!(page.contains("未支付订单过多"), "a clear page: {page}");
            }
            other => panic!("form answered {other}: {page}"),
        }
    }
    assert_eq!(page_created, 3);
    assert_eq!(pending(&app).await, 6);

    // One key is left: a buyer behind the proxy buys it.
    let (status, _, order) = api_order(
        &app,
        Some("198.51.100.7"),
        &body("hoard", "buyer@example.com"),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    app.pay(&order).await;
    let settled = app.wait_settled(&order).await;
    assert_eq!(settled["status"], "delivered", "{settled}");
    assert_eq!(app.stock("hoard").await, 0);
}
both_backends!(one_client_cannot_hoard_the_stock);

/// The API and the form draw on one per-minute budget per client.
async fn api_and_form_share_the_order_rate(backend: Backend) {
    let extra = format!("{BEHIND_PROXY}{}", risk(1000, 1000, 4));
    let app = TestApp::spawn_with(backend, &extra).await;
    app.create_product("rate", 100, "auto").await;
    app.import_keys("rate", 20).await;
    let client = "203.0.113.20";
    for i in 0..2 {
        let (s, _, v) = api_order(
            &app,
            Some(client),
            &body("rate", &format!("a{i}@example.com")),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, _, page) = form_order(&app, client, "rate", &format!("b{i}@example.com")).await;
        assert_eq!(s, 303, "{page}");
    }
    let (s, retry, v) = api_order(&app, Some(client), &body("rate", "c@example.com")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
    let (s, retry, page) = form_order(&app, client, "rate", "d@example.com").await;
    assert_eq!(s, 429, "{page}");
    assert!(retry.is_some());
    assert!(
        page.contains("Too many orders") || page.contains("下单过多"),
        "{page}"
    );
    assert_eq!(pending(&app).await, 4);
    // Another client is not affected.
    let (s, _, v) = api_order(&app, Some("198.51.100.7"), &body("rate", "e@example.com")).await;
    assert_eq!(s, 201, "{v}");
}
both_backends!(api_and_form_share_the_order_rate);

/// Without trusted proxies `X-Forwarded-For` is ignored: forging a new address per request
/// does not escape the cap of the real peer (127.0.0.1). Nor when the peer is not one of
/// the trusted proxies.
async fn forged_forwarded_for_is_ignored(backend: Backend) {
    for server in ["", "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n"] {
        let app = TestApp::spawn_with(backend, &format!("{server}{}", risk(2, 1000, 1000))).await;
        app.create_product("forge", 100, "auto").await;
        app.import_keys("forge", 10).await;
        let mut statuses = Vec::new();
        for i in 0..5 {
            let forged = format!("198.51.100.{}", 10 + i);
            let (s, _, _) = api_order(
                &app,
                Some(&forged),
                &body("forge", &format!("x{i}@example.com")),
            )
            .await;
            statuses.push(s);
        }
        assert_eq!(statuses, [201, 201, 429, 429, 429], "trusted: {server:?}");
        assert_eq!(pending(&app).await, 2);
    }
}
both_backends!(forged_forwarded_for_is_ignored);

/// IPv6 clients are capped per /64: two addresses of one /64 share the cap; the next /64 does
/// not. A trusted hop in the chain is skipped; a forged entry left of the client is not read.
async fn ipv6_clients_share_their_64(backend: Backend) {
    let extra = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\", \"192.0.2.0/24\"]\n{}",
        risk(2, 1000, 1000)
    );
    let app = TestApp::spawn_with(backend, &extra).await;
    app.create_product("six", 100, "auto").await;
    app.import_keys("six", 10).await;
    let b = |i: u32| body("six", &format!("v{i}@example.com"));
    let (s1, _, _) = api_order(&app, Some("2001:db8:1:2::a"), &b(1)).await;
    // Through a second trusted hop, with a forged address in front.
    let (s2, _, _) = api_order(
        &app,
        Some("203.0.113.1, 2001:db8:1:2:ffff::b, 192.0.2.5"),
        &b(2),
    )
    .await;
    let (s3, _, v3) = api_order(&app, Some("2001:db8:1:2:1234::c"), &b(3)).await;
    let (s4, _, v4) = api_order(&app, Some("2001:db8:1:3::1"), &b(4)).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(s3, 429, "{v3}");
    assert_eq!(s4, 201, "{v4}");
}
both_backends!(ipv6_clients_share_their_64);

/// One email may hold only so many unpaid orders, from any address and in any case.
async fn one_email_is_capped(backend: Backend) {
    let extra = format!("{BEHIND_PROXY}{}", risk(1000, 2, 1000));
    let app = TestApp::spawn_with(backend, &extra).await;
    app.create_product("mail", 100, "auto").await;
    app.import_keys("mail", 10).await;
    let (s1, _, _) = api_order(
        &app,
        Some("198.51.100.1"),
        &body("mail", "Victim@Example.com"),
    )
    .await;
    let (s2, _, _) = api_order(
        &app,
        Some("198.51.100.2"),
        &body("mail", "victim@example.com"),
    )
    .await;
    let (s3, retry, v3) = api_order(
        &app,
        Some("198.51.100.3"),
        &body("mail", "VICTIM@example.COM"),
    )
    .await;
    assert_eq!((s1, s2, s3), (201, 201, 429), "{v3}");
    assert_eq!(v3["error"]["code"], "too_many_pending_orders");
    assert!(
        v3["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("email")),
        "{v3}"
    );
    assert!(retry.is_some());
    let (s4, _, _) = api_order(
        &app,
        Some("198.51.100.3"),
        &body("mail", "other@example.com"),
    )
    .await;
    assert_eq!(s4, 201);
}
both_backends!(one_email_is_capped);

/// Blocked addresses and emails get `403 blocked`: JSON under /api, a page on the shop; no
/// order is created.
async fn blocked_clients_and_emails(backend: Backend) {
    let extra = format!(
        "{BEHIND_PROXY}[risk]\nblocked_ips = [\"203.0.113.0/24\", \"2001:db8:dead::/48\"]\n\
         blocked_emails = [\"*@Spam.example\", \"bad@example.com\"]\n\
         max_pending_orders_per_ip = 1000\nmax_pending_orders_per_email = 1000\n\
         orders_per_minute_per_ip = 1000\n"
    );
    let app = TestApp::spawn_with(backend, &extra).await;
    app.create_product("blk", 100, "auto").await;
    app.import_keys("blk", 5).await;
    for (client, email) in [
        ("203.0.113.77", "fine@example.com"),
        ("2001:db8:dead:beef::1", "fine@example.com"),
        ("198.51.100.7", "anyone@spam.EXAMPLE"),
        ("198.51.100.7", "BAD@example.com"),
    ] {
        let (s, _, v) = api_order(&app, Some(client), &body("blk", email)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("blocked")),
            "{client} {email}: {v}"
        );
        let (s, _, page) = form_order(&app, client, "blk", email).await;
        assert_eq!(s, 403, "{page}");
        assert!(page.contains("data-testid=\"message-blocked\""), "{page}");
    }
    assert_eq!(pending(&app).await, 0);
    let (s, _, v) = api_order(&app, Some("198.51.100.7"), &body("blk", "good@example.com")).await;
    assert_eq!(s, 201, "{v}");
}
both_backends!(blocked_clients_and_emails);

/// The quantity one order may reserve stays bounded by the product's `max_quantity`.
async fn one_order_reserves_at_most_max_quantity(backend: Backend) {
    let app = TestApp::spawn_with(backend, &format!("{BEHIND_PROXY}{}", risk(3, 3, 1000))).await;
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": "bulk", "title": "Bulk", "price": 100, "currency": "CNY", "delivery": "auto", "max_quantity": 5}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    app.import_keys("bulk", 50).await;
    let mut b = body("bulk", "q@example.com");
    b["quantity"] = json!(100);
    let (s, _, v) = api_order(&app, Some("198.51.100.7"), &b).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_quantity")),
        "{v}"
    );
    b["quantity"] = json!(6);
    let (s, _, _) = api_order(&app, Some("198.51.100.7"), &b).await;
    assert_eq!(s, 422);
    b["quantity"] = json!(5);
    let (s, _, v) = api_order(&app, Some("198.51.100.7"), &b).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(app.stock("bulk").await, 45);
    // Three orders of the most one may reserve is what one client can hold.
    for _ in 0..3 {
        api_order(&app, Some("198.51.100.8"), &b).await;
    }
    assert_eq!(
        app.stock("bulk").await,
        45 - 10,
        "the third order hits the email cap"
    );
}
both_backends!(one_order_reserves_at_most_max_quantity);
