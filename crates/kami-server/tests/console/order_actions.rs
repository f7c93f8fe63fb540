//! The order page's action forms end to end, as the seller clicks them: fulfil a manual order
//! (the buyer's page shows the content), deliver an exception order from stock, check the
//! payment at the channel (补单), cancel a pending order, resend the mail; each checks its form
//! token, says what happened in the flash and writes its audit row as `user:owner`. Text the
//! buyer or a gateway controls is shown escaped, never as markup.

use std::sync::Arc;

use kami_core::ManualClock;
use kami_testkit::{both_backends, cards, hex_rand, simulators, Backend, TestApp};
use serde_json::{json, Value};

use crate::support::{audit, spawn, Browser, PASSWORD, USER};

const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01
const XSS: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

fn no(order: &Value) -> &str {
    order["order_no"].as_str().unwrap()
}

/// A test server with the gateway simulators mounted (for 补单 and cancel at a real channel).
async fn spawn_gateways(backend: Backend) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(kami_core::clock::now_ms()));
    let mut opts = simulators(true);
    opts.clock = Some(clock.clone());
    let app = TestApp::spawn_opts(backend, "", opts).await;
    let hash = kami_server::services::passwords::hash_blocking(PASSWORD).unwrap();
    assert!(app
        .state
        .store
        .create_admin_user(USER, &hash, 0)
        .await
        .unwrap());
    (app, clock)
}

/// Post the action's form from the order page with its token; returns the flash shown after.
async fn click(b: &mut Browser, order_no: &str, action: &str, fields: &[(&str, &str)]) -> String {
    let page = b.get(&format!("/admin/orders/{order_no}?lang=en")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let testid = format!("data-testid=\"action-{action}\"");
    assert!(
        page.body.contains(&testid),
        "the page offers {action}: {}",
        page.body
    );
    let csrf = page.csrf();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let r = b
        .post(&format!("/admin/orders/{order_no}/{action}"), &form)
        .await;
    assert_eq!(
        (r.status, r.location()),
        (303, format!("/admin/orders/{order_no}").as_str()),
        "{}",
        r.body
    );
    let after = b.get(&format!("/admin/orders/{order_no}?lang=en")).await;
    after.testid("flash").unwrap_or_default()
}

async fn alipay_order(app: &TestApp) -> Value {
    let (s, v) = app
        .try_order(
            json!({"product": "ali", "quantity": 1, "email": "c@example.com",
                          "method": "alipay", "device": "pc"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn patch_product(app: &TestApp, slug: &str, body: Value) {
    let r = app
        .shop
        .http
        .patch(app.shop.url(&format!("/api/v1/admin/products/{slug}")))
        .bearer_auth(&app.shop.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn fulfil_from_the_console_reaches_the_buyer_escaped(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("topup", 500, "manual").await;
    patch_product(
        &app,
        "topup",
        json!({"input_fields": [{"name": "account", "label": "Account", "required": true}]}),
    )
    .await;
    let (s, order) = app
        .try_order(
            json!({"product": "topup", "quantity": 1, "email": "m@example.com",
                          "method": "sandbox", "fields": {"account": XSS}}),
        )
        .await;
    assert_eq!(s, 201, "{order}");
    app.pay(&order).await;
    assert_eq!(
        app.wait_settled(&order).await["status"],
        "awaiting_fulfilment"
    );

    let mut b = Browser::signed_in(&app).await;
    let page = b
        .get(&format!("/admin/orders/{}?lang=en", no(&order)))
        .await;
    assert!(
        !page.body.contains("<script>alert(1)") && !page.body.contains("<img src=x"),
        "the buyer's answer is escaped on the seller's page"
    );
    assert!(page
        .body
        .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(!page.body.contains("data-testid=\"action-deliver\""));

    // Without the form token: refused, still awaiting.
    let r = b
        .post(
            &format!("/admin/orders/{}/fulfil", no(&order)),
            &[("content", "x")],
        )
        .await;
    assert_eq!(r.status, 403);
    // Empty content: the service's precise refusal, nothing changed.
    let flash = click(&mut b, no(&order), "fulfil", &[("content", "  ")]).await;
    assert!(flash.contains("content"), "{flash}");
    assert_eq!(
        app.admin_order(no(&order)).await["status"],
        "awaiting_fulfilment"
    );

    let content = format!("code: 42 {XSS}");
    let flash = click(&mut b, no(&order), "fulfil", &[("content", &content)]).await;
    assert!(!flash.is_empty());
    let v = app.admin_order(no(&order)).await;
    assert_eq!(v["status"], "fulfilled", "{v}");
    assert_eq!(v["fulfilment"], content.as_str());

    // The buyer's page shows it, as text.
    let token = order["access_token"].as_str().unwrap();
    let buyer = app
        .shop
        .http
        .get(app.shop.url(&format!("/orders/{}?t={token}", no(&order))))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        buyer.contains("data-testid=\"fulfilment\">code: 42 &lt;script&gt;"),
        "{buyer}"
    );
    assert!(!buyer.contains("<script>alert(1)") && !buyer.contains("<img src=x"));
    // The seller's page too, with the fulfil action gone.
    let page = b
        .get(&format!("/admin/orders/{}?lang=en", no(&order)))
        .await;
    assert!(!page.body.contains("<script>alert(1)"));
    assert!(!page.body.contains("data-testid=\"action-fulfil\""));

    let rows = audit(&app, "order.fulfil").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.actor, format!("user:{USER}"));
}
both_backends!(fulfil_from_the_console_reaches_the_buyer_escaped);

async fn deliver_an_exception_order_from_the_console(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("late", 700, "auto").await;
    app.import_keys("late", 1).await;
    let late = app.order("late", 1).await;
    app.state.store.expire_due(FAR_FUTURE, 100).await.unwrap();
    let _other = app.order("late", 1).await; // takes the only key
    let (s, body) = app
        .send_notification(&app.notification(
            no(&late),
            "7.00",
            "CNY",
            &format!("SBX{}", hex_rand()),
        ))
        .await;
    assert_eq!((s, body.as_str()), (200, "success"));
    assert_eq!(app.wait_settled(&late).await["status"], "exception");

    let mut b = Browser::signed_in(&app).await;
    // No stock: the service says so; still an exception.
    let flash = click(&mut b, no(&late), "deliver", &[]).await;
    assert!(flash.to_lowercase().contains("stock"), "{flash}");
    assert_eq!(app.admin_order(no(&late)).await["status"], "exception");

    app.import_keys("late", 1).await;
    click(&mut b, no(&late), "deliver", &[]).await;
    let v = app.admin_order(no(&late)).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(cards(&v).len(), 1);
    let rows = audit(&app, "order.deliver").await;
    assert_eq!(rows.len(), 1, "one delivery, one row");
    assert_eq!(rows[0].entry.actor, format!("user:{USER}"));
}
both_backends!(deliver_an_exception_order_from_the_console);

async fn check_payment_and_cancel_from_the_console(backend: Backend) {
    let (app, _clock) = spawn_gateways(backend).await;
    app.create_product("ali", 990, "auto").await;
    app.import_keys("ali", 3).await;
    let dropped = alipay_order(&app).await;
    let unpaid = alipay_order(&app).await;
    // Hold the background check off: only the seller's click asks the channel.
    app.state
        .store
        .claim_payment_checks(FAR_FUTURE, FAR_FUTURE + 1, 1000)
        .await
        .unwrap();
    let (s, body) = app.pay_in_browser(&dropped, "drop").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(app.admin_order(no(&dropped)).await["status"], "pending");

    let mut b = Browser::signed_in(&app).await;
    // 补单 on an unpaid trade changes nothing and says what the channel answered.
    let flash = click(&mut b, no(&unpaid), "check_payment", &[]).await;
    assert!(flash.contains("alipay-sim"), "{flash}");
    assert_eq!(app.admin_order(no(&unpaid)).await["status"], "pending");
    // On the dropped one: delivered, once.
    let flash = click(&mut b, no(&dropped), "check_payment", &[]).await;
    assert!(flash.contains("delivered"), "{flash}");
    let v = app.admin_order(no(&dropped)).await;
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(cards(&v).len(), 1);
    // The action is no longer offered; a forged post of it is refused with a message.
    let page = b
        .get(&format!("/admin/orders/{}?lang=en", no(&dropped)))
        .await;
    assert!(!page.body.contains("data-testid=\"action-check_payment\""));
    let csrf = page.csrf();
    b.post(
        &format!("/admin/orders/{}/check_payment", no(&dropped)),
        &[("csrf", &csrf)],
    )
    .await;
    let after = b
        .get(&format!("/admin/orders/{}?lang=en", no(&dropped)))
        .await;
    assert!(
        after.testid("flash").unwrap().contains("not possible"),
        "{:?}",
        after.testid("flash")
    );
    assert_eq!(cards(&app.admin_order(no(&dropped)).await).len(), 1);

    // Cancel the unpaid one: closed at the channel, no longer pending, its key back in stock.
    let stock_before = app.stock("ali").await.as_i64().unwrap();
    click(&mut b, no(&unpaid), "cancel", &[]).await;
    let v = app.admin_order(no(&unpaid)).await;
    assert_ne!(v["status"], "pending", "{v}");
    assert_eq!(app.stock("ali").await.as_i64().unwrap(), stock_before + 1);

    assert_eq!(audit(&app, "order.check_payment").await.len(), 2);
    let cancels = audit(&app, "order.cancel").await;
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].entry.actor, format!("user:{USER}"));
}
both_backends!(check_payment_and_cancel_from_the_console);

async fn resend_mail_without_smtp_says_so(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("k", 100, "auto").await;
    app.import_keys("k", 1).await;
    let order = app.order("k", 1).await;
    app.pay(&order).await;
    app.wait_settled(&order).await;
    let mut b = Browser::signed_in(&app).await;
    let flash = click(&mut b, no(&order), "resend_mail", &[]).await;
    assert!(flash.contains("sends no mail"), "{flash}");
    assert!(audit(&app, "order.resend_mail").await.is_empty());
}
both_backends!(resend_mail_without_smtp_says_so);
