//! Settings the console saves over the configuration (issue 10 part 8): which keys, what
//! each may hold (checked by the same rules as the file's value of the key), and the sections
//! as the file and the saved values make them together. The configuration file's values are
//! the defaults; a saved value wins, and removing it returns the key to the file's value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kami_core::{FxTable, Rounding};
use kami_store::SettingValue;
use serde_json::{json, Value as Json};

use super::shop::{check_contact, check_logo, check_name, NOTICE_MAX};
use super::smtp::{build_smtp, RawSmtp};
use super::sources::Origins;
use super::{Config, ConfigError, OrdersConfig, RiskConfig, ShopConfig, SmtpConfig};

/// What a key holds, and so how it is read from JSON and from a console form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One line of text.
    Text,
    /// Markdown, several lines.
    Markdown,
    /// A whole number in `min..=max`.
    Int { min: i64, max: i64 },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A list of strings (one per line in the console).
    List,
    /// A secret: stored sealed, never shown (only "set" / "not set").
    Secret,
}

/// A key the console can save, in its section (`group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingKey {
    /// As in the configuration file: `shop.name` is `[shop] name`.
    pub key: &'static str,
    /// `shop`, `orders`, `smtp`, `risk`.
    pub group: &'static str,
    pub kind: Kind,
}

const LIMIT: Kind = Kind::Int {
    min: 1,
    max: 1_000_000,
};

/// Every key the console can save, in the order the console shows them.
pub const KEYS: &[SettingKey] = &[
    SettingKey {
        key: "shop.name",
        group: "shop",
        kind: Kind::Text,
    },
    SettingKey {
        key: "shop.notice",
        group: "shop",
        kind: Kind::Markdown,
    },
    SettingKey {
        key: "shop.contact",
        group: "shop",
        kind: Kind::Text,
    },
    SettingKey {
        key: "shop.logo",
        group: "shop",
        kind: Kind::Text,
    },
    SettingKey {
        key: "orders.expire_minutes",
        group: "orders",
        kind: Kind::Int { min: 1, max: 1440 },
    },
    SettingKey {
        key: "smtp.host",
        group: "smtp",
        kind: Kind::Text,
    },
    SettingKey {
        key: "smtp.port",
        group: "smtp",
        kind: Kind::Int { min: 1, max: 65535 },
    },
    SettingKey {
        key: "smtp.tls",
        group: "smtp",
        kind: Kind::Choice(&["starttls", "tls", "none"]),
    },
    SettingKey {
        key: "smtp.username",
        group: "smtp",
        kind: Kind::Text,
    },
    SettingKey {
        key: "smtp.password",
        group: "smtp",
        kind: Kind::Secret,
    },
    SettingKey {
        key: "smtp.from",
        group: "smtp",
        kind: Kind::Text,
    },
    SettingKey {
        key: "risk.max_pending_orders_per_ip",
        group: "risk",
        kind: LIMIT,
    },
    SettingKey {
        key: "risk.max_pending_orders_per_email",
        group: "risk",
        kind: LIMIT,
    },
    SettingKey {
        key: "risk.orders_per_minute_per_ip",
        group: "risk",
        kind: LIMIT,
    },
    SettingKey {
        key: "risk.password_checks_per_minute_per_ip",
        group: "risk",
        kind: LIMIT,
    },
    SettingKey {
        key: "risk.password_hashes_at_once_per_ip",
        group: "risk",
        kind: LIMIT,
    },
    SettingKey {
        key: "risk.blocked_ips",
        group: "risk",
        kind: Kind::List,
    },
    SettingKey {
        key: "risk.blocked_emails",
        group: "risk",
        kind: Kind::List,
    },
    SettingKey {
        key: "fx.rates",
        group: "fx",
        kind: Kind::List,
    },
    SettingKey {
        key: "fx.rounding",
        group: "fx",
        kind: Kind::Choice(&["up", "nearest", "down"]),
    },
];

/// The groups, in the console's order.
pub const GROUPS: [&str; 5] = ["shop", "orders", "smtp", "risk", "fx"];

/// Entries in a list setting, at most.
pub const LIST_MAX: usize = 1000;

/// The key named `name`, if the console can save it.
pub fn key(name: &str) -> Option<&'static SettingKey> {
    KEYS.iter().find(|k| k.key == name)
}

/// `key: problem`.
fn bad(key: &SettingKey, problem: impl std::fmt::Display) -> String {
    format!("{}: {problem}", key.key)
}

/// A value for `key` (not `null`, which means "back to the file's value"), checked and
/// normalised as the file's value would be (names trimmed, emails lower-cased, CIDRs
/// truncated). Errors name the key.
pub fn parse(key: &SettingKey, v: &Json) -> Result<SettingValue, String> {
    let text = || {
        v.as_str()
            .ok_or_else(|| bad(key, format!("expected a string, got {}", kind_of(v))))
    };
    let value = match key.kind {
        Kind::Secret => {
            let s = text()?;
            if s.is_empty() || s.len() > 1000 || s.chars().any(char::is_control) {
                return Err(bad(
                    key,
                    "must be 1 to 1000 characters without control characters",
                ));
            }
            return Ok(SettingValue::Secret(s.to_owned()));
        }
        Kind::Int { min, max } => {
            let n = v
                .as_i64()
                .ok_or_else(|| bad(key, format!("expected a whole number, got {}", kind_of(v))))?;
            if !(min..=max).contains(&n) {
                return Err(bad(
                    key,
                    format!("must be between {min} and {max}, got {n}"),
                ));
            }
            json!(n)
        }
        Kind::Choice(words) => {
            let s = text()?.trim();
            if !words.contains(&s) {
                return Err(bad(
                    key,
                    format!("`{s}` is not one of: {}", words.join(", ")),
                ));
            }
            json!(s)
        }
        Kind::List => {
            let items = v
                .as_array()
                .ok_or_else(|| bad(key, format!("expected a list, got {}", kind_of(v))))?;
            if items.len() > LIST_MAX {
                return Err(bad(key, format!("at most {LIST_MAX} entries")));
            }
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| bad(key, format!("expected strings, got {}", kind_of(item))))?;
                let one = match key.key {
                    "risk.blocked_ips" => super::server::parse_cidr(s).map(|n| n.to_string()),
                    "fx.rates" => super::fx::parse_rate_line(s).map(|(c, r)| format!("{c} {r}")),
                    _ => super::risk::check_blocked_email(s),
                }
                .map_err(|m| bad(key, m))?;
                if !out.contains(&one) {
                    out.push(one);
                }
            }
            json!(out)
        }
        Kind::Text | Kind::Markdown => {
            let s = text()?;
            let checked = match key.key {
                "shop.name" => check_name(s),
                "shop.contact" => check_contact(s),
                "shop.logo" => check_logo(s),
                "shop.notice" if s.chars().count() > NOTICE_MAX => {
                    Err(format!("must be at most {NOTICE_MAX} characters"))
                }
                "smtp.host" => check_host(s),
                "smtp.from" => check_from(s),
                "smtp.username" => check_one_line(s, 320),
                _ => Ok(s.to_owned()),
            };
            json!(checked.map_err(|m| bad(key, m))?)
        }
    };
    Ok(SettingValue::Json(value))
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn check_one_line(s: &str, max: usize) -> Result<String, String> {
    let s = s.trim();
    if s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(format!("must be one line of at most {max} characters"));
    }
    Ok(s.to_owned())
}

fn check_host(s: &str) -> Result<String, String> {
    let host = s.trim();
    let port_in_host = host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err();
    if host.is_empty()
        || host.len() > 253
        || port_in_host
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(format!(
            "`{host}` is not a host name (write e.g. smtp.example.com, without scheme; the port goes in smtp.port)"
        ));
    }
    Ok(host.to_owned())
}

fn check_from(s: &str) -> Result<String, String> {
    let from = s.trim();
    from.parse::<lettre::message::Mailbox>()
        .map(|_| from.to_owned())
        .map_err(|e| {
            format!(
                "`{from}` is not a mail address ({}); expected e.g. \"Shop <shop@example.com>\" or \"shop@example.com\"",
                e.to_string().to_lowercase()
            )
        })
}

/// A console form's text for `key` as the JSON [`parse`] takes: numbers parsed, lists one
/// entry per line (or comma-separated). Errors name the key.
pub fn from_form(key: &SettingKey, text: &str) -> Result<Json, String> {
    match key.kind {
        Kind::Int { .. } => text
            .trim()
            .parse::<i64>()
            .map(|n| json!(n))
            .map_err(|_| bad(key, format!("`{}` is not a whole number", text.trim()))),
        Kind::List => Ok(json!(text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>())),
        _ => Ok(json!(text)),
    }
}

/// The sections the saved settings change, as the file and the saved values make them.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlaid {
    pub shop: ShopConfig,
    pub orders: OrdersConfig,
    pub smtp: Option<SmtpConfig>,
    pub risk: RiskConfig,
    pub fx: FxTable,
}

fn saved_json<'a>(saved: &'a BTreeMap<String, SettingValue>, key: &str) -> Option<&'a Json> {
    match saved.get(key) {
        Some(SettingValue::Json(v)) => Some(v),
        _ => None,
    }
}

fn saved_str(saved: &BTreeMap<String, SettingValue>, key: &str) -> Option<String> {
    saved_json(saved, key)
        .and_then(Json::as_str)
        .map(str::to_owned)
}

fn saved_u32(saved: &BTreeMap<String, SettingValue>, key: &str) -> Option<u32> {
    saved_json(saved, key)
        .and_then(Json::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn saved_list(saved: &BTreeMap<String, SettingValue>, key: &str) -> Option<Vec<String>> {
    saved_json(saved, key).and_then(Json::as_array).map(|a| {
        a.iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// The configuration's sections with the saved values over them, checked together (a saved
/// SMTP login needs a password from one place or the other, and so on). Unknown saved keys
/// are ignored (a newer kami may have saved them). Errors name the key.
pub fn overlay(
    config: &Config,
    saved: &BTreeMap<String, SettingValue>,
) -> Result<Overlaid, String> {
    // Each saved value is checked again: a row is only ever written through `parse`, but the
    // database is not trusted to hold what kami wrote.
    for (name, value) in saved {
        let (Some(k), SettingValue::Json(v)) = (key(name), value) else {
            continue;
        };
        parse(k, v)?;
    }
    let mut shop = config.shop.clone();
    if let Some(v) = saved_str(saved, "shop.name") {
        shop.name = v;
    }
    if let Some(v) = saved_str(saved, "shop.notice") {
        shop.notice = v;
    }
    if let Some(v) = saved_str(saved, "shop.contact") {
        shop.contact = v;
    }
    if let Some(v) = saved_str(saved, "shop.logo") {
        shop.logo = v;
    }
    let mut orders = config.orders.clone();
    if let Some(m) = saved_u32(saved, "orders.expire_minutes") {
        // The console's minutes win over the file's finer `expire_seconds` too.
        orders.expire_minutes = m;
        orders.expire_seconds = None;
    }
    let mut risk = config.risk.clone();
    for (name, field) in [
        (
            "risk.max_pending_orders_per_ip",
            &mut risk.max_pending_orders_per_ip,
        ),
        (
            "risk.max_pending_orders_per_email",
            &mut risk.max_pending_orders_per_email,
        ),
        (
            "risk.orders_per_minute_per_ip",
            &mut risk.orders_per_minute_per_ip,
        ),
        (
            "risk.password_checks_per_minute_per_ip",
            &mut risk.password_checks_per_minute_per_ip,
        ),
        (
            "risk.password_hashes_at_once_per_ip",
            &mut risk.password_hashes_at_once_per_ip,
        ),
    ] {
        if let Some(n) = saved_u32(saved, name) {
            *field = n;
        }
    }
    if let Some(list) = saved_list(saved, "risk.blocked_ips") {
        risk.blocked_ips = list
            .iter()
            .map(|s| super::server::parse_cidr(s))
            .collect::<Result<_, _>>()
            .map_err(|m| format!("risk.blocked_ips: {m}"))?;
    }
    if let Some(list) = saved_list(saved, "risk.blocked_emails") {
        risk.blocked_emails = list;
    }
    let smtp = overlay_smtp(config, saved)?;
    let fx = overlay_fx(config, saved)?;
    Ok(Overlaid {
        shop,
        orders,
        smtp,
        risk,
        fx,
    })
}

/// `[fx]` with the saved rate table (it replaces the file's whole table) and rounding over
/// it. A currency listed twice, or the base currency listed, is refused.
fn overlay_fx(config: &Config, saved: &BTreeMap<String, SettingValue>) -> Result<FxTable, String> {
    let base = &config.fx;
    let rounding = match saved_str(saved, "fx.rounding") {
        Some(r) => Rounding::parse(&r).map_err(|e| format!("fx.rounding: {e}"))?,
        None => base.rounding(),
    };
    let rates = match saved_list(saved, "fx.rates") {
        None => base.rates().clone(),
        Some(lines) => {
            let mut rates = BTreeMap::new();
            for line in &lines {
                let (c, r) =
                    super::fx::parse_rate_line(line).map_err(|m| format!("fx.rates: {m}"))?;
                if rates.insert(c, r).is_some() {
                    return Err(format!("fx.rates: {c} is listed twice"));
                }
            }
            rates
        }
    };
    FxTable::new(base.base(), rates, rounding).map_err(|e| format!("fx.rates: {e}"))
}

/// The rate table as the console shows it: one `CODE RATE` line per currency.
fn rate_lines(fx: &FxTable) -> Vec<String> {
    fx.rates().iter().map(|(c, r)| format!("{c} {r}")).collect()
}

/// `[smtp]` with the saved `smtp.*` keys over it, checked as the file's section is: mail is
/// on when either place sets it up. Switching `smtp.tls` moves a port the file left at its
/// default to the new mode's default.
fn overlay_smtp(
    config: &Config,
    saved: &BTreeMap<String, SettingValue>,
) -> Result<Option<SmtpConfig>, String> {
    let any_saved = saved.keys().any(|k| k.starts_with("smtp."));
    let base = config.smtp.as_ref();
    if !any_saved {
        return Ok(base.cloned());
    }
    let tls = saved_str(saved, "smtp.tls").or_else(|| base.map(|b| b.tls.as_str().to_owned()));
    let port = saved_u32(saved, "smtp.port").or_else(|| {
        base.filter(|b| b.port != b.tls.default_port() || saved_str(saved, "smtp.tls").is_none())
            .map(|b| u32::from(b.port))
    });
    // A saved empty user name turns the login off, whatever the file says.
    let username = match saved_str(saved, "smtp.username") {
        Some(u) => Some(u).filter(|u| !u.is_empty()),
        None => base.and_then(|b| b.username.clone()),
    };
    let password = match saved.get("smtp.password") {
        Some(SettingValue::Secret(p)) => Some(p.clone()),
        _ => base.and_then(|b| b.password.as_ref().map(|p| p.expose().to_owned())),
    };
    let raw = RawSmtp {
        host: saved_str(saved, "smtp.host").or_else(|| base.map(|b| b.host.clone())),
        port,
        tls,
        // Without a login, a password (from either place) is not used.
        password: password.filter(|_| username.is_some()),
        username,
        password_file: None,
        from: saved_str(saved, "smtp.from").or_else(|| base.map(|b| b.from.to_string())),
        ca_file: base.and_then(|b| b.ca_file.clone()),
        timeout_seconds: base.map(|b| b.timeout_seconds),
        retry_base_seconds: base.map(|b| b.retry_base_seconds),
    };
    let origins =
        Origins::layer(None, "console", false, std::iter::empty()).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    build_smtp(raw, &PathBuf::from("."), &origins, &mut warnings)
        .map(Some)
        .map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => format!("{key}: {message}"),
            other => other.to_string(),
        })
}

/// What a secret shows as.
fn secret_shown(set: bool) -> Json {
    json!(if set { "set" } else { "not set" })
}

/// `key`'s value in these sections, as the API shows it (secrets as "set" / "not set";
/// `null` where the sections have none, e.g. SMTP keys without `[smtp]`).
pub fn value_of(
    shop: &ShopConfig,
    orders: &OrdersConfig,
    smtp: Option<&SmtpConfig>,
    risk: &RiskConfig,
    fx: &FxTable,
    key: &str,
) -> Json {
    match key {
        "shop.name" => json!(shop.name),
        "shop.notice" => json!(shop.notice),
        "shop.contact" => json!(shop.contact),
        "shop.logo" => json!(shop.logo),
        "orders.expire_minutes" => json!(orders.expire_minutes),
        "smtp.host" => json!(smtp.map(|s| s.host.as_str())),
        "smtp.port" => json!(smtp.map(|s| s.port)),
        "smtp.tls" => json!(smtp.map(|s| s.tls.as_str())),
        "smtp.username" => json!(smtp.and_then(|s| s.username.as_deref())),
        "smtp.password" => secret_shown(smtp.is_some_and(|s| s.password.is_some())),
        "smtp.from" => json!(smtp.map(|s| s.from.to_string())),
        "risk.max_pending_orders_per_ip" => json!(risk.max_pending_orders_per_ip),
        "risk.max_pending_orders_per_email" => json!(risk.max_pending_orders_per_email),
        "risk.orders_per_minute_per_ip" => json!(risk.orders_per_minute_per_ip),
        "risk.password_checks_per_minute_per_ip" => {
            json!(risk.password_checks_per_minute_per_ip)
        }
        "risk.password_hashes_at_once_per_ip" => json!(risk.password_hashes_at_once_per_ip),
        "risk.blocked_ips" => json!(risk
            .blocked_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()),
        "risk.blocked_emails" => json!(risk.blocked_emails),
        "fx.rates" => json!(rate_lines(fx)),
        "fx.rounding" => json!(fx.rounding().as_str()),
        _ => Json::Null,
    }
}

impl Overlaid {
    /// `key`'s effective value, as [`value_of`] shows it.
    pub fn value(&self, key: &str) -> Json {
        value_of(
            &self.shop,
            &self.orders,
            self.smtp.as_ref(),
            &self.risk,
            &self.fx,
            key,
        )
    }
}

impl Config {
    /// `key`'s value in the configuration file (and environment), as [`value_of`] shows it.
    pub fn setting_value(&self, key: &str) -> Json {
        value_of(
            &self.shop,
            &self.orders,
            self.smtp.as_ref(),
            &self.risk,
            &self.fx,
            key,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml).unwrap().config
    }

    fn saved(pairs: &[(&str, Json)]) -> BTreeMap<String, SettingValue> {
        pairs
            .iter()
            .map(|(k, v)| {
                let k = key(k).unwrap();
                (k.key.to_owned(), parse(k, v).unwrap())
            })
            .collect()
    }

    #[test]
    fn every_key_is_known_and_grouped() {
        for k in KEYS {
            assert!(GROUPS.contains(&k.group), "{}", k.key);
            assert!(k.key.starts_with(&format!("{}.", k.group)), "{}", k.key);
            let v = config("").setting_value(k.key);
            assert_eq!(
                v.is_null(),
                k.group == "smtp" && k.kind != Kind::Secret,
                "{}: {v}",
                k.key
            );
        }
        assert!(key("server.listen").is_none());
    }

    #[test]
    fn values_are_checked_like_the_files() {
        let p = |k: &str, v: Json| parse(key(k).unwrap(), &v);
        assert_eq!(
            p("shop.name", json!("  Shop  ")),
            Ok(SettingValue::Json(json!("Shop")))
        );
        assert!(p("shop.name", json!(" "))
            .unwrap_err()
            .starts_with("shop.name:"));
        assert!(p("orders.expire_minutes", json!(0))
            .unwrap_err()
            .contains("between 1 and 1440, got 0"));
        assert!(p("orders.expire_minutes", json!("15"))
            .unwrap_err()
            .contains("expected a whole number"));
        assert_eq!(
            p(
                "risk.blocked_ips",
                json!(["10.1.2.3/8", "10.0.0.0/8", "::1"])
            ),
            Ok(SettingValue::Json(json!(["10.0.0.0/8", "::1/128"])))
        );
        assert!(p("risk.blocked_ips", json!(["10.0.0.0/33"]))
            .unwrap_err()
            .contains("is not an IP address or CIDR"));
        assert_eq!(
            p("risk.blocked_emails", json!(["*@Spam.example"])),
            Ok(SettingValue::Json(json!(["*@spam.example"])))
        );
        assert!(p("risk.blocked_emails", json!(["nobody"])).is_err());
        assert!(p("smtp.from", json!("not an address"))
            .unwrap_err()
            .contains("is not a mail address"));
        assert!(p("smtp.tls", json!("ssl"))
            .unwrap_err()
            .contains("starttls"));
        assert!(p("shop.logo", json!("https://cdn.example/logo.png"))
            .unwrap_err()
            .contains("not a path on this shop"));
        assert!(p("shop.logo", json!("/assets/a\"b.png")).is_err());
        assert_eq!(
            p("shop.logo", json!("/assets/logo.png")),
            Ok(SettingValue::Json(json!("/assets/logo.png")))
        );
        assert!(p("shop.contact", json!("a\nb")).is_err());
        assert!(matches!(
            p("smtp.password", json!("s3cret")),
            Ok(SettingValue::Secret(_))
        ));
    }

    #[test]
    fn saved_values_win_and_smtp_is_checked_whole() {
        let c = config("[shop]\nname = \"File\"\n[orders]\nexpire_seconds = 30\n");
        let o = overlay(
            &c,
            &saved(&[
                ("shop.name", json!("Console")),
                ("orders.expire_minutes", json!(20)),
            ]),
        )
        .unwrap();
        assert_eq!(o.shop.name, "Console");
        assert_eq!(o.orders.expire_ms(), 20 * 60_000);
        assert!(o.smtp.is_none());

        // SMTP from the console alone: host and sender needed.
        let e = overlay(&c, &saved(&[("smtp.port", json!(2525))])).unwrap_err();
        assert!(e.starts_with("smtp.host:"), "{e}");
        let o = overlay(
            &c,
            &saved(&[
                ("smtp.host", json!("mail.example.com")),
                ("smtp.from", json!("Shop <shop@example.com>")),
                ("smtp.tls", json!("tls")),
            ]),
        )
        .unwrap();
        let smtp = o.smtp.unwrap();
        assert_eq!((smtp.port, smtp.tls.as_str()), (465, "tls"));
        // A login without a password anywhere is refused.
        let e = overlay(
            &c,
            &saved(&[
                ("smtp.host", json!("mail.example.com")),
                ("smtp.from", json!("shop@example.com")),
                ("smtp.username", json!("shop")),
            ]),
        )
        .unwrap_err();
        assert!(e.starts_with("smtp.password:"), "{e}");

        // Over a file's [smtp]: the file's password stays unless the login is turned off.
        let c = config(
            "[smtp]\nhost = \"a.example\"\nfrom = \"a@example.com\"\nusername = \"u\"\npassword = \"p\"\n",
        );
        let o = overlay(&c, &saved(&[("smtp.host", json!("b.example"))])).unwrap();
        let smtp = o.smtp.unwrap();
        assert_eq!(smtp.host, "b.example");
        assert_eq!(
            smtp.password.map(|p| p.expose().to_owned()).as_deref(),
            Some("p")
        );
        let o = overlay(&c, &saved(&[("smtp.username", json!(""))])).unwrap();
        let smtp = o.smtp.unwrap();
        assert!(smtp.username.is_none() && smtp.password.is_none());
        assert_eq!(c.setting_value("smtp.password"), json!("set"));
        assert_eq!(config("").setting_value("smtp.password"), json!("not set"));
    }
}
