//! Stripe Checkout (`card`) through the server and the Stripe simulator, on both databases:
//! a purchase whose webhooks arrive twice is delivered once; every checked field of a webhook
//! tampered with is refused (signature, an old timestamp, `amount_total`, `currency`, the
//! order binding, `payment_status`); refunds; a session closed at the order's deadline; a
//! delayed payment whose events arrive out of order; a Stripe channel added in the console's
//! API with its secrets sealed.

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

/// The session id at the end of the hosted page's URL.
fn session_id(order: &Value) -> String {
    let url = order["payment"]["url"].as_str().expect("a redirect url");
    url.rsplit('/').next().unwrap().to_owned()
}

async fn post_webhook(app: &TestApp, channel: &str, body: &str, sig: &str) -> (u16, String) {
    let r = app
        .http
        .post(app.url(&format!("/pay/notify/{channel}")))
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn now() -> i64 {
    kami_core::clock::now_ms().div_euclid(1000)
}

async fn duplicate_webhooks_deliver_once_and_refunds_go_back_to_stripe(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.create_product("card", 1230, "auto").await;
    app.import_keys("card", 5).await;
    let order = app.order_via("card", "card", "pc").await;
    assert_eq!(order["payment"]["channel"], "stripe-sim", "{order}");
    assert_eq!(order["payment"]["action"], "redirect", "{order}");
    let id = session_id(&order);
    assert_eq!(gw.stripe.session_status(&id), Some("open"));

    let (s, body) = app.pay_in_browser(&order, "duplicate").await;
    assert_eq!(s, 200, "{body}");
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["cards"].as_array().unwrap().len(), 1);
    // Both copies acknowledged, one delivery.
    for _ in 0..100 {
        if gw
            .stripe
            .notify_stats(&id)
            .is_some_and(|s| s.delivered && s.attempts >= 2)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gw.stripe.notify_stats(&id).unwrap().delivered);
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"delivered\"}")
            .await,
        1
    );
    let no = order["order_no"].as_str().unwrap();
    let detail = app.admin_order(no).await;
    assert!(
        detail
            .to_string()
            .contains(&gw.stripe.payment_intent(&id).unwrap()),
        "the payment intent is the gateway trade number: {detail}"
    );

    let (s, r) = app.refund(no, json!({"amount": 230})).await;
    assert_eq!(
        (s, r["order_status"].as_str()),
        (200, Some("partially_refunded")),
        "{r}"
    );
    let (s, r) = app.refund(no, json!({})).await;
    assert_eq!(
        (s, r["order_status"].as_str(), r["amount"].as_i64()),
        (200, Some("refunded"), Some(1000)),
        "{r}"
    );
    assert_eq!(gw.stripe.refunded(&id), Some(1230));
    assert_eq!(gw.stripe.refund_count(&id), 2);
}
both_backends!(duplicate_webhooks_deliver_once_and_refunds_go_back_to_stripe);

async fn every_tampered_webhook_field_is_refused(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    app.create_product("safe", 1230, "auto").await;
    app.import_keys("safe", 3).await;
    let order = app.order_via("safe", "card", "pc").await;
    let id = session_id(&order);
    let no = order["order_no"].as_str().unwrap().to_owned();
    let secret = gw.merchant_keys().unwrap().stripe_webhook_secret;
    // The event Stripe would send had the buyer paid (the session stays open at the
    // simulator, so kami's own checks find nothing meanwhile).
    let mut event: Value = serde_json::from_str(
        &gw.stripe
            .event_body(&id, "checkout.session.completed")
            .unwrap(),
    )
    .unwrap();
    let obj = &mut event["data"]["object"];
    obj["status"] = json!("complete");
    obj["payment_status"] = json!("paid");
    obj["payment_intent"] = json!("pi_3EngineTest");
    obj["url"] = json!(null);
    let genuine = event.to_string();
    let sign =
        |body: &str, t: i64| kami_pay::stripe::signature_header(&[&secret], t, body.as_bytes());

    // Signed by Stripe but wrong for this order: never delivered.
    // Amount and currency mismatches and broken bindings are refused (400: not
    // acknowledged, Stripe keeps them visible as failing); an unpaid session is acknowledged
    // as nothing to do.
    let signed_cases: [(&str, Value, u16); 5] = [
        ("amount_total", json!(1), 400),
        ("currency", json!("usd"), 400),
        ("client_reference_id", json!(format!("{no}X")), 400),
        ("payment_status", json!("unpaid"), 200),
        (
            "metadata",
            json!({"trade_no": "K20990101000000000000000000"}),
            400,
        ),
    ];
    for (field, value, want) in signed_cases {
        let mut e = event.clone();
        e["data"]["object"][field] = value;
        let body = e.to_string();
        let (s, text) = post_webhook(&app, "stripe-sim", &body, &sign(&body, now())).await;
        assert_eq!(s, want, "{field}: {text}");
    }
    // Bytes changed after signing, an old timestamp, another secret, no header.
    let tampered = genuine.replace("\"amount_total\":1230", "\"amount_total\":1");
    assert_ne!(tampered, genuine);
    let (s, _) = post_webhook(&app, "stripe-sim", &tampered, &sign(&genuine, now())).await;
    assert_eq!(s, 400, "body changed after signing");
    let (s, _) = post_webhook(&app, "stripe-sim", &genuine, &sign(&genuine, now() - 301)).await;
    assert_eq!(s, 400, "older than 300 s");
    let other =
        kami_pay::stripe::signature_header(&["whsec_not_the_endpoints"], now(), genuine.as_bytes());
    let (s, _) = post_webhook(&app, "stripe-sim", &genuine, &other).await;
    assert_eq!(s, 400, "another secret");
    let r = app
        .http
        .post(app.url("/pay/notify/stripe-sim"))
        .body(genuine.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no Stripe-Signature");

    let (_, v) = app
        .read_order(&no, order["access_token"].as_str().unwrap(), 0)
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(app.admin_orders("delivered").await.is_empty());
    let outcomes: Vec<String> = app.admin_order(&no).await["payment_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "amount_mismatch").count(),
        2,
        "amount_total and currency: {outcomes:?}"
    );
    assert!(outcomes.iter().any(|o| o == "not_paid"), "{outcomes:?}");
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"rejected\"}")
            .await,
        6,
        "the two broken bindings and the four forged ones"
    );

    // The genuine event delivers; sent again (Stripe retries), nothing more happens.
    let (s, text) = post_webhook(&app, "stripe-sim", &genuine, &sign(&genuine, now())).await;
    assert_eq!((s, text.as_str()), (200, r#"{"received":true}"#));
    let v = app.wait_settled(&order).await;
    assert_eq!(v["status"], "delivered", "{v}");
    let (s, _) = post_webhook(&app, "stripe-sim", &genuine, &sign(&genuine, now() + 5)).await;
    assert_eq!(s, 200);
    assert_eq!(
        app.metric("kami_notifications_total{outcome=\"duplicate\"}")
            .await,
        1
    );
    assert_eq!(app.stock("safe").await, json!(2));
}
both_backends!(every_tampered_webhook_field_is_refused);

async fn sessions_close_at_the_deadline(backend: Backend) {
    let (app, gw) =
        TestApp::spawn_gateways_keeping(backend, "[orders]\nexpire_seconds = 6\n").await;
    app.create_product("late", 500, "auto").await;
    app.import_keys("late", 4).await;
    let unpaid = app.order_via("late", "card", "pc").await;
    let _ = app
        .http
        .get(unpaid["payment"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    // Paid, its webhook lost: found when kami asks (or closes) instead.
    let quiet = app.order_via("late", "card", "mobile").await;
    let (s, body) = app.pay_in_browser(&quiet, "drop").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(app.wait_settled_for(&unpaid, 60).await["status"], "expired");
    assert_eq!(app.wait_settled(&quiet).await["status"], "delivered");
    let id = session_id(&unpaid);
    assert_eq!(
        gw.stripe.session_status(&id),
        Some("expired"),
        "kami expired the session"
    );
    // The buyer's page can no longer take money.
    let r = app
        .http
        .post(unpaid["payment"]["url"].as_str().unwrap())
        .header("accept", "application/json")
        .form(&[("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    assert_eq!(app.stock("late").await, json!(3));
}
both_backends!(sessions_close_at_the_deadline);

async fn a_delayed_payment_out_of_order_is_delivered_once(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("slow", 800, "auto").await;
    app.import_keys("slow", 3).await;
    let ok = app.order_via("slow", "card", "pc").await;
    let (s, body) = app
        .pay_in_browser_with(
            &ok,
            &[("outcome", "async_succeeded"), ("notify", "reorder")],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(app.wait_settled(&ok).await["status"], "delivered");
    let failed = app.order_via("slow", "card", "pc").await;
    let (s, body) = app
        .pay_in_browser_with(&failed, &[("outcome", "async_failed")])
        .await;
    assert_eq!(s, 200, "{body}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (_, v) = app
        .read_order(
            failed["order_no"].as_str().unwrap(),
            failed["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!(
        v["status"], "pending",
        "a failed delayed payment delivers nothing: {v}"
    );
    assert_eq!(app.admin_orders("delivered").await.len(), 1);
}
both_backends!(a_delayed_payment_out_of_order_is_delivered_once);

async fn a_stripe_channel_added_through_the_api_keeps_its_secrets(backend: Backend) {
    let (app, gw) = TestApp::spawn_gateways_keeping(backend, "").await;
    let keys = gw.merchant_keys().unwrap();
    app.create_product("vip", 1000, "auto").await;
    app.import_keys("vip", 3).await;
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/channels",
            json!({
                "id": "stripe-db", "kind": "stripe", "methods": ["card"], "priority": 20,
                "api_base": format!("{}/sim/stripe", gw.base_url()),
                "secret_key": keys.stripe_secret_key,
                "webhook_secret": keys.stripe_webhook_secret,
            }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["keys_set"], json!(["secret_key", "webhook_secret"]));
    let listed = app.admin_get("/api/v1/admin/channels").await.to_string();
    assert!(
        !listed.contains(&keys.stripe_secret_key) && !listed.contains(&keys.stripe_webhook_secret)
    );
    let (s, t) = app
        .admin_post("/api/v1/admin/channels/stripe-db/test", json!({}))
        .await;
    assert_eq!((s, t["ok"].as_bool()), (200, Some(true)), "{t}");

    let order = app.order_via("vip", "card", "pc").await;
    assert_eq!(order["payment"]["channel"], "stripe-db", "{order}");
    let (s, body) = app.pay_in_browser(&order, "normal").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");

    // A publishable key is refused, naming the key.
    let (s, e) = app
        .admin_post(
            "/api/v1/admin/channels",
            json!({
                "id": "stripe-bad", "kind": "stripe", "methods": ["card"],
                "secret_key": "pk_test_123", "webhook_secret": keys.stripe_webhook_secret,
            }),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(e.to_string().contains("secret_key"), "{e}");
}
both_backends!(a_stripe_channel_added_through_the_api_keeps_its_secrets);
