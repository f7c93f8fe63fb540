//! HTML escaping of every user- or seller-provided field that reaches a page: shop name,
//! notice and footer (config), product title, category and description (seller), the buyer's
//! email and lookup query echoed back, card keys, and whatever a visitor puts in the URL.
//! Plain text must come out escaped; Markdown must come out sanitised but still rendered.

use serde_json::json;

use crate::support::*;
use kami_testkit::{Backend, TestApp};

const EN: (&str, &str) = ("accept-language", "en");

const SHOP_NAME: &str = r#"<script>alert("name")</script>&'"#;
const TITLE: &str = r#"Title <script>alert('title')</script> & "quoted""#;
const CATEGORY: &str = r#"Cat <b onclick="alert('cat')">bold</b> & 'q'"#;
/// Keys as sellers import them: anything but a line break.
const KEYS: [&str; 3] = [
    "<script>alert('key')</script>",
    r#"a"b'c&d<e>f&amp;"#,
    r#""><img src=x onerror=alert('key2')>"#,
];

/// Seller Markdown with what must go (script, `javascript:` links, event handlers, frames)
/// and what must stay (emphasis, links, images from the shop).
const DESCRIPTION: &str = "**Allowed bold** and [a link](https://example.com/docs)\n\n\
    <script>alert('desc-script')</script>\n\n\
    [evil](javascript:alert('desc-link')) [evil2](JaVaScRiPt:alert('desc-link2'))\n\n\
    <img src=\"/assets/favicon.svg\" onerror=\"alert('desc-img')\">\n\n\
    <a href=\"https://example.com/\" onmouseover=\"alert('desc-a')\">hover</a>\n\n\
    <iframe src=\"https://evil.example/desc-frame\"></iframe>\n\n\
    <svg onload=\"alert('desc-svg')\"></svg><style>body{display:none}</style>";

fn shop_config() -> String {
    format!(
        "[shop]\nname = '''{SHOP_NAME}'''\n\
         notice = '''**Bold notice** <script>alert(\"notice-script\")</script> [click](javascript:alert('notice-link')) <img src=\"x\" onerror=\"alert('notice-img')\">'''\n\
         footer = '''_italic footer_ <script>alert(\"footer-script\")</script> [bad](javascript:alert('footer-link')) <a href=\"https://example.com/f\" onclick=\"alert('footer-a')\">contact</a>'''\n\
         lookup_per_minute = 1000\n"
    )
}

async fn evil_shop() -> TestApp {
    let app = TestApp::spawn_with(Backend::Sqlite, &shop_config()).await;
    add_product(
        &app,
        "evil",
        TITLE,
        100,
        json!({"category": CATEGORY, "description": DESCRIPTION}),
    )
    .await;
    add_keys(&app, "evil", &KEYS).await;
    app
}

/// Markers of the payloads that must vanish entirely from sanitised Markdown.
const MARKDOWN_GONE: [&str; 15] = [
    "desc-script",
    "desc-link",
    "desc-img",
    "desc-a",
    "desc-frame",
    "desc-svg",
    "notice-script",
    "notice-link",
    "notice-img",
    "footer-script",
    "footer-link",
    "footer-a",
    "javascript:",
    "<iframe",
    "display:none",
];

#[track_caller]
fn assert_shop_fields_safe(p: &Page) {
    // The only script is the theme's own.
    assert!(p
        .body
        .contains("<script src=\"/assets/app.js\" defer></script>"));
    assert_escaped(p, SHOP_NAME);
    assert!(
        p.body.contains(&format!(
            "<a class=\"brand\" href=\"/\">{}</a>",
            escaped(SHOP_NAME)
        )),
        "{}",
        p.body
    );
    for gone in MARKDOWN_GONE {
        assert!(
            !p.body.to_ascii_lowercase().contains(gone),
            "{gone:?} survived in:\n{}",
            p.body
        );
    }
    assert_no_active_markup(p);
    // The footer's allowed Markdown renders.
    assert!(p.body.contains("<em>italic footer</em>"), "{}", p.body);
    assert!(
        p.body.contains(
            "<a href=\"https://example.com/f\" rel=\"noopener noreferrer nofollow\">contact</a>"
        ),
        "{}",
        p.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalogue_escapes_seller_and_config_fields() {
    let app = evil_shop().await;
    let p = get_in(&app, "/", "en").await;
    assert_eq!(p.status, 200);
    assert_shop_fields_safe(&p);
    assert!(p
        .body
        .contains(&format!("<title>{}</title>", escaped(SHOP_NAME))));
    assert!(
        p.body.contains("<strong>Bold notice</strong>"),
        "{}",
        p.body
    );
    assert!(p.body.contains("<img src=\"x\">"), "{}", p.body);
    assert_escaped(&p, TITLE);
    assert!(p
        .body
        .contains(&format!("<span class=\"title\">{}</span>", escaped(TITLE))));
    assert_escaped(&p, CATEGORY);
    assert!(p.body.contains(&format!("<h2>{}</h2>", escaped(CATEGORY))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_page_escapes_title_and_sanitises_description() {
    let app = evil_shop().await;
    let p = get_in(&app, "/p/evil", "en").await;
    assert_eq!(p.status, 200);
    assert_shop_fields_safe(&p);
    assert_escaped(&p, TITLE);
    assert!(p.body.contains(&format!("<h1>{}</h1>", escaped(TITLE))));
    assert!(p.body.contains(&format!(
        "<title>{} · {}</title>",
        escaped(TITLE),
        escaped(SHOP_NAME)
    )));
    assert_escaped(&p, CATEGORY);
    // The description's allowed Markdown renders.
    let desc = p
        .body
        .split("data-testid=\"description\">")
        .nth(1)
        .and_then(|r| r.split("</div>").next())
        .unwrap();
    assert!(desc.contains("<strong>Allowed bold</strong>"), "{desc}");
    assert!(
        desc.contains(
            "<a href=\"https://example.com/docs\" rel=\"noopener noreferrer nofollow\">a link</a>"
        ),
        "{desc}"
    );
    assert!(desc.contains("<img src=\"/assets/favicon.svg\">"), "{desc}");
    assert!(
        desc.contains(
            "<a href=\"https://example.com/\" rel=\"noopener noreferrer nofollow\">hover</a>"
        ),
        "{desc}"
    );
    // The `javascript:` links keep their text but lose their target.
    assert!(
        desc.contains(">evil</a>") && desc.contains(">evil2</a>"),
        "{desc}"
    );
    assert!(!desc.contains("<style") && !desc.contains("<svg"), "{desc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_escaped_on_the_order_page_and_in_lookups() {
    let app = evil_shop().await;
    let placed = buy(
        &app,
        "evil",
        &order_form("3", "buyer@example.com", "sandbox", "look-me-up"),
        &[],
    )
    .await;
    let v = pay_and_settle(&app, &placed).await;
    assert_eq!(v["status"], "delivered", "{v}");
    let mut delivered: Vec<&str> = v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    delivered.sort_unstable();
    let mut want = KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(delivered, want, "the keys were stored as imported");

    let order = get_in(&app, &placed.location, "en").await;
    let lookup = post(
        &app,
        "/lookup",
        &[("q", &placed.no), ("password", "look-me-up")],
        &[EN, ("cookie", &placed.cookie())],
    )
    .await;
    assert!(lookup.has("lookup-result"), "{}", lookup.body);
    for (name, p) in [("order page", &order), ("lookup", &lookup)] {
        assert_shop_fields_safe(p);
        assert_escaped(p, TITLE);
        for k in KEYS {
            assert_escaped(p, k);
            let esc = escaped(k);
            // In the <code> and in the copy button's data-copy attribute.
            assert!(
                p.body
                    .contains(&format!("<code data-testid=\"key\">{esc}</code>")),
                "{name}: {k}"
            );
            assert!(
                p.body.contains(&format!("data-copy=\"{esc}\"")),
                "{name}: {k}"
            );
        }
        // What a browser shows and copies is the key itself.
        let mut shown: Vec<String> = p.keys().iter().map(|k| unescape(k)).collect();
        shown.sort_unstable();
        assert_eq!(shown, want, "{name}");
    }
    // The lookup's list of this browser's orders escapes the title too.
    assert!(
        lookup.body.contains(&format!(" · {} · ", escaped(TITLE))),
        "{}",
        lookup.body
    );

    // The download is the keys byte for byte, as plain text that is never sniffed as HTML.
    let file = get(
        &app,
        &format!("/orders/{}/keys.txt?t={}", placed.no, placed.token),
        &[],
    )
    .await;
    assert_eq!(file.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(file.header("x-content-type-options"), "nosniff");
    let mut lines: Vec<&str> = file.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    lines.sort_unstable();
    assert_eq!(lines, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buyer_email_is_escaped_when_echoed() {
    let app = evil_shop().await;
    // An invalid address comes back in the form with the error.
    let evil = r#""><script>alert('email')</script>"#;
    let p = post(
        &app,
        "/p/evil",
        &order_form("1", evil, "sandbox", ""),
        &[EN],
    )
    .await;
    assert_eq!(p.status, 422);
    assert_escaped(&p, evil);
    assert!(p
        .body
        .contains(&format!("name=\"email\" value=\"{}\"", escaped(evil))));
    assert_shop_fields_safe(&p);

    // A valid address with quotes and ampersands, sent back after another error.
    let odd = "o'brien&co\"x@example.com";
    let p = post(&app, "/p/evil", &order_form("0", odd, "sandbox", ""), &[EN]).await;
    assert_eq!(p.status, 422);
    assert!(!p.body.contains("o'brien&co"));
    assert!(
        p.body
            .contains(&format!("name=\"email\" value=\"{}\"", escaped(odd))),
        "{}",
        p.body
    );
    assert_eq!(order_count(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookup_query_is_escaped_when_echoed() {
    let app = evil_shop().await;
    for q in [
        r#""><script>alert('q')</script>"#,
        r#"x' onfocus='alert(1)"#,
        "a&b\"c@example.com",
    ] {
        let p = post(&app, "/lookup", &[("q", q), ("password", "pass")], &[EN]).await;
        assert_eq!(p.status, 200);
        assert_escaped(&p, q);
        assert!(
            p.body
                .contains(&format!("<input name=\"q\" value=\"{}\"", escaped(q))),
            "{}",
            p.body
        );
        assert_shop_fields_safe(&p);
    }
}

/// Paths and query strings come back in the language links of every page (and an order
/// number in the return page): sent raw, byte for byte, they must come back escaped or be
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflected_urls_are_escaped() {
    let app = evil_shop().await;
    let placed = buy_simple(&app, "evil", 1, "").await;
    let targets = [
        format!("/orders/{}?t=\"><script>alert('t')</script>", placed.no),
        format!(
            "/orders/{}?t={}&x=\"><script>alert('x')</script>",
            placed.no, placed.token
        ),
        "/orders/\"><script>alert('no')</script>".to_owned(),
        "/orders/K00000000000000000000000000/keys.txt?t=\"><script>alert('kt')</script>".to_owned(),
        "/?q=\"><script>alert('q')</script>&lang=en".to_owned(),
        "/?a='onmouseover='alert(1)'".to_owned(),
        "/lookup?lang=en\"><script>alert('lang')</script>".to_owned(),
        "/p/evil?lang=en-\"><script>alert('lang2')</script>".to_owned(),
        "/nope/\"><script>alert('path')</script>".to_owned(),
        "/pay/return/sandbox?order_no=\"><script>alert('ret')</script>".to_owned(),
    ];
    for target in &targets {
        let (status, text) = raw_get(&app, target).await;
        assert!(status > 0, "{target}: {text}");
        assert!(
            !text.contains("<script>alert("),
            "{target} reflected: {text}"
        );
        assert!(
            !text.contains("'onmouseover='"),
            "{target} reflected: {text}"
        );
        if let Some(at) = text.find("\r\n\r\n") {
            assert_no_active_markup(&Page {
                status,
                headers: Default::default(),
                body: text[at..].to_owned(),
            });
        }
    }
    // The same through a client that percent-encodes: reflected only encoded.
    for target in &targets {
        let p = get_in(&app, target, "en").await;
        assert!(!p.body.contains("<script>alert("), "{target}: {}", p.body);
        assert_no_active_markup(&p);
    }
    // A cookie cannot smuggle anything into the list of recent orders.
    let cookie = format!(
        "kami_orders={}.\"><script>alert('c')</script>~{}.{}",
        placed.no, placed.no, placed.token
    );
    let p = get(&app, "/lookup", &[("cookie", &cookie)]).await;
    assert!(!p.body.contains("alert('c')") && !p.body.contains("alert(&#x27;c"));
    // And a language cookie is a language or nothing.
    let p = get(
        &app,
        "/",
        &[("cookie", "kami_lang=\"><script>alert('l')</script>")],
    )
    .await;
    assert_eq!(p.lang(), "zh-CN");
    assert!(!p.body.contains("alert('l')"));
}
