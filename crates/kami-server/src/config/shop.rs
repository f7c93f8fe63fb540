//! `[shop]`: what the storefront shows and how it behaves.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check_range, invalid, ConfigError, Origins};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopConfig {
    /// Shop name in the header and titles; default "kami".
    pub name: String,
    /// Announcement above the catalogue (Markdown, rendered safely); empty = none.
    pub notice: String,
    /// Footer text (Markdown, rendered safely); empty = none.
    pub footer: String,
    /// A theme directory (`templates/`, `assets/`, `locales/`) whose files override the
    /// embedded default theme; resolved against the config file's directory.
    pub theme_dir: Option<PathBuf>,
    /// Stock at or below this shows as "low"; default 10.
    pub low_stock_threshold: u32,
    /// Language when the browser asks for none we have: `zh-CN` (default) or `en`.
    pub default_locale: String,
    /// Order lookups allowed per client IP per minute, 1..=1000, default 10.
    pub lookup_per_minute: u32,
    /// Orders a client IP may place from the product page per minute (each reserves stock
    /// until it expires), 1..=10000, default 30. The JSON API is not limited here.
    pub orders_per_minute: u32,
    /// Trust `X-Forwarded-For` / `X-Real-IP` for the client IP (only behind your own proxy).
    pub trust_proxy_headers: bool,
}

impl Default for ShopConfig {
    fn default() -> ShopConfig {
        ShopConfig {
            name: "kami".into(),
            notice: String::new(),
            footer: String::new(),
            theme_dir: None,
            low_stock_threshold: 10,
            default_locale: "zh-CN".into(),
            lookup_per_minute: 10,
            orders_per_minute: 30,
            trust_proxy_headers: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawShop {
    name: Option<String>,
    notice: Option<String>,
    footer: Option<String>,
    theme_dir: Option<PathBuf>,
    low_stock_threshold: Option<u32>,
    default_locale: Option<String>,
    lookup_per_minute: Option<u32>,
    orders_per_minute: Option<u32>,
    trust_proxy_headers: Option<bool>,
}

pub(super) fn build_shop(
    raw: RawShop,
    base_dir: &Path,
    origins: &Origins,
) -> Result<ShopConfig, ConfigError> {
    let d = ShopConfig::default();
    let name = raw.name.map(|n| n.trim().to_owned()).unwrap_or(d.name);
    if name.is_empty() || name.chars().count() > 80 {
        return Err(invalid(
            origins,
            "shop.name",
            "must be 1 to 80 characters".into(),
        ));
    }
    let default_locale = match raw.default_locale.as_deref().map(str::trim) {
        None => d.default_locale,
        Some(l @ ("zh-CN" | "en")) => l.to_owned(),
        Some(other) => {
            return Err(invalid(
                origins,
                "shop.default_locale",
                format!("`{other}` is not a shop language (expected \"zh-CN\" or \"en\")"),
            ))
        }
    };
    let theme_dir = match raw.theme_dir {
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
    Ok(ShopConfig {
        name,
        notice: raw.notice.unwrap_or_default(),
        footer: raw.footer.unwrap_or_default(),
        theme_dir,
        low_stock_threshold: check_range(
            origins,
            "shop.low_stock_threshold",
            raw.low_stock_threshold,
            d.low_stock_threshold,
            (0, 1_000_000),
        )?,
        default_locale,
        lookup_per_minute: check_range(
            origins,
            "shop.lookup_per_minute",
            raw.lookup_per_minute,
            d.lookup_per_minute,
            (1, 1000),
        )?,
        orders_per_minute: check_range(
            origins,
            "shop.orders_per_minute",
            raw.orders_per_minute,
            d.orders_per_minute,
            (1, 10_000),
        )?,
        trust_proxy_headers: raw.trust_proxy_headers.unwrap_or(d.trust_proxy_headers),
    })
}
