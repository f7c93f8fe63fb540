//! Page helpers on top of the engine harness: a browser-like HTTP client (no redirects
//! followed, no cookie jar: cookies are read and sent by hand), products with the storefront's
//! options, buying through the product form, and snapshot redaction.

use std::time::Duration;

use kami_core::OrderNo;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use kami_testkit::TestApp;

/// Far enough ahead that every pending order is due to expire.
pub const FAR_FUTURE: i64 = 4_102_444_800_000; // 2100-01-01

pub const UA_DESKTOP: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
pub const UA_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN";

/// An HTTP answer, read in full.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The `Set-Cookie` line of one cookie, if set.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    pub fn has(&self, testid: &str) -> bool {
        self.body.contains(&format!("data-testid=\"{testid}\""))
    }

    /// The `<html lang>` of the page.
    pub fn lang(&self) -> &str {
        self.body
            .split("<html lang=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
    }

    /// The delivered keys shown on the page (as written in the HTML, i.e. escaped).
    pub fn keys(&self) -> Vec<String> {
        self.body
            .split("<code data-testid=\"key\">")
            .skip(1)
            .map(|r| r.split("</code>").next().unwrap().to_owned())
            .collect()
    }

    /// The text of the element carrying `data-testid` (up to the next `<`).
    pub fn text_of(&self, testid: &str) -> String {
        let marker = format!("data-testid=\"{testid}\"");
        let rest = self
            .body
            .split(&marker)
            .nth(1)
            .unwrap_or_else(|| panic!("no {testid} in {}", self.body));
        let rest = &rest[rest.find('>').unwrap() + 1..];
        rest[..rest.find('<').unwrap_or(rest.len())].to_owned()
    }

    /// The `href` of the element carrying `data-testid`, entity-decoded.
    pub fn href_of(&self, testid: &str) -> String {
        let marker = format!("data-testid=\"{testid}\" href=\"");
        let raw = self
            .body
            .split(&marker)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no {testid} link in {}", self.body));
        unescape(raw)
    }
}

/// Undo the template engine's HTML escaping.
pub use kami_testkit::html::unescape;

/// What the theme's autoescaping makes of `s` (minijinja's HTML escaping).
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '/' => out.push_str("&#x2f;"),
            c => out.push(c),
        }
    }
    out
}

/// A browser without a cookie jar that does not follow redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn read(r: reqwest::Response) -> Page {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    Page {
        status,
        headers,
        body,
    }
}

pub async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Page {
    let mut req = browser().get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.unwrap()).await
}

/// A page in a language chosen by `Accept-Language`.
pub async fn get_in(app: &TestApp, path: &str, lang: &str) -> Page {
    get(app, path, &[("accept-language", lang)]).await
}

pub async fn post(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Page {
    let mut req = browser().post(app.url(path)).form(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.unwrap()).await
}

/// A shop behind a trusted proxy (`trust_proxy_headers`) allowing `per_minute` lookups.
pub async fn behind_a_proxy(per_minute: u32) -> TestApp {
    let shop = format!("[shop]\nlookup_per_minute = {per_minute}\ntrust_proxy_headers = true\n");
    TestApp::spawn_with(kami_testkit::Backend::Sqlite, &shop).await
}

/// The statuses of looking up `q` once with each `X-Forwarded-For` value, in turn.
pub async fn lookup_statuses(
    app: &TestApp,
    q: &str,
    password: &str,
    forwarded: &[String],
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for xff in forwarded {
        let form = [("q", q), ("password", password)];
        let p = post(app, "/lookup", &form, &[("x-forwarded-for", xff)]).await;
        statuses.push(p.status);
    }
    statuses
}

/// A request whose target is sent byte for byte (no client-side percent-encoding), over a raw
/// HTTP/1.1 connection. Returns (status, whole response text).
pub async fn raw_get(app: &TestApp, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept-Language: en\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Create a product through the admin API: `extra` adds or overrides fields of
/// `{"slug", "title", "price", "currency": "CNY", "delivery": "auto"}`.
pub async fn add_product(app: &TestApp, slug: &str, title: &str, price: i64, extra: Value) {
    let mut body = json!({
        "slug": slug, "title": title, "price": price, "currency": "CNY", "delivery": "auto",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, v) = app.admin_post("/api/v1/admin/products", body).await;
    assert_eq!(status, 201, "{v}");
}

/// Import these exact keys, one per line.
pub async fn add_keys(app: &TestApp, slug: &str, keys: &[&str]) {
    let r = app.import_text(slug, &keys.join("\n"), false).await;
    assert_eq!(r["imported"], keys.len() as u64, "{r}");
}

/// The order form's fields.
pub fn order_form<'a>(
    quantity: &'a str,
    email: &'a str,
    method: &'a str,
    query_password: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("quantity", quantity),
        ("email", email),
        ("method", method),
        ("query_password", query_password),
    ]
}

/// An order placed through the product page's form.
#[derive(Debug, Clone)]
pub struct Placed {
    pub no: String,
    pub token: String,
    /// `/orders/{no}?t={token}`
    pub location: String,
    /// The `Set-Cookie` line for `kami_orders`.
    pub set_cookie: String,
}

impl Placed {
    /// `kami_orders=...` as a browser sends it back.
    pub fn cookie(&self) -> String {
        self.set_cookie.split(';').next().unwrap().to_owned()
    }

    /// For the harness' JSON helpers (`wait_settled`, `read_order`).
    pub fn json(&self) -> Value {
        json!({"order_no": self.no, "access_token": self.token})
    }
}

/// Submit the order form; it must answer 303 to the order page.
pub async fn buy(
    app: &TestApp,
    slug: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Placed {
    let p = post(app, &format!("/p/{slug}"), form, headers).await;
    assert_eq!(p.status, 303, "order form refused: {}", p.body);
    let location = p.header("location").to_owned();
    let (path, token) = location.split_once("?t=").unwrap();
    let no = path.strip_prefix("/orders/").unwrap().to_owned();
    assert!(OrderNo::parse(&no).is_ok(), "{location}");
    Placed {
        no,
        token: token.to_owned(),
        set_cookie: p.set_cookie("kami_orders").expect("kami_orders cookie"),
        location,
    }
}

/// Buy `quantity` with the sandbox method and a desktop browser.
pub async fn buy_simple(app: &TestApp, slug: &str, quantity: u32, password: &str) -> Placed {
    let q = quantity.to_string();
    buy(
        app,
        slug,
        &order_form(&q, "buyer@example.com", "sandbox", password),
        &[("user-agent", UA_DESKTOP)],
    )
    .await
}

/// The payment the channel asked for when the page created the order: (action, target).
pub async fn pay_action(app: &TestApp, no: &str) -> (String, String) {
    app.state
        .store
        .order(&OrderNo::parse(no).unwrap())
        .await
        .unwrap()
        .unwrap()
        .pay_action
        .expect("the page saved the payment action")
}

/// Pay a sandbox order placed through the page, and wait until it is settled.
pub async fn pay_and_settle(app: &TestApp, placed: &Placed) -> Value {
    let (action, url) = pay_action(app, &placed.no).await;
    assert_eq!(action, "redirect");
    app.pay(&json!({"payment": {"channel": "sandbox", "url": url}}))
        .await;
    app.wait_settled(&placed.json()).await
}

/// How many orders exist, in any status.
pub async fn order_count(app: &TestApp) -> usize {
    app.admin_orders("").await.len()
}

/// Assert a page's HTML never holds `raw` and does hold its escaped form.
#[track_caller]
pub fn assert_escaped(page: &Page, raw: &str) {
    assert!(
        !page.body.contains(raw),
        "raw {raw:?} appears unescaped in:\n{}",
        page.body
    );
    let esc = escaped(raw);
    assert!(
        page.body.contains(&esc),
        "escaped {esc:?} missing from:\n{}",
        page.body
    );
}

/// Snapshot a page with its volatile parts redacted (order numbers, tokens, countdowns, QR
/// codes, gateway URLs, ports). Snapshots live in `tests/pages/snapshots/NAME.snap`.
pub fn snapshot(name: &str, page: &Page) {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    for (re, with) in [
        (r"(?s)<svg.*?</svg>", "[QR SVG]"),
        (
            r#"(data-testid="pay-link" href=)"[^"]*""#,
            r#"$1"[PAY URL]""#,
        ),
        (
            r#"(data-testid="sim-link" href=)"[^"]*""#,
            r#"$1"[SIM URL]""#,
        ),
        (r#"data-qr="[^"]*""#, r#"data-qr="[QR TEXT]""#),
        (r"K\d{26}", "[ORDER_NO]"),
        (r"t=[A-Za-z0-9_-]{43}", "t=[TOKEN]"),
        (
            r#"name="t" value="[A-Za-z0-9_-]{43}""#,
            r#"name="t" value="[TOKEN]""#,
        ),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r#"data-remaining="\d+""#, r#"data-remaining="[SECS]""#),
        (r">\d+:\d{2}</strong>", ">[M:SS]</strong>"),
        (
            r#"(data-testid="order-time" datetime=)"[^"]*">[^<]*<"#,
            r#"$1"[TIME]">[TIME]<"#,
        ),
    ] {
        s.add_filter(re, with);
    }
    let body = format!("HTTP {}\n\n{}", page.status, page.body);
    s.bind(|| insta::assert_snapshot!(name, body));
}

/// The start tags of an HTML page: (name, [(attribute, raw value)]), lower-cased names.
/// Quoted values are skipped as a browser would, so escaped text inside them is not mistaken
/// for attributes.
pub fn start_tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' || i + 1 >= b.len() || !b[i + 1].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        i += 1;
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' && b[i] != b'/' {
            i += 1;
        }
        let name = html[start..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                i += 1;
                break;
            }
            let a = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/')
            {
                i += 1;
            }
            let attr = html[a..i].to_ascii_lowercase();
            let mut value = String::new();
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && b[i] == b'=' {
                i += 1;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    i += 1;
                    let v = i;
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                    value = html[v..i.min(b.len())].to_owned();
                    i += 1;
                } else {
                    let v = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = html[v..i].to_owned();
                }
            }
            if !attr.is_empty() {
                attrs.push((attr, value));
            }
        }
        out.push((name, attrs));
    }
    out
}

/// No markup that runs code made it into the page: no script but the theme's, no frames,
/// objects or style blocks, no event-handler attributes, no `javascript:` URLs.
#[track_caller]
pub fn assert_no_active_markup(page: &Page) {
    for (name, attrs) in start_tags(&page.body) {
        match name.as_str() {
            "script" => assert_eq!(
                attrs,
                [
                    ("src".to_owned(), "/assets/app.js".to_owned()),
                    ("defer".to_owned(), String::new())
                ],
                "a foreign script:\n{}",
                page.body
            ),
            "iframe" | "frame" | "object" | "embed" | "style" | "base" => {
                panic!("<{name}> in the page:\n{}", page.body)
            }
            _ => {}
        }
        for (attr, value) in &attrs {
            assert!(
                !attr.starts_with("on"),
                "event handler {attr}={value:?} on <{name}>:\n{}",
                page.body
            );
            let v = unescape(value).trim().to_ascii_lowercase();
            assert!(
                !v.starts_with("javascript:") && !v.starts_with("data:text/html"),
                "{attr}={value:?} on <{name}>:\n{}",
                page.body
            );
        }
    }
}

/// Message keys that reached the page untranslated (`t()` falls back to the key itself):
/// `status.refunded.title` and the like.
pub fn untranslated(body: &str) -> Vec<String> {
    const PREFIXES: [&str; 19] = [
        "lang.",
        "nav.",
        "footer.",
        "catalogue.",
        "stock.",
        "product.",
        "form.",
        "method.",
        "inapp.",
        "order.",
        "status.",
        "pay.",
        "keys.",
        "mail_line.",
        "lookup.",
        "error.",
        "message.",
        "mail.",
        "tiers.",
    ];
    let mut out = Vec::new();
    for p in PREFIXES {
        for (at, _) in body.match_indices(p) {
            let next = body[at + p.len()..].chars().next().unwrap_or(' ');
            let before = body[..at].chars().next_back().unwrap_or(' ');
            if next.is_ascii_lowercase() && !before.is_ascii_alphanumeric() && before != '/' {
                let end = body[at..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                    .map_or(body.len(), |e| at + e);
                out.push(body[at..end].to_owned());
            }
        }
    }
    out
}

#[test]
fn helpers_see_what_a_browser_sees() {
    let html =
        r#"<p title="a onclick=x">t</p><img src=x onerror=alert(1)><a href=' javascript:x'>"#;
    let tags = start_tags(html);
    assert_eq!(tags[0].1, [("title".to_owned(), "a onclick=x".to_owned())]);
    assert_eq!(tags[1].1[1], ("onerror".to_owned(), "alert(1)".to_owned()));
    assert_eq!(tags[2].1[0].1, " javascript:x");
    assert_eq!(
        escaped(r#"<a href="x">'&/"#),
        "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x2f;"
    );
    assert_eq!(unescape(&escaped("a&amp;<b>'\"/")), "a&amp;<b>'\"/");
    assert_eq!(
        untranslated("<h1>status.refunded.title</h1><p>One per order.</p> email.x /order.y"),
        ["status.refunded.title"]
    );
}
