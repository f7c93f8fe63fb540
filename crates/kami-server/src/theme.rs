//! The theme: templates, static assets and message catalogues. The default theme is embedded
//! in the binary; `shop.theme_dir` may override any file (`templates/NAME`, `assets/NAME`,
//! `locales/TAG.toml`, merged key by key). Nothing is fetched from elsewhere: no CDN, no
//! external font.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::i18n::{fill, Catalog, Locale};

/// Files of the embedded default theme.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../theme/templates/base.html")),
    (
        "catalogue.html",
        include_str!("../theme/templates/catalogue.html"),
    ),
    (
        "product.html",
        include_str!("../theme/templates/product.html"),
    ),
    ("order.html", include_str!("../theme/templates/order.html")),
    (
        "order_body.html",
        include_str!("../theme/templates/order_body.html"),
    ),
    (
        "switch_method.html",
        include_str!("../theme/templates/switch_method.html"),
    ),
    (
        "lookup.html",
        include_str!("../theme/templates/lookup.html"),
    ),
    (
        "message.html",
        include_str!("../theme/templates/message.html"),
    ),
    (
        "console/base.html",
        include_str!("../theme/templates/console/base.html"),
    ),
    (
        "console/login.html",
        include_str!("../theme/templates/console/login.html"),
    ),
    (
        "console/code.html",
        include_str!("../theme/templates/console/code.html"),
    ),
    (
        "console/dashboard.html",
        include_str!("../theme/templates/console/dashboard.html"),
    ),
    (
        "console/security.html",
        include_str!("../theme/templates/console/security.html"),
    ),
    (
        "console/totp_enrol.html",
        include_str!("../theme/templates/console/totp_enrol.html"),
    ),
    (
        "console/recovery_codes.html",
        include_str!("../theme/templates/console/recovery_codes.html"),
    ),
    // Coupons (issue 10 part 7).
    (
        "console/coupons.html",
        include_str!("../theme/templates/console/coupons.html"),
    ),
    (
        "console/coupon_edit.html",
        include_str!("../theme/templates/console/coupon_edit.html"),
    ),
    (
        "console/coupon_form.html",
        include_str!("../theme/templates/console/coupon_form.html"),
    ),
    (
        "console/message.html",
        include_str!("../theme/templates/console/message.html"),
    ),
    (
        "console/audit.html",
        include_str!("../theme/templates/console/audit.html"),
    ),
    (
        "console/users.html",
        include_str!("../theme/templates/console/users.html"),
    ),
    // Alerts (issue 11 part 3).
    (
        "console/alerts.html",
        include_str!("../theme/templates/console/alerts.html"),
    ),
    (
        "console/products.html",
        include_str!("../theme/templates/console/products.html"),
    ),
    (
        "console/product_edit.html",
        include_str!("../theme/templates/console/product_edit.html"),
    ),
    (
        "console/cards.html",
        include_str!("../theme/templates/console/cards.html"),
    ),
    (
        "console/orders.html",
        include_str!("../theme/templates/console/orders.html"),
    ),
    (
        "console/order.html",
        include_str!("../theme/templates/console/order.html"),
    ),
    // Channels (issue 10 part 6).
    (
        "console/channel_limits.html",
        include_str!("../theme/templates/console/channel_limits.html"),
    ),
    (
        "console/channel_routing.html",
        include_str!("../theme/templates/console/channel_routing.html"),
    ),
    (
        "console/channels.html",
        include_str!("../theme/templates/console/channels.html"),
    ),
    (
        "console/channel_edit.html",
        include_str!("../theme/templates/console/channel_edit.html"),
    ),
    (
        "console/channel_view.html",
        include_str!("../theme/templates/console/channel_view.html"),
    ),
    // Reconciliation (issue 11 part 4).
    (
        "console/reconciliations.html",
        include_str!("../theme/templates/console/reconciliations.html"),
    ),
    (
        "console/reconciliation.html",
        include_str!("../theme/templates/console/reconciliation.html"),
    ),
    (
        "console/channel_measures.html",
        include_str!("../theme/templates/console/channel_measures.html"),
    ),
    (
        "mail/delivered.txt",
        include_str!("../theme/mail/delivered.txt"),
    ),
    (
        "mail/delivered.html",
        include_str!("../theme/mail/delivered.html"),
    ),
    (
        "console/categories.html",
        include_str!("../theme/templates/console/categories.html"),
    ),
    // Settings (issue 10 parts 8 and 10).
    (
        "console/settings.html",
        include_str!("../theme/templates/console/settings.html"),
    ),
    (
        "paid_check.html",
        include_str!("../theme/templates/paid_check.html"),
    ),
];

const ASSETS: &[(&str, &[u8])] = &[
    ("style.css", include_bytes!("../theme/assets/style.css")),
    ("app.js", include_bytes!("../theme/assets/app.js")),
    ("favicon.svg", include_bytes!("../theme/assets/favicon.svg")),
    ("console.css", include_bytes!("../theme/assets/console.css")),
    ("console.js", include_bytes!("../theme/assets/console.js")),
];

const CATALOGS: &[(Locale, &str)] = &[
    (Locale::ZhCn, include_str!("../theme/locales/zh-CN.toml")),
    (Locale::En, include_str!("../theme/locales/en.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error(transparent)]
    Catalog(#[from] crate::i18n::CatalogError),
    #[error("theme file `{}`: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("theme template `{name}`: {source}")]
    Template { name: String, source: Error },
}

#[derive(Clone)]
pub struct Theme {
    env: Environment<'static>,
    catalogs: Arc<Vec<(Locale, Catalog)>>,
    dir: Option<PathBuf>,
}

impl Theme {
    /// The embedded theme, overridden by `dir`. Every template is compiled here, so a broken
    /// override stops start-up with its name instead of failing a buyer's page later.
    pub fn load(dir: Option<&Path>) -> Result<Theme, ThemeError> {
        let mut catalogs = Vec::new();
        for (locale, text) in CATALOGS {
            let mut c = Catalog::parse(locale.tag(), text)?;
            if let Some(dir) = dir {
                let path = dir.join("locales").join(format!("{}.toml", locale.tag()));
                if let Some(text) = read_optional(&path)? {
                    c.merge(Catalog::parse(&path.display().to_string(), &text)?);
                }
            }
            catalogs.push((*locale, c));
        }
        let catalogs = Arc::new(catalogs);

        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let owned_dir = dir.map(Path::to_path_buf);
        env.set_loader(move |name| {
            if let Some(dir) = &owned_dir {
                if name.split('/').any(|seg| seg == ".." || seg.is_empty()) {
                    return Ok(None);
                }
                let path = dir.join("templates").join(name);
                match std::fs::read_to_string(&path) {
                    Ok(text) => return Ok(Some(text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::new(
                            ErrorKind::TemplateNotFound,
                            format!("cannot read {}: {e}", path.display()),
                        ))
                    }
                }
            }
            Ok(TEMPLATES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| (*t).to_owned()))
        });
        let cats = catalogs.clone();
        env.add_function(
            "t",
            move |state: &State, key: &str, kwargs: Kwargs| -> Result<String, Error> {
                let locale = current_locale(state);
                let text = lookup(&cats, locale, key);
                let mut args: Vec<(&str, String)> = Vec::new();
                for name in kwargs.args() {
                    let v: Value = kwargs.get(name)?;
                    args.push((name, v.to_string()));
                }
                Ok(fill(text, &args))
            },
        );
        env.add_filter("money", money_filter);

        for (name, _) in TEMPLATES {
            env.get_template(name)
                .map_err(|source| ThemeError::Template {
                    name: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(Theme {
            env,
            catalogs,
            dir: dir.map(Path::to_path_buf),
        })
    }

    /// Render a template; `locale` is visible to templates as `locale` and drives `t(...)`.
    pub fn render(&self, name: &str, locale: Locale, ctx: Value) -> Result<String, Error> {
        let tmpl = self.env.get_template(name)?;
        tmpl.render(minijinja::context! { locale => locale.tag(), ..ctx })
    }

    /// A message outside templates (mail subjects, HTTP errors).
    pub fn text(&self, locale: Locale, key: &str, args: &[(&str, String)]) -> String {
        fill(lookup(&self.catalogs, locale, key), args)
    }

    /// The catalogue of a language (tests check that every key exists in both).
    pub fn catalog(&self, locale: Locale) -> Option<&Catalog> {
        self.catalogs
            .iter()
            .find(|(l, _)| *l == locale)
            .map(|(_, c)| c)
    }

    /// A static asset and its content type: the theme directory's, else the embedded one.
    pub fn asset(&self, name: &str) -> Option<(Cow<'static, [u8]>, &'static str)> {
        if name.is_empty()
            || name
                .split('/')
                .any(|seg| seg.is_empty() || seg == ".." || seg.starts_with('.'))
        {
            return None;
        }
        let mime = content_type(name)?;
        if let Some(dir) = &self.dir {
            if let Ok(bytes) = std::fs::read(dir.join("assets").join(name)) {
                return Some((Cow::Owned(bytes), mime));
            }
        }
        ASSETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| (Cow::Borrowed(*b), mime))
    }

    /// Names of the embedded templates (tests render every one).
    pub fn template_names() -> impl Iterator<Item = &'static str> {
        TEMPLATES.iter().map(|(n, _)| *n)
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ThemeError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ThemeError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn current_locale(state: &State) -> Locale {
    state
        .lookup("locale")
        .and_then(|v| v.as_str().and_then(Locale::parse))
        .unwrap_or(Locale::ZhCn)
}

fn lookup<'a>(cats: &'a [(Locale, Catalog)], locale: Locale, key: &'a str) -> &'a str {
    cats.iter()
        .find(|(l, _)| *l == locale)
        .and_then(|(_, c)| c.get(key))
        .unwrap_or(key)
}

/// `{{ 1230 | money("CNY") }}` → `¥12.30`.
fn money_filter(minor: i64, currency: &str) -> Result<String, Error> {
    let cur = kami_core::Currency::parse(currency)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let m = kami_core::Money::new(minor, cur)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(format_money(m))
}

pub fn format_money(m: kami_core::Money) -> String {
    let symbol = match m.currency().code() {
        "CNY" => "¥",
        "USD" => "$",
        "EUR" => "€",
        "HKD" => "HK$",
        _ => "",
    };
    if symbol.is_empty() {
        format!("{} {}", m.to_major_string(), m.currency().code())
    } else {
        format!("{symbol}{}", m.to_major_string())
    }
}

fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every literal `t("key")` in the embedded templates.
    fn literal_keys() -> Vec<String> {
        let mut keys = Vec::new();
        for (_, text) in TEMPLATES {
            for quote in ['"', '\''] {
                let open = format!("t({quote}");
                let mut rest = *text;
                while let Some(i) = rest.find(&open) {
                    rest = &rest[i + open.len()..];
                    if let Some(end) = rest.find(quote) {
                        let key = &rest[..end];
                        if !key.ends_with('.') {
                            keys.push(key.to_owned());
                        }
                    }
                }
            }
        }
        keys
    }

    /// Keys templates build at run time (`"status." ~ order.status ~ ".title"`, ...).
    fn computed_keys() -> Vec<String> {
        let mut keys = Vec::new();
        for m in kami_core::Method::ALL {
            keys.push(format!("method.{}", m.as_str()));
            keys.push(format!("pay.scan.{}", m.as_str()));
        }
        for s in [
            "pending",
            "paid",
            "delivered",
            "awaiting_fulfilment",
            "fulfilled",
            "expired",
            "exception",
            "refunded",
            "partially_refunded",
        ] {
            assert!(kami_core::OrderStatus::parse(s).is_some(), "{s}");
            keys.push(format!("status.{s}.title"));
            keys.push(format!("status.{s}.text"));
        }
        for k in [
            "not_found",
            "internal",
            "rate_limited",
            "open_in_browser",
            "cross_site",
        ] {
            keys.push(format!("message.{k}.title"));
            keys.push(format!("message.{k}.text"));
        }
        for k in ["forbidden", "not_found", "internal"] {
            keys.push(format!("console.message.{k}.title"));
            keys.push(format!("console.message.{k}.text"));
        }
        for k in [
            "bad_credentials",
            "account_locked",
            "rate_limited",
            "bad_code",
            "code_used",
            "account_disabled",
        ] {
            keys.push(format!("console.error.{k}"));
        }
        for k in ["created", "renamed", "moved", "deleted"] {
            keys.push(format!("console.catalog.done.{k}"));
        }
        for k in ["dashboard", "security"] {
            keys.push(format!("console.nav.{k}"));
        }
        for k in ["today", "7d", "30d"] {
            keys.push(format!("console.dashboard.period_{k}"));
        }
        for k in ["already_on", "bad_code"] {
            keys.push(format!("console.security.notice.{k}"));
        }
        for s in ["enabled", "disabled", "archived", "broken"] {
            keys.push(format!("console.channels.state.{s}"));
        }
        for s in ["config", "extension", "stored"] {
            keys.push(format!("console.channels.source.{s}"));
        }
        for app in ["wechat", "qq", "alipay"] {
            keys.push(format!("inapp.step1.{app}"));
        }
        for l in Locale::ALL {
            keys.push(format!("lang.{}", l.tag()));
        }
        // Channel measures (issue 11 part 2).
        for w in ["24h", "7d"] {
            keys.push(format!("console.channel_measures.window.{w}"));
        }
        // Settings (issue 10 part 8).
        keys.push("console.nav.settings".into());
        for g in crate::config::overlay::GROUPS {
            keys.push(format!("console.settings.group.{g}"));
        }
        for k in crate::config::overlay::KEYS {
            keys.push(format!("console.settings.key.{}", k.key));
            keys.push(format!("console.settings.hint.{}", k.key));
        }
        for k in [
            "source.console",
            "source.config",
            "secret.set",
            "secret.unset",
        ] {
            keys.push(format!("console.settings.{k}"));
        }
        // Alerts (issue 11 part 3): every event and resolve name, delivery states, the nav.
        keys.push("console.nav.alerts".into());
        for e in kami_store::AlertEvent::ALL {
            let d = |firing| kami_store::AlertDelivery {
                target: String::new(),
                event: e,
                subject: String::new(),
                firing,
                details: serde_json::Value::Null,
                at: 0,
            };
            keys.push(format!("alerts.event.{}", d(true).name()));
            keys.push(format!("alerts.event.{}", d(false).name()));
        }
        keys.push("alerts.event.test".into());
        for s in ["delivered", "pending", "failed"] {
            keys.push(format!("console.alerts.state.{s}"));
        }
        keys
    }

    #[test]
    fn both_languages_have_every_message_the_templates_use() {
        let theme = Theme::load(None).unwrap();
        let zh = theme.catalog(Locale::ZhCn).unwrap();
        let en = theme.catalog(Locale::En).unwrap();
        for key in literal_keys().into_iter().chain(computed_keys()) {
            assert!(zh.get(&key).is_some(), "zh-CN lacks {key}");
            assert!(en.get(&key).is_some(), "en lacks {key}");
        }
        let mut a: Vec<&str> = zh.keys().collect();
        let mut b: Vec<&str> = en.keys().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "the catalogues must have the same keys");
    }

    #[test]
    fn templates_hold_no_bare_text() {
        // Text between tags must come from the catalogues: after removing tags and template
        // expressions, only punctuation and whitespace may remain.
        for (name, text) in TEMPLATES {
            if name.starts_with("mail/") && name.ends_with(".txt") {
                continue;
            }
            // Template constructs first, then HTML tags.
            let mut no_tpl = String::new();
            let mut rest = *text;
            while let Some(i) = rest.find(['{']) {
                let (before, after) = rest.split_at(i);
                no_tpl.push_str(before);
                let close = match after.as_bytes().get(1) {
                    Some(b'{') => "}}",
                    Some(b'%') => "%}",
                    Some(b'#') => "#}",
                    _ => {
                        no_tpl.push('{');
                        rest = &after[1..];
                        continue;
                    }
                };
                rest = after.find(close).map_or("", |e| &after[e + 2..]);
            }
            no_tpl.push_str(rest);
            let mut out = String::new();
            let mut in_tag = false;
            for c in no_tpl.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    _ if !in_tag => out.push(c),
                    _ => {}
                }
            }
            let bare: String = out
                .chars()
                .filter(|c| c.is_alphabetic() && !"×·›".contains(*c))
                .collect();
            assert!(bare.is_empty(), "{name} has bare text: {bare:?}");
        }
    }

    #[test]
    fn money_is_formatted_per_currency() {
        let m = |minor, c| {
            kami_core::Money::new(minor, kami_core::Currency::parse(c).unwrap()).unwrap()
        };
        assert_eq!(format_money(m(1230, "CNY")), "¥12.30");
        assert_eq!(format_money(m(5, "USD")), "$0.05");
    }

    #[test]
    fn assets_cannot_escape_the_theme() {
        let theme = Theme::load(None).unwrap();
        assert!(theme.asset("style.css").is_some());
        for bad in [
            "../Cargo.toml",
            "",
            "a//b.css",
            ".hidden.css",
            "x/../../y.css",
            "style.exe",
        ] {
            assert!(theme.asset(bad).is_none(), "{bad}");
        }
    }
}
