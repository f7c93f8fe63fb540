//! Finding an order again: by order number or email with the query password chosen when
//! buying. Anything else finds nothing and shows no key; lookups are rate-limited per IP.

use std::time::{Duration, Instant};

use crate::support::*;
use kami_testkit::both_backends;
use kami_testkit::{cards, Backend, TestApp};

const EN: (&str, &str) = ("accept-language", "en");
const MANY: &str = "[shop]\nlookup_per_minute = 1000\n";

async fn lookup(app: &TestApp, q: &str, password: &str) -> Page {
    post(app, "/lookup", &[("q", q), ("password", password)], &[EN]).await
}

/// Buy through the page with this email and query password, pay, return the keys.
async fn bought(app: &TestApp, email: &str, password: &str) -> (Placed, Vec<String>) {
    let placed = buy(
        app,
        "item",
        &order_form("1", email, "sandbox", password),
        &[("user-agent", UA_DESKTOP)],
    )
    .await;
    let v = pay_and_settle(app, &placed).await;
    assert_eq!(v["status"], "delivered", "{v}");
    (placed, cards(&v))
}

async fn lookup_by_order_number_or_email(backend: Backend) {
    let app = TestApp::spawn_with(backend, MANY).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 10).await;
    let (a, a_keys) = bought(&app, "alice@example.com", "pass-one").await;
    let (b, b_keys) = bought(&app, "Alice@Example.com", "pass-one").await;
    let (c, c_keys) = bought(&app, "alice@example.com", "pass-two").await;
    let (d, d_keys) = bought(&app, "alice@example.com", "").await;

    // By order number: that order only, with its keys, and no token handed out.
    let p = lookup(&app, &a.no, "pass-one").await;
    assert_eq!(p.status, 200);
    assert!(
        p.has("lookup-result") && !p.has("lookup-empty"),
        "{}",
        p.body
    );
    assert_eq!(p.keys(), a_keys);
    assert!(p.body.matches("data-testid=\"lookup-order\"").count() == 1);
    assert!(!p.body.contains(&a.token) && !p.has("download") && !p.body.contains("data-poll"));
    assert_eq!(p.header("cache-control"), "no-store");
    // Spaces around the number do not matter.
    let p = lookup(&app, &format!("  {}  ", a.no), "pass-one").await;
    assert_eq!(p.keys(), a_keys);

    // By email (any case): every order with this password, newest first.
    for q in [
        "alice@example.com",
        "ALICE@example.COM",
        " alice@example.com ",
    ] {
        let p = lookup(&app, q, "pass-one").await;
        assert_eq!(
            p.body.matches("data-testid=\"lookup-order\"").count(),
            2,
            "{q}"
        );
        let mut want = b_keys.clone();
        want.extend(a_keys.clone());
        assert_eq!(p.keys(), want, "{q}");
        for k in c_keys.iter().chain(&d_keys) {
            assert!(!p.body.contains(k.as_str()));
        }
        assert!(p.body.contains(&a.no) && p.body.contains(&b.no));
        assert!(!p.body.contains(&c.no) && !p.body.contains(&d.no));
    }
    let p = lookup(&app, "alice@example.com", "pass-two").await;
    assert_eq!(p.keys(), c_keys);
    let p = lookup(&app, &c.no, "pass-two").await;
    assert_eq!(p.keys(), c_keys);

    // A pending order found by password: its status, no way to pay from here, no token.
    let pending = buy(
        &app,
        "item",
        &order_form("1", "alice@example.com", "sandbox", "pass-three"),
        &[],
    )
    .await;
    let p = lookup(&app, &pending.no, "pass-three").await;
    assert!(p.body.contains("data-status=\"pending\""), "{}", p.body);
    assert!(!p.has("pay-link") && !p.has("qr") && !p.body.contains(&pending.token));
}
both_backends!(lookup_by_order_number_or_email);

async fn failed_lookups_show_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, MANY).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 10).await;
    let (with_pw, keys) = bought(&app, "bob@example.com", "right-pass").await;
    let (no_pw, keys_no_pw) = bought(&app, "carol@example.com", "").await;
    let all: Vec<String> = keys.into_iter().chain(keys_no_pw).collect();

    for (q, password) in [
        (with_pw.no.as_str(), "wrong-pass"),
        (with_pw.no.as_str(), "RIGHT-PASS"),
        (with_pw.no.as_str(), "right-pass "),
        (with_pw.no.as_str(), ""),
        ("bob@example.com", "wrong-pass"),
        ("bob@example.com", ""),
        // An order without a query password cannot be looked up, whatever is typed.
        (no_pw.no.as_str(), ""),
        (no_pw.no.as_str(), "right-pass"),
        ("carol@example.com", ""),
        ("carol@example.com", "anything"),
        // Unknown order or email.
        ("K20240101000000000000000000", "right-pass"),
        ("nobody@example.com", "right-pass"),
        ("", "right-pass"),
        ("not an order", "right-pass"),
    ] {
        let p = lookup(&app, q, password).await;
        assert_eq!(p.status, 200, "{q:?}/{password:?}");
        assert!(
            p.has("lookup-empty") && !p.has("lookup-result"),
            "{q:?}/{password:?}: {}",
            p.body
        );
        assert!(p.keys().is_empty());
        for k in &all {
            assert!(
                !p.body.contains(k.as_str()),
                "{q:?}/{password:?} leaked a key"
            );
        }
    }
    // A form that is not a form at all.
    let r = browser()
        .post(app.url("/lookup"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("%%%&&&=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("data-testid=\"lookup-empty\""));
}
both_backends!(failed_lookups_show_nothing);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookups_are_rate_limited_per_ip() {
    let app = TestApp::spawn_with(Backend::Sqlite, "[shop]\nlookup_per_minute = 2\n").await;
    for _ in 0..2 {
        assert_eq!(lookup(&app, "x@example.com", "pass").await.status, 200);
    }
    let p = lookup(&app, "x@example.com", "pass").await;
    assert_eq!(p.status, 429);
    assert!(p.has("message-rate_limited"));
    assert!(p.body.contains("Too many attempts"));
    assert_eq!(p.header("cache-control"), "no-store");
    // The form itself is still served.
    assert_eq!(get_in(&app, "/lookup", "en").await.status, 200);
    // Without `trust_proxy_headers`, a forwarded-for header is no way around the limit.
    let p = post(
        &app,
        "/lookup",
        &[("q", "x@example.com"), ("password", "pass")],
        &[("x-forwarded-for", "10.9.8.7"), ("x-real-ip", "10.9.8.7")],
    )
    .await;
    assert_eq!(p.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_proxy_each_client_has_its_own_limit() {
    let app = behind_a_proxy(2).await;
    // A different searched email each time: the per-target limit is not what is tested here.
    let n = std::sync::atomic::AtomicU32::new(0);
    let from = |ip: &'static str| {
        let app = &app;
        let q = format!(
            "x{}@example.com",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        async move {
            post(
                app,
                "/lookup",
                &[("q", q.as_str()), ("password", "pass")],
                &[("x-forwarded-for", ip)],
            )
            .await
            .status
        }
    };
    assert_eq!(from("203.0.113.1").await, 200);
    assert_eq!(from("203.0.113.1").await, 200);
    assert_eq!(from("203.0.113.1").await, 429);
    assert_eq!(from("203.0.113.2").await, 200);
}

/// The proxy appends the address it saw to whatever `X-Forwarded-For` the client sent
/// (nginx `$proxy_add_x_forwarded_for`): the client controls every entry but the last, so
/// it must not get a fresh limit by writing a new first entry on each request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cannot_forge_its_way_past_the_limit() {
    let app = behind_a_proxy(2).await;
    let xffs: Vec<String> = (0..4).map(|i| format!("10.0.0.{i}, 203.0.113.7")).collect();
    let statuses = lookup_statuses(&app, "x@example.com", "pass", &xffs).await;
    assert_eq!(statuses, [200, 200, 429, 429]);
}

/// "Constant work": a lookup must not reveal by its timing whether an email or order number
/// has password-protected orders. A password of an implausible length skips the hash when
/// candidates exist, while "no such email" always pays for the dummy hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookup_timing_does_not_reveal_customers() {
    let app = TestApp::spawn_with(Backend::Sqlite, MANY).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 10).await;
    bought(&app, "known@example.com", "pass-word").await;
    async fn timed(app: &TestApp, q: &str, pw: &str) -> Duration {
        // The best of three, to shed scheduling noise.
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            lookup(app, q, pw).await;
            best = best.min(t.elapsed());
        }
        best
    }
    let unknown = timed(&app, "unknown@example.com", "x").await;
    let known = timed(&app, "known@example.com", "x").await;
    assert!(
        known * 3 >= unknown,
        "known email answered in {known:?}, unknown in {unknown:?}"
    );
}
