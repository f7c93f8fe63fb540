//! `[shop]`: what the storefront shows and how it behaves.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check_range, invalid, ConfigError, Origins};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ShopConfig {
    /// Shop name in the header and titles; default "kami".
    pub name: String,
    /// Announcement above the catalogue (Markdown, rendered safely); empty = none.
    pub notice: String,
    /// Footer text (Markdown, rendered safely); empty = none.
    pub footer: String,
    /// How buyers reach the seller, shown on the order pages that need the seller (exception,
    /// manual delivery), e.g. "Telegram @shop / QQ 123456"; plain text, at most 200
    /// characters; empty = none.
    pub contact: String,
    /// The shop's logo in the header: the path of an image this shop serves, e.g.
    /// `/assets/logo.png` (a file in `theme_dir/assets/`); empty = none.
    pub logo: String,
    /// A theme directory (`templates/`, `assets/`, `locales/`) whose files override the
    /// embedded default theme; resolved against the config file's directory.
    pub theme_dir: Option<PathBuf>,
    /// Stock at or below this shows as "low"; default 10.
    pub low_stock_threshold: u32,
    /// Language when the browser asks for none we have: `zh-CN` (default) or `en`.
    pub default_locale: String,
    /// Order lookups allowed per client IP per minute, 1..=1000, default 10.
    pub lookup_per_minute: u32,
    /// Deprecated alias of `risk.orders_per_minute_per_ip` (used, with a warning, when that
    /// key is not set), 1..=1000000.
    pub orders_per_minute: Option<u32>,
    /// Deprecated (one release; use `server.trusted_proxies`): believe the last
    /// `X-Forwarded-For` entry (or `X-Real-IP`) from any peer, as before `trusted_proxies`.
    /// Ignored when `server.trusted_proxies` is set.
    pub trust_proxy_headers: bool,
    /// The IANA time zone the shop's days are counted in (dashboard, stats), e.g.
    /// "Asia/Shanghai"; default "UTC". Checked at start.
    pub timezone: String,
}

impl Default for ShopConfig {
    fn default() -> ShopConfig {
        ShopConfig {
            name: "kami".into(),
            notice: String::new(),
            footer: String::new(),
            contact: String::new(),
            logo: String::new(),
            theme_dir: None,
            low_stock_threshold: 10,
            default_locale: "zh-CN".into(),
            lookup_per_minute: 10,
            orders_per_minute: None,
            trust_proxy_headers: false,
            timezone: "UTC".into(),
        }
    }
}

/// Checks `shop` (trimming the name and the language) and resolves `theme_dir` against
/// `base_dir`.
pub(super) fn check_shop(
    mut shop: ShopConfig,
    base_dir: &Path,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<ShopConfig, ConfigError> {
    if shop.trust_proxy_headers {
        warnings.push(
            "`shop.trust_proxy_headers` is deprecated and will be removed in the next release: \
             set `server.trusted_proxies` to your proxy's addresses instead (until then, the \
             last `X-Forwarded-For` entry is believed from a loopback or private peer when \
             `trusted_proxies` is empty)"
                .into(),
        );
    }
    shop.name = check_name(&shop.name).map_err(|m| invalid(origins, "shop.name", m))?;
    shop.contact = check_contact(&shop.contact).map_err(|m| invalid(origins, "shop.contact", m))?;
    shop.logo = check_logo(&shop.logo).map_err(|m| invalid(origins, "shop.logo", m))?;
    shop.default_locale = match shop.default_locale.trim() {
        l @ ("zh-CN" | "en") => l.to_owned(),
        other => {
            return Err(invalid(
                origins,
                "shop.default_locale",
                format!("`{other}` is not a shop language (expected \"zh-CN\" or \"en\")"),
            ))
        }
    };
    shop.theme_dir = match shop.theme_dir.take() {
        None => None,
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid(
                origins,
                "shop.theme_dir",
                "must not be empty".into(),
            ))
        }
        Some(p) => {
            let p = base_dir.join(p);
            if !p.is_dir() {
                return Err(invalid(
                    origins,
                    "shop.theme_dir",
                    format!("`{}` is not a directory", p.display()),
                ));
            }
            Some(p)
        }
    };
    shop.timezone = shop.timezone.trim().to_owned();
    if let Err(e) = jiff::tz::TimeZone::get(&shop.timezone) {
        return Err(invalid(
            origins,
            "shop.timezone",
            format!(
                "`{}` is not a known IANA time zone name (e.g. \"Asia/Shanghai\", \"UTC\"): {e}",
                shop.timezone
            ),
        ));
    }
    for (key, value, range) in [
        (
            "shop.low_stock_threshold",
            shop.low_stock_threshold,
            (0, 1_000_000),
        ),
        ("shop.lookup_per_minute", shop.lookup_per_minute, (1, 1000)),
    ] {
        check_range(origins, key, value, range)?;
    }
    Ok(shop)
}

/// The most characters of `shop.contact`.
pub const CONTACT_MAX: usize = 200;
/// The most characters of `shop.notice` saved in the console.
pub const NOTICE_MAX: usize = 20_000;

/// `shop.name`: trimmed, 1 to 80 characters.
pub(crate) fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err("must be 1 to 80 characters on one line".into());
    }
    Ok(name.to_owned())
}

/// `shop.contact`: trimmed plain text on one line, at most [`CONTACT_MAX`] characters.
pub(crate) fn check_contact(contact: &str) -> Result<String, String> {
    let contact = contact.trim();
    if contact.chars().count() > CONTACT_MAX {
        return Err(format!(
            "must be at most {CONTACT_MAX} characters, got {}",
            contact.chars().count()
        ));
    }
    if contact.chars().any(char::is_control) {
        return Err("must be one line of text (no line breaks or control characters)".into());
    }
    Ok(contact.to_owned())
}

/// `shop.logo`: empty, or the path of an image this shop serves (`/assets/logo.png`). Other
/// sites' images are refused: the pages' Content-Security-Policy loads images from the shop
/// only, so the logo would not show.
pub(crate) fn check_logo(logo: &str) -> Result<String, String> {
    let logo = logo.trim();
    if logo.is_empty() {
        return Ok(String::new());
    }
    let path_ok = logo.starts_with('/')
        && !logo.starts_with("//")
        && logo.len() <= 500
        && !logo
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\\\"'<>`".contains(c));
    if path_ok {
        return Ok(logo.to_owned());
    }
    let shown: String = logo.chars().take(80).collect();
    Err(format!(
        "`{shown}` is not a path on this shop: give the path of an image kami serves, such as \
         /assets/logo.png (a file in the theme directory's assets/), at most 500 characters \
         without spaces or quotes; the pages load images from the shop itself only"
    ))
}

impl ShopConfig {
    /// The shop's time zone ([`check_shop`] made sure the name is known; UTC otherwise).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}
