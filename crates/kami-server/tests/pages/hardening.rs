//! Abuse the review found: forms posted from other sites, victims' orders pushed out of an
//! email lookup by unpaid decoys, password guessing spread over many addresses, and
//! `X-Forwarded-For` lines forged by the client.

use serde_json::json;

use crate::support::*;
use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

async fn cross_site_forms_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 3).await;
    let form = order_form("1", "buyer@example.com", "sandbox", "pass-word");
    let host = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
    ] {
        let p = post(&app, "/p/item", &form, &headers).await;
        assert_eq!(p.status, 403, "{headers:?}: {}", p.body);
        assert!(p.has("message-cross_site"));
        assert!(
            p.set_cookie("kami_orders").is_none(),
            "the cookie is left alone"
        );
        let l = post(
            &app,
            "/lookup",
            &[("q", "a@b.co"), ("password", "xxxx")],
            &headers,
        )
        .await;
        assert_eq!(l.status, 403, "{headers:?}");
    }
    assert_eq!(order_count(&app).await, 0, "no order, no reservation");
    // The shop's own pages post fine, with the browser's headers.
    let origin = format!("http://{host}");
    let p = post(
        &app,
        "/p/item",
        &form,
        &[("sec-fetch-site", "same-origin"), ("origin", &origin)],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    // Our pages send no referrer, so browsers post our own forms with `Origin: null`.
    let p = post(
        &app,
        "/p/item",
        &form,
        &[("sec-fetch-site", "same-origin"), ("origin", "null")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(order_count(&app).await, 2);
}
both_backends!(cross_site_forms_change_nothing);

async fn unpaid_decoys_cannot_hide_a_buyers_orders(backend: Backend) {
    let app = TestApp::spawn_with(backend, "[shop]\nlookup_per_minute = 100\n").await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 20).await;
    let placed = buy(
        &app,
        "item",
        &order_form("1", "victim@example.com", "sandbox", "victim-pass"),
        &[("user-agent", UA_DESKTOP)],
    )
    .await;
    let v = pay_and_settle(&app, &placed).await;
    let key = v["cards"][0].as_str().unwrap().to_owned();
    // Someone places ten unpaid orders with the victim's email and a password of their own.
    for _ in 0..10 {
        let (status, _) = app
            .try_order(
                json!({"product": "item", "quantity": 1, "email": "victim@example.com",
                              "method": "sandbox", "query_password": "attacker"}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let p = post(
        &app,
        "/lookup",
        &[("q", "victim@example.com"), ("password", "victim-pass")],
        &[],
    )
    .await;
    assert!(p.has("lookup-result"), "{}", p.body);
    assert!(p.body.contains(&key));
    // And the decoys' password opens nothing (they hold no keys).
    let p = post(
        &app,
        "/lookup",
        &[("q", "victim@example.com"), ("password", "attacker")],
        &[],
    )
    .await;
    assert!(p.has("lookup-empty"));
}
both_backends!(unpaid_decoys_cannot_hide_a_buyers_orders);

/// Guessing one buyer's password from many addresses: the searched order or email has a
/// limit of its own, five times one address's (so one address cannot lock the buyer out).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_target_is_limited_across_addresses() {
    let app = behind_a_proxy(3).await;
    let ips: Vec<String> = (0..17).map(|i| format!("198.51.100.{i}")).collect();
    let statuses = lookup_statuses(&app, "Target@Example.com", "guess", &ips).await;
    let mut expected = vec![200; 15];
    expected.extend([429, 429]);
    assert_eq!(statuses, expected);
    // Another target from a fresh address is not affected.
    let p = post(
        &app,
        "/lookup",
        &[("q", "other@example.com"), ("password", "guess")],
        &[("x-forwarded-for", "198.51.100.99")],
    )
    .await;
    assert_eq!(p.status, 200);
}

/// A proxy that adds its own `X-Forwarded-For` line (HAProxy) leaves the client's line first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_first_forwarded_line_is_ignored() {
    let app = behind_a_proxy(2).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let forged = format!("10.9.9.{i}");
        let q = format!("t{i}@example.com");
        let r = browser()
            .post(app.url("/lookup"))
            .form(&[("q", q.as_str()), ("password", "guess")])
            .header("x-forwarded-for", forged)
            .header("x-forwarded-for", "203.0.113.50")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
}
