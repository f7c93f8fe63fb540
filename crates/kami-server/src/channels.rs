//! The channel registry: the payment channels of this process, looked up by id, and routing a
//! buyer's method to a healthy one (a circuit breaker rests a channel that keeps failing).
//!
//! Three sources, one list: the configuration file's channels and those an extension adds
//! (the demo's and tests' simulator-wired channels) are fixed for the life of the process;
//! the channels the seller stores through the admin API (`kami_store::StoredChannel`) are
//! rebuilt as a whole snapshot whenever they change (`services::channel_admin::reload`), so
//! an added, edited, disabled or removed channel takes effect without a restart. Lookups clone
//! an `Arc` out of the current snapshot; the circuit breaker's state is kept by id, apart from
//! the snapshots, so a rebuild does not forget it.
//!
//! Disabled channels (and archived stored ones) are built too: orders already sent to them
//! must still be notified, queried, closed and refunded; they just take no new orders.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kami_core::{ChannelId, Method};
use kami_pay::settings::BuildContext;
use kami_pay::{ChannelKind, ChannelSettings, PaymentChannel};
use kami_store::{ChannelSpec, ChannelsFingerprint, StoredChannel};
use rand::Rng;
use serde_json::{Map, Value};

use crate::config::Config;

/// Why a channel could not be built: names the channel and the key.
pub use kami_pay::settings::SetupError as ChannelSetupError;

/// A sandbox channel whose gateway is this very server: its simulator must be mounted here.
pub struct LocalSandbox {
    pub secret: Vec<u8>,
}

/// Where a channel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file: read-only while the process runs.
    Config,
    /// Added by the build extension (the demo's and tests' simulator channels): read-only.
    Extension,
    /// Stored through the admin API: editable, effective without a restart.
    Stored,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Extension => "extension",
            Origin::Stored => "stored",
        }
    }
}

/// One channel of the registry with its routing settings.
#[derive(Clone)]
pub struct Entry {
    pub channel: Arc<dyn PaymentChannel>,
    pub origin: Origin,
    /// Takes new orders (false for disabled and archived channels).
    pub enabled: bool,
    /// Share within its priority.
    pub weight: u32,
}

impl Entry {
    pub fn id(&self) -> &ChannelId {
        self.channel.id()
    }
}

/// A key of a channel's settings that is missing or refused, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct KeyProblem {
    pub key: String,
    pub message: String,
}

impl KeyProblem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> KeyProblem {
        KeyProblem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The circuit breaker's view of a channel.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    /// Creation failures in a row (since the last success or rest).
    pub failures: u32,
    /// Unix ms until which the channel rests (takes no new orders); `None` when it does not.
    pub resting_until: Option<i64>,
}

/// The stored channels as last built.
#[derive(Default)]
struct Stored {
    entries: Vec<Entry>,
    /// Stored channels that could not be built (id → why), to show the seller.
    broken: BTreeMap<String, String>,
    fingerprint: Option<ChannelsFingerprint>,
}

/// What building a stored channel needs besides its spec.
struct Builder {
    http: reqwest::Client,
    /// This server's base URL (a sandbox channel without `gateway` talks to it).
    public_url: String,
    /// `kami serve --demo`: sandbox channels need no `allow_sandbox`.
    demo: bool,
}

pub struct Channels {
    /// The configuration file's and the extension's channels.
    fixed: Vec<Entry>,
    stored: RwLock<Arc<Stored>>,
    /// Recent payment-creation failures per channel id (a circuit breaker).
    health: Mutex<HashMap<String, Health>>,
    builder: Builder,
    /// Held while the stored channels are read and installed.
    reload: tokio::sync::Mutex<()>,
}

/// After this many creation failures in a row a channel rests (takes no new orders) for
/// [`REST_MS`]; then it is tried again, and one success clears it.
const FAILURES_TO_REST: u32 = 3;
const REST_MS: i64 = 60_000;

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    resting_until: i64,
}

impl Channels {
    /// Build every channel of the configuration. `public_url` is this server's base URL (no
    /// trailing slash); `demo`: sandbox channels stored later need no `allow_sandbox`.
    pub fn build(
        config: &Config,
        public_url: &str,
        http: &reqwest::Client,
        demo: bool,
    ) -> Result<(Channels, Option<LocalSandbox>), ChannelSetupError> {
        let mut fixed = Vec::new();
        let mut local = None;
        for c in &config.channels {
            let cx = BuildContext {
                id: &c.id,
                methods: &c.methods,
                priority: c.priority,
                http,
            };
            let channel: Arc<dyn PaymentChannel> = match &c.settings {
                ChannelSettings::Sandbox(s) => {
                    let secret = s.secret_bytes();
                    let channel = s.build(&cx, secret.clone(), public_url);
                    if channel.gateway() == public_url && local.is_none() {
                        local = Some(LocalSandbox { secret });
                    }
                    Arc::new(channel)
                }
                other => build_settings(other, &cx, public_url)?,
            };
            fixed.push(Entry {
                channel,
                origin: Origin::Config,
                enabled: c.enabled,
                weight: c.weight,
            });
        }
        Ok((
            Channels {
                fixed,
                stored: Default::default(),
                health: Default::default(),
                builder: Builder {
                    http: http.clone(),
                    public_url: public_url.to_owned(),
                    demo,
                },
                reload: Default::default(),
            },
            local,
        ))
    }

    /// Add a channel built elsewhere (the demo's simulator-wired channels).
    pub fn push(&mut self, channel: Arc<dyn PaymentChannel>) {
        self.fixed.push(Entry {
            channel,
            origin: Origin::Extension,
            enabled: true,
            weight: 1,
        });
    }

    fn snapshot(&self) -> Arc<Stored> {
        self.stored
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every channel: the fixed ones, then the stored ones (a stored channel whose id a fixed
    /// one has is left out; it is among [`Channels::broken`]).
    pub fn entries(&self) -> Vec<Entry> {
        let stored = self.snapshot();
        self.fixed
            .iter()
            .chain(stored.entries.iter())
            .cloned()
            .collect()
    }

    /// The channel with this id, whatever its state (disabled and archived ones too).
    pub fn get(&self, id: &str) -> Option<Arc<dyn PaymentChannel>> {
        self.entry(id).map(|e| e.channel)
    }

    pub fn entry(&self, id: &str) -> Option<Entry> {
        if let Some(e) = self.fixed.iter().find(|e| e.id().as_str() == id) {
            return Some(e.clone());
        }
        self.snapshot()
            .entries
            .iter()
            .find(|e| e.id().as_str() == id)
            .cloned()
    }

    /// Is `id` a channel of the configuration file or the extension (not editable)?
    pub fn is_fixed(&self, id: &str) -> bool {
        self.fixed.iter().any(|e| e.id().as_str() == id)
    }

    /// Held by whoever reads and installs the stored channels, so reloads do not interleave.
    pub fn reload_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.reload
    }

    /// Stored channels that could not be built (id → why).
    pub fn broken(&self) -> BTreeMap<String, String> {
        self.snapshot().broken.clone()
    }

    /// The fingerprint of the stored channels last built (`None`: never loaded).
    pub fn stored_fingerprint(&self) -> Option<ChannelsFingerprint> {
        self.snapshot().fingerprint
    }

    /// The channels that could take an order for `method` now: enabled, serving it, not
    /// resting.
    fn candidates(&self, method: Method) -> Vec<Entry> {
        let now = crate::time::now_ms();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        self.entries()
            .into_iter()
            .filter(|e| {
                e.enabled
                    && e.channel.methods().contains(&method)
                    && health
                        .get(e.id().as_str())
                        .is_none_or(|h| h.resting_until <= now)
            })
            .collect()
    }

    /// A healthy channel for a buyer-facing method: the highest priority first; among
    /// channels of that priority, one at random in proportion to its weight.
    pub fn route(&self, method: Method) -> Option<Entry> {
        let candidates = self.candidates(method);
        let top = candidates.iter().map(|e| e.channel.priority()).max()?;
        let best: Vec<Entry> = candidates
            .into_iter()
            .filter(|e| e.channel.priority() == top)
            .collect();
        let total: u64 = best.iter().map(|e| u64::from(e.weight.max(1))).sum();
        let mut ticket = rand::thread_rng().gen_range(0..total.max(1));
        for e in &best {
            let w = u64::from(e.weight.max(1));
            if ticket < w {
                return Some(e.clone());
            }
            ticket -= w;
        }
        best.into_iter().next()
    }

    /// Record how a payment creation went: repeated failures rest the channel.
    pub fn record_create(&self, channel_id: &str, ok: bool) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            health.remove(channel_id);
            return;
        }
        let h = health.entry(channel_id.to_owned()).or_default();
        h.failures += 1;
        if h.failures >= FAILURES_TO_REST {
            h.resting_until = crate::time::now_ms() + REST_MS;
            h.failures = 0;
            tracing::warn!(
                channel = channel_id,
                "payment creation failed {FAILURES_TO_REST} times in a row; channel rests for {} s",
                REST_MS / 1000
            );
        }
    }

    /// The circuit breaker's view of a channel.
    pub fn health(&self, channel_id: &str) -> HealthState {
        let now = crate::time::now_ms();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match health.get(channel_id) {
            None => HealthState::default(),
            Some(h) => HealthState {
                failures: h.failures,
                resting_until: (h.resting_until > now).then_some(h.resting_until),
            },
        }
    }

    /// Methods some channel serves, for the catalogue.
    pub fn methods(&self) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| !self.candidates(*m).is_empty())
            .collect()
    }

    /// Build a stored channel from its spec: every key checked and every key parsed, as a
    /// configuration file's channel is at start. A refusal names the key, never its value.
    pub fn build_stored(&self, spec: &ChannelSpec) -> Result<Arc<dyn PaymentChannel>, KeyProblem> {
        let kind = ChannelKind::parse(&spec.kind).ok_or_else(|| {
            KeyProblem::new("kind", format!("unknown channel kind `{}`", spec.kind))
        })?;
        let settings = stored_settings(kind, spec)?;
        if let ChannelSettings::Sandbox(s) = &settings {
            if !self.builder.demo && !s.allow_sandbox {
                return Err(KeyProblem::new(
                    "allow_sandbox",
                    "a sandbox channel's payments are simulated: outside `kami serve --demo` \
                     it must set `allow_sandbox` to true",
                ));
            }
        }
        let cx = BuildContext {
            id: &spec.id,
            methods: &spec.methods,
            priority: spec.priority,
            http: &self.builder.http,
        };
        build_settings(&settings, &cx, &self.builder.public_url).map_err(|e| match e {
            ChannelSetupError::Key { key, message, .. } => KeyProblem::new(key, message),
            other => KeyProblem::new("settings", other.to_string()),
        })
    }

    /// Replace the stored channels with `rows` (as `fingerprint` describes them). A row that
    /// does not build, or whose id a fixed channel has, is left out and listed as broken.
    pub fn install_stored(&self, rows: &[StoredChannel], fingerprint: ChannelsFingerprint) {
        let mut next = Stored {
            fingerprint: Some(fingerprint),
            ..Stored::default()
        };
        for row in rows {
            let id = row.spec.id.to_string();
            if self.is_fixed(&id) {
                tracing::warn!(channel = %id, "a stored channel has the id of a channel of the configuration file; the configuration's is used");
                next.broken.insert(
                    id,
                    "the configuration file has a channel with this id; it is used instead".into(),
                );
                continue;
            }
            match self.build_stored(&row.spec) {
                Ok(channel) => next.entries.push(Entry {
                    channel,
                    origin: Origin::Stored,
                    enabled: row.spec.enabled && !row.archived,
                    weight: row.spec.weight,
                }),
                Err(problem) => {
                    tracing::error!(channel = %id, "a stored channel cannot be built: {problem}");
                    next.broken.insert(id, problem.to_string());
                }
            }
        }
        *self.stored.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }
}

/// Build a channel of a kind other than the sandbox (whose secret the caller picks).
fn build_settings(
    settings: &ChannelSettings,
    cx: &BuildContext<'_>,
    public_url: &str,
) -> Result<Arc<dyn PaymentChannel>, ChannelSetupError> {
    Ok(match settings {
        ChannelSettings::Sandbox(s) => Arc::new(s.build(cx, s.secret_bytes(), public_url)),
        ChannelSettings::Alipay(s) => Arc::new(s.build(cx)?),
        ChannelSettings::Wechatpay(s) => Arc::new(s.build(cx)?),
        ChannelSettings::Epay(s) => Arc::new(s.build(cx)?),
    })
}

/// A stored channel's typed settings: its settings and key material read as one table by the
/// kind's own deserializer (so every value is checked as a configuration file's is), then the
/// checks across keys. Key names are the API's (`app_private_key`, not `..._file`).
pub fn stored_settings(
    kind: ChannelKind,
    spec: &ChannelSpec,
) -> Result<ChannelSettings, KeyProblem> {
    let mut table: Map<String, Value> = spec.settings.clone();
    for (k, v) in spec.secrets.iter() {
        table.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(Value::Object(table), &mut track);
    let settings = ChannelSettings::deserialize_kind(kind, de).map_err(|e| {
        let message = e.to_string();
        let path = track.path().to_string();
        let key = if path.is_empty() || path == "." {
            // A missing field: serde names it in the message (`missing field `app_id``).
            message
                .split('`')
                .nth(1)
                .map_or_else(|| "settings".to_owned(), str::to_owned)
        } else {
            path
        };
        KeyProblem::new(key, message)
    })?;
    settings.validate(&spec.methods).map_err(|e| {
        use kami_pay::settings::SettingsError;
        match e {
            SettingsError::Missing { key, requirement } => {
                // Stored channels take key material as text: name the key without `_file`.
                let key = key.strip_suffix("_file").unwrap_or(key);
                let requirement = requirement.split("; or").next().unwrap_or_default();
                KeyProblem::new(key, format!("missing ({requirement})"))
            }
            SettingsError::Invalid { key, message } => KeyProblem::new(key, message),
            other => KeyProblem::new("settings", other.to_string()),
        }
    })?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sandboxes() -> Channels {
        let toml = "[[channels]]\nid = \"a\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = 20\n\
                    [[channels]]\nid = \"b\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = 10\n";
        let config = Config::from_toml_str(toml).unwrap().config;
        Channels::build(
            &config,
            "http://127.0.0.1:9",
            &reqwest::Client::new(),
            false,
        )
        .unwrap()
        .0
    }

    #[test]
    fn repeated_creation_failures_rest_a_channel_and_a_success_clears_it() {
        let ch = two_sandboxes();
        let routed = |ch: &Channels| ch.route(Method::Sandbox).map(|c| c.id().to_string());
        assert_eq!(routed(&ch).as_deref(), Some("a"));
        ch.record_create("a", false);
        ch.record_create("a", false);
        assert_eq!(ch.health("a").failures, 2);
        assert_eq!(
            routed(&ch).as_deref(),
            Some("a"),
            "two failures: still trusted"
        );
        ch.record_create("a", false);
        assert_eq!(routed(&ch).as_deref(), Some("b"), "third failure: a rests");
        assert!(ch.health("a").resting_until.is_some());
        ch.record_create("b", false);
        ch.record_create("b", true);
        ch.record_create("b", false);
        ch.record_create("b", false);
        assert_eq!(
            routed(&ch).as_deref(),
            Some("b"),
            "a success resets the count"
        );
        ch.record_create("b", false);
        assert_eq!(routed(&ch), None, "both resting: the method is not offered");
        assert!(ch.methods().is_empty());
        ch.record_create("a", true);
        assert_eq!(routed(&ch).as_deref(), Some("a"));
        assert_eq!(ch.health("a"), HealthState::default());
    }

    #[test]
    fn weights_share_one_priority() {
        let toml = "[[channels]]\nid = \"a\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\nweight = 3\n\
                    [[channels]]\nid = \"b\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
                    [[channels]]\nid = \"c\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\npriority = -1\nweight = 100\n";
        let config = Config::from_toml_str(toml).unwrap().config;
        let ch = Channels::build(
            &config,
            "http://127.0.0.1:9",
            &reqwest::Client::new(),
            false,
        )
        .unwrap()
        .0;
        let mut count: HashMap<String, u32> = HashMap::new();
        for _ in 0..4000 {
            let id = ch.route(Method::Sandbox).unwrap().id().to_string();
            *count.entry(id).or_default() += 1;
        }
        assert_eq!(count.get("c"), None, "a lower priority is never chosen");
        let a = f64::from(count["a"]) / 4000.0;
        assert!((0.70..0.80).contains(&a), "a takes about 3/4: {count:?}");
    }
}
