//! Security headers and caching on every page; language from `?lang=`, the `kami_lang`
//! cookie, `Accept-Language` and `shop.default_locale`, in that order.

use crate::support::*;
use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[track_caller]
fn assert_secure(what: &str, p: &Page, cache: &str) {
    assert_eq!(p.header("content-security-policy"), CSP, "{what}");
    assert_eq!(p.header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(p.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(p.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(p.header("cache-control"), cache, "{what}");
    if p.header("content-type").starts_with("text/html") {
        assert_eq!(
            p.header("content-type"),
            "text/html; charset=utf-8",
            "{what}"
        );
        // The CSP allows no inline script or style: the pages must not need any.
        for (name, attrs) in start_tags(&p.body) {
            assert!(
                attrs
                    .iter()
                    .all(|(a, _)| a != "style" && !a.starts_with("on")),
                "{what}: inline style or handler on <{name}>"
            );
            if name == "script" {
                assert!(
                    attrs.iter().any(|(a, _)| a == "src"),
                    "{what}: inline script"
                );
            }
            assert_ne!(name, "style", "{what}: inline <style>");
        }
    }
}

async fn every_page_sends_the_security_headers(backend: Backend) {
    let app = TestApp::spawn_gateways(backend, "").await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 5).await;
    let placed = buy_simple(&app, "item", 1, "pass-word").await;
    let qr = buy(
        &app,
        "item",
        &order_form("1", "buyer@example.com", "wxpay", ""),
        &[("user-agent", UA_DESKTOP)],
    )
    .await;
    pay_and_settle(&app, &placed).await;

    let public = [("catalogue", "/"), ("product", "/p/item")];
    for (what, path) in public {
        let p = get_in(&app, path, "en").await;
        assert_eq!(p.status, 200, "{what}");
        assert_secure(what, &p, "no-cache");
        assert!(p.header("vary").contains("Accept-Language"), "{what}");
        assert!(p.header("vary").contains("Cookie"), "{what}");
    }
    let keys_file = format!("/orders/{}/keys.txt?t={}", placed.no, placed.token);
    let private = [
        ("order", placed.location.clone()),
        ("checkout-qr", qr.location.clone()),
        ("fragment", format!("{}&fragment=1", placed.location)),
        ("status-only", format!("/orders/{}", placed.no)),
        ("lookup-form", "/lookup".to_owned()),
        ("keys.txt", keys_file),
        ("not-found", "/nope".to_owned()),
        ("order-not-found", "/orders/K123".to_owned()),
    ];
    for (what, path) in &private {
        let p = get_in(&app, path, "en").await;
        assert_secure(what, &p, "no-store");
    }
    let p = post(
        &app,
        "/lookup",
        &[("q", &placed.no), ("password", "pass-word")],
        &[],
    )
    .await;
    assert!(p.has("lookup-result"));
    assert_secure("lookup-result", &p, "no-store");
    let p = post(
        &app,
        "/p/item",
        &order_form("0", "buyer@example.com", "sandbox", ""),
        &[],
    )
    .await;
    assert_eq!(p.status, 422);
    assert_secure("form-error", &p, "no-store");
    let p = post(
        &app,
        "/p/item",
        &order_form("1", "buyer@example.com", "alipay", ""),
        &[("user-agent", UA_WECHAT)],
    )
    .await;
    assert_secure("in-app guide", &p, "no-store");

    // The redirect to the new order carries the token: never cached.
    let p = post(
        &app,
        "/p/item",
        &order_form("1", "buyer@example.com", "sandbox", ""),
        &[],
    )
    .await;
    assert_eq!(p.status, 303);
    assert_eq!(p.header("cache-control"), "no-store");

    // Assets: long-cached, typed, not sniffed.
    for (path, ty) in [
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let p = get(&app, path, &[]).await;
        assert_eq!(p.status, 200, "{path}");
        assert_eq!(p.header("content-type"), ty, "{path}");
        assert_eq!(p.header("x-content-type-options"), "nosniff", "{path}");
        assert!(p.header("cache-control").starts_with("public"), "{path}");
    }
    for path in [
        "/assets/nope.css",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/.hidden.css",
        "/assets/style.css.bak",
    ] {
        assert_eq!(get(&app, path, &[]).await.status, 404, "{path}");
    }
}
both_backends!(every_page_sends_the_security_headers);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn language_follows_accept_language_then_the_default() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (accept, lang) in [
        ("", "zh-CN"),
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("fr, en;q=0.5, zh;q=0.3", "en"),
        ("de, fr", "zh-CN"),
        ("en;q=0, zh;q=0.1", "zh-CN"),
    ] {
        let h: Vec<(&str, &str)> = if accept.is_empty() {
            vec![]
        } else {
            vec![("accept-language", accept)]
        };
        let p = get(&app, "/", &h).await;
        assert_eq!(p.lang(), lang, "Accept-Language: {accept:?}");
        assert!(
            p.set_cookie("kami_lang").is_none(),
            "negotiation sets no cookie"
        );
        let nav = p.text_of("nav-lookup");
        assert_eq!(
            nav,
            if lang == "en" {
                "Find my order"
            } else {
                "查询订单"
            }
        );
    }

    let app = TestApp::spawn_with(Backend::Sqlite, "[shop]\ndefault_locale = \"en\"\n").await;
    assert_eq!(get(&app, "/", &[]).await.lang(), "en");
    assert_eq!(
        get(&app, "/", &[("accept-language", "de")]).await.lang(),
        "en"
    );
    assert_eq!(get_in(&app, "/", "zh").await.lang(), "zh-CN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lang_parameter_switches_and_is_remembered() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 3).await;

    // `?lang=` beats Accept-Language and is remembered in a cookie.
    let p = get_in(&app, "/?lang=en", "zh-CN").await;
    assert_eq!(p.lang(), "en");
    let set = p.set_cookie("kami_lang").expect("kami_lang is set");
    assert!(set.starts_with("kami_lang=en;"), "{set}");
    assert!(
        set.contains("Path=/") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert_eq!(p.header("cache-control"), "no-cache");

    // The cookie beats Accept-Language on later pages, `?lang=` beats the cookie.
    let p = get(
        &app,
        "/p/item",
        &[("cookie", "kami_lang=en"), ("accept-language", "zh-CN")],
    )
    .await;
    assert_eq!(p.lang(), "en");
    assert!(p.set_cookie("kami_lang").is_none());
    let p = get(
        &app,
        "/p/item?lang=zh-CN",
        &[("cookie", "kami_lang=en"), ("accept-language", "en")],
    )
    .await;
    assert_eq!(p.lang(), "zh-CN");
    assert!(p
        .set_cookie("kami_lang")
        .unwrap()
        .starts_with("kami_lang=zh-CN;"));

    // An unknown language changes nothing and sets nothing.
    let p = get_in(&app, "/?lang=fr", "en").await;
    assert_eq!(p.lang(), "en");
    assert!(p.set_cookie("kami_lang").is_none());
    let p = get(
        &app,
        "/",
        &[("cookie", "kami_lang=fr"), ("accept-language", "en")],
    )
    .await;
    assert_eq!(p.lang(), "en");

    // POSTed forms answer in the language too.
    let p = post(
        &app,
        "/p/item?lang=en",
        &order_form("0", "buyer@example.com", "sandbox", ""),
        &[("accept-language", "zh-CN")],
    )
    .await;
    assert_eq!(p.lang(), "en");
    assert_eq!(
        p.text_of("form-error"),
        "A quantity of 0 cannot be ordered: please order between 1 and 3."
    );

    // The language links keep the rest of the query (the order's token) and mark the
    // current language.
    let placed = buy_simple(&app, "item", 1, "").await;
    let p = get_in(&app, &format!("{}&lang=en", placed.location), "zh-CN").await;
    assert_eq!(p.lang(), "en");
    assert!(p.has("pay-link"), "the token still opens the order");
    // Query-only links (relative to the page): the path is never echoed into a link.
    let query = placed.location.split_once('?').map(|(_, q)| q).unwrap();
    let zh = p.href_of("lang-zh-CN");
    assert_eq!(zh, format!("?{query}&lang=zh-CN"));
    assert_eq!(p.href_of("lang-en"), format!("?{query}&lang=en"));
    assert!(
        p.body.contains("data-testid=\"lang-en\" href=\"")
            && p.body.contains("hreflang=\"en\" aria-current=\"true\"")
    );
    // Following the link switches language and keeps the order open.
    let p = get(&app, &format!("/orders/{}{zh}", placed.no), &[]).await;
    assert_eq!(p.lang(), "zh-CN");
    assert!(p.has("pay-link"));
    assert_eq!(p.href_of("lang-en"), format!("?{query}&lang=en"));
}
