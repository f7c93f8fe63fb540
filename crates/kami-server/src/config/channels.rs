//! `[[channels]]`: the routing keys every channel takes (`id`, `kind`, `methods`,
//! `priority`, `weight`, `enabled`, `min_amount`, `max_amount`, `daily_limit`) and its kind's typed settings ([`ChannelSettings`], whose keys
//! each protocol spells in `kami_pay::<protocol>::settings`).
//!
//! An entry is read in three parts: the routing keys, the keys of its kind, and the rest —
//! a key another kind knows is warned about as not applying, anything else as unknown.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use figment::value::{Dict, Value};
use kami_core::{ChannelId, ChannelLimits, Method};
use kami_pay::settings::{keys_of, SettingsError};
use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::Deserialize;

use super::sources::{Failure, Origins};
use super::{env_note, join_key, type_error, ChannelKind, ChannelSettings, ConfigError};

/// One `[[channels]]` entry. Keys of another kind are warned about and left out; every
/// `*_file` path in `settings` is resolved against [`super::Config::base_dir`] (the key files
/// themselves are read when the channel is built, except the sandbox `secret_file`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    pub id: ChannelId,
    /// Always `settings.kind()`.
    pub kind: ChannelKind,
    /// Buyer-facing methods this channel serves; never empty.
    pub methods: Vec<Method>,
    /// Routing preference, higher first; default 0.
    pub priority: i32,
    /// Share of the orders among the healthy channels of the highest priority; default 1.
    pub weight: u32,
    /// Default true.
    pub enabled: bool,
    /// `min_amount`, `max_amount`, `daily_limit` (minor units); default none.
    pub limits: ChannelLimits,
    pub settings: ChannelSettings,
}

/// The largest `weight` a channel takes.
pub const MAX_WEIGHT: u32 = 10_000;

/// The keys every channel takes, whatever its kind.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Routing {
    #[serde(deserialize_with = "super::secrets::string_or_int")]
    id: Option<String>,
    #[serde(deserialize_with = "super::secrets::string_or_int")]
    kind: Option<String>,
    #[serde(deserialize_with = "methods_list")]
    methods: Option<Vec<String>>,
    priority: Option<i32>,
    weight: Option<i64>,
    enabled: Option<bool>,
    min_amount: Option<i64>,
    max_amount: Option<i64>,
    daily_limit: Option<i64>,
}

/// Reads a kind's settings through [`ChannelSettings::deserialize_kind`].
struct KindSeed(ChannelKind);

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = ChannelSettings;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ChannelSettings, D::Error> {
        ChannelSettings::deserialize_kind(self.0, d)
    }
}

pub(super) fn build_channels(
    origins: &Origins,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<ChannelConfig>, ConfigError> {
    let entries = match origins.root().as_dict().and_then(|d| d.get("channels")) {
        None => return Ok(Vec::new()),
        Some(Value::Array(_, entries)) => entries.as_slice(),
        Some(other) => return Err(not_a(origins, "channels", other, "an array of tables")),
    };
    let mut channels: Vec<ChannelConfig> = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("channels[{index}]");
        let Value::Dict(tag, table) = entry else {
            return Err(not_a(origins, &at, entry, "a table"));
        };
        let channel = build_channel(origins, &at, *tag, table, base_dir, warnings)?;
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
    Ok(channels)
}

fn not_a(origins: &Origins, key: &str, v: &Value, expected: &str) -> ConfigError {
    ConfigError::Type {
        key: key.to_owned(),
        message: format!("invalid type: {}, expected {expected}", v.to_actual()),
        origin: origins.of(key),
    }
}

fn build_channel(
    origins: &Origins,
    at: &str,
    tag: figment::value::Tag,
    table: &Dict,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<ChannelConfig, ConfigError> {
    let key_path = |key: &str| format!("{at}.{key}");
    let part = |keys: &[&str]| {
        let d: Dict = table
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Value::Dict(tag, d)
    };
    let routing_keys = keys_of::<Routing>();
    let routing: Routing = origins
        .extract(&part(routing_keys), PhantomData, |_| {})
        .map_err(|f| type_error(origins, at, f))?;

    // id
    let raw_id = routing.id.ok_or_else(|| ConfigError::MissingChannelKey {
        channel: at.to_owned(),
        key: "id".into(),
        requirement: "every channel needs one".into(),
    })?;
    let id = ChannelId::parse(&raw_id).map_err(|e| ConfigError::InvalidChannelKey {
        channel: at.to_owned(),
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
    let raw_kind = routing
        .kind
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
    let raw_methods = routing.methods.unwrap_or_default();
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

    // weight
    let weight = match routing.weight {
        None => 1,
        Some(w) => u32::try_from(w)
            .ok()
            .filter(|w| (1..=MAX_WEIGHT).contains(w))
            .ok_or_else(|| {
                invalid_key(
                    "weight",
                    format!("must be a whole number from 1 to {MAX_WEIGHT}, got {w}"),
                )
            })?,
    };

    // amount limits
    let limits = ChannelLimits::new(routing.min_amount, routing.max_amount, routing.daily_limit)
        .map_err(|e| invalid_key(e.key, e.message))?;

    // keys of other kinds, and unknown keys
    let kind_keys = kind.keys();
    for key in table.keys() {
        let key = key.as_str();
        if routing_keys.contains(&key) || kind_keys.contains(&key) {
            continue;
        }
        let note = env_note(&origins.of(&key_path(key)));
        if ChannelKind::ALL.iter().any(|k| k.keys().contains(&key)) {
            warnings.push(format!(
                "channel {channel}: key `{key}` does not apply to kind `{kind}` (ignored){note}"
            ));
        } else {
            warnings.push(format!(
                "unknown configuration key `{}` (ignored){note}",
                key_path(key)
            ));
        }
    }

    // the kind's settings
    let mut settings = origins
        .extract(&part(kind_keys), KindSeed(kind), |_| {})
        .map_err(|f| settings_error(origins, at, &channel, kind, f))?;
    let settings_err = |e: SettingsError| match e {
        SettingsError::Missing { key, requirement } => missing(key, requirement),
        SettingsError::Invalid { key, message } => invalid_key(key, message),
        SettingsError::SecretConflict { key } => ConfigError::SecretConflict {
            key: key_path(key),
            origin: origins
                .of(&key_path(&format!("{key}_file")))
                .or_else(|| origins.of(&key_path(key))),
        },
        SettingsError::SecretFile { key, path, source } => ConfigError::SecretFile {
            key: key_path(key),
            path,
            source,
        },
        SettingsError::EmptySecretFile { key, path } => ConfigError::EmptySecretFile {
            key: key_path(key),
            path,
        },
    };
    settings.validate(&methods).map_err(settings_err)?;
    settings.resolve_files(base_dir).map_err(settings_err)?;

    Ok(ChannelConfig {
        id,
        kind,
        methods,
        priority: routing.priority.unwrap_or(0),
        weight,
        enabled: routing.enabled.unwrap_or(true),
        limits,
        settings,
    })
}

/// A kind's settings failed to deserialize: a missing key, a value the protocol refuses
/// (its message says what it allows), or a value of the wrong type.
fn settings_error(
    origins: &Origins,
    at: &str,
    channel: &str,
    kind: ChannelKind,
    f: Failure,
) -> ConfigError {
    match &f.kind {
        figment::error::Kind::MissingField(key) => ConfigError::MissingChannelKey {
            channel: channel.to_owned(),
            key: key.to_string(),
            requirement: format!("required for kind `{kind}`"),
        },
        figment::error::Kind::Message(message) if !f.path.is_empty() => {
            ConfigError::InvalidChannelKey {
                channel: channel.to_owned(),
                key: f.path.clone(),
                message: message.clone(),
                origin: origins.of(&join_key(at, &f.path)),
            }
        }
        _ => type_error(origins, at, f),
    }
}

fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
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
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V).map(Some)
}
