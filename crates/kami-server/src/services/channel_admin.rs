//! The seller's payment channels (`/api/v1/admin/channels` and `/admin/channels`): the list
//! with each channel's live health, and adding, editing, disabling, re-weighting and deleting
//! the channels stored in the database, effective at once (the registry, `crate::channels`,
//! is rebuilt after each change; other kami processes on the database notice within
//! [`SYNC_INTERVAL`]). Channels of the configuration file (and the demo's) are listed
//! read-only.
//!
//! A channel's keys are those of a `[[channels]]` block (DESIGN 4.2), with key material as
//! text under the key's name without `_file` (`app_private_key`, `key`, ...): the server reads
//! no file for the API. Before anything is stored, the channel is built exactly as a
//! configuration file's would be (every key parsed), so a bad key is refused with its name and
//! nothing changes. Key material is stored sealed (the store's sealing) and never leaves:
//! views list which keys are set, audit rows say `"replaced"`, spans skip the bodies.
//!
//! Deleting a channel that payments point at archives it instead (no new orders, still
//! resolvable for their notifications, queries and refunds; see `kami_store::ChannelRemoval`).

use std::time::Duration;

use kami_core::{ChannelId, ChannelLimits, Method, Millis};
use kami_pay::{ChannelKind, TradeRef, TradeState};
use kami_store::{Actor, ChannelRemoval, ChannelSecrets, ChannelSpec, StoreError, StoredChannel};
use serde_json::{Map, Value};

use super::stats::{self, ChannelStats, DayRange};
use super::{ServiceError, ServiceResult};
use crate::channels::{HealthState, LaneView, Origin, ShadowTally};
use crate::config::MAX_WEIGHT;
use crate::state::AppState;

/// How often a process checks whether another one changed the stored channels.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// The health figures cover this many days, today included.
pub const HEALTH_DAYS: i64 = 7;
/// How long the test call may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A channel as the seller sees it (never its key material).
#[derive(Debug, Clone)]
pub struct ChannelView {
    pub id: String,
    pub kind: String,
    pub origin: Origin,
    pub methods: Vec<Method>,
    pub priority: i32,
    pub weight: u32,
    pub enabled: bool,
    pub archived: bool,
    /// Stored channels: the kind's keys that are not key material, as given.
    pub settings: Map<String, Value>,
    /// Stored channels: the names of the key material that is set.
    pub keys_set: Vec<String>,
    /// A stored channel that could not be built: why (it takes no orders).
    pub problem: Option<String>,
    pub health: HealthState,
    /// `min_amount`, `max_amount`, `daily_limit`, and what it was paid today.
    pub limits: ChannelLimits,
    pub paid_today: i64,
    /// Routing state per method (health, success rate, score) and, in shadow mode, how often
    /// success-rate routing agreed with the channel routed first (per method).
    pub lanes: Vec<LaneView>,
    pub shadow: Vec<(Method, ShadowTally)>,
    /// Orders and create calls over the last [`HEALTH_DAYS`] days.
    pub stats: ChannelStats,
    /// Stored channels: the revision an edit starts from, and when it was made and changed.
    pub revision: Option<i64>,
    pub created_at: Option<Millis>,
    pub updated_at: Option<Millis>,
}

impl ChannelView {
    pub fn read_only(&self) -> bool {
        self.origin != Origin::Stored || self.archived
    }

    /// `enabled`, `disabled`, `archived` or `broken`.
    pub fn state(&self) -> &'static str {
        if self.archived {
            "archived"
        } else if self.problem.is_some() {
            "broken"
        } else if self.enabled {
            "enabled"
        } else {
            "disabled"
        }
    }
}

/// What the test button found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub ok: bool,
    pub message: String,
}

/// A key of a kind's form, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormKey {
    pub name: &'static str,
    /// Key material: a text area, stored sealed, never shown again.
    pub secret: bool,
    /// A yes/no key (`allow_sandbox`).
    pub boolean: bool,
    /// A whole number (`version`).
    pub number: bool,
    /// A yes/no key that is on when not given (`confirm_by_query`).
    pub default_on: bool,
}

/// Keys whose values are yes/no and whole numbers (everything else is text).
const BOOLEAN_KEYS: [&str; 2] = ["allow_sandbox", "confirm_by_query"];
const NUMBER_KEYS: [&str; 1] = ["version"];
/// Yes/no keys whose default is yes.
const DEFAULT_ON_KEYS: [&str; 1] = ["confirm_by_query"];

/// The keys a stored channel of `kind` takes besides the routing keys: every key of the
/// kind's settings but the `*_file` ones.
pub fn form_keys(kind: ChannelKind) -> Vec<FormKey> {
    let secrets = kind.secret_keys();
    kind.keys()
        .iter()
        .filter(|k| !k.ends_with("_file"))
        .map(|k| FormKey {
            name: k,
            secret: secrets.contains(k),
            boolean: BOOLEAN_KEYS.contains(k),
            number: NUMBER_KEYS.contains(k),
            default_on: DEFAULT_ON_KEYS.contains(k),
        })
        .collect()
}

/// A stored channel's settings as in effect: the given keys, and each yes/no key that is on
/// by default when not given (so views and forms show what the channel does).
fn effective_settings(kind: &str, given: &Map<String, Value>) -> Map<String, Value> {
    let mut settings = given.clone();
    if let Some(kind) = ChannelKind::parse(kind) {
        for k in form_keys(kind).iter().filter(|k| k.default_on) {
            settings
                .entry(k.name.to_owned())
                .or_insert(Value::Bool(true));
        }
    }
    settings
}

fn invalid(key: &str, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::invalid("invalid_channel", format!("`{key}`: {message}"))
}

fn conflict(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Conflict {
        code,
        message: message.into(),
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("channel_not_found", format!("no channel `{id}`"))
}

fn read_only(id: &str) -> ServiceError {
    conflict(
        "channel_read_only",
        format!(
            "channel `{id}` comes from the configuration file: it is read-only here; change \
             the file and restart kami"
        ),
    )
}

/// The store's refusals of a channel change, as the API says them.
fn store_error(id: &str, e: StoreError) -> ServiceError {
    match e {
        StoreError::ChannelNotFound => not_found(id),
        StoreError::ChannelExists => {
            conflict("channel_exists", format!("a channel `{id}` exists already"))
        }
        StoreError::ChannelArchived => conflict("channel_archived", e.to_string()),
        StoreError::ChannelChanged => conflict("channel_changed", e.to_string()),
        StoreError::InvalidInput(m) => ServiceError::invalid("invalid_channel", m),
        other => other.into(),
    }
}

fn parse_id(id: &str) -> ServiceResult<ChannelId> {
    ChannelId::parse(id).map_err(|e| invalid("id", e))
}

fn parse_methods(v: &Value) -> ServiceResult<Vec<Method>> {
    let names: Vec<&str> = match v {
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| invalid("methods", "a list of method names"))
            })
            .collect::<ServiceResult<_>>()?,
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
        _ => return Err(invalid("methods", "a list of method names")),
    };
    let mut methods = Vec::new();
    for name in names {
        let m = Method::parse(name).map_err(|_| {
            let known: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
            invalid(
                "methods",
                format!(
                    "unknown payment method `{name}` (expected one of: {})",
                    known.join(", ")
                ),
            )
        })?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    if methods.is_empty() {
        return Err(invalid("methods", "list at least one payment method"));
    }
    Ok(methods)
}

fn parse_int(key: &str, v: &Value, min: i64, max: i64) -> ServiceResult<i64> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| (min..=max).contains(n))
        .ok_or_else(|| invalid(key, format!("a whole number from {min} to {max}")))
}

/// Apply a body's keys to `spec` (`null` removes an optional key). The routing keys, then
/// the kind's: key material as text, no `*_file` key (the API reads no file on the server),
/// nothing unknown.
fn apply(kind: ChannelKind, spec: &mut ChannelSpec, body: Map<String, Value>) -> ServiceResult<()> {
    let secrets = kind.secret_keys();
    let mut limits = [
        spec.limits.min_amount(),
        spec.limits.max_amount(),
        spec.limits.daily_limit(),
    ];
    for (key, value) in body {
        let k = key.as_str();
        match k {
            "min_amount" | "max_amount" | "daily_limit" => {
                let slot = match k {
                    "min_amount" => 0,
                    "max_amount" => 1,
                    _ => 2,
                };
                limits[slot] = match &value {
                    Value::Null => None,
                    Value::String(t) if t.trim().is_empty() => None,
                    v => Some(parse_int(k, v, 1, i64::MAX)?),
                };
            }
            "id" => {
                if value.as_str() != Some(spec.id.as_str()) {
                    return Err(invalid("id", "a channel's id cannot change"));
                }
            }
            "kind" => {
                if value.as_str() != Some(kind.as_str()) {
                    return Err(invalid("kind", "a channel's kind cannot change"));
                }
            }
            "methods" => spec.methods = parse_methods(&value)?,
            "priority" => {
                spec.priority = i32::try_from(parse_int(
                    k,
                    &value,
                    i64::from(i32::MIN),
                    i64::from(i32::MAX),
                )?)
                .map_err(|e| invalid(k, e))?
            }
            "weight" => {
                spec.weight = u32::try_from(parse_int(k, &value, 1, i64::from(MAX_WEIGHT))?)
                    .map_err(|e| invalid(k, e))?
            }
            "enabled" => {
                spec.enabled = value.as_bool().ok_or_else(|| invalid(k, "true or false"))?
            }
            _ if secrets.contains(&k) => match value {
                Value::Null => spec.secrets.remove(k),
                Value::String(text) if !text.trim().is_empty() => spec.secrets.insert(key, text),
                _ => return Err(invalid(k, "the key material as text (PEM or base64)")),
            },
            _ if k.ends_with("_file") && kind.keys().contains(&k) => {
                let base = k.trim_end_matches("_file");
                return Err(invalid(
                    k,
                    format!(
                        "give the key material itself as text in `{base}`; the API reads no \
                         file on the server"
                    ),
                ));
            }
            _ if kind.keys().contains(&k) => match value {
                Value::Null => {
                    spec.settings.remove(k);
                }
                v => {
                    spec.settings.insert(key, v);
                }
            },
            _ if ChannelKind::ALL
                .iter()
                .any(|other| other.keys().contains(&k)) =>
            {
                return Err(invalid(k, format!("does not apply to kind `{kind}`")));
            }
            _ => return Err(invalid(k, "unknown key")),
        }
    }
    spec.limits = ChannelLimits::new(limits[0], limits[1], limits[2])
        .map_err(|e| invalid(e.key, e.message))?;
    Ok(())
}

fn parse_kind(v: Option<&Value>) -> ServiceResult<ChannelKind> {
    let name = v
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("kind", "missing"))?;
    ChannelKind::parse(name).ok_or_else(|| {
        let known: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
        invalid(
            "kind",
            format!(
                "unknown channel kind `{name}` (expected one of: {})",
                known.join(", ")
            ),
        )
    })
}

/// Build the channel `spec` describes, or say which key is wrong (nothing is stored then).
fn check(state: &AppState, spec: &ChannelSpec) -> ServiceResult<()> {
    state
        .channels
        .build_stored(spec)
        .map(|_| ())
        .map_err(|p| invalid(&p.key, p.message))
}

/// `POST /api/v1/admin/channels`: a new stored channel from the keys of 4.2.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    state: &AppState,
    body: Map<String, Value>,
    actor: &Actor,
) -> ServiceResult<ChannelView> {
    let id = parse_id(
        body.get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("id", "missing"))?,
    )?;
    if state.channels.is_fixed(id.as_str()) {
        return Err(conflict(
            "channel_exists",
            format!("`{id}` is a channel of the configuration file"),
        ));
    }
    let kind = parse_kind(body.get("kind"))?;
    if !body.contains_key("methods") {
        return Err(invalid("methods", "missing"));
    }
    let mut spec = ChannelSpec {
        id: id.clone(),
        kind: kind.as_str().to_owned(),
        methods: Vec::new(),
        priority: 0,
        weight: 1,
        enabled: true,
        limits: ChannelLimits::default(),
        settings: Map::new(),
        secrets: ChannelSecrets::default(),
    };
    apply(kind, &mut spec, body)?;
    // A sandbox secret is picked once and stored, so the channel keeps it across reloads.
    if kind == ChannelKind::Sandbox && spec.secrets.get("secret").is_none() {
        spec.secrets
            .insert("secret".into(), hex::encode(rand::random::<[u8; 32]>()));
    }
    check(state, &spec)?;
    let row = state
        .store
        .create_stored_channel(spec, actor, state.now_ms())
        .await
        .map_err(|e| store_error(id.as_str(), e))?;
    tracing::info!(channel = %id, kind = %kind, "channel added");
    reload(state).await?;
    view_of_row(state, &row).await
}

/// The stored channel `id` for a change: `409` for a configuration file's channel, `404`
/// for none.
async fn stored_for_change(state: &AppState, id: &str) -> ServiceResult<StoredChannel> {
    if state.channels.is_fixed(id) {
        return Err(read_only(id));
    }
    let cid = ChannelId::parse(id).map_err(|_| not_found(id))?;
    state
        .store
        .stored_channel(&cid)
        .await
        .map_err(|e| store_error(id, e))
}

/// `PATCH /api/v1/admin/channels/{id}`: the keys given replace theirs (`null` removes an
/// optional key; key material left out is kept).
#[tracing::instrument(level = "debug", skip_all, fields(channel = %id))]
pub async fn update(
    state: &AppState,
    id: &str,
    body: Map<String, Value>,
    actor: &Actor,
) -> ServiceResult<ChannelView> {
    let cur = stored_for_change(state, id).await?;
    if cur.archived {
        return Err(store_error(id, StoreError::ChannelArchived));
    }
    let kind = ChannelKind::parse(&cur.spec.kind)
        .ok_or_else(|| ServiceError::internal(format!("stored channel kind {}", cur.spec.kind)))?;
    let mut spec = cur.spec.clone();
    apply(kind, &mut spec, body)?;
    check(state, &spec)?;
    let row = state
        .store
        .update_stored_channel(cur.revision, spec, actor, state.now_ms())
        .await
        .map_err(|e| store_error(id, e))?;
    tracing::info!(channel = %id, "channel changed");
    reload(state).await?;
    view_of_row(state, &row).await
}

/// `DELETE /api/v1/admin/channels/{id}`: deleted, or archived when payments point at it.
#[tracing::instrument(level = "debug", skip_all, fields(channel = %id))]
pub async fn remove(state: &AppState, id: &str, actor: &Actor) -> ServiceResult<ChannelRemoval> {
    let cur = stored_for_change(state, id).await?;
    let removal = state
        .store
        .remove_stored_channel(&cur.spec.id, actor, state.now_ms())
        .await
        .map_err(|e| store_error(id, e))?;
    tracing::info!(channel = %id, ?removal, "channel removed");
    reload(state).await?;
    Ok(removal)
}

/// `POST /api/v1/admin/channels/{id}/test`: a harmless signed call — the query of a trade
/// that cannot exist. The gateway's verified "no such trade" means the credentials and both
/// signatures check out; anything else is reported as the channel says it.
#[tracing::instrument(level = "debug", skip_all, fields(channel = %id))]
pub async fn test(state: &AppState, id: &str) -> ServiceResult<TestOutcome> {
    let Some(channel) = state.channels.get(id) else {
        if let Some(problem) = state.channels.broken().get(id) {
            return Ok(TestOutcome {
                ok: false,
                message: format!("the channel cannot be built: {problem}"),
            });
        }
        return Err(not_found(id));
    };
    let trade = format!("kamitest{}", hex::encode(rand::random::<[u8; 8]>()));
    let outcome =
        match tokio::time::timeout(TEST_TIMEOUT, channel.query(&TradeRef::new(trade.as_str())))
            .await
        {
            Err(_) => TestOutcome {
                ok: false,
                message: format!(
                    "the gateway did not answer within {} s",
                    TEST_TIMEOUT.as_secs()
                ),
            },
            Ok(Ok(TradeState::NotFound)) => TestOutcome {
                ok: true,
                message: format!(
                    "the gateway accepted the signed query and its verified answer is that trade \
                 {trade} does not exist: credentials and signatures check out"
                ),
            },
            Ok(Ok(other)) => TestOutcome {
                ok: true,
                message: format!(
                    "the gateway accepted the signed query and answered with a verified reply \
                 ({other:?} for trade {trade})"
                ),
            },
            // epusdt (and BEpusdt) have no query: nothing short of a payment proves the
            // token, and a test must not create one. Said as it is, not as a pass.
            Ok(Err(kami_pay::PayError::Unsupported(what))) => TestOutcome {
                ok: false,
                message: format!(
                    "this gateway cannot be tested without creating a payment ({what}): place \
                     a small test order instead; a wrong key is refused when the payment is created"
                ),
            },
            Ok(Err(e)) => TestOutcome {
                ok: false,
                message: e.to_string(),
            },
        };
    tracing::info!(channel = %id, ok = outcome.ok, "channel test: {}", outcome.message);
    Ok(outcome)
}

/// Every channel: the configuration file's (and the demo's), then the stored ones, with
/// health.
pub async fn list(state: &AppState) -> ServiceResult<Vec<ChannelView>> {
    let rows = state.store.stored_channels().await?;
    let stats = health_stats(state).await?;
    let mut out = Vec::new();
    for e in state.channels.entries() {
        if e.origin == Origin::Stored {
            continue;
        }
        let id = e.id().to_string();
        out.push(ChannelView {
            kind: e.channel.kind().to_owned(),
            origin: e.origin,
            methods: e.channel.methods().to_vec(),
            priority: e.channel.priority(),
            weight: e.weight,
            enabled: e.enabled,
            archived: false,
            settings: Map::new(),
            keys_set: Vec::new(),
            problem: None,
            health: state.channels.health(&id, state.now_ms()),
            limits: e.limits,
            paid_today: state.channels.paid_today(&id),
            lanes: state
                .channels
                .lanes(&id, e.channel.methods(), state.now_ms()),
            shadow: shadow(state, e.channel.methods()),
            stats: stats_of(&stats, &id),
            revision: None,
            created_at: None,
            updated_at: None,
            id,
        });
    }
    let broken = state.channels.broken();
    for row in &rows {
        out.push(view(state, row, &stats, broken.get(row.spec.id.as_str())));
    }
    Ok(out)
}

/// One channel, stored or not.
pub async fn get(state: &AppState, id: &str) -> ServiceResult<ChannelView> {
    list(state)
        .await?
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| not_found(id))
}

async fn view_of_row(state: &AppState, row: &StoredChannel) -> ServiceResult<ChannelView> {
    let stats = health_stats(state).await?;
    let broken = state.channels.broken();
    Ok(view(state, row, &stats, broken.get(row.spec.id.as_str())))
}

fn view(
    state: &AppState,
    row: &StoredChannel,
    stats: &[ChannelStats],
    problem: Option<&String>,
) -> ChannelView {
    let s = &row.spec;
    let id = s.id.to_string();
    ChannelView {
        kind: s.kind.clone(),
        origin: Origin::Stored,
        methods: s.methods.clone(),
        priority: s.priority,
        weight: s.weight,
        enabled: s.enabled && !row.archived,
        archived: row.archived,
        settings: effective_settings(&s.kind, &s.settings),
        keys_set: s.secrets.names().map(str::to_owned).collect(),
        problem: problem.cloned(),
        health: state.channels.health(&id, state.now_ms()),
        limits: s.limits,
        paid_today: state.channels.paid_today(&id),
        lanes: state.channels.lanes(&id, &s.methods, state.now_ms()),
        shadow: shadow(state, &s.methods),
        stats: stats_of(stats, &id),
        revision: Some(row.revision),
        created_at: Some(row.created_at),
        updated_at: Some(row.updated_at),
        id,
    }
}

/// Shadow mode's agreement for these methods (empty in the other modes).
fn shadow(state: &AppState, methods: &[Method]) -> Vec<(Method, ShadowTally)> {
    if state.channels.policy().mode != kami_pay::routing::RoutingMode::Shadow {
        return Vec::new();
    }
    methods
        .iter()
        .map(|m| (*m, state.channels.shadow_tally(*m)))
        .collect()
}

async fn health_stats(state: &AppState) -> ServiceResult<Vec<ChannelStats>> {
    let range = DayRange::last(stats::today(state), HEALTH_DAYS);
    Ok(stats::stats(state, range).await?.channels)
}

fn stats_of(stats: &[ChannelStats], id: &str) -> ChannelStats {
    stats
        .iter()
        .find(|c| c.channel == id)
        .cloned()
        .unwrap_or_else(|| ChannelStats {
            channel: id.to_owned(),
            ..ChannelStats::default()
        })
}

/// Rebuild the registry's stored channels from the database (serialised: the last reload
/// reads the newest rows).
pub async fn reload(state: &AppState) -> Result<(), StoreError> {
    let _one_at_a_time = state.channels.reload_lock().lock().await;
    let fingerprint = state.store.stored_channels_fingerprint().await?;
    let rows = state.store.stored_channels().await?;
    state.channels.install_stored(&rows, fingerprint);
    Ok(())
}

/// Reload when another process changed the stored channels (the background job calls this
/// every [`SYNC_INTERVAL`]; an order refused for a channel deleted meanwhile does too).
pub async fn sync(state: &AppState) {
    let changed = match state.store.stored_channels_fingerprint().await {
        Ok(fp) => state.channels.stored_fingerprint() != Some(fp),
        Err(e) => {
            tracing::warn!("reading the stored channels' fingerprint: {e}");
            return;
        }
    };
    if changed {
        if let Err(e) = reload(state).await {
            tracing::warn!("reloading the stored channels: {e}");
        }
    }
}
