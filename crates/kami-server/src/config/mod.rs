//! Configuration (DESIGN 4.2): a TOML file, overridden by `KAMI__SECTION__KEY` environment
//! variables, with secrets loadable from files (`*_file` keys). One file per section;
//! each payment protocol's channel keys live with the protocol (`kami_pay::settings`).
//!
//! Loading happens in four steps:
//! 1. the TOML file is parsed (syntax errors name file, line and column) and the `KAMI__…`
//!    environment variables are layered over it by figment ([`sources`]);
//! 2. the merged tree is deserialized, collecting unknown keys as warnings and naming the key
//!    (and the environment variable, when one set it) of every type error;
//! 3. each `[[channels]]` entry is split into its routing keys and its kind's typed settings
//!    ([`channels`]);
//! 4. values are checked (ranges, URLs, per-kind requirements) and `*_file` secrets are read.
//!
//! Error messages name the file, key or environment variable involved and never contain
//! secret values.

mod alerts;
mod channels;
mod console;
mod database;
pub mod fx;
mod metrics;
mod orders;
pub mod overlay;
mod reconciliation;
mod retention;
mod risk;
mod routing;
mod secrets;
mod security;
mod server;
mod shop;
mod smtp;
mod sources;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;

pub use alerts::{
    event_names, AlertSink, AlertTarget, AlertingConfig, FieldError, TargetFields,
    TELEGRAM_API_BASE,
};
pub use channels::{ChannelConfig, MAX_WEIGHT};
pub use console::ConsoleConfig;
pub use database::DatabaseConfig;
pub use kami_pay::settings::{
    AlipaySettings, ChannelKind, ChannelSettings, EpaySettings, EpayVersion, SandboxSettings,
    WechatPaySettings,
};
/// Default `api_base` of `wechatpay` channels (DESIGN 4.2).
pub use kami_pay::wechatpay::DEFAULT_API_BASE as WECHATPAY_DEFAULT_API_BASE;
pub use metrics::MetricsConfig;
pub use orders::OrdersConfig;
pub use reconciliation::ReconciliationConfig;
pub use retention::RetentionConfig;
pub use risk::RiskConfig;
pub use routing::RoutingConfig;
pub use secrets::Secret;
pub use security::SecurityConfig;
pub use server::ServerConfig;
pub use shop::ShopConfig;
pub use smtp::{SmtpConfig, SmtpTls};
use sources::Origins;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "KAMI__";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub orders: OrdersConfig,
    pub shop: ShopConfig,
    /// `[smtp]`: buyer mail; `None` (no section) means no mail is ever attempted.
    pub smtp: Option<SmtpConfig>,
    pub retention: RetentionConfig,
    /// `[reconciliation]`: the daily run against the channels' bills.
    pub reconciliation: ReconciliationConfig,
    pub channels: Vec<ChannelConfig>,
    /// `[risk]`: pending-order caps, order rate, block lists.
    pub risk: RiskConfig,
    /// `[metrics]`: who may read `/metrics`.
    pub metrics: MetricsConfig,
    /// `[security]`: the master key file.
    pub security: SecurityConfig,
    /// `[console]`: the seller console's sessions and sign-in lock.
    pub console: ConsoleConfig,
    /// `[[alerts]]`: where alerts go (read-only in the console; stored targets are beside).
    pub alerts: Vec<AlertTarget>,
    /// `[alerting]`: thresholds and delivery timing.
    pub alerting: AlertingConfig,
    /// `[routing]`: choosing among a method's channels, failover, resting channels.
    pub routing: RoutingConfig,
    /// `[fx]`: the rate table and rounding for charging in another currency.
    pub fx: kami_core::FxTable,
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
            retention: RetentionConfig::default(),
            reconciliation: ReconciliationConfig::default(),
            channels: Vec::new(),
            risk: RiskConfig::default(),
            metrics: MetricsConfig::default(),
            security: SecurityConfig::default(),
            console: ConsoleConfig::default(),
            alerts: Vec::new(),
            alerting: AlertingConfig::default(),
            routing: RoutingConfig::default(),
            fx: kami_core::FxTable::default(),
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
            false,
            PathBuf::from("."),
            std::iter::empty(),
        )
    }

    /// The channel with this id, if configured.
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id.as_str() == id)
    }
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
        /// Where the value came from, when known: "set by environment variable `KAMI__…`"
        /// or "FILE, line N".
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
        Some(origin) => format!(" ({origin})"),
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
            let file = path.display().to_string();
            load_text(Some(&text), &file, true, base_dir, env)
        }
        None => {
            let base_dir = std::path::absolute(".").unwrap_or_else(|_| PathBuf::from("."));
            load_text(None, "configuration", false, base_dir, env)
        }
    }
}

/// `text` is the TOML of `file`; `lines`: errors about its values give their line in `file`.
fn load_text(
    text: Option<&str>,
    file: &str,
    lines: bool,
    base_dir: PathBuf,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let origins = Origins::layer(text, file, lines, env)?;
    let mut warnings = Vec::new();
    let raw: RawConfig = origins
        .extract(origins.root(), std::marker::PhantomData, |key| {
            // `[[channels]]` entries are read one by one below.
            if key != "channels" {
                warnings.push(format!(
                    "unknown configuration key `{key}` (ignored){}",
                    env_note(&origins.of(&key))
                ));
            }
        })
        .map_err(|f| match f.kind {
            // A value the key's own check refused (`server.listen`, ...).
            figment::error::Kind::Message(message) if !f.path.is_empty() => {
                invalid(&origins, &f.path, message)
            }
            _ => type_error(&origins, "", f),
        })?;

    server::check_server(&raw.server, &origins)?;
    let database = database::build_database(raw.database, &base_dir, &origins)?;
    orders::check_orders(&raw.orders, &origins)?;
    retention::check_retention(&raw.retention, &origins)?;
    reconciliation::check_reconciliation(&raw.reconciliation, &origins)?;
    console::check_console(&raw.console, &origins)?;
    let shop = shop::check_shop(raw.shop, &base_dir, &origins, &mut warnings)?;
    let risk = risk::build_risk(raw.risk, shop.orders_per_minute, &origins, &mut warnings)?;
    let metrics = metrics::build_metrics(raw.metrics, &base_dir)?;
    let smtp = raw
        .smtp
        .map(|s| smtp::build_smtp(s, &base_dir, &origins, &mut warnings))
        .transpose()?;
    let channels = channels::build_channels(&origins, &base_dir, &mut warnings)?;
    let security = security::check_security(raw.security, &base_dir, &origins)?;
    alerts::check_alerting(&raw.alerting, &origins)?;
    let alerts = alerts::build_alerts(raw.alerts, &base_dir, &origins)?;
    let routing = routing::build_routing(raw.routing, &origins)?;
    let fx = fx::build_fx(raw.fx, &origins)?;
    Ok(Loaded {
        config: Config {
            server: raw.server,
            database,
            orders: raw.orders,
            shop,
            smtp,
            retention: raw.retention,
            reconciliation: raw.reconciliation,
            channels,
            risk,
            metrics,
            security,
            console: raw.console,
            alerts,
            alerting: raw.alerting,
            routing,
            fx,
            base_dir,
        },
        warnings,
    })
}

/// Every section; `[[channels]]` entries are read by [`channels::build_channels`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    server: ServerConfig,
    database: database::RawDatabase,
    orders: OrdersConfig,
    shop: ShopConfig,
    smtp: Option<smtp::RawSmtp>,
    retention: RetentionConfig,
    reconciliation: ReconciliationConfig,
    channels: IgnoredAny,
    risk: risk::RawRisk,
    metrics: metrics::RawMetrics,
    security: SecurityConfig,
    console: ConsoleConfig,
    alerts: Vec<alerts::RawAlert>,
    alerting: AlertingConfig,
    routing: routing::RawRouting,
    fx: fx::RawFx,
}

/// A deserialization failure at `prefix` + its path as a [`ConfigError::Type`].
fn type_error(origins: &Origins, prefix: &str, f: sources::Failure) -> ConfigError {
    let key = join_key(prefix, &f.path);
    ConfigError::Type {
        message: f.message(secrets::is_secret_key(&key)),
        origin: origins.of(&key),
        key,
    }
}

/// `channels[0]` + `mode` → `channels[0].mode`.
fn join_key(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

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
    value: u32,
    (min, max): (u32, u32),
) -> Result<u32, ConfigError> {
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
