//! The simulators' HTML: one minijinja environment over the templates embedded from
//! `kami-sim/templates/`, the page shell every simulator shares (`shell.html`, dressed by a
//! [`Look`]), and the small request helpers the buyer pages have in common. Auto-escaping is
//! on for every `.html` template; the escaper is [`escape`] (the five HTML specials), so a page
//! says `&quot;` and `&#39;` exactly as the hand-built pages did.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value};

/// Every template, by name (compiled once, on first use).
const TEMPLATES: &[(&str, &str)] = &[
    ("shell.html", include_str!("../../templates/shell.html")),
    ("message.html", include_str!("../../templates/message.html")),
    (
        "sandbox/pay.html",
        include_str!("../../templates/sandbox/pay.html"),
    ),
    (
        "usdt/cashier.html",
        include_str!("../../templates/usdt/cashier.html"),
    ),
    (
        "epay/cashier.html",
        include_str!("../../templates/epay/cashier.html"),
    ),
    (
        "epay/done.html",
        include_str!("../../templates/epay/done.html"),
    ),
    (
        "epay/control.html",
        include_str!("../../templates/epay/control.html"),
    ),
    (
        "wechatpay/pay.html",
        include_str!("../../templates/wechatpay/pay.html"),
    ),
    (
        "stripe/checkout.html",
        include_str!("../../templates/stripe/checkout.html"),
    ),
    (
        "alipay/cashier.html",
        include_str!("../../templates/alipay/cashier.html"),
    ),
    (
        "alipay/faults.html",
        include_str!("../../templates/alipay/faults.html"),
    ),
    (
        "alipay/index.html",
        include_str!("../../templates/alipay/index.html"),
    ),
    (
        "paypal/approve.html",
        include_str!("../../templates/paypal/approve.html"),
    ),
];

/// How one simulator's pages look: the `<title>` suffix, the style sheet and the footer.
#[derive(Debug)]
pub struct Look {
    pub site: &'static str,
    pub css: &'static str,
    pub footer: &'static str,
}

/// `&`, `<`, `>`, `"`, `'` as entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // Strings under HTML auto-escaping go through `escape`; everything else (safe values,
    // numbers, other modes) the default way.
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(s) if state.auto_escape() == AutoEscape::Html && !value.is_safe() => out
            .write_str(&escape(s))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())),
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // Embedded templates are checked by the crate's tests; a broken one renders as
            // an error page instead of taking the process down.
            tracing::error!(template = name, error = %e, "simulator template does not compile");
        }
    }
    env
});

/// Render `template` in `look` with title `title` and the page's own values `ctx`.
pub fn render(
    look: &Look,
    template: &str,
    title: &str,
    ctx: Value,
) -> Result<String, minijinja::Error> {
    let tmpl = ENV.get_template(template)?;
    tmpl.render(minijinja::context! {
        site => look.site,
        css => Value::from_safe_string(look.css.to_owned()),
        footer => look.footer,
        title => title,
        ..ctx
    })
}

/// [`render`] as an HTML response with `status` (a template error answers 500).
pub fn page(status: StatusCode, look: &Look, template: &str, title: &str, ctx: Value) -> Response {
    match render(look, template, title, ctx) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template, error = %e, "simulator page does not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "page template error").into_response()
        }
    }
}

/// A page that only says `message` (refusals, confirmations); `class` styles the paragraph.
pub fn message(
    status: StatusCode,
    look: &Look,
    title: &str,
    message: &str,
    class: Option<&str>,
) -> Response {
    page(
        status,
        look,
        "message.html",
        title,
        minijinja::context! { message => message, class => class },
    )
}

/// The caller asked for JSON (`Accept: application/json`): tests and scripts drive the
/// buyer pages that way.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// `http://` + the request's `Host` (when it looks like a host name), else
/// `http://127.0.0.1`: where the simulator tells buyers to go next.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']')
                })
        })
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// `url` if it is a web address (a "return to the shop" link never gets another scheme).
pub fn web_url(url: &str) -> Option<&str> {
    (url.starts_with("http://") || url.starts_with("https://")).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOK: Look = Look {
        site: "test",
        css: "body{margin:0}",
        footer: "footer",
    };

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            assert!(ENV.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn values_are_escaped_like_the_hand_built_pages() {
        let html = render(
            &LOOK,
            "message.html",
            "T <&>",
            minijinja::context! { message => "a \"b\" 'c' </p>/", class => "error" },
        )
        .unwrap();
        assert!(
            html.contains("<title>T &lt;&amp;&gt; · test</title>"),
            "{html}"
        );
        assert!(html.contains("<style>body{margin:0}</style>"), "{html}");
        assert!(
            html.contains("<p class=\"error\">a &quot;b&quot; &#39;c&#39; &lt;/p&gt;/</p>"),
            "{html}"
        );
    }

    #[test]
    fn origin_only_trusts_host_like_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "shop.test:8080".parse().unwrap());
        assert_eq!(origin(&h), "http://shop.test:8080");
        h.insert(header::HOST, "evil\"><x".parse().unwrap());
        assert_eq!(origin(&h), "http://127.0.0.1");
    }
}
