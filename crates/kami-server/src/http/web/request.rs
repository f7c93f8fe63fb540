//! What a page needs to know about the request: language, client IP, device and in-app
//! browser, cookies; and the headers every page answers with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::extract::ClientIp;
use crate::i18n::Locale;
use crate::state::AppState;

/// Browsers inside apps, where some payment methods cannot open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InApp {
    Wechat,
    Qq,
    Alipay,
}

impl InApp {
    pub fn detect(ua: &str) -> Option<InApp> {
        if ua.contains("MicroMessenger") {
            Some(InApp::Wechat)
        } else if ua.contains("AlipayClient") {
            Some(InApp::Alipay)
        } else if ua.contains(" QQ/") || ua.contains("MQQBrowser/") && ua.contains("QQ/") {
            Some(InApp::Qq)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InApp::Wechat => "wechat",
            InApp::Qq => "qq",
            InApp::Alipay => "alipay",
        }
    }

    /// Methods that cannot complete inside this app's browser: the wallet app of another
    /// company is not allowed to open from it (WeChat blocks Alipay links, and so on).
    pub fn blocks(self, method: kami_core::Method) -> bool {
        use kami_core::Method::*;
        match self {
            InApp::Wechat => matches!(method, Alipay | Qqpay),
            InApp::Qq => matches!(method, Alipay | Wxpay),
            InApp::Alipay => matches!(method, Wxpay | Qqpay),
        }
    }
}

pub const LANG_COOKIE: &str = "kami_lang";
pub const ORDERS_COOKIE: &str = "kami_orders";
/// How many recent orders the browser remembers.
pub const RECENT_MAX: usize = 10;

pub struct Ctx {
    pub locale: Locale,
    /// `?lang=` chose a language: remember it in a cookie.
    pub set_lang: Option<Locale>,
    pub user_agent: String,
    pub in_app: Option<InApp>,
    pub mobile: bool,
    pub ip: Option<IpAddr>,
    pub cookies: HashMap<String, String>,
    pub path: String,
    /// The query string without `lang=` (language links keep the rest, e.g. `t=`).
    pub query_without_lang: String,
    /// The request comes from another site's page (forms must not be posted from there).
    pub cross_site: bool,
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Ctx, Self::Rejection> {
        let header = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let cookies = parse_cookies(header(header::COOKIE));
        let query_lang = parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("lang="))
                .and_then(Locale::parse)
        });
        let locale = query_lang
            .or_else(|| cookies.get(LANG_COOKIE).and_then(|l| Locale::parse(l)))
            .or_else(|| Locale::negotiate(header(header::ACCEPT_LANGUAGE)))
            .or_else(|| Locale::parse(&state.config.shop.default_locale))
            .unwrap_or(Locale::ZhCn);
        let user_agent = header(header::USER_AGENT)
            .chars()
            .take(512)
            .collect::<String>();
        let ip = ClientIp::from_parts(parts, &state.config.server, &state.config.shop).0;
        let origin = header(header::ORIGIN);
        let host = header(header::HOST);
        // Browsers say where a form came from; an Origin is ours if it names the Host asked
        // for or the configured public URL (a proxy may rewrite Host).
        let ours = |origin: &str| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
                || origin.eq_ignore_ascii_case(state.public_url.trim_end_matches('/'))
        };
        // `Origin: null` says nothing: browsers send it for our own forms too, because our
        // pages set `Referrer-Policy: no-referrer`; `Sec-Fetch-Site` decides then.
        let cross_site = header(header::HeaderName::from_static("sec-fetch-site")) == "cross-site"
            || (!origin.is_empty() && origin != "null" && !ours(origin));
        Ok(Ctx {
            cross_site,
            locale,
            set_lang: query_lang,
            in_app: InApp::detect(&user_agent),
            mobile: crate::services::checkout::guess_device(Some(&user_agent))
                == kami_pay::Device::Mobile,
            user_agent,
            ip,
            cookies,
            path: parts.uri.path().to_owned(),
            query_without_lang: parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("lang="))
                .collect::<Vec<_>>()
                .join("&"),
        })
    }
}

impl Ctx {
    /// Recent orders remembered by this browser: `(order_no, access_token)`, newest first.
    pub fn recent_orders(&self) -> Vec<(String, String)> {
        self.cookies
            .get(ORDERS_COOKIE)
            .map(|v| {
                v.split('~')
                    .filter_map(|e| e.split_once('.'))
                    .filter(|(no, tok)| {
                        kami_core::OrderNo::parse(no).is_ok()
                            && !tok.is_empty()
                            && tok.len() <= 64
                            && tok
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    })
                    .take(RECENT_MAX)
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The remembered token of one order.
    pub fn token_for(&self, order_no: &str) -> Option<String> {
        self.recent_orders()
            .into_iter()
            .find(|(no, _)| no == order_no)
            .map(|(_, t)| t)
    }

    /// The cookie value remembering a new order on top of the others.
    pub fn remember_order(&self, order_no: &str, token: &str) -> String {
        let mut entries = vec![format!("{order_no}.{token}")];
        entries.extend(
            self.recent_orders()
                .into_iter()
                .filter(|(no, _)| no != order_no)
                .take(RECENT_MAX - 1)
                .map(|(no, t)| format!("{no}.{t}")),
        );
        entries.join("~")
    }
}

fn parse_cookies(header: &str) -> HashMap<String, String> {
    header
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// How long a page may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Public pages: revalidate every time (stock changes).
    Revalidate,
    /// Anything holding an order, a token or keys.
    NoStore,
}

/// An HTML page with the storefront's security headers.
pub fn page(ctx: &Ctx, status: StatusCode, caching: Caching, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(match caching {
            Caching::Revalidate => "no-cache",
            Caching::NoStore => "no-store",
        }),
    );
    security_headers(h);
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    if let Some(l) = ctx.set_lang {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            l.tag()
        )) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

pub fn security_headers(h: &mut axum::http::HeaderMap) {
    // Pages hold order tokens in their URLs: never send them on as a referrer, never frame,
    // and run only our own script.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}
