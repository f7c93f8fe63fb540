//! The order form: the server charges the tier price, enforces quantity limits and stock,
//! refuses bad input with a clear message and creates nothing, and keeps in-app browsers away
//! from wallets that cannot open in them.

use serde_json::json;

use crate::support::*;
use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

const EN: (&str, &str) = ("accept-language", "en");

async fn tier_prices_are_charged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_product(
        &app,
        "bulk",
        "Bulk Key",
        1000,
        json!({"tiers": [{"min_quantity": 10, "price": 800}, {"min_quantity": 5, "price": 900}]}),
    )
    .await;
    app.import_keys("bulk", 60).await;

    let page = get_in(&app, "/p/bulk", "en").await;
    assert!(
        page.body.contains("data-tiers=\"5:900,10:800\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("5 or more: ¥9.00 each"), "{}", page.body);
    assert!(
        page.body.contains("10 or more: ¥8.00 each"),
        "{}",
        page.body
    );

    // (quantity, amount charged): the highest tier reached sets the unit price.
    for (qty, amount) in [
        (1, 1000),
        (4, 4000),
        (5, 4500),
        (9, 8100),
        (10, 8000),
        (12, 9600),
    ] {
        let q = qty.to_string();
        let placed = buy(
            &app,
            "bulk",
            &order_form(&q, "buyer@example.com", "sandbox", ""),
            &[("user-agent", UA_DESKTOP)],
        )
        .await;
        let (s, v) = app.read_order(&placed.no, &placed.token, 0).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["amount"], amount, "quantity {qty}: {v}");
        assert_eq!(v["quantity"], qty, "{v}");
        let page = get_in(&app, &placed.location, "en").await;
        assert_eq!(
            page.text_of("amount"),
            format!("¥{}.{:02}", amount / 100, amount % 100)
        );
    }

    // Price fields smuggled into the form change nothing: the server prices the order.
    let placed = buy(
        &app,
        "bulk",
        &[
            ("quantity", "5"),
            ("email", "buyer@example.com"),
            ("method", "sandbox"),
            ("price", "1"),
            ("amount", "1"),
            ("unit", "1"),
        ],
        &[],
    )
    .await;
    let (_, v) = app.read_order(&placed.no, &placed.token, 0).await;
    assert_eq!(v["amount"], 4500, "{v}");

    // The page's first total (before any script) is the tier total too.
    let p = post(
        &app,
        "/p/bulk",
        &order_form("10", "no-at-sign", "sandbox", ""),
        &[EN],
    )
    .await;
    assert_eq!(p.status, 422);
    // Without the page script the total is not guessed: the unit price, and the total is
    // the server's at checkout (it charged ¥80.00 above).
    assert_eq!(p.text_of("unit-price"), "¥10.00");
    assert_eq!(
        p.text_of("total"),
        "computed when you order (wholesale prices and coupon included)"
    );
    assert!(p.body.contains("value=\"10\""), "the quantity is kept");
}
both_backends!(tier_prices_are_charged);

async fn quantity_limits_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_product(
        &app,
        "limited",
        "Limited Key",
        500,
        json!({"min_quantity": 2, "max_quantity": 5}),
    )
    .await;
    app.import_keys("limited", 20).await;

    let page = get_in(&app, "/p/limited", "en").await;
    assert!(
        page.body.contains("min=\"2\" max=\"5\" value=\"2\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Between 2 and 5 per order."));

    for bad in [
        "1",
        "6",
        "0",
        "-1",
        "100",
        "abc",
        "",
        "2.5",
        "99999999999999999999",
    ] {
        let p = post(
            &app,
            "/p/limited",
            &order_form(bad, "buyer@example.com", "sandbox", ""),
            &[EN],
        )
        .await;
        assert_eq!(p.status, 422, "quantity {bad:?}: {}", p.body);
        assert_eq!(
            p.text_of("form-error"),
            format!(
                "A quantity of {} cannot be ordered: please order between 2 and 5.",
                bad.chars().take(20).collect::<String>()
            ),
            "quantity {bad:?}: explained, not changed"
        );
        // The limits are right there with the message, and the form is ready to resubmit.
        assert!(p.body.contains("Between 2 and 5 per order."), "{}", p.body);
        assert!(p.has("order-form"));
        assert!(p.body.contains("value=\"buyer@example.com\""));
        assert_eq!(p.header("cache-control"), "no-store");
        assert!(p.set_cookie("kami_orders").is_none());
    }
    // In Chinese too.
    let p = post(
        &app,
        "/p/limited",
        &order_form("9", "buyer@example.com", "sandbox", ""),
        &[("accept-language", "zh-CN")],
    )
    .await;
    assert_eq!(
        p.text_of("form-error"),
        "无法购买 9 件：每单请购买 2 到 5 件。"
    );

    assert_eq!(
        order_count(&app).await,
        0,
        "a refused form created an order"
    );
    assert_eq!(app.stock("limited").await, json!(20));

    for ok in ["2", "5"] {
        buy(
            &app,
            "limited",
            &order_form(ok, "buyer@example.com", "sandbox", ""),
            &[],
        )
        .await;
    }
    assert_eq!(order_count(&app).await, 2);
}
both_backends!(quantity_limits_are_refused);

async fn bad_email_method_and_password_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 5).await;
    for (form, message) in [
        (
            order_form("1", "not-an-email", "sandbox", ""),
            "Please enter a valid email address.",
        ),
        (
            order_form("1", "", "sandbox", ""),
            "Please enter a valid email address.",
        ),
        (
            order_form("1", "buyer@example.com", "bitcoin", ""),
            "This payment method is not available right now. Please choose another.",
        ),
        (
            order_form("1", "buyer@example.com", "alipay", ""),
            "This payment method is not available right now. Please choose another.",
        ),
        (
            order_form("1", "buyer@example.com", "sandbox", "abc"),
            "The query password must be 4 to 128 characters.",
        ),
    ] {
        let p = post(&app, "/p/item", &form, &[EN]).await;
        assert_eq!(p.status, 422, "{form:?}: {}", p.body);
        assert_eq!(p.text_of("form-error"), message, "{form:?}");
    }
    assert_eq!(order_count(&app).await, 0);
    assert_eq!(app.stock("item").await, json!(5));
}
both_backends!(bad_email_method_and_password_are_refused);

async fn sold_out_products_take_no_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("gone", 100, "auto").await;
    app.create_product("last", 100, "auto").await;
    app.import_keys("last", 2).await;

    let page = get_in(&app, "/p/gone", "en").await;
    assert_eq!(page.status, 200);
    assert!(
        page.has("sold-out") && !page.has("order-form"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Sold out"));
    let cat = get_in(&app, "/", "en").await;
    assert!(
        cat.body
            .contains("class=\"card sold_out\" data-testid=\"product-gone\""),
        "{}",
        cat.body
    );

    // A form posted anyway (stale page, script): 409 with the reason, no order.
    let p = post(
        &app,
        "/p/gone",
        &order_form("1", "buyer@example.com", "sandbox", ""),
        &[EN],
    )
    .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert_eq!(
        p.text_of("form-error"),
        "Sorry, there is not enough stock for this quantity."
    );
    assert!(p.has("sold-out"));
    assert!(p.set_cookie("kami_orders").is_none());

    // More than is left: 409, nothing reserved.
    let p = post(
        &app,
        "/p/last",
        &order_form("3", "buyer@example.com", "sandbox", ""),
        &[EN],
    )
    .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert_eq!(order_count(&app).await, 0);
    assert_eq!(app.stock("last").await, json!(2));

    // The last two go; the product shows sold out at once and refuses the next buyer.
    buy_simple(&app, "last", 2, "").await;
    let page = get_in(&app, "/p/last", "en").await;
    assert!(page.has("sold-out"), "{}", page.body);
    let p = post(
        &app,
        "/p/last",
        &order_form("1", "buyer@example.com", "sandbox", ""),
        &[EN],
    )
    .await;
    assert_eq!(p.status, 409);
    assert_eq!(order_count(&app).await, 1);
}
both_backends!(sold_out_products_take_no_orders);

async fn unknown_products_are_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/p/nope", "/p/NOT%20A%20SLUG", "/p/..%2F..%2Fetc"] {
        let p = get_in(&app, path, "en").await;
        assert_eq!(p.status, 404, "{path}");
        assert!(p.has("message-not_found"));
        let p = post(
            &app,
            path,
            &order_form("1", "buyer@example.com", "sandbox", ""),
            &[EN],
        )
        .await;
        assert_eq!(p.status, 404, "{path}");
        assert!(p.has("message-not_found"));
    }
    assert_eq!(order_count(&app).await, 0);
}
both_backends!(unknown_products_are_not_found);

/// WeChat's browser cannot open Alipay (or QQ Wallet), QQ's cannot open Alipay or WeChat Pay,
/// Alipay's cannot open WeChat Pay or QQ Wallet: such a choice gets the "open in your
/// browser" guide and no order; methods that work there still buy.
async fn in_app_browsers_get_the_guide(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 20).await;

    const UA_QQ: &str = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Mobile Safari/537.36 V1_AND_SQ_8.9.0_3000_YYB_D QQ/8.9.0.9010 NetType/WIFI";
    const UA_ALIPAY: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 AlipayClient/10.5.0 Language/zh-Hans";
    for (ua, app_name, blocked) in [
        (UA_WECHAT, "WeChat", ["alipay", "qqpay"]),
        (UA_QQ, "QQ", ["alipay", "wxpay"]),
        (UA_ALIPAY, "Alipay", ["wxpay", "qqpay"]),
    ] {
        let page = get(&app, "/p/item", &[EN, ("user-agent", ua)]).await;
        for m in blocked {
            assert!(
                page.body.contains(&format!(
                    "<label class=\"method blocked\"><input type=\"radio\" name=\"method\" value=\"{m}\" required>"
                )),
                "{app_name}/{m} not marked blocked: {}",
                page.body
            );
            let p = post(
                &app,
                "/p/item",
                &order_form("1", "buyer@example.com", m, ""),
                &[EN, ("user-agent", ua)],
            )
            .await;
            assert_eq!(p.status, 200, "{}", p.body);
            assert!(
                p.has("message-open_in_browser"),
                "{app_name}/{m}: {}",
                p.body
            );
            assert!(
                p.body
                    .contains(&format!("Tap ··· in the top right corner of {app_name}.")),
                "{}",
                p.body
            );
            assert!(p.body.contains("href=\"/p/item\""));
            assert!(p.set_cookie("kami_orders").is_none());
        }
    }
    assert_eq!(
        order_count(&app).await,
        0,
        "a blocked method created an order"
    );

    // What works inside the app still buys; a desktop browser may use any method.
    buy(
        &app,
        "item",
        &order_form("1", "buyer@example.com", "sandbox", ""),
        &[("user-agent", UA_WECHAT)],
    )
    .await;
    buy(
        &app,
        "item",
        &order_form("1", "buyer@example.com", "alipay", ""),
        &[("user-agent", UA_DESKTOP)],
    )
    .await;
    assert_eq!(order_count(&app).await, 2);
}
both_backends!(in_app_browsers_get_the_guide);
