//! Paying through a real protocol's simulator the way a buyer's browser does: open the
//! payment page (the redirect URL, or the page behind a QR code), then submit its first
//! `<form method="post">` with the simulator's `notify=normal` control.

use anyhow::{bail, Result};
use reqwest::Url;

/// The payment methods the bench can buy with (`kami serve --demo` wires each to a channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayMethod {
    /// Channel `alipay-sim`: Alipay OpenAPI (RSA2).
    Alipay,
    /// Channel `wechat-sim`: WeChat Pay v3 (RSA + AES-GCM notifications).
    Wxpay,
    /// Channel `epay-sim`: Epay v1 (MD5).
    Qqpay,
    /// Channel `stripe-sim`: Stripe Checkout (signed webhooks).
    Card,
    /// The built-in sandbox channel (HMAC).
    Sandbox,
    /// Channel `usdt-sim`: epusdt (MD5, JSON notifications).
    Usdt,
    /// Channel `paypal-sim`: PayPal Orders v2 (approve, capture on return, signed webhooks);
    /// the bench's product is priced in USD (PayPal takes no CNY).
    Paypal,
}

impl PayMethod {
    /// The `method` of `POST /api/v1/orders`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayMethod::Alipay => "alipay",
            PayMethod::Wxpay => "wxpay",
            PayMethod::Qqpay => "qqpay",
            PayMethod::Card => "card",
            PayMethod::Sandbox => "sandbox",
            PayMethod::Usdt => "usdt",
            PayMethod::Paypal => "paypal",
        }
    }

    /// The currency the bench's product is priced in for this method.
    pub fn currency(self) -> &'static str {
        match self {
            PayMethod::Paypal => "USD",
            _ => "CNY",
        }
    }

    /// The channel `kami serve --demo` routes this method to.
    pub fn demo_channel(self) -> &'static str {
        match self {
            PayMethod::Alipay => "alipay-sim",
            PayMethod::Wxpay => "wechat-sim",
            PayMethod::Qqpay => "epay-sim",
            PayMethod::Card => "stripe-sim",
            PayMethod::Sandbox => "sandbox",
            PayMethod::Usdt => "usdt-sim",
            PayMethod::Paypal => "paypal-sim",
        }
    }

    /// Whether the spawned server needs `--demo` (the in-process gateway simulators).
    pub fn needs_demo(self) -> bool {
        self != PayMethod::Sandbox
    }
}

/// The buyer's device, sent as `device` when creating the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// QR flavours: Alipay precreate, WeChat Native.
    Pc,
    /// Redirect flavours: Alipay wap.pay, WeChat H5.
    Mobile,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Pc => "pc",
            Device::Mobile => "mobile",
        }
    }
}

/// A WeChat Pay Native `code_url`; the simulator serves its "scan" page.
pub const WECHAT_CODE_URL_PREFIX: &str = "weixin://wxpay/bizpayurl?pr=";

/// `{base}/sim/wechatpay/scan/{TOKEN}` for `weixin://wxpay/bizpayurl?pr=TOKEN` (what the
/// WeChat app does when it scans the code; same mapping as
/// `kami_sim::wechatpay::scan_page_url`).
pub fn wechat_scan_page_url(base: &Url, code_url: &str) -> Option<String> {
    let token = code_url.strip_prefix(WECHAT_CODE_URL_PREFIX)?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(format!(
        "{}/sim/wechatpay/scan/{token}",
        base.as_str().trim_end_matches('/')
    ))
}

/// The page a browser opens for a payment action: `url` (redirect) or `qr_code` (QR; a
/// `weixin://` code maps to the simulator's scan page), resolved against `base`.
pub fn payment_page(base: &Url, url: Option<&str>, qr_code: Option<&str>) -> Result<Url> {
    let target = match (url, qr_code) {
        (Some(u), _) => u.to_string(),
        (None, Some(q)) if q.starts_with(WECHAT_CODE_URL_PREFIX) => {
            match wechat_scan_page_url(base, q) {
                Some(u) => u,
                None => bail!("unusable WeChat code_url {q:?}"),
            }
        }
        (None, Some(q)) => q.to_string(),
        (None, None) => bail!("payment has neither url nor qr_code"),
    };
    base.join(&target)
        .map_err(|e| anyhow::anyhow!("bad payment target {target:?}: {e}"))
}

/// Undoes the HTML escapes a simulator applies to attribute values.
fn unescape_attr(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The action of the page's first `<form method="post" action="...">`, unescaped and
/// resolved against the page's URL.
pub fn first_post_form(page_url: &Url, html: &str) -> Option<Url> {
    let rest = html.split("<form method=\"post\" action=\"").nth(1)?;
    let action = unescape_attr(rest.split('"').next()?);
    page_url.join(&action).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:8080").expect("url")
    }

    #[test]
    fn wechat_code_urls_map_to_the_scan_page() {
        assert_eq!(
            wechat_scan_page_url(&base(), "weixin://wxpay/bizpayurl?pr=AbC123").as_deref(),
            Some("http://127.0.0.1:8080/sim/wechatpay/scan/AbC123")
        );
        assert_eq!(
            wechat_scan_page_url(&base(), "weixin://wxpay/bizpayurl?pr="),
            None
        );
        assert_eq!(
            wechat_scan_page_url(&base(), "weixin://wxpay/bizpayurl?pr=a/b"),
            None
        );
        assert_eq!(wechat_scan_page_url(&base(), "https://x/y"), None);
    }

    #[test]
    fn payment_pages() {
        let b = base();
        assert_eq!(
            payment_page(&b, Some("/sim/epay/submit.php?a=1&b=2"), None)
                .expect("page")
                .as_str(),
            "http://127.0.0.1:8080/sim/epay/submit.php?a=1&b=2"
        );
        assert_eq!(
            payment_page(&b, None, Some("http://127.0.0.1:8080/sim/alipay/qr/T1"))
                .expect("page")
                .as_str(),
            "http://127.0.0.1:8080/sim/alipay/qr/T1"
        );
        assert_eq!(
            payment_page(&b, None, Some("weixin://wxpay/bizpayurl?pr=Z9"))
                .expect("page")
                .as_str(),
            "http://127.0.0.1:8080/sim/wechatpay/scan/Z9"
        );
        assert!(payment_page(&b, None, None).is_err());
        assert!(payment_page(&b, None, Some("weixin://wxpay/bizpayurl?pr=")).is_err());
    }

    #[test]
    fn first_form_is_found_unescaped_and_resolved() {
        let page = Url::parse("http://127.0.0.1:8080/sim/wechatpay/h5/T1?x=1").expect("url");
        let html = "<p>hi</p><form method=\"post\" action=\"/sim/wechatpay/h5/T1?a=1&amp;b=2\">\
                    <input name=notify></form><form method=\"post\" action=\"/other\">";
        assert_eq!(
            first_post_form(&page, html).expect("form").as_str(),
            "http://127.0.0.1:8080/sim/wechatpay/h5/T1?a=1&b=2"
        );
        let html = "<form method=\"post\" action=\"pay/K1\">";
        let page = Url::parse("http://h/sim/epay/").expect("url");
        assert_eq!(
            first_post_form(&page, html).expect("form").as_str(),
            "http://h/sim/epay/pay/K1"
        );
        assert_eq!(first_post_form(&page, "<form method=\"get\">"), None);
    }

    #[test]
    fn names() {
        assert_eq!(PayMethod::Wxpay.as_str(), "wxpay");
        assert_eq!(PayMethod::Qqpay.demo_channel(), "epay-sim");
        assert_eq!(PayMethod::Card.demo_channel(), "stripe-sim");
        assert!(!PayMethod::Sandbox.needs_demo());
        assert!(PayMethod::Alipay.needs_demo());
        assert_eq!(Device::Mobile.as_str(), "mobile");
    }
}
