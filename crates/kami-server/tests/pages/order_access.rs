//! Who sees what of an order: the token (or this browser's `kami_orders` cookie) opens it in
//! full; anyone else sees its status only; the keys file needs the token; the gateway's
//! browser return never shows keys nor marks anything paid; the page follows the payment live.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;
use kami_testkit::both_backends;
use kami_testkit::{cards, Backend, TestApp};

async fn delivered(app: &TestApp, quantity: u32) -> (Placed, Vec<String>) {
    let placed = buy_simple(app, "item", quantity, "").await;
    let v = pay_and_settle(app, &placed).await;
    assert_eq!(v["status"], "delivered", "{v}");
    (placed, cards(&v))
}

async fn keys_file_needs_the_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 5).await;
    let (placed, keys) = delivered(&app, 2).await;
    let file = format!("/orders/{}/keys.txt", placed.no);

    let p = get(&app, &format!("{file}?t={}", placed.token), &[]).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.body, format!("{}\r\n{}\r\n", keys[0], keys[1]));
    assert_eq!(p.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(
        p.header("content-disposition"),
        format!("attachment; filename=\"{}.txt\"", placed.no)
    );
    assert_eq!(p.header("cache-control"), "no-store");
    assert_eq!(p.header("x-content-type-options"), "nosniff");
    assert_eq!(p.header("referrer-policy"), "no-referrer");

    // This browser remembers the order: the cookie alone is enough.
    let p = get(&app, &file, &[("cookie", &placed.cookie())]).await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains(&keys[0]));

    // No token, a wrong token, another order's token: not found, no key.
    let (other, _) = delivered(&app, 1).await;
    for path in [
        file.clone(),
        format!("{file}?t="),
        format!("{file}?t=wrong-token"),
        format!("{file}?t={}", other.token),
        format!("{file}?t={}", &placed.token[..placed.token.len() - 1]),
    ] {
        let p = get_in(&app, &path, "en").await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
        assert!(p.has("message-not_found"));
        for k in &keys {
            assert!(!p.body.contains(k.as_str()), "{path} leaked a key");
        }
    }
    // A pending order has no file yet, even with its token.
    let pending = buy_simple(&app, "item", 1, "").await;
    let p = get(
        &app,
        &format!("/orders/{}/keys.txt?t={}", pending.no, pending.token),
        &[],
    )
    .await;
    assert_eq!(p.status, 404);
}
both_backends!(keys_file_needs_the_token);

async fn without_the_token_only_the_status_shows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 5).await;
    let (placed, keys) = delivered(&app, 2).await;
    let (other, _) = delivered(&app, 1).await;

    let full = get_in(&app, &placed.location, "en").await;
    assert_eq!(full.status, 200);
    assert_eq!(full.keys(), keys);
    assert!(full.has("download") && !full.has("status-only"));

    let base = format!("/orders/{}", placed.no);
    for path in [
        base.clone(),
        format!("{base}?t=nope"),
        format!("{base}?t={}", other.token),
        format!("{base}?t=&fragment=1"),
        format!("{base}?fragment=1"),
    ] {
        let p = get_in(&app, &path, "en").await;
        assert_eq!(p.status, 200, "{path}");
        assert!(p.keys().is_empty(), "{path} shows keys");
        for k in &keys {
            assert!(!p.body.contains(k.as_str()), "{path} leaked a key");
        }
        assert!(p.has("status-only"), "{path}: {}", p.body);
        assert!(!p.has("download") && !p.body.contains("data-poll"));
        assert!(!p.body.contains(&placed.token));
        assert!(p.body.contains("data-status=\"delivered\""));
        assert_eq!(p.header("cache-control"), "no-store");
    }

    // Another browser's cookie does not open this order.
    let p = get(&app, &base, &[("cookie", &other.cookie())]).await;
    assert!(p.keys().is_empty() && p.has("status-only"));

    // A pending order without its token: no payment link, no QR, no countdown.
    let pending = buy_simple(&app, "item", 1, "").await;
    let p = get_in(&app, &format!("/orders/{}", pending.no), "en").await;
    assert!(p.body.contains("data-status=\"pending\""));
    assert!(
        !p.has("pay-link") && !p.has("qr") && !p.has("countdown"),
        "{}",
        p.body
    );
    let (_, url) = pay_action(&app, &pending.no).await;
    assert!(!p.body.contains(&url) && !p.body.contains(&escaped(&url)));

    // A long-poll without the token answers at once, status only.
    let started = Instant::now();
    let p = get_in(
        &app,
        &format!("/orders/{}?fragment=1&wait=20&since=pending", pending.no),
        "en",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited without a token"
    );
    assert!(p.has("status-only") && !p.body.contains("<html"));

    // Unknown or malformed order numbers are not found.
    for path in [
        "/orders/K00000000000000000000000000",
        "/orders/K123",
        "/orders/nope",
    ] {
        let p = get_in(&app, path, "en").await;
        assert_eq!(p.status, 404, "{path}");
    }
}
both_backends!(without_the_token_only_the_status_shows);

/// The gateway sends the buyer's browser to `/pay/return/{channel}?order_no=...`: whoever
/// opens that URL learns nothing and pays nothing (DESIGN invariant 3).
async fn return_url_shows_no_keys_and_marks_nothing_paid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    let keys = app.import_keys("item", 3).await;
    let placed = buy_simple(&app, "item", 1, "").await;
    let ret = format!("/pay/return/sandbox?order_no={}", placed.no);
    for headers in [vec![], vec![("cookie", placed.cookie())]] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = get(&app, &ret, &h).await;
        assert!(p.status < 400, "{}", p.status);
        assert!(!p.body.contains(&placed.token));
        assert!(keys.iter().all(|k| !p.body.contains(k.as_str())));
    }
    // Many returns, with any parameters a forger likes: still pending.
    for q in [
        "&trade_status=TRADE_SUCCESS",
        "&status=paid&amount=1.00",
        "&result_code=SUCCESS",
    ] {
        get(&app, &format!("{ret}{q}"), &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = app.read_order(&placed.no, &placed.token, 0).await;
    assert_eq!(v["status"], "pending", "{v}");
    let page = get_in(&app, &placed.location, "en").await;
    assert!(page.body.contains("data-status=\"pending\"") && page.keys().is_empty());

    // Once delivered, the return URL still shows no key (it has no token).
    let v = pay_and_settle(&app, &placed).await;
    let card = v["cards"][0].as_str().unwrap().to_owned();
    let p = get(&app, &ret, &[("cookie", &placed.cookie())]).await;
    assert!(!p.body.contains(&card), "{}", p.body);
}
both_backends!(return_url_shows_no_keys_and_marks_nothing_paid);

async fn orders_cookie_is_http_only_and_remembers_every_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 5).await;

    let first = buy_simple(&app, "item", 1, "").await;
    let attrs: Vec<&str> = first.set_cookie.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"HttpOnly"), "{}", first.set_cookie);
    assert!(attrs.contains(&"SameSite=Lax"), "{}", first.set_cookie);
    assert!(attrs.contains(&"Path=/"), "{}", first.set_cookie);
    assert!(
        attrs.iter().any(|a| a.starts_with("Max-Age=")),
        "{}",
        first.set_cookie
    );
    assert_eq!(
        first.cookie(),
        format!("kami_orders={}.{}", first.no, first.token)
    );

    // The second order, from the same browser, keeps the first.
    let second = buy(
        &app,
        "item",
        &order_form("1", "buyer@example.com", "sandbox", ""),
        &[("cookie", &first.cookie())],
    )
    .await;
    assert!(second.set_cookie.contains("HttpOnly"));
    let jar = second.cookie();
    assert_eq!(
        jar,
        format!(
            "kami_orders={}.{}~{}.{}",
            second.no, second.token, first.no, first.token
        )
    );

    // Both open in full from the cookie alone, both are listed, the catalogue links them.
    pay_and_settle(&app, &first).await;
    pay_and_settle(&app, &second).await;
    for o in [&first, &second] {
        let p = get(&app, &format!("/orders/{}", o.no), &[("cookie", &jar)]).await;
        assert_eq!(p.keys().len(), 1, "{}", p.body);
        assert!(!p.has("status-only"));
    }
    let lookup = get(&app, "/lookup", &[("cookie", &jar), EN_HEADER]).await;
    assert!(lookup.has("recent"));
    for o in [&first, &second] {
        assert!(
            lookup.body.contains(&format!(">{}</a>", o.no)),
            "{}",
            lookup.body
        );
    }
    let cat = get(&app, "/", &[("cookie", &jar), EN_HEADER]).await;
    assert!(cat.body.contains("Your recent orders (2)"), "{}", cat.body);

    // A forged or foreign entry in the cookie opens nothing and lists nothing.
    let forged = format!("kami_orders={}.not-the-token", first.no);
    let p = get(
        &app,
        &format!("/orders/{}", first.no),
        &[("cookie", &forged)],
    )
    .await;
    assert!(p.keys().is_empty() && p.has("status-only"));
    let p = get(&app, "/lookup", &[("cookie", &forged)]).await;
    assert!(!p.has("recent"), "{}", p.body);
}
both_backends!(orders_cookie_is_http_only_and_remembers_every_order);

const EN_HEADER: (&str, &str) = ("accept-language", "en");

/// The checkout page's script long-polls the order fragment: it answers the moment the
/// payment is delivered, with the keys.
async fn checkout_follows_the_payment_live(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    let keys = app.import_keys("item", 3).await;
    let placed = buy_simple(&app, "item", 1, "").await;
    let page = get_in(&app, &placed.location, "en").await;
    let poll = page
        .body
        .split("data-poll=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(unescape)
        .expect("the checkout page polls");
    assert_eq!(
        poll,
        format!(
            "/orders/{}?t={}&fragment=1&wait=25",
            placed.no, placed.token
        )
    );

    // Nothing changes: the poll waits, then answers pending.
    let started = Instant::now();
    let p = get_in(&app, &poll.replace("wait=25", "wait=1&since=pending"), "en").await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(p.body.contains("data-status=\"pending\"") && !p.body.contains("<html"));

    let url = app.url(&format!("{poll}&since=pending"));
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let body = browser()
            .get(url)
            .header("accept-language", "en")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (started.elapsed(), body)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pay_and_settle(&app, &placed).await;
    let (took, body) = waiter.await.unwrap();
    assert!(
        took < Duration::from_secs(20),
        "the poll did not wake: {took:?}"
    );
    assert!(
        body.contains("data-status=\"delivered\"") || body.contains("data-status=\"paid\""),
        "{body}"
    );
    // Asked again since `paid` or `pending`: delivered, with the key, at once.
    let p = get_in(
        &app,
        &poll.replace("wait=25", "wait=20&since=pending"),
        "en",
    )
    .await;
    assert!(p.body.contains("data-status=\"delivered\""), "{}", p.body);
    assert!(keys.iter().any(|k| p.body.contains(k.as_str())));
}
both_backends!(checkout_follows_the_payment_live);

async fn expired_orders_offer_to_order_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 1).await;
    let placed = buy_simple(&app, "item", 1, "").await;
    assert_eq!(app.stock("item").await, json!(0));
    app.state.store.expire_due(FAR_FUTURE, 10).await.unwrap();
    let p = get_in(&app, &placed.location, "en").await;
    assert!(p.body.contains("data-status=\"expired\""), "{}", p.body);
    assert!(p.body.contains("nothing was charged"));
    assert!(!p.has("pay-link") && !p.has("countdown") && !p.body.contains("data-poll"));
    assert_eq!(p.href_of("order-again"), "/p/item");
    assert_eq!(app.stock("item").await, json!(1));
}
both_backends!(expired_orders_offer_to_order_again);

/// On a shop served over HTTPS the order tokens in `kami_orders` must never travel over plain
/// HTTP: the cookie needs `Secure` (a single `http://` visit would otherwise send every token
/// remembered by this browser in clear).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_cookie_is_secure_on_an_https_shop() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://shop.example.com\"\n\
         data_dir = \"{0}\"\n[database]\nurl = \"sqlite://{0}/kami.db\"\n\
         [[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\nsecret = \"{1}\"\nallow_sandbox = true\n",
        dir.path().display(),
        kami_testkit::SANDBOX_SECRET
    );
    let config = kami_server::Config::from_toml_str(&toml).unwrap().config;
    let app = kami_server::Application::build(config).await.unwrap();
    let state = app.state();
    let addr = app.addr();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(app.run(rx));
    state
        .store
        .create_product(
            kami_store::NewProduct {
                prices: Default::default(),
                slug: kami_core::Slug::parse("item").unwrap(),
                title: "Item".into(),
                description: String::new(),
                price: kami_core::Money::new(100, kami_core::Currency::Cny).unwrap(),
                delivery: kami_store::Delivery::Manual,
                manual_stock: None,
                category: String::new(),
                sort_order: 0,
                tiers: Default::default(),
                min_quantity: 1,
                max_quantity: 100,
            },
            0,
        )
        .await
        .unwrap();
    let r = browser()
        .post(format!("http://{addr}/p/item"))
        .form(&order_form("1", "buyer@example.com", "sandbox", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("kami_orders="))
        .unwrap();
    assert!(cookie.split(';').any(|a| a.trim() == "Secure"), "{cookie}");
}

/// The order page in every status an order reaches, in both languages: the status is named,
/// every message exists, keys show only where they belong.
async fn order_page_speaks_every_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 1000, "auto").await;
    app.create_product("manual", 500, "manual").await;
    app.import_keys("item", 4).await;

    let mut orders: Vec<(&str, Placed)> = Vec::new();
    let (d, _) = delivered(&app, 1).await;
    orders.push(("delivered", d));
    let (r, _) = delivered(&app, 1).await;
    let (s, v) = app.refund(&r.no, json!({"reason": "test"})).await;
    assert_eq!(s, 200, "{v}");
    orders.push(("refunded", r));
    let (pr, _) = delivered(&app, 1).await;
    let (s, v) = app.refund(&pr.no, json!({"amount": 300})).await;
    assert_eq!(s, 200, "{v}");
    orders.push(("partially_refunded", pr));
    let m = buy_simple(&app, "manual", 1, "").await;
    let v = pay_and_settle(&app, &m).await;
    assert_eq!(v["status"], "awaiting_fulfilment", "{v}");
    orders.push(("awaiting_fulfilment", m));

    // Expired; and paid too late, after its key went to another buyer: an exception.
    let expired = buy_simple(&app, "manual", 1, "").await;
    let late = buy_simple(&app, "item", 1, "").await;
    app.state.store.expire_due(FAR_FUTURE, 10).await.unwrap();
    orders.push(("expired", expired));
    let other = app.order("item", 1).await;
    app.pay(&other).await;
    assert_eq!(app.wait_settled(&other).await["status"], "delivered");
    let (_, url) = pay_action(&app, &late.no).await;
    app.pay(&json!({"payment": {"channel": "sandbox", "url": url}}))
        .await;
    let mut status = String::new();
    for _ in 0..100 {
        let (_, v) = app.read_order(&late.no, &late.token, 0).await;
        status = v["status"].as_str().unwrap().to_owned();
        if status == "exception" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "exception");
    orders.push(("exception", late));
    orders.push(("pending", buy_simple(&app, "manual", 1, "").await));

    for (want, placed) in &orders {
        for lang in ["zh-CN", "en"] {
            let p = get_in(&app, &placed.location, lang).await;
            assert_eq!(p.status, 200);
            assert!(
                p.body.contains(&format!("data-status=\"{want}\"")),
                "{want}: {}",
                p.body
            );
            assert!(
                untranslated(&p.body).is_empty(),
                "{want}/{lang}: {:?}",
                untranslated(&p.body)
            );
            assert_eq!(p.has("pay-link"), *want == "pending", "{want}");
            assert_eq!(
                p.body.contains("data-poll"),
                *want == "pending",
                "{want}: polling"
            );
            let status_only = get_in(&app, &format!("/orders/{}", placed.no), lang).await;
            assert!(status_only.keys().is_empty() && status_only.has("status-only"));
            assert!(untranslated(&status_only.body).is_empty());
        }
    }
}
both_backends!(order_page_speaks_every_status);

/// Seen without its token, a delivered order shows no keys, so it should not say "here are
/// your keys" above the note that only the status is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_only_view_does_not_promise_keys() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 1).await;
    let (placed, _) = delivered(&app, 1).await;
    let en = get_in(&app, &format!("/orders/{}", placed.no), "en").await;
    assert!(en.has("status-only"));
    assert!(!en.body.contains("Here are your keys"), "{}", en.body);
    let zh = get_in(&app, &format!("/orders/{}", placed.no), "zh-CN").await;
    assert!(!zh.body.contains("以下是您的卡密"), "{}", zh.body);
}

/// DESIGN 4.3: `GET /pay/return/{channel}` "shows/redirects to the order page only". A buyer
/// coming back from the wallet in the browser that placed the order (its `kami_orders`
/// cookie opens the order) must be able to reach the order page from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn return_url_leads_back_to_the_order_page() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 1).await;
    let placed = buy_simple(&app, "item", 1, "").await;
    let p = get(
        &app,
        &format!("/pay/return/sandbox?order_no={}", placed.no),
        &[("cookie", &placed.cookie())],
    )
    .await;
    let to_order = format!("/orders/{}", placed.no);
    assert!(
        p.header("location").starts_with(&to_order)
            || p.body.contains(&format!("href=\"{to_order}")),
        "{} {:?}: {}",
        p.status,
        p.header("location"),
        p.body
    );
    // And whatever it shows, never the token in the URL the gateway controls.
    assert!(!p.header("location").contains(&placed.token));
}
