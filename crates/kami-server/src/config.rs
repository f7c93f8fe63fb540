//! Configuration (DESIGN 4.2): a TOML file, overridden by `KAMI__SECTION__KEY` environment
//! variables, with secrets loadable from files (`*_file` keys).
//!
//! Loading happens in four steps:
//! 1. the TOML file is parsed into a generic table (syntax errors name file, line and column);
//! 2. `KAMI__…` environment variables are applied onto that table;
//! 3. the table is deserialized, collecting unknown keys as warnings and naming the key of
//!    every type error;
//! 4. values are checked (ranges, URLs, per-kind channel requirements) and `*_file` secrets
//!    are read.
//!
//! Error messages name the file, key or environment variable involved and never contain
//! secret values.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kami_core::{ChannelId, Method};
use lettre::message::Mailbox;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use url::Url;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "KAMI__";

const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_DATABASE_URL: &str = "sqlite://data/kami.db";
const DEFAULT_MAX_CONNECTIONS: u32 = 16;
const MAX_CONNECTIONS_RANGE: (u32, u32) = (1, 200);
const DEFAULT_EXPIRE_MINUTES: u32 = 15;
const EXPIRE_MINUTES_RANGE: (u32, u32) = (1, 1440);
const DATABASE_SCHEMES: [&str; 3] = ["sqlite://", "postgres://", "postgresql://"];
const DEFAULT_SMTP_TIMEOUT_SECONDS: u32 = 15;
const SMTP_TIMEOUT_RANGE: (u32, u32) = (1, 300);
const DEFAULT_SMTP_RETRY_BASE_SECONDS: u32 = 30;
const SMTP_RETRY_BASE_RANGE: (u32, u32) = (1, 3600);
/// Default `api_base` of `wechatpay` channels (DESIGN 4.2).
pub const WECHATPAY_DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// A secret string (HMAC key, password, ...). `Debug` prints `***`; there is no `Display`,
/// so the value only leaves through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub orders: OrdersConfig,
    pub shop: ShopConfig,
    /// `[smtp]`: buyer mail; `None` (no section) means no mail is ever attempted.
    pub smtp: Option<SmtpConfig>,
    pub channels: Vec<ChannelConfig>,
    /// Directory of the configuration file (absolute when loaded from a file); relative
    /// `*_file` paths resolve against it, against the current directory when there is no
    /// file. The `*_file` paths in [`ChannelConfig`] are already resolved.
    pub base_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            orders: OrdersConfig::default(),
            shop: ShopConfig::default(),
            smtp: None,
            channels: Vec::new(),
            base_dir: PathBuf::from("."),
        }
    }
}

impl Config {
    /// Parses a configuration from TOML text, without environment overrides. Relative
    /// `*_file` paths resolve against the current directory.
    pub fn from_toml_str(s: &str) -> Result<Loaded, ConfigError> {
        load_text(
            Some(s),
            "configuration",
            PathBuf::from("."),
            std::iter::empty(),
        )
    }

    /// The channel with this id, if configured.
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id.as_str() == id)
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Base for notify_url / return_url sent to gateways; http(s), no query or fragment.
    pub public_url: Option<Url>,
    /// Default `./data`.
    pub data_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(DEFAULT_LISTEN),
            public_url: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// `[database]`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://…`, `postgres://…` or `postgresql://…`; default `sqlite://data/kami.db`.
    /// May hold a password: `Debug` hides it.
    pub url: String,
    /// Pool size, 1..=200, default 16.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> DatabaseConfig {
        DatabaseConfig {
            url: DEFAULT_DATABASE_URL.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_database_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `[orders]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersConfig {
    /// Minutes before an unpaid order expires, 1..=1440, default 15.
    pub expire_minutes: u32,
    /// Overrides `expire_minutes` with a finer deadline, 5..=86400 (tests and demos).
    pub expire_seconds: Option<u32>,
}

impl OrdersConfig {
    /// The payment window in milliseconds.
    pub fn expire_ms(&self) -> i64 {
        match self.expire_seconds {
            Some(s) => i64::from(s) * 1000,
            None => i64::from(self.expire_minutes) * 60_000,
        }
    }
}

impl Default for OrdersConfig {
    fn default() -> OrdersConfig {
        OrdersConfig {
            expire_minutes: DEFAULT_EXPIRE_MINUTES,
            expire_seconds: None,
        }
    }
}

/// `[shop]`: what the storefront shows and how it behaves.
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

/// How the SMTP connection is secured (`smtp.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (default; port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption (a local relay only; port 25).
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `[smtp]`: where buyer mail (the delivered keys) is sent through.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// Server host name (or IP address); also the name its TLS certificate must carry.
    pub host: String,
    /// Default by `tls`: 587 (starttls), 465 (tls), 25 (none).
    pub port: u16,
    pub tls: SmtpTls,
    /// Login, with `password`; both or neither.
    pub username: Option<String>,
    /// From `password` or `password_file`.
    pub password: Option<Secret>,
    /// The sender, e.g. `Shop <shop@example.com>`.
    pub from: Mailbox,
    /// Extra PEM certificate(s) to trust besides the public roots (self-hosted servers);
    /// resolved against [`Config::base_dir`], read when the mailer starts.
    pub ca_file: Option<PathBuf>,
    /// Per connection / command, 1..=300 seconds, default 15.
    pub timeout_seconds: u32,
    /// Retry backoff: base · 2^(attempt-1), at most an hour; 1..=3600 seconds, default 30.
    pub retry_base_seconds: u32,
}

/// The protocol a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Alipay,
    Wechatpay,
    Epay,
    Sandbox,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Alipay,
        ChannelKind::Wechatpay,
        ChannelKind::Epay,
        ChannelKind::Sandbox,
    ];

    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Alipay => "alipay",
            ChannelKind::Wechatpay => "wechatpay",
            ChannelKind::Epay => "epay",
            ChannelKind::Sandbox => "sandbox",
        }
    }

    /// The kind-specific keys (DESIGN 4.2) this kind uses.
    fn keys(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Alipay => &[
                "gateway",
                "app_id",
                "app_private_key_file",
                "alipay_public_key_file",
                "sign_type",
                "mode",
                "seller_id",
                "app_auth_token",
                "sys_service_provider_id",
            ],
            ChannelKind::Wechatpay => &[
                "api_base",
                "mchid",
                "appid",
                "merchant_serial_no",
                "merchant_private_key_file",
                "apiv3_key_file",
                "wechatpay_public_key_file",
                "wechatpay_public_key_id",
                "mode",
            ],
            ChannelKind::Epay => &[
                "gateway",
                "pid",
                "key_file",
                "version",
                "merchant_private_key_file",
                "platform_public_key_file",
                // kami extension: `submit` (page jump, every platform) or `api` (mapi.php).
                "mode",
            ],
            // `gateway`: where the sandbox simulator runs (default: this server itself).
            ChannelKind::Sandbox => &["gateway", "secret", "secret_file"],
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[channels]]` entry. Kind-specific keys that do not belong to `kind` are warned
/// about and cleared (`None`). Every `*_file` path is resolved against
/// [`Config::base_dir`]; the files themselves are not read (except `secret_file`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    pub id: ChannelId,
    pub kind: ChannelKind,
    /// Buyer-facing methods this channel serves; never empty.
    pub methods: Vec<Method>,
    /// Routing preference, higher first; default 0.
    pub priority: i32,
    /// Default true.
    pub enabled: bool,
    /// sandbox: may run outside `--demo` (default false).
    pub allow_sandbox: bool,

    // alipay
    /// alipay, epay; sandbox (the simulator's base URL). Checked to be an http(s) URL.
    pub gateway: Option<String>,
    pub app_id: Option<String>,
    pub app_private_key_file: Option<String>,
    pub alipay_public_key_file: Option<String>,
    pub sign_type: Option<String>,
    /// alipay: `qr` | `page` | `wap` | `auto`; wechatpay: `native` | `h5` | `auto`.
    pub mode: Option<String>,
    pub seller_id: Option<String>,
    pub app_auth_token: Option<String>,
    pub sys_service_provider_id: Option<String>,

    // wechatpay
    /// Defaults to [`WECHATPAY_DEFAULT_API_BASE`] for wechatpay channels.
    pub api_base: Option<String>,
    pub mchid: Option<String>,
    pub appid: Option<String>,
    pub merchant_serial_no: Option<String>,
    /// wechatpay, epay (version 2).
    pub merchant_private_key_file: Option<String>,
    pub apiv3_key_file: Option<String>,
    pub wechatpay_public_key_file: Option<String>,
    pub wechatpay_public_key_id: Option<String>,

    // epay
    pub pid: Option<String>,
    /// Version 1 MD5 key.
    pub key_file: Option<String>,
    /// 1 or 2; `None` means 1.
    pub version: Option<u8>,
    pub platform_public_key_file: Option<String>,

    // sandbox
    /// HMAC secret; when `None` the sandbox channel picks a random one.
    pub secret: Option<Secret>,
    /// Where `secret` was read from, if it was.
    pub secret_file: Option<PathBuf>,
}

/// A loaded configuration with the warnings (unknown or misplaced keys) found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Why a configuration could not be loaded. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read configuration file `{}`: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TOML syntax error in {file}{}: {message}", position(*.line, *.column))]
    Syntax {
        /// The file name, or `configuration` for text given directly.
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("environment variable `{var}`: {reason}")]
    Env { var: String, reason: String },
    #[error("configuration error at `{key}`: {message}{}", env_note(.origin))]
    Type {
        key: String,
        message: String,
        /// The environment variable that set this key, if one did.
        origin: Option<String>,
    },
    #[error("invalid `{key}`: {message}{}", env_note(.origin))]
    Invalid {
        key: String,
        message: String,
        origin: Option<String>,
    },
    #[error("both `{key}` and `{key}_file` are set{}; set only one", env_note(.origin))]
    SecretConflict { key: String, origin: Option<String> },
    #[error("cannot read `{key}` file `{}`: {source}", .path.display())]
    SecretFile {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{key}` file `{}` is empty", .path.display())]
    EmptySecretFile { key: String, path: PathBuf },
    #[error("channel {channel}: missing required key `{key}` ({requirement})")]
    MissingChannelKey {
        /// `` `ali-main` (channels[0]) `` or `channels[0]` when the id is unknown.
        channel: String,
        key: String,
        requirement: String,
    },
    #[error("channel {channel}: invalid `{key}`: {message}{}", env_note(.origin))]
    InvalidChannelKey {
        channel: String,
        key: String,
        message: String,
        origin: Option<String>,
    },
    #[error("duplicate channel id `{id}` (channels[{first}] and channels[{second}]); channel ids must be unique")]
    DuplicateChannel {
        id: String,
        first: usize,
        second: usize,
    },
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

fn env_note(origin: &Option<String>) -> String {
    match origin {
        Some(var) => format!(" (set by environment variable `{var}`)"),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Loads the configuration: the TOML file at `path` (if any; a missing explicit file is an
/// error), overridden by the `KAMI__…` entries of `env` (pass `std::env::vars()`), with
/// `*_file` secrets read and everything validated.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.to_path_buf(),
                source,
            })?;
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let base_dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
            load_text(Some(&text), &path.display().to_string(), base_dir, env)
        }
        None => {
            let base_dir = std::path::absolute(".").unwrap_or_else(|_| PathBuf::from("."));
            load_text(None, "configuration", base_dir, env)
        }
    }
}

fn load_text(
    text: Option<&str>,
    file: &str,
    base_dir: PathBuf,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let table = match text {
        Some(text) => parse_toml(text, file)?,
        None => toml::Table::new(),
    };
    let mut root = toml::Value::Table(table);
    let origins = apply_env(&mut root, env)?;

    let mut warnings = Vec::new();
    let raw = deserialize_raw(root, &origins, &mut warnings)?;
    let config = build(raw, base_dir, &origins, &mut warnings)?;
    Ok(Loaded { config, warnings })
}

fn parse_toml(text: &str, file: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: one_line(e.message()),
        }
    })
}

/// toml's messages span lines (`invalid table header\nexpected ...`); keep errors on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Index(usize),
    Key(String),
}

impl Seg {
    fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Index(_) => None,
        }
    }
    fn as_table_key(&self) -> String {
        match self {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        }
    }
}

/// `server.listen`, `channels[0].app_id`: the same form serde_path_to_error prints.
fn display_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

/// Which environment variable set which key (paths as [`display_path`] prints them).
#[derive(Debug, Default)]
struct Origins(Vec<(String, String)>);

impl Origins {
    /// The variable that set `key` or one of its ancestors.
    fn of(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(path, _)| {
                key == path
                    || key
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .map(|(_, var)| var.clone())
    }
}

/// Channel keys whose values are strings: environment values for them are kept as written
/// (so `KAMI__CHANNELS__0__APP_ID=2021000000000000` stays a string), unless written as a
/// quoted TOML string.
const CHANNEL_STRING_KEYS: &[&str] = &[
    "id",
    "kind",
    "gateway",
    "app_id",
    "app_private_key_file",
    "alipay_public_key_file",
    "sign_type",
    "mode",
    "seller_id",
    "app_auth_token",
    "sys_service_provider_id",
    "api_base",
    "mchid",
    "appid",
    "merchant_serial_no",
    "merchant_private_key_file",
    "apiv3_key_file",
    "wechatpay_public_key_file",
    "wechatpay_public_key_id",
    "pid",
    "key_file",
    "platform_public_key_file",
    "secret",
    "secret_file",
];

fn is_string_key(segs: &[Seg]) -> bool {
    match segs {
        [a, b] => matches!(
            (a.key(), b.key()),
            (Some("server"), Some("listen" | "public_url" | "data_dir"))
                | (Some("database"), Some("url" | "url_file"))
                | (
                    Some("smtp"),
                    Some(
                        "host"
                            | "tls"
                            | "username"
                            | "password"
                            | "password_file"
                            | "from"
                            | "ca_file"
                    )
                )
        ),
        [a, Seg::Index(_), c] => {
            a.key() == Some("channels") && c.key().is_some_and(|k| CHANNEL_STRING_KEYS.contains(&k))
        }
        _ => false,
    }
}

/// A bare TOML value (`15`, `true`, `["alipay"]`, `"quoted"`), if `raw` is exactly one.
fn parse_bare_toml(raw: &str) -> Option<toml::Value> {
    let mut table: toml::Table = format!("v = {raw}").parse().ok()?;
    if table.len() != 1 {
        return None;
    }
    table.remove("v")
}

fn env_value(raw: &str, string_key: bool) -> toml::Value {
    match parse_bare_toml(raw) {
        Some(v @ toml::Value::String(_)) => v,
        Some(v) if !string_key => v,
        _ => toml::Value::String(raw.to_owned()),
    }
}

fn parse_env_path(rest: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in rest.split("__") {
        if part.is_empty() {
            return Err(format!(
                "empty path segment; expected {ENV_PREFIX}SECTION__KEY (double underscores between parts)"
            ));
        }
        let part = part.to_lowercase();
        if part.bytes().all(|b| b.is_ascii_digit()) {
            let index = part
                .parse::<usize>()
                .map_err(|_| format!("array index `{part}` is too large"))?;
            segs.push(Seg::Index(index));
        } else {
            segs.push(Seg::Key(part));
        }
    }
    Ok(segs)
}

fn apply_env(
    root: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Origins, ConfigError> {
    let mut overrides = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segs = parse_env_path(rest).map_err(|reason| ConfigError::Env {
            var: var.clone(),
            reason,
        })?;
        overrides.push((segs, var, value));
    }
    // Sorted so that shorter paths apply first and `channels[1]` is appended before
    // `channels[2]`; ties (same key, different spelling) are ambiguous.
    overrides.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    for pair in overrides.windows(2) {
        if let [(a, var_a, _), (b, var_b, _)] = pair {
            if a == b {
                return Err(ConfigError::Env {
                    var: var_b.clone(),
                    reason: format!(
                        "sets `{}`, which `{var_a}` also sets; remove one of them",
                        display_path(a)
                    ),
                });
            }
        }
    }

    let mut origins = Origins::default();
    for (segs, var, raw) in overrides {
        let value = env_value(&raw, is_string_key(&segs));
        set_path(root, &segs, 0, value).map_err(|reason| ConfigError::Env {
            var: var.clone(),
            reason,
        })?;
        origins.0.push((display_path(&segs), var));
    }
    Ok(origins)
}

fn empty_container(next: &Seg) -> toml::Value {
    match next {
        Seg::Index(_) => toml::Value::Array(Vec::new()),
        Seg::Key(_) => toml::Value::Table(toml::Table::new()),
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Sets `segs[depth..]` below `cur` (which is at `segs[..depth]`).
fn set_path(
    cur: &mut toml::Value,
    segs: &[Seg],
    depth: usize,
    value: toml::Value,
) -> Result<(), String> {
    let Some((seg, rest)) = segs[depth..].split_first() else {
        *cur = value;
        return Ok(());
    };
    let here = display_path(&segs[..depth]);
    match cur {
        toml::Value::Table(table) => {
            let key = seg.as_table_key();
            let Some(next) = rest.first() else {
                table.insert(key, value);
                return Ok(());
            };
            let child = table.entry(key).or_insert_with(|| empty_container(next));
            set_path(child, segs, depth + 1, value)
        }
        toml::Value::Array(items) => {
            let Seg::Index(index) = *seg else {
                return Err(format!(
                    "`{here}` is an array; expected a numeric index after it, found `{}`",
                    seg.as_table_key()
                ));
            };
            let len = items.len();
            if index > len {
                return Err(format!(
                    "index {index} is out of range: `{here}` has {len} element(s) \
                     (use index {len} to append one)"
                ));
            }
            if index == len {
                match rest.first() {
                    None => {
                        items.push(value);
                        return Ok(());
                    }
                    Some(next) => items.push(empty_container(next)),
                }
            }
            let child = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is out of range for `{here}`"))?;
            set_path(child, segs, depth + 1, value)
        }
        other => Err(format!(
            "`{here}` is {}, not a table or array, so `{}` cannot be set",
            type_name(other),
            display_path(segs)
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization into raw (unchecked) structures
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    server: RawServer,
    database: RawDatabase,
    orders: RawOrders,
    shop: RawShop,
    smtp: Option<RawSmtp>,
    channels: Vec<RawChannel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u32>,
    tls: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    username: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    password: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    ca_file: Option<PathBuf>,
    timeout_seconds: Option<u32>,
    retry_base_seconds: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawShop {
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawDatabase {
    url: Option<String>,
    url_file: Option<PathBuf>,
    max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawOrders {
    expire_minutes: Option<u32>,
    expire_seconds: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawChannel {
    #[serde(deserialize_with = "string_or_int")]
    id: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    kind: Option<String>,
    #[serde(deserialize_with = "methods_list")]
    methods: Option<Vec<String>>,
    priority: Option<i32>,
    enabled: Option<bool>,
    allow_sandbox: Option<bool>,

    #[serde(deserialize_with = "string_or_int")]
    gateway: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    app_id: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    app_private_key_file: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    alipay_public_key_file: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    sign_type: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    mode: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    seller_id: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    app_auth_token: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    sys_service_provider_id: Option<String>,

    #[serde(deserialize_with = "string_or_int")]
    api_base: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    mchid: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    appid: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    merchant_serial_no: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    merchant_private_key_file: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    apiv3_key_file: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    wechatpay_public_key_file: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    wechatpay_public_key_id: Option<String>,

    #[serde(deserialize_with = "string_or_int")]
    pid: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    key_file: Option<String>,
    version: Option<u8>,
    #[serde(deserialize_with = "string_or_int")]
    platform_public_key_file: Option<String>,

    #[serde(deserialize_with = "string_or_int")]
    secret: Option<String>,
    #[serde(deserialize_with = "string_or_int")]
    secret_file: Option<String>,
}

/// A string; integers are accepted too (`pid = 1001`, `mchid = 1900000001`).
fn string_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V).map(Some)
}

/// An array of strings; a single string is read as a comma-separated list
/// (`KAMI__CHANNELS__0__METHODS=alipay,wxpay`).
fn methods_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of payment method names")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V).map(Some)
}

/// `channels[0].secret`, `database.url`: values that must not appear in messages.
fn is_secret_key(key: &str) -> bool {
    key == "database.url"
        || key == "smtp.password"
        || (key.starts_with("channels[") && key.ends_with(".secret"))
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn deserialize_raw(
    root: toml::Value,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<RawConfig, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(root, &mut track);
    let result = serde_ignored::deserialize(tracked, |path| {
        let key = ignored_path(&path);
        warnings.push(format!(
            "unknown configuration key `{key}` (ignored){}",
            env_note(&origins.of(&key))
        ));
    });
    result.map_err(|e| {
        let key = track.path().to_string();
        let message = if is_secret_key(&key) {
            "invalid type; expected a string (value not shown: this key holds a secret)".to_owned()
        } else {
            one_line(e.message())
        };
        ConfigError::Type {
            origin: origins.of(&key),
            key,
            message,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn invalid(origins: &Origins, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message,
        origin: origins.of(key),
    }
}

fn check_range(
    origins: &Origins,
    key: &str,
    value: Option<u32>,
    default: u32,
    (min, max): (u32, u32),
) -> Result<u32, ConfigError> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            origins,
            key,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

fn build(
    raw: RawConfig,
    base_dir: PathBuf,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<Config, ConfigError> {
    let server = build_server(raw.server, origins)?;
    let database = build_database(raw.database, &base_dir, origins)?;
    let orders = OrdersConfig {
        expire_minutes: check_range(
            origins,
            "orders.expire_minutes",
            raw.orders.expire_minutes,
            DEFAULT_EXPIRE_MINUTES,
            EXPIRE_MINUTES_RANGE,
        )?,
        expire_seconds: match raw.orders.expire_seconds {
            None => None,
            Some(v) => Some(check_range(
                origins,
                "orders.expire_seconds",
                Some(v),
                v,
                (5, 86_400),
            )?),
        },
    };

    let shop = build_shop(raw.shop, &base_dir, origins)?;
    let smtp = raw
        .smtp
        .map(|s| build_smtp(s, &base_dir, origins, warnings))
        .transpose()?;

    let mut channels: Vec<ChannelConfig> = Vec::with_capacity(raw.channels.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, rc) in raw.channels.into_iter().enumerate() {
        let channel = build_channel(index, rc, &base_dir, origins, warnings)?;
        if let Some(&first) = seen.get(channel.id.as_str()) {
            return Err(ConfigError::DuplicateChannel {
                id: channel.id.to_string(),
                first,
                second: index,
            });
        }
        seen.insert(channel.id.to_string(), index);
        channels.push(channel);
    }

    Ok(Config {
        server,
        database,
        orders,
        shop,
        smtp,
        channels,
        base_dir,
    })
}

fn build_shop(raw: RawShop, base_dir: &Path, origins: &Origins) -> Result<ShopConfig, ConfigError> {
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

fn build_smtp(
    raw: RawSmtp,
    base_dir: &Path,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<SmtpConfig, ConfigError> {
    let host = raw.host.as_deref().map(str::trim).unwrap_or_default();
    if host.is_empty() {
        return Err(invalid(
            origins,
            "smtp.host",
            "required when [smtp] is present (the mail server's host name)".into(),
        ));
    }
    let port_in_host = host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err();
    if port_in_host || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(invalid(
            origins,
            "smtp.host",
            format!(
                "`{host}` is not a host name (write e.g. smtp.example.com, without scheme; the port goes in `smtp.port`)"
            ),
        ));
    }
    let tls = match raw.tls.as_deref().map(str::trim) {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            return Err(invalid(
                origins,
                "smtp.tls",
                format!("`{other}` is not one of: starttls, tls, none"),
            ))
        }
    };
    let port = match raw.port {
        None => tls.default_port(),
        Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            invalid(
                origins,
                "smtp.port",
                format!("must be between 1 and 65535, got {p}"),
            )
        })?,
    };
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::SecretConflict {
                key: "smtp.password".into(),
                origin: origins
                    .of("smtp.password_file")
                    .or_else(|| origins.of("smtp.password")),
            })
        }
        (Some(p), None) => Some(Secret(p)),
        (None, Some(f)) => Some(Secret(read_secret_file(
            "smtp.password_file",
            base_dir.join(f),
        )?)),
        (None, None) => None,
    };
    let username = raw
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    match (&username, &password) {
        (Some(_), None) => {
            return Err(invalid(
                origins,
                "smtp.password",
                "`smtp.username` is set, so a password (`password` or `password_file`) is required"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                origins,
                "smtp.username",
                "a password is set, so `smtp.username` is required".into(),
            ))
        }
        _ => {}
    }
    if tls == SmtpTls::None && password.is_some() {
        warnings.push(format!(
            "smtp: tls = \"none\" sends the password to `{host}` unencrypted; use \"starttls\" or \"tls\" unless it is a local relay"
        ));
    }
    let from_raw = raw.from.as_deref().map(str::trim).unwrap_or_default();
    if from_raw.is_empty() {
        return Err(invalid(
            origins,
            "smtp.from",
            "required when [smtp] is present (the sender, e.g. \"Shop <shop@example.com>\")".into(),
        ));
    }
    let from = from_raw.parse::<Mailbox>().map_err(|e| {
        invalid(
            origins,
            "smtp.from",
            format!(
                "`{from_raw}` is not a mail address ({}); expected e.g. \"Shop <shop@example.com>\" or \"shop@example.com\"",
                e.to_string().to_lowercase()
            ),
        )
    })?;
    let ca_file = match raw.ca_file {
        None => None,
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid(origins, "smtp.ca_file", "must not be empty".into()))
        }
        Some(p) => Some(base_dir.join(p)),
    };
    if ca_file.is_some() && tls == SmtpTls::None {
        warnings
            .push("smtp: `ca_file` has no effect with tls = \"none\" (no TLS is used)".to_owned());
    }
    Ok(SmtpConfig {
        host: host.to_owned(),
        port,
        tls,
        username,
        password,
        from,
        ca_file,
        timeout_seconds: check_range(
            origins,
            "smtp.timeout_seconds",
            raw.timeout_seconds,
            DEFAULT_SMTP_TIMEOUT_SECONDS,
            SMTP_TIMEOUT_RANGE,
        )?,
        retry_base_seconds: check_range(
            origins,
            "smtp.retry_base_seconds",
            raw.retry_base_seconds,
            DEFAULT_SMTP_RETRY_BASE_SECONDS,
            SMTP_RETRY_BASE_RANGE,
        )?,
    })
}

fn build_server(raw: RawServer, origins: &Origins) -> Result<ServerConfig, ConfigError> {
    let listen = match raw.listen {
        None => SocketAddr::from(DEFAULT_LISTEN),
        Some(s) => s.trim().parse().map_err(|_| {
            invalid(
                origins,
                "server.listen",
                format!("`{s}` is not an IP address and port (expected e.g. 127.0.0.1:8080)"),
            )
        })?,
    };
    let public_url = match raw.public_url {
        None => None,
        Some(s) => {
            Some(parse_public_url(&s).map_err(|m| invalid(origins, "server.public_url", m))?)
        }
    };
    let data_dir = match raw.data_dir {
        None => PathBuf::from(DEFAULT_DATA_DIR),
        Some(d) if d.as_os_str().is_empty() => {
            return Err(invalid(
                origins,
                "server.data_dir",
                "must not be empty".into(),
            ))
        }
        Some(d) => d,
    };
    Ok(ServerConfig {
        listen,
        public_url,
        data_dir,
    })
}

fn parse_public_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL, got scheme `{}`",
            url.scheme()
        ));
    }
    if url.query().is_some() {
        return Err("must not contain a query string (`?…`)".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment (`#…`)".into());
    }
    Ok(url)
}

fn check_http_url(s: &str) -> Result<(), String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
    if matches!(url.scheme(), "http" | "https") {
        Ok(())
    } else {
        Err(format!(
            "must be an http:// or https:// URL, got scheme `{}`",
            url.scheme()
        ))
    }
}

fn read_secret_file(key: &str, path: PathBuf) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
        key: key.to_owned(),
        path: path.clone(),
        source,
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError::EmptySecretFile {
            key: key.to_owned(),
            path,
        });
    }
    Ok(value.to_owned())
}

fn build_database(
    raw: RawDatabase,
    base_dir: &Path,
    origins: &Origins,
) -> Result<DatabaseConfig, ConfigError> {
    let url = match (raw.url, raw.url_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::SecretConflict {
                key: "database.url".into(),
                origin: origins
                    .of("database.url_file")
                    .or_else(|| origins.of("database.url")),
            })
        }
        (Some(url), None) => url,
        (None, Some(file)) => read_secret_file("database.url_file", base_dir.join(file))?,
        (None, None) => DEFAULT_DATABASE_URL.to_owned(),
    };
    if !DATABASE_SCHEMES.iter().any(|s| url.starts_with(s)) {
        // Only the scheme is shown: the rest of the URL may hold a password.
        let scheme = url.split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty()
                && s.len() <= 20
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let got = match scheme {
            Some(s) => format!("got scheme `{s}`"),
            None => "value not shown".to_owned(),
        };
        return Err(invalid(
            origins,
            "database.url",
            format!("must start with sqlite://, postgres:// or postgresql:// ({got})"),
        ));
    }
    let max_connections = check_range(
        origins,
        "database.max_connections",
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        MAX_CONNECTIONS_RANGE,
    )?;
    Ok(DatabaseConfig {
        url,
        max_connections,
    })
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`; also hides a `password`
/// query parameter.
fn redact_database_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "***".to_owned();
            }
            if parsed.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "***".to_owned(),
    }
}

fn resolve_path(base_dir: &Path, key: &str, p: String) -> Result<String, ConfigError> {
    let joined = base_dir.join(&p);
    match joined.to_str() {
        Some(s) => Ok(s.to_owned()),
        None => Err(ConfigError::Invalid {
            key: key.to_owned(),
            message: format!(
                "`{p}` resolved against `{}` is not valid UTF-8",
                base_dir.display()
            ),
            origin: None,
        }),
    }
}

/// Removes and names the kind-specific keys that are set, for the "does not belong" check.
fn take_foreign_keys(rc: &mut RawChannel, kind: ChannelKind) -> Vec<&'static str> {
    let allowed = kind.keys();
    let mut foreign = Vec::new();
    {
        let string_fields = [
            ("gateway", &mut rc.gateway),
            ("app_id", &mut rc.app_id),
            ("app_private_key_file", &mut rc.app_private_key_file),
            ("alipay_public_key_file", &mut rc.alipay_public_key_file),
            ("sign_type", &mut rc.sign_type),
            ("mode", &mut rc.mode),
            ("seller_id", &mut rc.seller_id),
            ("app_auth_token", &mut rc.app_auth_token),
            ("sys_service_provider_id", &mut rc.sys_service_provider_id),
            ("api_base", &mut rc.api_base),
            ("mchid", &mut rc.mchid),
            ("appid", &mut rc.appid),
            ("merchant_serial_no", &mut rc.merchant_serial_no),
            (
                "merchant_private_key_file",
                &mut rc.merchant_private_key_file,
            ),
            ("apiv3_key_file", &mut rc.apiv3_key_file),
            (
                "wechatpay_public_key_file",
                &mut rc.wechatpay_public_key_file,
            ),
            ("wechatpay_public_key_id", &mut rc.wechatpay_public_key_id),
            ("pid", &mut rc.pid),
            ("key_file", &mut rc.key_file),
            ("platform_public_key_file", &mut rc.platform_public_key_file),
            ("secret", &mut rc.secret),
            ("secret_file", &mut rc.secret_file),
        ];
        for (name, field) in string_fields {
            if field.is_some() && !allowed.contains(&name) {
                *field = None;
                foreign.push(name);
            }
        }
    }
    if rc.version.is_some() && !allowed.contains(&"version") {
        rc.version = None;
        foreign.push("version");
    }
    foreign
}

fn build_channel(
    index: usize,
    mut rc: RawChannel,
    base_dir: &Path,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<ChannelConfig, ConfigError> {
    let at = format!("channels[{index}]");
    let key_path = |key: &str| format!("{at}.{key}");

    // id
    let raw_id = rc.id.take().ok_or_else(|| ConfigError::MissingChannelKey {
        channel: at.clone(),
        key: "id".into(),
        requirement: "every channel needs one".into(),
    })?;
    let id = ChannelId::parse(&raw_id).map_err(|e| ConfigError::InvalidChannelKey {
        channel: at.clone(),
        key: "id".into(),
        message: format!("`{raw_id}`: {e}"),
        origin: origins.of(&key_path("id")),
    })?;
    let channel = format!("`{id}` ({at})");
    let invalid_key = |key: &str, message: String| ConfigError::InvalidChannelKey {
        channel: channel.clone(),
        key: key.to_owned(),
        message,
        origin: origins.of(&key_path(key)),
    };
    let missing = |key: &str, requirement: String| ConfigError::MissingChannelKey {
        channel: channel.clone(),
        key: key.to_owned(),
        requirement,
    };

    // kind
    let raw_kind = rc
        .kind
        .take()
        .ok_or_else(|| missing("kind", "every channel needs one".into()))?;
    let kind = ChannelKind::parse(&raw_kind).ok_or_else(|| {
        invalid_key(
            "kind",
            format!(
                "unknown channel kind `{raw_kind}` (expected one of: {})",
                join_names(ChannelKind::ALL.iter().map(|k| k.as_str()))
            ),
        )
    })?;

    // methods
    let raw_methods = rc.methods.take().unwrap_or_default();
    if raw_methods.is_empty() {
        return Err(missing(
            "methods",
            "list at least one buyer-facing payment method, e.g. methods = [\"alipay\"]".into(),
        ));
    }
    let mut methods = Vec::with_capacity(raw_methods.len());
    for m in &raw_methods {
        let method = Method::parse(m.trim()).map_err(|_| {
            invalid_key(
                "methods",
                format!(
                    "unknown payment method `{m}` (expected one of: {})",
                    join_names(Method::ALL.iter().map(|m| m.as_str()))
                ),
            )
        })?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }

    // keys of other kinds
    for key in take_foreign_keys(&mut rc, kind) {
        warnings.push(format!(
            "channel {channel}: key `{key}` does not apply to kind `{kind}` (ignored){}",
            env_note(&origins.of(&key_path(key)))
        ));
    }

    // per-kind requirements
    let require = |key: &str, value: &Option<String>, requirement: &str| match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(missing(key, requirement.to_owned())),
    };
    let for_kind = format!("required for kind `{kind}`");
    match kind {
        ChannelKind::Alipay => {
            require("app_id", &rc.app_id, &for_kind)?;
            require("app_private_key_file", &rc.app_private_key_file, &for_kind)?;
            require(
                "alipay_public_key_file",
                &rc.alipay_public_key_file,
                &for_kind,
            )?;
            if let Some(mode) = &rc.mode {
                if !matches!(mode.as_str(), "qr" | "page" | "wap" | "auto") {
                    return Err(invalid_key(
                        "mode",
                        format!("`{mode}` is not one of: qr, page, wap, auto"),
                    ));
                }
            }
            if let Some(t) = &rc.sign_type {
                if !matches!(t.as_str(), "RSA2" | "RSA") {
                    return Err(invalid_key(
                        "sign_type",
                        format!("`{t}` is not one of: RSA2, RSA"),
                    ));
                }
            }
        }
        ChannelKind::Wechatpay => {
            require("mchid", &rc.mchid, &for_kind)?;
            require("appid", &rc.appid, &for_kind)?;
            require("merchant_serial_no", &rc.merchant_serial_no, &for_kind)?;
            require(
                "merchant_private_key_file",
                &rc.merchant_private_key_file,
                &for_kind,
            )?;
            require("apiv3_key_file", &rc.apiv3_key_file, &for_kind)?;
            require(
                "wechatpay_public_key_file",
                &rc.wechatpay_public_key_file,
                &for_kind,
            )?;
            if let Some(mode) = &rc.mode {
                if !matches!(mode.as_str(), "native" | "h5" | "auto") {
                    return Err(invalid_key(
                        "mode",
                        format!("`{mode}` is not one of: native, h5, auto"),
                    ));
                }
            }
            if rc.api_base.is_none() {
                rc.api_base = Some(WECHATPAY_DEFAULT_API_BASE.to_owned());
            }
        }
        ChannelKind::Epay => {
            require("gateway", &rc.gateway, &for_kind)?;
            require("pid", &rc.pid, &for_kind)?;
            if let Some(mode) = &rc.mode {
                if !matches!(mode.as_str(), "submit" | "api") {
                    return Err(invalid_key(
                        "mode",
                        format!("`{mode}` is not one of: submit, api"),
                    ));
                }
            }
            match rc.version {
                None | Some(1) => require("key_file", &rc.key_file, "required for epay version 1")?,
                Some(2) => {
                    let v2 = "required for epay version 2";
                    require(
                        "merchant_private_key_file",
                        &rc.merchant_private_key_file,
                        v2,
                    )?;
                    require("platform_public_key_file", &rc.platform_public_key_file, v2)?;
                }
                Some(v) => return Err(invalid_key("version", format!("must be 1 or 2, got {v}"))),
            }
        }
        ChannelKind::Sandbox => {}
    }
    for (key, value) in [("gateway", &rc.gateway), ("api_base", &rc.api_base)] {
        if let Some(v) = value {
            check_http_url(v).map_err(|m| invalid_key(key, m))?;
        }
    }

    // secret / secret_file
    let (secret, secret_file) = match (rc.secret.take(), rc.secret_file.take()) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::SecretConflict {
                key: key_path("secret"),
                origin: origins
                    .of(&key_path("secret_file"))
                    .or_else(|| origins.of(&key_path("secret"))),
            })
        }
        (Some(s), None) => (Some(Secret(s)), None),
        (None, Some(f)) => {
            let path = base_dir.join(f);
            let s = read_secret_file(&key_path("secret_file"), path.clone())?;
            (Some(Secret(s)), Some(path))
        }
        (None, None) => (None, None),
    };

    let resolve = |key: &str, p: Option<String>| -> Result<Option<String>, ConfigError> {
        p.map(|p| resolve_path(base_dir, &key_path(key), p))
            .transpose()
    };

    Ok(ChannelConfig {
        id,
        kind,
        methods,
        priority: rc.priority.unwrap_or(0),
        enabled: rc.enabled.unwrap_or(true),
        allow_sandbox: rc.allow_sandbox.unwrap_or(false),
        gateway: rc.gateway,
        app_id: rc.app_id,
        app_private_key_file: resolve("app_private_key_file", rc.app_private_key_file)?,
        alipay_public_key_file: resolve("alipay_public_key_file", rc.alipay_public_key_file)?,
        sign_type: rc.sign_type,
        mode: rc.mode,
        seller_id: rc.seller_id,
        app_auth_token: rc.app_auth_token,
        sys_service_provider_id: rc.sys_service_provider_id,
        api_base: rc.api_base,
        mchid: rc.mchid,
        appid: rc.appid,
        merchant_serial_no: rc.merchant_serial_no,
        merchant_private_key_file: resolve(
            "merchant_private_key_file",
            rc.merchant_private_key_file,
        )?,
        apiv3_key_file: resolve("apiv3_key_file", rc.apiv3_key_file)?,
        wechatpay_public_key_file: resolve(
            "wechatpay_public_key_file",
            rc.wechatpay_public_key_file,
        )?,
        wechatpay_public_key_id: rc.wechatpay_public_key_id,
        pid: rc.pid,
        key_file: resolve("key_file", rc.key_file)?,
        version: rc.version,
        platform_public_key_file: resolve("platform_public_key_file", rc.platform_public_key_file)?,
        secret,
        secret_file,
    })
}

fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(s: &str) -> Loaded {
        match Config::from_toml_str(s) {
            Ok(l) => l,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match Config::from_toml_str(s) {
            Ok(l) => panic!("expected an error, got {:?}", l.config),
            Err(e) => e.to_string(),
        }
    }

    fn load_env(toml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load_text(Some(toml), "kami.toml", PathBuf::from("."), env(vars))
    }

    const SANDBOX: &str = r#"
[[channels]]
id = "sb"
kind = "sandbox"
methods = ["sandbox"]
"#;

    const DESIGN_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://shop.example.com"   # base for notify_url / return_url sent to gateways

[database]
url = "sqlite://data/kami.db"             # or "postgres://user@host/dbname"

[orders]
expire_minutes = 15

[[channels]]
id = "ali-main"                # stable; appears in /pay/notify/ali-main
kind = "alipay"                # alipay | wechatpay | epay | sandbox  (more kinds later)
methods = ["alipay"]           # buyer-facing methods this channel serves
priority = 10                  # routing preference; higher first
# kind-specific keys, e.g. for alipay:
gateway = "https://openapi.alipay.com/gateway.do"
app_id = "2021000000000000"
app_private_key_file = "keys/app_private_key.pem"     # PKCS#1 or PKCS#8, PEM or bare base64
alipay_public_key_file = "keys/alipay_public_key.pem" # SPKI, PEM or bare base64
sign_type = "RSA2"
mode = "auto"                  # qr (当面付 precreate) | page | wap | auto
"#;

    const ALIPAY_MIN: &str = r#"
[[channels]]
id = "ali"
kind = "alipay"
methods = ["alipay"]
app_id = "2021000000000000"
app_private_key_file = "keys/app.pem"
alipay_public_key_file = "keys/ali.pem"
"#;

    #[test]
    fn defaults_without_a_file() {
        let loaded = match load(None, Vec::new()) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        assert!(loaded.warnings.is_empty());
        let c = loaded.config;
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.public_url, None);
        assert_eq!(c.server.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database.url, "sqlite://data/kami.db");
        assert_eq!(c.database.max_connections, 16);
        assert_eq!(c.orders.expire_minutes, 15);
        assert!(c.channels.is_empty());
        assert!(c.base_dir.is_absolute());

        let d = Config::default();
        assert_eq!(d.server, c.server);
        assert_eq!(d.database, c.database);
        assert_eq!(d.orders, c.orders);
        assert!(d.channels.is_empty());
        assert_eq!(parse("").config, d);
    }

    #[test]
    fn design_example_parses() {
        let loaded = parse(DESIGN_EXAMPLE);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert_eq!(
            c.server.public_url.as_ref().map(Url::as_str),
            Some("https://shop.example.com/")
        );
        assert_eq!(c.channels.len(), 1);
        let ch = &c.channels[0];
        assert_eq!(ch.id.as_str(), "ali-main");
        assert_eq!(ch.kind, ChannelKind::Alipay);
        assert_eq!(ch.methods, vec![Method::Alipay]);
        assert_eq!(ch.priority, 10);
        assert!(ch.enabled);
        assert_eq!(ch.app_id.as_deref(), Some("2021000000000000"));
        assert_eq!(ch.sign_type.as_deref(), Some("RSA2"));
        assert_eq!(ch.mode.as_deref(), Some("auto"));
        assert_eq!(
            ch.gateway.as_deref(),
            Some("https://openapi.alipay.com/gateway.do")
        );
        // Relative key paths resolve against base_dir (here ".").
        assert_eq!(
            ch.app_private_key_file.as_deref().map(Path::new),
            Some(Path::new("./keys/app_private_key.pem"))
        );
        assert!(c.channel("ali-main").is_some());
        assert!(c.channel("nope").is_none());
    }

    #[test]
    fn every_kind_parses() {
        let toml = r#"
[[channels]]
id = "wx"
kind = "wechatpay"
methods = ["wxpay"]
mchid = 1900000001
appid = "wx123"
merchant_serial_no = "ABC"
merchant_private_key_file = "/keys/wx.pem"
apiv3_key_file = "/keys/v3"
wechatpay_public_key_file = "/keys/wxpub.pem"
wechatpay_public_key_id = "PUB_KEY_ID_0001"
mode = "native"

[[channels]]
id = "ep1"
kind = "epay"
methods = ["alipay", "wxpay", "qqpay"]
gateway = "https://pay.example.com/"
pid = 1001
key_file = "/keys/epay"
enabled = false

[[channels]]
id = "ep2"
kind = "epay"
methods = ["alipay"]
gateway = "https://pay.example.com/"
pid = "1002"
version = 2
merchant_private_key_file = "/keys/m.pem"
platform_public_key_file = "/keys/p.pem"

[[channels]]
id = "sb"
kind = "sandbox"
methods = ["sandbox"]
secret = "s3cr3t"
gateway = "http://127.0.0.1:9100"
"#;
        let loaded = parse(toml);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let ch = &loaded.config.channels;
        assert_eq!(ch[0].kind, ChannelKind::Wechatpay);
        assert_eq!(ch[0].mchid.as_deref(), Some("1900000001"));
        assert_eq!(ch[0].api_base.as_deref(), Some(WECHATPAY_DEFAULT_API_BASE));
        assert_eq!(ch[0].apiv3_key_file.as_deref(), Some("/keys/v3"));
        assert_eq!(ch[1].pid.as_deref(), Some("1001"));
        assert_eq!(ch[1].version, None);
        assert!(!ch[1].enabled);
        assert_eq!(
            ch[1].methods,
            vec![Method::Alipay, Method::Wxpay, Method::Qqpay]
        );
        assert_eq!(ch[2].version, Some(2));
        assert_eq!(ch[3].secret.as_ref().map(Secret::expose), Some("s3cr3t"));
        assert_eq!(ch[3].secret_file, None);
        assert_eq!(ch[3].gateway.as_deref(), Some("http://127.0.0.1:9100"));
    }

    #[test]
    fn env_overrides_scalars() {
        let loaded = load_env(
            DESIGN_EXAMPLE,
            &[
                ("KAMI__ORDERS__EXPIRE_MINUTES", "30"),
                ("KAMI__SERVER__LISTEN", "0.0.0.0:9000"),
                ("KAMI__database__Max_Connections", "4"),
                ("KAMI__SERVER__PUBLIC_URL", "\"http://localhost:9000\""),
                ("PATH", "/usr/bin"),
                ("KAMI_SERVER__LISTEN", "not ours"),
            ],
        );
        let c = match loaded {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.orders.expire_minutes, 30);
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.database.max_connections, 4);
        assert_eq!(
            c.server.public_url.as_ref().map(Url::as_str),
            Some("http://localhost:9000/")
        );
    }

    #[test]
    fn env_overrides_without_a_file_create_sections() {
        let loaded = load(None, env(&[("KAMI__ORDERS__EXPIRE_MINUTES", "60")]));
        match loaded {
            Ok(l) => assert_eq!(l.config.orders.expire_minutes, 60),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn env_overrides_an_array() {
        let loaded = load_env(
            DESIGN_EXAMPLE,
            &[("KAMI__CHANNELS__0__METHODS", r#"["alipay", "qqpay"]"#)],
        );
        match loaded {
            Ok(l) => assert_eq!(
                l.config.channels[0].methods,
                vec![Method::Alipay, Method::Qqpay]
            ),
            Err(e) => panic!("{e}"),
        }
        // A bare word list is accepted too.
        let loaded = load_env(DESIGN_EXAMPLE, &[("KAMI__CHANNELS__0__METHODS", "alipay")]);
        match loaded {
            Ok(l) => assert_eq!(l.config.channels[0].methods, vec![Method::Alipay]),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn env_overrides_a_channel_key_keeping_numbers_as_strings() {
        let loaded = load_env(
            DESIGN_EXAMPLE,
            &[
                ("KAMI__CHANNELS__0__APP_ID", "2021000000000001"),
                ("KAMI__CHANNELS__0__PRIORITY", "-5"),
                ("KAMI__CHANNELS__0__ENABLED", "false"),
            ],
        );
        let c = match loaded {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.channels[0].app_id.as_deref(), Some("2021000000000001"));
        assert_eq!(c.channels[0].priority, -5);
        assert!(!c.channels[0].enabled);
    }

    #[test]
    fn env_appends_a_channel() {
        let loaded = load_env(
            DESIGN_EXAMPLE,
            &[
                ("KAMI__CHANNELS__1__METHODS", r#"["sandbox"]"#),
                ("KAMI__CHANNELS__1__ID", "sb"),
                ("KAMI__CHANNELS__1__KIND", "sandbox"),
                ("KAMI__CHANNELS__2__ID", "sb2"),
                ("KAMI__CHANNELS__2__KIND", "sandbox"),
                ("KAMI__CHANNELS__2__METHODS", "sandbox"),
            ],
        );
        let c = match loaded {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.channels.len(), 3);
        assert_eq!(c.channels[1].id.as_str(), "sb");
        assert_eq!(c.channels[1].kind, ChannelKind::Sandbox);
        assert_eq!(c.channels[2].id.as_str(), "sb2");

        // Also into an empty configuration.
        let loaded = load(
            None,
            env(&[
                ("KAMI__CHANNELS__0__ID", "sb"),
                ("KAMI__CHANNELS__0__KIND", "sandbox"),
                ("KAMI__CHANNELS__0__METHODS", "[\"sandbox\"]"),
            ]),
        );
        match loaded {
            Ok(l) => assert_eq!(l.config.channels.len(), 1),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn bad_env_paths_name_the_variable() {
        for (var, expect) in [
            ("KAMI__CHANNELS__5__ID", "out of range"),
            ("KAMI__SERVER__LISTEN__PORT", "not a table"),
            ("KAMI__CHANNELS__FIRST__ID", "numeric index"),
            ("KAMI__SERVER____LISTEN", "empty path segment"),
            ("KAMI__", "empty path segment"),
        ] {
            match load_env(DESIGN_EXAMPLE, &[(var, "x")]) {
                Ok(_) => panic!("{var} accepted"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(matches!(e, ConfigError::Env { .. }), "{msg}");
                    assert!(msg.contains(&format!("`{var}`")), "{msg}");
                    assert!(msg.contains(expect), "{msg}");
                    assert!(!msg.contains("`x`"), "{msg}");
                }
            }
        }
        let both = load_env(
            "",
            &[
                ("KAMI__SERVER__LISTEN", "0.0.0.0:1"),
                ("KAMI__server__listen", "0.0.0.0:2"),
            ],
        );
        match both {
            Ok(_) => panic!("ambiguous overrides accepted"),
            Err(e) => assert!(e.to_string().contains("also sets"), "{e}"),
        }
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let toml = format!(
            "typo_section = 1\n[server]\nlistn = \"x\"\n[orders]\nexpire_minutes = 5\n{SANDBOX}colour = \"red\"\n"
        );
        let loaded = match load_env(&toml, &[("KAMI__DATABASE__POOL", "3")]) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let w = loaded.warnings.join("\n");
        assert!(
            w.contains("unknown configuration key `server.listn` (ignored)"),
            "{w}"
        );
        assert!(
            w.contains("unknown configuration key `typo_section` (ignored)"),
            "{w}"
        );
        assert!(
            w.contains("unknown configuration key `channels[0].colour` (ignored)"),
            "{w}"
        );
        assert!(
            w.contains(
                "`database.pool` (ignored) (set by environment variable `KAMI__DATABASE__POOL`)"
            ),
            "{w}"
        );
        assert_eq!(loaded.warnings.len(), 4, "{w}");
        assert_eq!(loaded.config.orders.expire_minutes, 5);
    }

    #[test]
    fn keys_of_another_kind_are_warned_and_cleared() {
        let toml = format!("{ALIPAY_MIN}mchid = \"190\"\nsecret = \"hidden\"\nversion = 2\n");
        let loaded = parse(&toml);
        let w = loaded.warnings.join("\n");
        assert_eq!(loaded.warnings.len(), 3, "{w}");
        assert!(
            w.contains("channel `ali` (channels[0]): key `mchid` does not apply to kind `alipay`"),
            "{w}"
        );
        assert!(!w.contains("hidden"), "{w}");
        let ch = &loaded.config.channels[0];
        assert_eq!(ch.mchid, None);
        assert_eq!(ch.secret, None);
        assert_eq!(ch.version, None);
    }

    #[test]
    fn type_errors_name_the_key() {
        assert_eq!(
            parse_err("[orders]\nexpire_minutes = \"x\"\n"),
            "configuration error at `orders.expire_minutes`: invalid type: string \"x\", expected u32"
        );
        let msg = parse_err(&format!("{SANDBOX}priority = \"high\"\n"));
        assert!(
            msg.starts_with("configuration error at `channels[0].priority`"),
            "{msg}"
        );
        let msg = parse_err("[database]\nmax_connections = -1\n");
        assert!(msg.contains("`database.max_connections`"), "{msg}");
        // From the environment: the variable is named.
        match load_env("", &[("KAMI__ORDERS__EXPIRE_MINUTES", "soon")]) {
            Ok(_) => panic!("accepted"),
            Err(e) => assert_eq!(
                e.to_string(),
                "configuration error at `orders.expire_minutes`: invalid type: string \"soon\", \
                 expected u32 (set by environment variable `KAMI__ORDERS__EXPIRE_MINUTES`)"
            ),
        }
        // Secret values are not echoed.
        let msg = parse_err(&format!("{SANDBOX}secret = true\n"));
        assert!(msg.contains("`channels[0].secret`"), "{msg}");
        assert!(!msg.contains("true"), "{msg}");
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(
            parse_err("[orders]\nexpire_minutes = 0\n"),
            "invalid `orders.expire_minutes`: must be between 1 and 1440, got 0"
        );
        assert!(parse_err("[orders]\nexpire_minutes = 1441\n").contains("got 1441"));
        assert_eq!(
            parse("[orders]\nexpire_minutes = 1440\n")
                .config
                .orders
                .expire_minutes,
            1440
        );
        assert!(
            parse_err("[database]\nmax_connections = 0\n").contains("`database.max_connections`")
        );
        assert!(parse_err("[database]\nmax_connections = 201\n").contains("between 1 and 200"));
    }

    #[test]
    fn bad_listen_address() {
        let msg = parse_err("[server]\nlisten = \"localhost\"\n");
        assert!(
            msg.starts_with("invalid `server.listen`: `localhost`"),
            "{msg}"
        );
        assert!(msg.contains("127.0.0.1:8080"), "{msg}");
    }

    #[test]
    fn public_url_must_be_http_without_query() {
        for (url, expect) in [
            ("ftp://example.com", "http:// or https://"),
            ("https://example.com/?a=1", "query"),
            ("https://example.com/#x", "fragment"),
            ("not a url", "not a valid URL"),
        ] {
            let msg = parse_err(&format!("[server]\npublic_url = \"{url}\"\n"));
            assert!(msg.starts_with("invalid `server.public_url`"), "{msg}");
            assert!(msg.contains(expect), "{msg}");
        }
        let c = parse("[server]\npublic_url = \"http://shop.test:8080/base/\"\n").config;
        assert_eq!(
            c.server.public_url.as_ref().map(Url::as_str),
            Some("http://shop.test:8080/base/")
        );
    }

    #[test]
    fn database_url_scheme_is_checked_without_leaking_it() {
        let msg = parse_err("[database]\nurl = \"mysql://root:hunter2@db/kami\"\n");
        assert!(msg.starts_with("invalid `database.url`"), "{msg}");
        assert!(msg.contains("got scheme `mysql`"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = parse_err("[database]\nurl = \"hunter2\"\n");
        assert!(!msg.contains("hunter2"), "{msg}");
        for ok in ["sqlite://x.db", "postgres://u@h/d", "postgresql://u@h/d"] {
            assert_eq!(
                parse(&format!("[database]\nurl = \"{ok}\"\n"))
                    .config
                    .database
                    .url,
                ok
            );
        }
    }

    #[test]
    fn database_debug_hides_the_password() {
        let c = parse(
            "[database]\nurl = \"postgres://kami:hunter2@db/kami?password=pw2&sslmode=require\"\n",
        )
        .config;
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("pw2"), "{dbg}");
        assert!(dbg.contains("sslmode=require"), "{dbg}");
        assert_eq!(
            c.database.url,
            "postgres://kami:hunter2@db/kami?password=pw2&sslmode=require"
        );
    }

    #[test]
    fn url_file_is_read_trimmed_and_relative_to_the_config_file() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let write = |name: &str, text: &str| {
            if let Err(e) = std::fs::write(dir.path().join(name), text) {
                panic!("{e}");
            }
        };
        write("db-url", "  postgres://kami:hunter2@db/kami\n\n");
        write("sb-secret", "s3cr3t\n");
        write(
            "kami.toml",
            &format!("[database]\nurl_file = \"db-url\"\n{SANDBOX}secret_file = \"sb-secret\"\n"),
        );
        let loaded = match load(Some(&dir.path().join("kami.toml")), Vec::new()) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert_eq!(c.database.url, "postgres://kami:hunter2@db/kami");
        let sb = &c.channels[0];
        assert_eq!(sb.secret.as_ref().map(Secret::expose), Some("s3cr3t"));
        assert_eq!(
            sb.secret_file.as_deref(),
            Some(dir.path().join("sb-secret").as_path())
        );
        assert!(c
            .base_dir
            .ends_with(dir.path().file_name().unwrap_or_default()));

        // The file can also come from the environment.
        let loaded = load(
            Some(&dir.path().join("kami.toml")),
            env(&[("KAMI__CHANNELS__0__SECRET_FILE", "db-url")]),
        );
        match loaded {
            Ok(l) => assert_eq!(
                l.config.channels[0].secret.as_ref().map(Secret::expose),
                Some("postgres://kami:hunter2@db/kami")
            ),
            Err(e) => panic!("{e}"),
        }

        // Missing and empty secret files.
        write("empty", " \n");
        let missing = format!(
            "[database]\nurl_file = \"{}\"\n",
            dir.path().join("nope").display()
        );
        let msg = parse_err(&missing);
        assert!(
            msg.starts_with("cannot read `database.url_file` file"),
            "{msg}"
        );
        assert!(msg.contains("nope"), "{msg}");
        let empty = format!(
            "[database]\nurl_file = \"{}\"\n",
            dir.path().join("empty").display()
        );
        assert!(parse_err(&empty).contains("is empty"));
    }

    #[test]
    fn url_and_url_file_together_are_an_error() {
        let msg = parse_err("[database]\nurl = \"sqlite://a.db\"\nurl_file = \"/x\"\n");
        assert_eq!(
            msg,
            "both `database.url` and `database.url_file` are set; set only one"
        );
        match load_env(
            "[database]\nurl = \"sqlite://a.db\"\n",
            &[("KAMI__DATABASE__URL_FILE", "/run/secrets/db")],
        ) {
            Ok(_) => panic!("accepted"),
            Err(e) => assert!(e.to_string().contains("KAMI__DATABASE__URL_FILE"), "{e}"),
        }
        let msg = parse_err(&format!("{SANDBOX}secret = \"a\"\nsecret_file = \"/b\"\n"));
        assert!(msg.contains("`channels[0].secret_file`"), "{msg}");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let path = Path::new("/nonexistent/kami-config-test.toml");
        match load(Some(path), Vec::new()) {
            Ok(_) => panic!("accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(matches!(e, ConfigError::ReadFile { .. }));
                assert!(msg.contains("/nonexistent/kami-config-test.toml"), "{msg}");
            }
        }
    }

    #[test]
    fn channel_requirements_name_channel_and_key() {
        let toml = ALIPAY_MIN.replace("app_id = \"2021000000000000\"\n", "");
        assert_eq!(
            parse_err(&toml),
            "channel `ali` (channels[0]): missing required key `app_id` (required for kind `alipay`)"
        );
        let wx = "[[channels]]\nid = \"wx\"\nkind = \"wechatpay\"\nmethods = [\"wxpay\"]\nmchid = \"1\"\nappid = \"a\"\nmerchant_serial_no = \"s\"\nmerchant_private_key_file = \"k\"\n";
        assert!(parse_err(wx).contains("missing required key `apiv3_key_file`"));
        let ep = "[[channels]]\nid = \"ep\"\nkind = \"epay\"\nmethods = [\"alipay\"]\ngateway = \"https://pay.example.com/\"\npid = \"1\"\n";
        assert!(
            parse_err(ep).contains("missing required key `key_file` (required for epay version 1)")
        );
        let v2 = format!("{ep}version = 2\nkey_file = \"k\"\nmerchant_private_key_file = \"m\"\n");
        assert!(parse_err(&v2).contains("`platform_public_key_file` (required for epay version 2)"));
        let v3 = format!("{ep}version = 3\nkey_file = \"k\"\n");
        assert_eq!(
            parse_err(&v3),
            "channel `ep` (channels[0]): invalid `version`: must be 1 or 2, got 3"
        );
        let bad_gateway =
            ep.replace("https://pay.example.com/", "pay.example.com") + "key_file = \"k\"\n";
        assert!(parse_err(&bad_gateway).contains("invalid `gateway`"));
        let bad_mode = format!("{ALIPAY_MIN}mode = \"native\"\n");
        assert!(parse_err(&bad_mode).contains("invalid `mode`"));
        assert!(
            parse_err("[[channels]]\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n")
                .contains("channels[0]: missing required key `id`")
        );
        assert!(parse_err("[[channels]]\nid = \"x\"\nkind = \"sandbox\"\n")
            .contains("missing required key `methods`"));
        assert!(
            parse_err("[[channels]]\nid = \"x\"\nkind = \"sandbox\"\nmethods = []\n")
                .contains("missing required key `methods`")
        );
        assert!(parse_err(
            "[[channels]]\nid = \"Bad Id\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n"
        )
        .contains("invalid `id`: `Bad Id`"));
    }

    #[test]
    fn duplicate_channel_ids() {
        assert_eq!(
            parse_err(&format!("{SANDBOX}{SANDBOX}")),
            "duplicate channel id `sb` (channels[0] and channels[1]); channel ids must be unique"
        );
    }

    #[test]
    fn unknown_kind_and_method() {
        let msg = parse_err(&SANDBOX.replace("kind = \"sandbox\"", "kind = \"paypal\""));
        assert_eq!(
            msg,
            "channel `sb` (channels[0]): invalid `kind`: unknown channel kind `paypal` \
             (expected one of: alipay, wechatpay, epay, sandbox)"
        );
        let msg = parse_err(&SANDBOX.replace("[\"sandbox\"]", "[\"sandbox\", \"bitcoin\"]"));
        assert_eq!(
            msg,
            "channel `sb` (channels[0]): invalid `methods`: unknown payment method `bitcoin` \
             (expected one of: alipay, wxpay, qqpay, sandbox)"
        );
    }

    #[test]
    fn secret_debug_is_hidden() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
        let c = parse(&format!("{SANDBOX}secret = \"hunter2\"\n")).config;
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn toml_syntax_errors_give_the_position() {
        let err =
            match Config::from_toml_str("[server]\nlisten = \"127.0.0.1:8080\"\nbroken = = 1\n") {
                Ok(_) => panic!("accepted"),
                Err(e) => e,
            };
        let msg = err.to_string();
        assert!(
            matches!(err, ConfigError::Syntax { line: Some(3), .. }),
            "{msg}"
        );
        assert!(
            msg.starts_with("TOML syntax error in configuration at line 3, column"),
            "{msg}"
        );

        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let path = dir.path().join("kami.toml");
        if let Err(e) = std::fs::write(&path, "[orders]\nexpire_minutes = 1\nexpire_minutes = 2\n")
        {
            panic!("{e}");
        }
        match load(Some(&path), Vec::new()) {
            Ok(_) => panic!("accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains("line 3"), "{msg}");
            }
        }
    }

    const SMTP_MIN: &str =
        "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Shop <shop@example.com>\"\n";

    fn smtp_of(toml: &str) -> SmtpConfig {
        let loaded = parse(toml);
        match loaded.config.smtp {
            Some(s) => s,
            None => panic!("no [smtp] in {toml}"),
        }
    }

    #[test]
    fn smtp_is_absent_without_the_section() {
        assert!(parse("").config.smtp.is_none());
        assert!(parse(DESIGN_EXAMPLE).config.smtp.is_none());
        assert!(Config::default().smtp.is_none());
    }

    #[test]
    fn smtp_defaults() {
        let loaded = parse(SMTP_MIN);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let s = smtp_of(SMTP_MIN);
        assert_eq!(s.host, "smtp.example.com");
        assert_eq!(s.tls, SmtpTls::StartTls);
        assert_eq!(s.port, 587);
        assert_eq!(s.username, None);
        assert_eq!(s.password, None);
        assert_eq!(s.from.email.to_string(), "shop@example.com");
        assert_eq!(s.from.name.as_deref(), Some("Shop"));
        assert_eq!(s.ca_file, None);
        assert_eq!(s.timeout_seconds, 15);
        assert_eq!(s.retry_base_seconds, 30);
        // The default port follows the TLS mode; an explicit port wins.
        assert_eq!(smtp_of(&format!("{SMTP_MIN}tls = \"tls\"\n")).port, 465);
        assert_eq!(smtp_of(&format!("{SMTP_MIN}tls = \"none\"\n")).port, 25);
        let s = smtp_of(&format!("{SMTP_MIN}tls = \"tls\"\nport = 2465\n"));
        assert_eq!((s.tls, s.port), (SmtpTls::Tls, 2465));
        // A bare address and a non-ASCII display name are mailboxes too.
        let s = smtp_of("[smtp]\nhost = \"127.0.0.1\"\nfrom = \"shop@example.com\"\n");
        assert_eq!(s.from.name, None);
        let s = smtp_of("[smtp]\nhost = \"::1\"\nfrom = \"卡密小店 <shop@example.com>\"\n");
        assert_eq!(s.from.name.as_deref(), Some("卡密小店"));
    }

    #[test]
    fn smtp_every_key() {
        let toml = "[smtp]\nhost = \" mail.example.com \"\nport = 2587\ntls = \"starttls\"\n\
                    username = \"kami\"\npassword = \"hunter2\"\nfrom = \"shop@example.com\"\n\
                    ca_file = \"certs/ca.pem\"\ntimeout_seconds = 5\nretry_base_seconds = 1\n";
        let loaded = parse(toml);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let s = smtp_of(toml);
        assert_eq!(s.host, "mail.example.com");
        assert_eq!(s.port, 2587);
        assert_eq!(s.username.as_deref(), Some("kami"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert_eq!(s.ca_file.as_deref(), Some(Path::new("./certs/ca.pem")));
        assert_eq!((s.timeout_seconds, s.retry_base_seconds), (5, 1));
        // The password never shows in Debug.
        let debug = format!("{:?}", parse(toml).config);
        assert!(!debug.contains("hunter2"), "{debug}");
        // Unknown keys in the section are warned about.
        let loaded = parse(&format!("{SMTP_MIN}pasword = \"x\"\n"));
        assert_eq!(
            loaded.warnings,
            vec!["unknown configuration key `smtp.pasword` (ignored)".to_owned()]
        );
    }

    #[test]
    fn smtp_errors_name_the_key() {
        assert_eq!(
            parse_err("[smtp]\nfrom = \"shop@example.com\"\n"),
            "invalid `smtp.host`: required when [smtp] is present (the mail server's host name)"
        );
        let msg = parse_err("[smtp]\nhost = \"smtp.example.com\"\n");
        assert!(msg.starts_with("invalid `smtp.from`: required"), "{msg}");
        for host in ["smtp://smtp.example.com", "smtp.example.com:587", "a b"] {
            let msg = parse_err(&format!("[smtp]\nhost = \"{host}\"\nfrom = \"a@b.c\"\n"));
            assert!(msg.starts_with("invalid `smtp.host`: "), "{msg}");
            assert!(msg.contains(host), "{msg}");
        }
        let msg = parse_err(&format!("{SMTP_MIN}tls = \"ssl\"\n"));
        assert_eq!(
            msg,
            "invalid `smtp.tls`: `ssl` is not one of: starttls, tls, none"
        );
        for port in ["0", "65536"] {
            let msg = parse_err(&format!("{SMTP_MIN}port = {port}\n"));
            assert_eq!(
                msg,
                format!("invalid `smtp.port`: must be between 1 and 65535, got {port}")
            );
        }
        let msg = parse_err("[smtp]\nhost = \"h\"\nfrom = \"not an address\"\n");
        assert!(
            msg.starts_with("invalid `smtp.from`: `not an address` is not a mail address"),
            "{msg}"
        );
        let msg = parse_err(&format!("{SMTP_MIN}timeout_seconds = 0\n"));
        assert_eq!(
            msg,
            "invalid `smtp.timeout_seconds`: must be between 1 and 300, got 0"
        );
        let msg = parse_err(&format!("{SMTP_MIN}retry_base_seconds = 7200\n"));
        assert_eq!(
            msg,
            "invalid `smtp.retry_base_seconds`: must be between 1 and 3600, got 7200"
        );
        // Credentials come in pairs.
        let msg = parse_err(&format!("{SMTP_MIN}username = \"kami\"\n"));
        assert!(msg.starts_with("invalid `smtp.password`: "), "{msg}");
        let msg = parse_err(&format!("{SMTP_MIN}password = \"s3cret\"\n"));
        assert!(msg.starts_with("invalid `smtp.username`: "), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert_eq!(
            parse_err(&format!(
                "{SMTP_MIN}username = \"u\"\npassword = \"p\"\npassword_file = \"/x\"\n"
            )),
            "both `smtp.password` and `smtp.password_file` are set; set only one"
        );
        // A password of the wrong type is not echoed.
        let msg = parse_err(&format!(
            "{SMTP_MIN}username = \"u\"\npassword = [\"hunter2\"]\n"
        ));
        assert!(msg.contains("`smtp.password`"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn smtp_plaintext_password_is_warned_about() {
        let loaded = parse(&format!(
            "{SMTP_MIN}tls = \"none\"\nusername = \"u\"\npassword = \"p\"\nca_file = \"ca.pem\"\n"
        ));
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("unencrypted"),
            "{:?}",
            loaded.warnings
        );
        assert!(loaded.warnings[1].contains("`ca_file` has no effect"));
    }

    #[test]
    fn smtp_password_file_and_env_overrides() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        if let Err(e) = std::fs::write(dir.path().join("smtp-pass"), "  0123456789\n") {
            panic!("{e}");
        }
        if let Err(e) = std::fs::write(
            dir.path().join("kami.toml"),
            format!("{SMTP_MIN}username = \"kami\"\npassword_file = \"smtp-pass\"\nca_file = \"ca.pem\"\n"),
        ) {
            panic!("{e}");
        }
        let loaded = match load(Some(&dir.path().join("kami.toml")), Vec::new()) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let s = loaded.config.smtp.unwrap_or_else(|| panic!("no smtp"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("0123456789"));
        assert!(s
            .ca_file
            .is_some_and(|p| p.starts_with(&loaded.config.base_dir)));

        // The whole section from the environment; numeric-looking strings stay strings.
        let loaded = load(
            None,
            env(&[
                ("KAMI__SMTP__HOST", "127.0.0.1"),
                ("KAMI__SMTP__PORT", "2525"),
                ("KAMI__SMTP__TLS", "none"),
                ("KAMI__SMTP__FROM", "Shop <shop@example.com>"),
                ("KAMI__SMTP__USERNAME", "10001"),
                ("KAMI__SMTP__PASSWORD", "123456"),
                ("KAMI__SMTP__RETRY_BASE_SECONDS", "1"),
            ]),
        );
        let s = match loaded {
            Ok(l) => l.config.smtp.unwrap_or_else(|| panic!("no smtp")),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("127.0.0.1", 2525, SmtpTls::None)
        );
        assert_eq!(s.username.as_deref(), Some("10001"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("123456"));
        assert_eq!(s.retry_base_seconds, 1);
        // An environment error names the variable.
        match load_env(SMTP_MIN, &[("KAMI__SMTP__TLS", "ssl")]) {
            Ok(_) => panic!("accepted"),
            Err(e) => assert!(e.to_string().contains("KAMI__SMTP__TLS"), "{e}"),
        }
        // A missing password file names the key and the path.
        let msg = parse_err(&format!(
            "{SMTP_MIN}username = \"u\"\npassword_file = \"{}\"\n",
            dir.path().join("nope").display()
        ));
        assert!(
            msg.starts_with("cannot read `smtp.password_file` file"),
            "{msg}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
