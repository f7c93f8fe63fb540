//! The buyer's side of the console's settings (issue 10 part 10): the shop's name and logo
//! from the settings in effect, no mail promised while mail is off, exception and manual
//! orders saying what happens next with the seller's contact, and "I have paid" on QR
//! checkouts asking the channel (never marking anything paid by itself).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;
use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

/// `PATCH /api/v1/admin/settings`.
async fn patch(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .http
        .patch(app.url("/api/v1/admin/settings"))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn mail_off_pages_promise_no_mail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 2).await;
    let placed = buy_simple(&app, "item", 1, "").await;
    let v = pay_and_settle(&app, &placed).await;
    assert_eq!(v["status"], "delivered", "{v}");

    let promises = [
        "your keys are sent here",
        "卡密将发送至此",
        "emailed",
        "the email",
        "邮件中的链接",
        "发送至",
    ];
    for (path, lang) in [
        ("/p/item", "en"),
        ("/p/item", "zh-CN"),
        ("/lookup", "en"),
        ("/lookup", "zh-CN"),
        (placed.location.as_str(), "en"),
        (placed.location.as_str(), "zh-CN"),
    ] {
        let p = get_in(&app, path, lang).await;
        assert_eq!(p.status, 200, "{path}");
        for promise in promises {
            assert!(
                !p.body.contains(promise),
                "{path} ({lang}) says {promise:?}"
            );
        }
    }
    assert!(get_in(&app, &placed.location, "en").await.has("mail-off"));

    // Mail turned on in the console (a server that is down is still "mail on"): the form
    // says where the keys go again, at once.
    let (s, v) = patch(
        &app,
        json!({"smtp.host": "127.0.0.1", "smtp.port": closed_port(), "smtp.tls": "none",
               "smtp.from": "Shop <shop@example.com>"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mail_enabled"], true);
    let p = get_in(&app, "/p/item", "en").await;
    assert!(p.body.contains("your keys are sent here"), "{}", p.body);
    let p = get_in(&app, "/p/item", "zh-CN").await;
    assert!(p.body.contains("卡密将发送至此"));
}
both_backends!(mail_off_pages_promise_no_mail);

/// An auto product sold out while its order was unpaid, then paid late: `exception`.
async fn exception_order(app: &TestApp) -> Placed {
    app.create_product("late", 100, "auto").await;
    app.import_keys("late", 1).await;
    let late = buy_simple(app, "late", 1, "").await;
    app.state.store.expire_due(FAR_FUTURE, 10).await.unwrap();
    let other = app.order("late", 1).await;
    app.pay(&other).await;
    assert_eq!(app.wait_settled(&other).await["status"], "delivered");
    let (_, url) = pay_action(app, &late.no).await;
    app.pay(&json!({"payment": {"channel": "sandbox", "url": url}}))
        .await;
    for _ in 0..100 {
        let (_, v) = app.read_order(&late.no, &late.token, 0).await;
        if v["status"] == "exception" {
            return late;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the late order did not become an exception");
}

async fn orders_that_need_the_seller_say_what_happens_next(backend: Backend) {
    let app = TestApp::spawn_with(backend, "[shop]\nname = \"File Shop\"\n").await;
    app.create_product("manual", 500, "manual").await;
    let manual = buy_simple(&app, "manual", 1, "").await;
    let v = pay_and_settle(&app, &manual).await;
    assert_eq!(v["status"], "awaiting_fulfilment", "{v}");
    let late = exception_order(&app).await;

    // No contact published: the page says so, and how to come back.
    for placed in [&manual, &late] {
        let p = get_in(&app, &placed.location, "en").await;
        assert!(
            p.text_of("contact").contains("has not published a contact"),
            "{}",
            p.body
        );
        assert!(!p.has("manual-mail"), "mail is off: no mail promised");
        assert!(
            untranslated(&p.body).is_empty(),
            "{:?}",
            untranslated(&p.body)
        );
    }

    // Saved in the console: shown at once, escaped, in both languages.
    let contact = "Telegram @kami_shop / QQ 123456 <b>";
    let (s, v) = patch(&app, json!({"shop.contact": contact})).await;
    assert_eq!(s, 200, "{v}");
    let p = get_in(&app, &late.location, "en").await;
    assert!(p.body.contains("data-status=\"exception\""));
    assert!(
        p.body
            .contains("the seller looks at it, then delivers the order or refunds"),
        "{}",
        p.body
    );
    assert_escaped(&p, contact);
    assert!(p
        .text_of("contact")
        .starts_with("To reach the seller: Telegram @kami_shop"));
    let p = get_in(&app, &late.location, "zh-CN").await;
    assert!(p
        .text_of("contact")
        .starts_with("联系卖家：Telegram @kami_shop"));
    assert!(p.body.contains("卖家核实后会为您发货或退款"));
    let p = get_in(&app, &manual.location, "en").await;
    assert!(p.body.contains("The seller delivers this product by hand"));
    assert!(p.text_of("contact").contains("Telegram @kami_shop"));
    // Seen without the token too: the contact is public, the order's details are not.
    let p = get_in(&app, &format!("/orders/{}", manual.no), "en").await;
    assert!(p.has("status-only") && p.text_of("contact").contains("Telegram @kami_shop"));
    // A delivered order needs nobody: no contact line.
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 1).await;
    let d = buy_simple(&app, "item", 1, "").await;
    assert_eq!(pay_and_settle(&app, &d).await["status"], "delivered");
    assert!(!get_in(&app, &d.location, "en").await.has("contact"));

    // With mail on, the manual order's page says the content is mailed too.
    let (s, v) = patch(
        &app,
        json!({"smtp.host": "127.0.0.1", "smtp.port": closed_port(), "smtp.tls": "none",
               "smtp.from": "shop@example.com"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let p = get_in(&app, &manual.location, "en").await;
    assert!(
        p.text_of("manual-mail").contains("b***@example.com"),
        "{}",
        p.body
    );
}
both_backends!(orders_that_need_the_seller_say_what_happens_next);

async fn qr_checkout_i_have_paid_asks_the_channel(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("game", 990, "auto").await;
    app.import_keys("game", 3).await;
    let placed = buy(
        &app,
        "game",
        &order_form("1", "buyer@example.com", "wxpay", ""),
        &[("user-agent", UA_DESKTOP)],
    )
    .await;
    let (action, qr) = pay_action(&app, &placed.no).await;
    assert_eq!(action, "qr");
    let p = get_in(&app, &placed.location, "en").await;
    assert!(p.has("qr") && p.has("paid-check"), "{}", p.body);
    assert!(
        p.body.contains("action=\"/orders/"),
        "a form that asks the server"
    );

    // Nobody paid yet: the channel is asked, nothing changes, the page says so.
    app.state
        .store
        .claim_payment_checks(FAR_FUTURE, FAR_FUTURE + 1, 1000)
        .await
        .unwrap();
    let check = format!("/orders/{}/check", placed.no);
    let p = post(&app, &check, &[("t", &placed.token)], &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(
        p.header("location").ends_with("&checked=1"),
        "{}",
        p.header("location")
    );
    let page = get_in(&app, p.header("location"), "en").await;
    assert!(page.body.contains("data-status=\"pending\""));
    assert!(page
        .text_of("check-result")
        .contains("no payment has been confirmed yet"));
    // Pressed again at once: not asked again, and told to wait.
    let p = post(&app, &check, &[("t", &placed.token)], &[]).await;
    assert!(
        p.header("location").ends_with("&checked=wait"),
        "{}",
        p.header("location")
    );

    // Without the token, or from another site: refused, nothing asked.
    assert_eq!(post(&app, &check, &[("t", "wrong")], &[]).await.status, 404);
    let p = post(
        &app,
        &check,
        &[("t", &placed.token)],
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(p.status, 403);

    // Paid at the gateway, its notification lost: "I have paid" finds it (after the
    // per-order pause) and the order is delivered through the normal path.
    let order = json!({"payment": {"channel": "wxpay", "action": "qr", "qr_code": qr}});
    let (s, body) = app.pay_in_browser(&order, "drop").await;
    assert_eq!(s, 200, "{body}");
    let (_, v) = app.read_order(&placed.no, &placed.token, 0).await;
    assert_eq!(v["status"], "pending", "the notification was dropped");
    let mut delivered = false;
    for _ in 0..30 {
        let p = post(&app, &check, &[("t", &placed.token)], &[]).await;
        assert_eq!(p.status, 303);
        let (_, v) = app.read_order(&placed.no, &placed.token, 0).await;
        if v["status"] == "delivered" {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(delivered, "the buyer's check found the payment");
    let page = get_in(&app, &placed.location, "en").await;
    assert_eq!(page.keys().len(), 1);
    assert!(!page.has("paid-check"), "nothing left to check");
}
both_backends!(qr_checkout_i_have_paid_asks_the_channel);
