//! `[[alerts]]` (where alerts go: a webhook, a Telegram chat, email) and `[alerting]` (the
//! thresholds of the conditions kami evaluates itself, and delivery timing).
//!
//! A target's keys are parsed by [`AlertTarget::parse`], which the console's and the API's
//! stored targets go through too, so a key is refused with the same words wherever it is set.

use std::path::{Path, PathBuf};

use kami_store::AlertEvent;
use lettre::message::Mailbox;
use serde::Deserialize;

use super::secrets::Secret;
use super::{check_range, ConfigError, Origins};

/// Default `api_base` of Telegram targets.
pub const TELEGRAM_API_BASE: &str = "https://api.telegram.org";

/// Where one target's alerts go.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertSink {
    /// `POST url` with the JSON alert, signed `X-Kami-Signature: sha256=HEX(HMAC(secret, body))`.
    Webhook { url: url::Url, secret: Secret },
    /// `POST {api_base}/bot{bot_token}/sendMessage` with `chat_id` and a readable text.
    Telegram {
        api_base: url::Url,
        bot_token: Secret,
        chat_id: String,
    },
    /// Through the shop's SMTP settings (file or console).
    Email { to: Vec<Mailbox> },
}

impl AlertSink {
    pub fn kind(&self) -> &'static str {
        match self {
            AlertSink::Webhook { .. } => "webhook",
            AlertSink::Telegram { .. } => "telegram",
            AlertSink::Email { .. } => "email",
        }
    }
}

/// One target: where, and which events (all by default).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTarget {
    pub sink: AlertSink,
    pub events: Vec<AlertEvent>,
}

/// A target's keys as given (the file's, after `*_file` secrets are read, or a stored one's).
#[derive(Debug, Default, Clone)]
pub struct TargetFields {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub bot_token: Option<String>,
    pub chat_id: Option<String>,
    pub api_base: Option<String>,
    pub to: Vec<String>,
    pub events: Option<Vec<String>>,
}

/// A refused key: its name (`url`, `secret`, ...) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub key: &'static str,
    pub message: String,
}

fn refuse(key: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        key,
        message: message.into(),
    }
}

fn http_url(key: &'static str, text: &str) -> Result<url::Url, FieldError> {
    let u = url::Url::parse(text.trim())
        .map_err(|e| refuse(key, format!("`{}` is not a URL ({e})", text.trim())))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(refuse(
            key,
            format!("`{u}` must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(u)
}

fn required(key: &'static str, v: Option<String>, why: &str) -> Result<String, FieldError> {
    v.map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refuse(key, format!("required: {why}")))
}

impl AlertTarget {
    /// Check a target's keys; the error names the key.
    pub fn parse(f: TargetFields) -> Result<AlertTarget, FieldError> {
        let events = match f.events {
            None => AlertEvent::ALL.to_vec(),
            Some(names) => {
                let mut out = Vec::new();
                for n in &names {
                    let e = AlertEvent::parse(n.trim()).ok_or_else(|| {
                        refuse(
                            "events",
                            format!(
                                "unknown event `{n}` (expected any of: {})",
                                event_names().join(", ")
                            ),
                        )
                    })?;
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
                if out.is_empty() {
                    return Err(refuse(
                        "events",
                        "must list at least one event (leave it out for all)",
                    ));
                }
                out
            }
        };
        let kind = required("kind", f.kind, "webhook, telegram or email")?;
        let unused = |key: &'static str, set: bool| {
            if set {
                Err(refuse(key, format!("does not apply to a {kind} target")))
            } else {
                Ok(())
            }
        };
        let sink = match kind.as_str() {
            "webhook" => {
                unused("bot_token", f.bot_token.is_some())?;
                unused("chat_id", f.chat_id.is_some())?;
                unused("to", !f.to.is_empty())?;
                unused("api_base", f.api_base.is_some())?;
                let url = http_url(
                    "url",
                    &required("url", f.url, "where the alerts are posted")?,
                )?;
                let secret = required(
                    "secret",
                    f.secret,
                    "the key the body is signed with (`secret_file` or `secret`)",
                )?;
                AlertSink::Webhook {
                    url,
                    secret: Secret::new(secret),
                }
            }
            "telegram" => {
                unused("url", f.url.is_some())?;
                unused("secret", f.secret.is_some())?;
                unused("to", !f.to.is_empty())?;
                let bot_token = required(
                    "bot_token",
                    f.bot_token,
                    "the bot's token from @BotFather (`bot_token_file` or `bot_token`)",
                )?;
                if bot_token.chars().any(|c| c.is_whitespace() || c == '/') {
                    return Err(refuse(
                        "bot_token",
                        "is not a bot token (no spaces or slashes; value not shown)",
                    ));
                }
                let chat_id = required("chat_id", f.chat_id, "the chat the bot writes to")?;
                let api_base = http_url(
                    "api_base",
                    f.api_base.as_deref().unwrap_or(TELEGRAM_API_BASE),
                )?;
                AlertSink::Telegram {
                    api_base,
                    bot_token: Secret::new(bot_token),
                    chat_id,
                }
            }
            "email" => {
                unused("url", f.url.is_some())?;
                unused("secret", f.secret.is_some())?;
                unused("bot_token", f.bot_token.is_some())?;
                unused("chat_id", f.chat_id.is_some())?;
                unused("api_base", f.api_base.is_some())?;
                let mut to = Vec::new();
                for a in f.to.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
                    to.push(a.parse::<Mailbox>().map_err(|e| {
                        refuse(
                            "to",
                            format!(
                                "`{a}` is not a mail address ({})",
                                e.to_string().to_lowercase()
                            ),
                        )
                    })?);
                }
                if to.is_empty() {
                    return Err(refuse(
                        "to",
                        "required: the address(es) alerts are mailed to",
                    ));
                }
                AlertSink::Email { to }
            }
            other => {
                return Err(refuse(
                    "kind",
                    format!("unknown alert kind `{other}` (expected webhook, telegram or email)"),
                ))
            }
        };
        Ok(AlertTarget { sink, events })
    }
}

/// Every event name, in order.
pub fn event_names() -> Vec<&'static str> {
    AlertEvent::ALL.iter().map(|e| e.as_str()).collect()
}

/// `[alerting]`: thresholds and delivery timing. Low stock uses `console.low_stock_threshold`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AlertingConfig {
    /// How often kami evaluates success rate, silence, exception orders and stock,
    /// 1..=3600 seconds, default 60.
    pub evaluate_seconds: u32,
    /// `success_rate_low` fires when a channel's paid/created over the last hour is this many
    /// percent below its own 7-day rate, 1..=100, default 50.
    pub success_rate_drop_percent: u32,
    /// ... and only when the channel had at least this many orders in that hour,
    /// 1..=100000, default 20.
    pub min_orders: u32,
    /// `silent_channel`: a channel that paid at least this many orders a day over the last 7
    /// days, 1..=100000, default 24 ...
    pub silent_min_daily_paid: u32,
    /// ... fires after no paid order for max(`silent_min_minutes`, the time its 7-day rate
    /// needs for `silent_expected_orders` paid orders): 1..=1440, default 30 ...
    pub silent_min_minutes: u32,
    /// ... 1..=1000, default 10.
    pub silent_expected_orders: u32,
    /// `notify_lag`: a notification arriving this many seconds after the gateway's pay time,
    /// 1..=86400, default 120 (read by the part of kami that emits it).
    pub notify_lag_seconds: u32,
    /// A failed delivery is retried after base · 2^(attempt-1) seconds, at most an hour;
    /// 1..=3600, default 30. Given up after a day, the error kept.
    pub retry_base_seconds: u32,
    /// Per webhook / Telegram request, 1..=120 seconds, default 10.
    pub timeout_seconds: u32,
}

impl Default for AlertingConfig {
    fn default() -> AlertingConfig {
        AlertingConfig {
            evaluate_seconds: 60,
            success_rate_drop_percent: 50,
            min_orders: 20,
            silent_min_daily_paid: 24,
            silent_min_minutes: 30,
            silent_expected_orders: 10,
            notify_lag_seconds: 120,
            retry_base_seconds: 30,
            timeout_seconds: 10,
        }
    }
}

pub(super) fn check_alerting(c: &AlertingConfig, origins: &Origins) -> Result<(), ConfigError> {
    for (key, value, range) in [
        ("alerting.evaluate_seconds", c.evaluate_seconds, (1, 3600)),
        (
            "alerting.success_rate_drop_percent",
            c.success_rate_drop_percent,
            (1, 100),
        ),
        ("alerting.min_orders", c.min_orders, (1, 100_000)),
        (
            "alerting.silent_min_daily_paid",
            c.silent_min_daily_paid,
            (1, 100_000),
        ),
        (
            "alerting.silent_min_minutes",
            c.silent_min_minutes,
            (1, 1440),
        ),
        (
            "alerting.silent_expected_orders",
            c.silent_expected_orders,
            (1, 1000),
        ),
        (
            "alerting.notify_lag_seconds",
            c.notify_lag_seconds,
            (1, 86_400),
        ),
        (
            "alerting.retry_base_seconds",
            c.retry_base_seconds,
            (1, 3600),
        ),
        ("alerting.timeout_seconds", c.timeout_seconds, (1, 120)),
    ] {
        check_range(origins, key, value, range)?;
    }
    Ok(())
}

/// A string or a list of strings (`to = "a@x"` or `to = ["a@x", "b@x"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// One `[[alerts]]` block as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAlert {
    kind: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    bot_token: Option<String>,
    bot_token_file: Option<PathBuf>,
    #[serde(deserialize_with = "super::secrets::string_or_int")]
    chat_id: Option<String>,
    api_base: Option<String>,
    to: Option<OneOrMany>,
    events: Option<Vec<String>>,
}

/// `secret` or `secret_file` (relative to `base_dir`), not both; errors name `alerts[i].key`.
fn inline_or_file(
    origins: &Origins,
    at: &str,
    key: &str,
    value: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
) -> Result<Option<String>, ConfigError> {
    let name = format!("{at}.{key}");
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::SecretConflict {
            origin: origins
                .of(&format!("{name}_file"))
                .or_else(|| origins.of(&name)),
            key: name,
        }),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => {
            let path = base_dir.join(f);
            let text =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                    key: format!("{name}_file"),
                    path: path.clone(),
                    source,
                })?;
            let text = text.trim().to_owned();
            if text.is_empty() {
                return Err(ConfigError::EmptySecretFile {
                    key: format!("{name}_file"),
                    path,
                });
            }
            Ok(Some(text))
        }
        (None, None) => Ok(None),
    }
}

/// Every `[[alerts]]` block, checked, secrets read.
pub(super) fn build_alerts(
    raw: Vec<RawAlert>,
    base_dir: &Path,
    origins: &Origins,
) -> Result<Vec<AlertTarget>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("alerts[{i}]");
        let secret = inline_or_file(origins, &at, "secret", r.secret, r.secret_file, base_dir)?;
        let bot_token = inline_or_file(
            origins,
            &at,
            "bot_token",
            r.bot_token,
            r.bot_token_file,
            base_dir,
        )?;
        let fields = TargetFields {
            kind: r.kind,
            url: r.url,
            secret,
            bot_token,
            chat_id: r.chat_id,
            api_base: r.api_base,
            to: match r.to {
                None => Vec::new(),
                Some(OneOrMany::One(a)) => vec![a],
                Some(OneOrMany::Many(v)) => v,
            },
            events: r.events,
        };
        let target = AlertTarget::parse(fields).map_err(|e| {
            let key = format!("{at}.{}", e.key);
            ConfigError::Invalid {
                origin: origins.of(&key),
                key,
                message: e.message,
            }
        })?;
        out.push(target);
    }
    Ok(out)
}
