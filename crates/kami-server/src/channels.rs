//! The channel registry: the payment channels of this process, looked up by id, and routing a
//! buyer's method to its channels in the order to try them (`kami_pay::routing`: health per
//! (channel, method) with a rest and a half-open probe, success-rate scores, amount limits).
//!
//! Three sources, one list: the configuration file's channels and those an extension adds
//! (the demo's and tests' simulator-wired channels) are fixed for the life of the process;
//! the channels the seller stores through the admin API (`kami_store::StoredChannel`) are
//! rebuilt as a whole snapshot whenever they change (`services::channel_admin::reload`), so
//! an added, edited, disabled or removed channel takes effect without a restart. Lookups clone
//! an `Arc` out of the current snapshot; the routing state is kept by (id, method), apart
//! from the snapshots, so a rebuild does not forget it.
//!
//! Routing state is in memory (no database round trip per order): create-call outcomes go
//! into each (channel, method)'s [`ChannelHealth`] and [`SuccessWindow`]; state changes queue
//! up as [`HealthRow`]s that `services::routing` writes (with the `ChannelDown` alert) and
//! the changes other processes wrote are adopted from the database every few seconds, as is
//! the day's paid total per channel (for `daily_limit`).
//!
//! Disabled channels (and archived stored ones) are built too: orders already sent to them
//! must still be notified, queried, closed and refunded; they just take no new orders.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kami_core::{
    AmountLimits, ChannelId, ChannelLimits, Currency, FxTable, Method, Millis, OwnPrices,
};
use kami_pay::routing::{
    self, Admission, Candidate, ChannelHealth, HealthState as Health, Outcome, RoutingMode,
    RoutingPolicy, SharedHealth, SuccessWindow, Transition,
};
use kami_pay::settings::BuildContext;
use kami_pay::{ChannelKind, ChannelSettings, PaymentChannel};
use kami_store::{ChannelSpec, ChannelsFingerprint, HealthRow, StoredChannel};
use rand::rngs::StdRng;
use rand::SeedableRng;
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
    /// `min_amount`, `max_amount`, `daily_limit`.
    pub limits: ChannelLimits,
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

/// A channel's health summed up over its methods (the admin API's `health` object).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    /// Creation failures in a row (the most of any method).
    pub failures: u32,
    /// Unix ms until which the channel rests for some method; `None` when it does not.
    pub resting_until: Option<i64>,
}

/// One (channel, method)'s routing state, for the seller.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneView {
    pub method: Method,
    pub state: Health,
    pub since: Millis,
    pub rest_until: Option<Millis>,
    /// Create calls and failures over the health window.
    pub calls: u32,
    pub failures: u32,
    pub last_code: Option<String>,
    /// Success rate over the score window (`None`: no calls yet), and how many calls it has.
    pub success_rate: Option<f64>,
    pub volume: usize,
    /// What routing uses (1.0 until there is volume).
    pub score: f64,
}

/// Shadow mode: how often success-rate routing agreed with the channel tried first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShadowTally {
    pub decisions: u64,
    pub agreed: u64,
}

/// One candidate of a checkout.
#[derive(Clone)]
pub struct Routed {
    pub entry: Entry,
    /// The amounts it takes today (daily limit less what it was paid today).
    pub limits: AmountLimits,
}

/// A checkout's candidates in the order to try them.
pub struct RoutePlan {
    pub candidates: Vec<Routed>,
    /// Shadow mode: what success-rate routing would have tried first.
    pub shadow_first: Option<String>,
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
    /// Routing state per (channel id, method).
    book: Mutex<Book>,
    policy: RoutingPolicy,
    /// Paid today per channel id (minor units): read from the database every few seconds,
    /// plus this process's payments since.
    paid_today: Mutex<HashMap<String, i64>>,
    builder: Builder,
    /// Held while the stored channels are read and installed.
    reload: tokio::sync::Mutex<()>,
}

struct Book {
    lanes: HashMap<(String, Method), Lane>,
    /// State changes not yet written to the database, oldest first.
    changes: Vec<HealthRow>,
    shadow: HashMap<Method, ShadowTally>,
    /// The routing's random choices (the weighted draw within a priority, exploration):
    /// from entropy, unless [`Channels::seed_routing`] fixed it.
    rng: StdRng,
}

impl Default for Book {
    fn default() -> Book {
        Book {
            lanes: HashMap::new(),
            changes: Vec::new(),
            shadow: HashMap::new(),
            rng: StdRng::from_entropy(),
        }
    }
}

struct Lane {
    health: ChannelHealth,
    window: SuccessWindow,
}

/// Changes kept at most while the database cannot take them.
const MAX_PENDING_CHANGES: usize = 1_000;

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
                limits: c.limits,
            });
        }
        Ok((
            Channels {
                fixed,
                stored: Default::default(),
                book: Default::default(),
                policy: config.routing.policy(),
                paid_today: Default::default(),
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
            limits: ChannelLimits::default(),
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

    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    /// Make the routing's random choices a function of `seed` from now on (they come from
    /// entropy otherwise): a seeded simulation replays the same routes.
    pub fn seed_routing(&self, seed: u64) {
        self.book().rng = StdRng::seed_from_u64(seed);
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The candidates of a checkout for `method`, in the order to try them: enabled channels
    /// serving it that are not resting (a rested one due for its probe included), ordered by
    /// the routing mode. Amount limits are applied by the caller once the total is known.
    pub fn plan(&self, method: Method, now: Millis) -> RoutePlan {
        let entries: Vec<Entry> = self
            .entries()
            .into_iter()
            .filter(|e| e.enabled && e.channel.methods().contains(&method))
            .collect();
        let paid = self
            .paid_today
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut book = self.book();
        let candidates: Vec<Candidate<usize>> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let lane = book.lane(e.id().as_str(), method, now);
                Candidate {
                    key: i,
                    priority: e.channel.priority(),
                    weight: e.weight,
                    state: lane.health.state(),
                    admission: lane.health.admission(now),
                    score: lane.window.score(&self.policy.score),
                    limits: e
                        .limits
                        .today(paid.get(e.id().as_str()).copied().unwrap_or(0)),
                }
            })
            .collect();
        let plan = routing::plan(candidates, &self.policy, &mut book.rng);
        if self.policy.mode == RoutingMode::Shadow {
            if let Some(agreed) = plan.shadow_agrees() {
                let tally = book.shadow.entry(method).or_default();
                tally.decisions += 1;
                tally.agreed += u64::from(agreed);
            }
        }
        RoutePlan {
            shadow_first: plan.shadow_first.map(|i| entries[i].id().to_string()),
            candidates: plan
                .order
                .into_iter()
                .map(|c| Routed {
                    entry: entries[c.key].clone(),
                    limits: c.limits,
                })
                .collect(),
        }
    }

    /// Just before a create call: false when the channel went down meanwhile or another
    /// order is its probe (skip it); a channel due for its probe becomes this order's.
    pub fn admit(&self, channel_id: &str, method: Method, now: Millis) -> bool {
        let rules = self.policy.health.clone();
        let mut book = self.book();
        let lane = book.lane(channel_id, method, now);
        match lane.health.admission(now) {
            Admission::Open => true,
            Admission::Probe => {
                lane.health.begin_probe(now, &rules);
                true
            }
            Admission::Closed => false,
        }
    }

    /// Count a create call's outcome (never a buyer-caused refusal): health and score.
    pub fn record(&self, channel_id: &str, method: Method, outcome: &Outcome, now: Millis) {
        let policy = &self.policy;
        let mut book = self.book();
        let lane = book.lane(channel_id, method, now);
        lane.window.record(outcome.is_success(), &policy.score);
        let Some(t) = lane.health.record(outcome, now, &policy.health) else {
            return;
        };
        log_transition(channel_id, method, &t);
        let row = health_row(channel_id, method, &t);
        if book.changes.len() < MAX_PENDING_CHANGES {
            book.changes.push(row);
        }
    }

    /// State changes waiting to be written, oldest first.
    pub fn take_health_changes(&self) -> Vec<HealthRow> {
        std::mem::take(&mut self.book().changes)
    }

    /// Put back changes that could not be written (ahead of newer ones).
    pub fn restore_health_changes(&self, mut rows: Vec<HealthRow>) {
        let mut book = self.book();
        rows.append(&mut book.changes);
        rows.truncate(MAX_PENDING_CHANGES);
        book.changes = rows;
    }

    /// Take what other processes decided (newer than this process's own state).
    pub fn adopt_shared(&self, rows: &[HealthRow], now: Millis) {
        let rules = self.policy.health.clone();
        let mut book = self.book();
        for r in rows {
            let (Ok(method), Some(state)) = (Method::parse(&r.method), Health::parse(&r.state))
            else {
                continue;
            };
            let shared = SharedHealth {
                state,
                since: r.since,
                rest_until: r.rest_until,
            };
            if book
                .lane(&r.channel_id, method, now)
                .health
                .adopt(&shared, &rules)
            {
                tracing::info!(
                    channel = %r.channel_id,
                    method = %method,
                    state = state.as_str(),
                    "channel health from another kami process: {}",
                    r.reason
                );
            }
        }
    }

    /// Replace the day's paid totals (read from the database).
    pub fn set_paid_today(&self, totals: HashMap<String, i64>) {
        *self.paid_today.lock().unwrap_or_else(|p| p.into_inner()) = totals;
    }

    /// A payment this process just applied (until the next read from the database).
    pub fn add_paid_today(&self, channel_id: &str, amount_minor: i64) {
        *self
            .paid_today
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(channel_id.to_owned())
            .or_default() += amount_minor;
    }

    pub fn paid_today(&self, channel_id: &str) -> i64 {
        self.paid_today
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel_id)
            .copied()
            .unwrap_or(0)
    }

    /// The routing state of each method of a channel.
    pub fn lanes(&self, channel_id: &str, methods: &[Method], now: Millis) -> Vec<LaneView> {
        let policy = &self.policy;
        let mut book = self.book();
        methods
            .iter()
            .map(|&method| {
                let lane = book.lane(channel_id, method, now);
                let c = lane.health.counts(now, &policy.health);
                LaneView {
                    method,
                    state: lane.health.state(),
                    since: lane.health.since(),
                    rest_until: lane.health.rest_until(),
                    calls: c.calls,
                    failures: c.failures,
                    last_code: lane.health.last_code().map(str::to_owned),
                    success_rate: lane.window.rate(),
                    volume: lane.window.volume(),
                    score: lane.window.score(&policy.score),
                }
            })
            .collect()
    }

    /// Shadow mode's agreement per method.
    pub fn shadow_tally(&self, method: Method) -> ShadowTally {
        self.book().shadow.get(&method).copied().unwrap_or_default()
    }

    /// A channel's health summed up over its methods.
    pub fn health(&self, channel_id: &str, now: Millis) -> HealthState {
        let methods = self
            .entry(channel_id)
            .map(|e| e.channel.methods().to_vec())
            .unwrap_or_default();
        let lanes = self.lanes(channel_id, &methods, now);
        HealthState {
            failures: lanes
                .iter()
                .map(|l| {
                    if l.state == Health::Down {
                        l.failures.max(1)
                    } else {
                        0
                    }
                })
                .max()
                .unwrap_or(0),
            resting_until: lanes
                .iter()
                .filter_map(|l| l.rest_until.filter(|r| *r > now))
                .max(),
        }
    }

    /// Methods some channel serves now (resting channels do not count), for the catalogue.
    pub fn methods(&self, now: Millis) -> Vec<Method> {
        self.methods_where(now, |_| true)
    }

    /// Methods some channel serves now that can charge a product priced in `currency` with
    /// its own prices `own`: the channel takes the currency, or the product has a price in
    /// the one it charges, or the rate table `fx` converts to it.
    pub fn methods_for(
        &self,
        now: Millis,
        currency: Currency,
        own: &OwnPrices,
        fx: &FxTable,
    ) -> Vec<Method> {
        self.methods_where(now, |ch| can_charge(ch, currency, own, fx))
    }

    fn methods_where(
        &self,
        now: Millis,
        takes: impl Fn(&dyn PaymentChannel) -> bool,
    ) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|m| !self.plan_quiet(*m, now, &takes))
            .collect()
    }

    /// No channel could take an order for `method` now.
    fn plan_quiet(
        &self,
        method: Method,
        now: Millis,
        takes: &impl Fn(&dyn PaymentChannel) -> bool,
    ) -> bool {
        let entries: Vec<Entry> = self
            .entries()
            .into_iter()
            .filter(|e| e.enabled && e.channel.methods().contains(&method))
            .filter(|e| takes(e.channel.as_ref()))
            .collect();
        let mut book = self.book();
        !entries.iter().any(|e| {
            book.lane(e.id().as_str(), method, now)
                .health
                .admission(now)
                != Admission::Closed
        })
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
                    limits: row.spec.limits,
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

impl Book {
    fn lane(&mut self, channel_id: &str, method: Method, now: Millis) -> &mut Lane {
        self.lanes
            .entry((channel_id.to_owned(), method))
            .or_insert_with(|| Lane {
                health: ChannelHealth::new(now),
                window: SuccessWindow::default(),
            })
    }
}

fn health_row(channel_id: &str, method: Method, t: &Transition) -> HealthRow {
    HealthRow {
        channel_id: channel_id.to_owned(),
        method: method.as_str().to_owned(),
        state: t.to.as_str().to_owned(),
        since: t.at,
        rest_until: t.rest_until,
        calls: i64::from(t.calls),
        failures: i64::from(t.failures),
        last_code: t.last_code.clone(),
        reason: t.reason.clone(),
    }
}

fn log_transition(channel_id: &str, method: Method, t: &Transition) {
    let code = t.last_code.as_deref().unwrap_or("-");
    if t.to == Health::Down {
        tracing::warn!(
            channel = channel_id,
            method = %method,
            gateway_code = code,
            "channel {channel_id} is down for {method}; it rests until a probe: {}",
            t.reason
        );
    } else {
        tracing::info!(
            channel = channel_id,
            method = %method,
            gateway_code = code,
            "channel {channel_id} is {} for {method} (was {}): {}",
            t.to.as_str(),
            t.from.as_str(),
            t.reason
        );
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
        ChannelSettings::Epusdt(s) => Arc::new(s.build(cx)?),
        ChannelSettings::Tokenpay(s) => Arc::new(s.build(cx)?),
        ChannelSettings::Paypal(s) => Arc::new(s.build(cx)?),
        ChannelSettings::Stripe(s) => Arc::new(s.build(cx)?),
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

/// Whether `channel` can charge a product priced in `currency` (own prices `own`): it takes
/// the currency, or the product has a price in the one it charges, or `fx` converts to it.
pub fn can_charge(
    channel: &dyn PaymentChannel,
    currency: Currency,
    own: &OwnPrices,
    fx: &FxTable,
) -> bool {
    let to = channel.charge_currency(currency);
    to == currency || own.get(to).is_some() || fx.converts(currency, to)
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

    fn first(ch: &Channels, now: Millis) -> Option<String> {
        ch.plan(Method::Sandbox, now)
            .candidates
            .first()
            .map(|c| c.entry.id().to_string())
    }

    #[test]
    fn a_failing_channel_goes_down_rests_and_a_probe_brings_it_back() {
        let ch = two_sandboxes();
        let fail = Outcome::Error {
            code: Some("SYSTEM_ERROR".into()),
        };
        let ok = Outcome::Success { latency_ms: 10 };
        assert_eq!(first(&ch, 0).as_deref(), Some("a"));
        let plan = ch.plan(Method::Sandbox, 0);
        let ids: Vec<_> = plan
            .candidates
            .iter()
            .map(|c| c.entry.id().to_string())
            .collect();
        assert_eq!(ids, ["a", "b"], "the backup follows for failover");
        for t in 1..=5 {
            ch.record("a", Method::Sandbox, &fail, t);
        }
        assert_eq!(first(&ch, 6).as_deref(), Some("b"), "a rests");
        let changes = ch.take_health_changes();
        let states: Vec<_> = changes.iter().map(|c| c.state.as_str()).collect();
        assert_eq!(states, ["degraded", "down"]);
        assert_eq!(changes[1].last_code.as_deref(), Some("SYSTEM_ERROR"));
        assert!(ch.health("a", 6).failures > 0);
        assert_eq!(
            ch.health("a", 6).resting_until,
            Some(5 + ch.policy().health.rest_ms)
        );
        assert!(!ch.admit("a", Method::Sandbox, 7), "resting: not admitted");

        let after = 5 + ch.policy().health.rest_ms;
        assert_eq!(
            first(&ch, after).as_deref(),
            Some("a"),
            "the probe goes first"
        );
        assert!(ch.admit("a", Method::Sandbox, after));
        assert!(
            !ch.admit("a", Method::Sandbox, after),
            "one probe at a time"
        );
        ch.record("a", Method::Sandbox, &ok, after + 1);
        assert_eq!(ch.take_health_changes()[0].state, "degraded");
        assert_eq!(first(&ch, after + 2).as_deref(), Some("a"));

        // Both down: the method is not offered.
        for t in 1..=5 {
            ch.record("a", Method::Sandbox, &fail, after + 10 + t);
            ch.record("b", Method::Sandbox, &fail, after + 10 + t);
        }
        assert!(ch.plan(Method::Sandbox, after + 20).candidates.is_empty());
    }

    #[test]
    fn another_process_down_state_is_adopted() {
        let ch = two_sandboxes();
        let row = HealthRow {
            channel_id: "a".into(),
            method: "sandbox".into(),
            state: "down".into(),
            since: 100,
            rest_until: Some(60_100),
            calls: 5,
            failures: 5,
            last_code: Some("TIMEOUT".into()),
            reason: "down: 5 create failures in a row".into(),
        };
        // Lanes start at the time they are first seen; this one before the change.
        assert_eq!(first(&ch, 50).as_deref(), Some("a"));
        ch.adopt_shared(&[row], 200);
        assert_eq!(first(&ch, 200).as_deref(), Some("b"));
        assert!(
            ch.take_health_changes().is_empty(),
            "adopted, not re-written"
        );
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
            let id = first(&ch, 0).unwrap();
            *count.entry(id).or_default() += 1;
        }
        assert_eq!(count.get("c"), None, "a lower priority is never chosen");
        let a = f64::from(count["a"]) / 4000.0;
        assert!((0.70..0.80).contains(&a), "a takes about 3/4: {count:?}");
    }

    /// A seeded registry draws the same routes every time (the simulation replays a seed);
    /// the draw is still a draw.
    #[test]
    fn a_seeded_registry_replays_its_routes() {
        let toml = "[[channels]]\nid = \"a\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
                    [[channels]]\nid = \"b\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n";
        let config = Config::from_toml_str(toml).unwrap().config;
        let draws = |seed: u64| {
            let ch = Channels::build(
                &config,
                "http://127.0.0.1:9",
                &reqwest::Client::new(),
                false,
            )
            .unwrap()
            .0;
            ch.seed_routing(seed);
            (0..64).map(|_| first(&ch, 0).unwrap()).collect::<Vec<_>>()
        };
        let one = draws(7);
        assert_eq!(one, draws(7), "the same seed, the same routes");
        assert!(
            one.iter().any(|id| id == "a") && one.iter().any(|id| id == "b"),
            "both share the priority: {one:?}"
        );
        assert_ne!(one, draws(8), "another seed, other routes");
    }
}
