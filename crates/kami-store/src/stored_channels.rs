//! Payment channels the seller adds through the admin API or the console (`channels`), beside
//! the configuration file's. The store keeps them and their key material, sealed (callers see
//! plain text, as for card keys); whether a channel's settings make a working channel is the
//! server's (it builds the channel before anything is written). Each change writes its audit
//! row in its transaction; the row never holds key material (`"app_private_key": "replaced"`).
//!
//! Deleting a channel that payments point at archives it instead: it takes no new orders and
//! cannot be edited, but stays resolvable for those payments (notifications, queries, refunds)
//! and keeps its id. An order on a stored channel takes the channel's key lock shared in its
//! transaction and requires the row ([`hold_for_order`]); a delete takes it exclusive before it
//! counts the payments, so an order routed to a channel just before its deletion either
//! commits first (and the channel is archived, not deleted) or is refused.

use std::collections::BTreeMap;
use std::fmt;

use kami_core::{ChannelId, ChannelLimits, Method, Millis};
use serde_json::{json, Map, Value};

use crate::audit;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::Actor;
use crate::params;
use crate::sealed::{self, Keyring};

/// Key material of a stored channel by key name (`app_private_key` → its PEM text). `Debug`
/// shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelSecrets(BTreeMap<String, String>);

impl ChannelSecrets {
    pub fn new(map: BTreeMap<String, String>) -> ChannelSecrets {
        ChannelSecrets(map)
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    pub fn insert(&mut self, name: String, text: String) {
        self.0.insert(name, text);
    }
    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }
}

impl fmt::Debug for ChannelSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What the seller sets for a stored channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub id: ChannelId,
    /// `alipay`, `wechatpay`, `epay`, `sandbox` (checked by the server).
    pub kind: String,
    /// Never empty.
    pub methods: Vec<Method>,
    pub priority: i32,
    /// Share within one priority; at least 1.
    pub weight: u32,
    pub enabled: bool,
    /// `min_amount`, `max_amount`, `daily_limit` (minor units).
    pub limits: ChannelLimits,
    /// The kind's keys that are not key material, as given (a JSON object).
    pub settings: Map<String, Value>,
    pub secrets: ChannelSecrets,
}

/// A stored channel as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChannel {
    pub spec: ChannelSpec,
    /// Deleted while payments point at it (see the module documentation).
    pub archived: bool,
    /// Grows with every change; an edit names the revision it started from.
    pub revision: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What deleting a stored channel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRemoval {
    Deleted,
    /// Payments point at it: archived instead.
    Archived,
}

/// Changes whenever a stored channel is added, changed or removed (other processes on the
/// database compare it to know when to reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelsFingerprint {
    pub count: i64,
    pub revisions: i64,
    pub last_change: Millis,
}

/// The place a channel's key material is bound to: its id.
fn place(id: &ChannelId) -> Vec<u8> {
    sealed::channel_secrets_place(id.as_str())
}

/// The per-channel key lock that orders take shared and deletes exclusive.
fn lock_name(id: &ChannelId) -> String {
    format!("kami:channel:{id}")
}

/// The columns every read selects (`from_row` reads them by name).
macro_rules! channel_columns {
    () => {
        "SELECT id, kind, methods, priority, weight, enabled, archived, settings, secrets, \
           revision, created_at, updated_at, min_amount, max_amount, daily_limit FROM channels "
    };
}

fn corrupt(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored channel {what}: {e}"))
}

fn from_row(ring: &Keyring, r: &Row) -> Result<StoredChannel> {
    let id: ChannelId = r.get("id")?;
    let methods: Vec<String> =
        serde_json::from_str(&r.get::<String>("methods")?).map_err(|e| corrupt("methods", e))?;
    let methods = methods
        .iter()
        .map(|m| Method::parse(m).map_err(|e| corrupt("methods", e)))
        .collect::<Result<Vec<_>>>()?;
    let settings: Map<String, Value> =
        serde_json::from_str(&r.get::<String>("settings")?).map_err(|e| corrupt("settings", e))?;
    let sealed_secrets: Vec<u8> = r.get("secrets")?;
    let secrets: BTreeMap<String, String> =
        serde_json::from_slice(&ring.open(&place(&id), &sealed_secrets)?)
            .map_err(|e| corrupt("key material", e))?;
    Ok(StoredChannel {
        spec: ChannelSpec {
            id,
            kind: r.get("kind")?,
            methods,
            priority: i32::try_from(r.get::<i64>("priority")?)
                .map_err(|e| corrupt("priority", e))?,
            weight: u32::try_from(r.get::<i64>("weight")?).map_err(|e| corrupt("weight", e))?,
            enabled: r.get("enabled")?,
            limits: ChannelLimits::new(
                r.get("min_amount")?,
                r.get("max_amount")?,
                r.get("daily_limit")?,
            )
            .map_err(|e| corrupt("limits", e))?,
            settings,
            secrets: ChannelSecrets(secrets),
        },
        archived: r.get("archived")?,
        revision: r.get("revision")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

fn methods_json(s: &ChannelSpec) -> String {
    json!(s.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>()).to_string()
}

fn sealed_secrets(ring: &Keyring, s: &ChannelSpec) -> Result<Vec<u8>> {
    let text = serde_json::to_vec(&s.secrets.0).map_err(|e| corrupt("key material", e))?;
    ring.seal(&place(&s.id), &text)
}

/// Each field as the audit log shows it: key material only as `"stored"`.
fn audit_fields(s: &ChannelSpec) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert("kind".to_owned(), json!(s.kind));
    out.insert(
        "methods".to_owned(),
        json!(s.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
    );
    out.insert("priority".to_owned(), json!(s.priority));
    out.insert("weight".to_owned(), json!(s.weight));
    out.insert("enabled".to_owned(), json!(s.enabled));
    for (k, v) in [
        ("min_amount", s.limits.min_amount()),
        ("max_amount", s.limits.max_amount()),
        ("daily_limit", s.limits.daily_limit()),
    ] {
        if let Some(v) = v {
            out.insert(k.to_owned(), json!(v));
        }
    }
    for (k, v) in &s.settings {
        out.insert(k.clone(), v.clone());
    }
    for k in s.secrets.names() {
        out.insert(k.to_owned(), json!("stored"));
    }
    out
}

/// The fields that differ, as (before, after); key material as `"stored"` → `"replaced"`,
/// `null` → `"set"`, `"stored"` → `"removed"`.
fn audit_diff(old: &ChannelSpec, new: &ChannelSpec) -> (Map<String, Value>, Map<String, Value>) {
    let (a, b) = (audit_fields(old), audit_fields(new));
    let (mut before, mut after) = (Map::new(), Map::new());
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let secret = (
            old.secrets.get(name.as_str()),
            new.secrets.get(name.as_str()),
        );
        let (was, is) = match secret {
            (Some(x), Some(y)) if x != y => (json!("stored"), json!("replaced")),
            (Some(_), Some(_)) => continue,
            (None, Some(_)) => (a.get(name).cloned().unwrap_or(Value::Null), json!("set")),
            (Some(_), None) => (json!("stored"), json!("removed")),
            (None, None) => {
                let (x, y) = (
                    a.get(name).cloned().unwrap_or(Value::Null),
                    b.get(name).cloned().unwrap_or(Value::Null),
                );
                if x == y {
                    continue;
                }
                (x, y)
            }
        };
        before.insert(name.clone(), was);
        after.insert(name.clone(), is);
    }
    (before, after)
}

fn target(id: &ChannelId) -> String {
    format!("channel:{id}")
}

pub(crate) fn list(tx: &mut dyn Tx, ring: &Keyring) -> Result<Vec<StoredChannel>> {
    const SQL: &str = concat!(channel_columns!(), "ORDER BY created_at, id");
    tx.query(SQL, params![])?
        .iter()
        .map(|r| from_row(ring, r))
        .collect()
}

pub(crate) fn get(tx: &mut dyn Tx, ring: &Keyring, id: &ChannelId) -> Result<StoredChannel> {
    const SQL: &str = concat!(channel_columns!(), "WHERE id = $1");
    let r = tx
        .query_opt(SQL, params![id.as_str()])?
        .ok_or(StoreError::ChannelNotFound)?;
    from_row(ring, &r)
}

fn locked(tx: &mut dyn Tx, ring: &Keyring, id: &ChannelId) -> Result<StoredChannel> {
    const SQL: &str = concat!(channel_columns!(), "WHERE id = $1 FOR UPDATE");
    let r = tx
        .query_opt(SQL, params![id.as_str()])?
        .ok_or(StoreError::ChannelNotFound)?;
    from_row(ring, &r)
}

fn check(s: &ChannelSpec) -> Result<()> {
    if s.methods.is_empty() {
        return Err(StoreError::InvalidInput(
            "a channel serves at least one method".into(),
        ));
    }
    if s.weight == 0 {
        return Err(StoreError::InvalidInput("weight must be at least 1".into()));
    }
    Ok(())
}

pub(crate) fn create(
    tx: &mut dyn Tx,
    ring: &Keyring,
    s: &ChannelSpec,
    actor: &Actor,
    now: Millis,
) -> Result<StoredChannel> {
    check(s)?;
    if tx
        .query_opt(
            "SELECT 1 AS one FROM channels WHERE id = $1",
            params![s.id.as_str()],
        )?
        .is_some()
    {
        return Err(StoreError::ChannelExists);
    }
    tx.exec(
        "INSERT INTO channels (id, kind, methods, priority, weight, enabled, archived, settings, \
           secrets, revision, created_at, updated_at, min_amount, max_amount, daily_limit) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, 1, $9, $9, $10, $11, $12)",
        params![
            s.id.as_str(),
            s.kind.as_str(),
            methods_json(s),
            i64::from(s.priority),
            s.weight,
            s.enabled,
            Value::Object(s.settings.clone()).to_string(),
            sealed_secrets(ring, s)?,
            now,
            s.limits.min_amount(),
            s.limits.max_amount(),
            s.limits.daily_limit()
        ],
    )?;
    let after: Map<String, Value> = audit_fields(s).into_iter().collect();
    let entry = actor.entry(
        "channel.create",
        target(&s.id),
        None,
        Some(Value::Object(after)),
    );
    audit::record(tx, &entry, now)?;
    get(tx, ring, &s.id)
}

/// Replace a stored channel's spec (its id stays), if it is still at `revision`; no audit
/// row when nothing changes. An archived channel is not edited.
pub(crate) fn update(
    tx: &mut dyn Tx,
    ring: &Keyring,
    revision: i64,
    s: &ChannelSpec,
    actor: &Actor,
    now: Millis,
) -> Result<StoredChannel> {
    check(s)?;
    let cur = locked(tx, ring, &s.id)?;
    if cur.archived {
        return Err(StoreError::ChannelArchived);
    }
    if cur.revision != revision {
        return Err(StoreError::ChannelChanged);
    }
    if cur.spec.kind != s.kind {
        return Err(StoreError::InvalidInput(
            "a channel's kind cannot change".into(),
        ));
    }
    if cur.spec == *s {
        return Ok(cur);
    }
    tx.exec(
        "UPDATE channels SET methods = $2, priority = $3, weight = $4, enabled = $5, \
           settings = $6, secrets = $7, revision = revision + 1, \
           updated_at = CASE WHEN updated_at >= $8 THEN updated_at + 1 ELSE $8 END, \
           min_amount = $10, max_amount = $11, daily_limit = $12 \
         WHERE id = $1 AND revision = $9",
        params![
            s.id.as_str(),
            methods_json(s),
            i64::from(s.priority),
            s.weight,
            s.enabled,
            Value::Object(s.settings.clone()).to_string(),
            sealed_secrets(ring, s)?,
            now,
            revision,
            s.limits.min_amount(),
            s.limits.max_amount(),
            s.limits.daily_limit()
        ],
    )?;
    let (before, after) = audit_diff(&cur.spec, s);
    let entry = actor.entry(
        "channel.update",
        target(&s.id),
        Some(Value::Object(before)),
        Some(Value::Object(after)),
    );
    audit::record(tx, &entry, now)?;
    get(tx, ring, &s.id)
}

/// Delete a stored channel no payment points at; archive one that payments point at (see the
/// module documentation). An archived channel is archived already: nothing changes.
pub(crate) fn remove(
    tx: &mut dyn Tx,
    ring: &Keyring,
    id: &ChannelId,
    actor: &Actor,
    now: Millis,
) -> Result<ChannelRemoval> {
    // Orders in flight on this channel hold the lock shared: wait for them, then count.
    tx.lock_key(&lock_name(id))?;
    let cur = locked(tx, ring, id)?;
    let used = tx
        .query_opt(
            "SELECT 1 AS one FROM payments WHERE channel_id = $1 LIMIT 1",
            params![id.as_str()],
        )?
        .is_some();
    if used {
        if cur.archived {
            return Ok(ChannelRemoval::Archived);
        }
        tx.exec(
            "UPDATE channels SET archived = 1, enabled = 0, revision = revision + 1, \
               updated_at = CASE WHEN updated_at >= $2 THEN updated_at + 1 ELSE $2 END \
             WHERE id = $1",
            params![id.as_str(), now],
        )?;
        let entry = actor.entry(
            "channel.archive",
            target(id),
            Some(json!({"enabled": cur.spec.enabled, "archived": false})),
            Some(json!({"enabled": false, "archived": true})),
        );
        audit::record(tx, &entry, now)?;
        return Ok(ChannelRemoval::Archived);
    }
    tx.exec("DELETE FROM channels WHERE id = $1", params![id.as_str()])?;
    let before: Map<String, Value> = audit_fields(&cur.spec).into_iter().collect();
    let entry = actor.entry(
        "channel.delete",
        target(id),
        Some(Value::Object(before)),
        None,
    );
    audit::record(tx, &entry, now)?;
    Ok(ChannelRemoval::Deleted)
}

pub(crate) fn fingerprint(tx: &mut dyn Tx) -> Result<ChannelsFingerprint> {
    let r = tx.query_one(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(revision), 0) AS BIGINT) AS revisions, \
           COALESCE(MAX(updated_at), 0) AS last FROM channels",
        params![],
    )?;
    Ok(ChannelsFingerprint {
        count: r.get("n")?,
        revisions: r.get("revisions")?,
        last_change: r.get("last")?,
    })
}

/// In an order's transaction, for an order on the stored channel `id`: hold the channel's key
/// lock shared until commit and require its row ([`StoreError::ChannelGone`] once deleted).
pub(crate) fn hold_for_order(tx: &mut dyn Tx, id: &ChannelId) -> Result<()> {
    tx.lock_key_shared(&lock_name(id))?;
    tx.query_opt(
        "SELECT 1 AS one FROM channels WHERE id = $1",
        params![id.as_str()],
    )?
    .map(|_| ())
    .ok_or(StoreError::ChannelGone)
}

/// Re-seal every stored channel's key material not under the primary key (few rows, one
/// transaction); how many changed.
pub(crate) fn reseal(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let rows = tx.query("SELECT id, secrets FROM channels ORDER BY id", params![])?;
    let mut changed = 0;
    for r in &rows {
        let id: ChannelId = r.get("id")?;
        let stored: Vec<u8> = r.get("secrets")?;
        if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
            continue;
        }
        let fresh = ring.seal(&place(&id), &ring.open(&place(&id), &stored)?)?;
        changed += tx.exec(
            "UPDATE channels SET secrets = $2 WHERE id = $1 AND secrets = $3",
            params![id.as_str(), fresh, stored],
        )?;
    }
    Ok(changed)
}

/// Open every stored channel's key material; how many there are.
pub(crate) fn verify(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let mut n = 0;
    for r in tx.query("SELECT id, secrets FROM channels", params![])? {
        let id: ChannelId = r.get("id")?;
        let stored: Vec<u8> = r.get("secrets")?;
        ring.open(&place(&id), &stored)?;
        n += 1;
    }
    Ok(n)
}

impl crate::Store {
    /// Every stored channel, archived ones too, oldest first, key material opened.
    pub async fn stored_channels(&self) -> Result<Vec<StoredChannel>> {
        let ring = self.ring()?;
        self.read(move |tx| list(tx, &ring)).await
    }

    /// One stored channel (`ChannelNotFound`).
    pub async fn stored_channel(&self, id: &ChannelId) -> Result<StoredChannel> {
        let (ring, id) = (self.ring()?, id.clone());
        self.read(move |tx| get(tx, &ring, &id)).await
    }

    /// A new stored channel (`ChannelExists` if the id is taken), audited.
    pub async fn create_stored_channel(
        &self,
        spec: ChannelSpec,
        actor: &Actor,
        now: Millis,
    ) -> Result<StoredChannel> {
        let (ring, actor) = (self.ring()?, actor.clone());
        self.write(move |tx| create(tx, &ring, &spec, &actor, now))
            .await
    }

    /// Replace a stored channel's spec if it is still at `revision` (`ChannelChanged`
    /// otherwise; `ChannelArchived` for an archived one), audited when anything changed.
    pub async fn update_stored_channel(
        &self,
        revision: i64,
        spec: ChannelSpec,
        actor: &Actor,
        now: Millis,
    ) -> Result<StoredChannel> {
        let (ring, actor) = (self.ring()?, actor.clone());
        self.write(move |tx| update(tx, &ring, revision, &spec, &actor, now))
            .await
    }

    /// Delete a stored channel, or archive it when payments point at it; audited.
    pub async fn remove_stored_channel(
        &self,
        id: &ChannelId,
        actor: &Actor,
        now: Millis,
    ) -> Result<ChannelRemoval> {
        let (ring, id, actor) = (self.ring()?, id.clone(), actor.clone());
        self.write(move |tx| remove(tx, &ring, &id, &actor, now))
            .await
    }

    /// Changes whenever a stored channel does (cheap: one aggregate over a small table).
    pub async fn stored_channels_fingerprint(&self) -> Result<ChannelsFingerprint> {
        self.read(fingerprint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ChannelSpec {
        let mut secrets = ChannelSecrets::default();
        secrets.insert("key".into(), "hunter2".into());
        let mut settings = Map::new();
        settings.insert("pid".into(), json!("1001"));
        ChannelSpec {
            id: ChannelId::parse("ep").unwrap_or_else(|e| panic!("{e}")),
            kind: "epay".into(),
            methods: vec![Method::Qqpay],
            priority: 10,
            weight: 1,
            enabled: true,
            limits: Default::default(),
            settings,
            secrets,
        }
    }

    #[test]
    fn audit_rows_never_hold_key_material() {
        let old = spec();
        assert!(!format!("{old:?}").contains("hunter2"));
        let fields = json!(audit_fields(&old)).to_string();
        assert!(!fields.contains("hunter2"), "{fields}");
        assert!(fields.contains("\"key\":\"stored\""), "{fields}");

        let mut new = old.clone();
        new.secrets.insert("key".into(), "swordfish".into());
        new.priority = 5;
        let (before, after) = audit_diff(&old, &new);
        let text = format!("{before:?} {after:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
        assert_eq!(after.get("key"), Some(&json!("replaced")));
        assert_eq!(
            (before.get("priority"), after.get("priority")),
            (Some(&json!(10)), Some(&json!(5)))
        );
        assert_eq!(after.len(), 2, "only what changed: {after:?}");

        let mut gone = old.clone();
        gone.secrets.remove("key");
        gone.secrets
            .insert("merchant_private_key".into(), "pem".into());
        let (before, after) = audit_diff(&old, &gone);
        assert_eq!(
            (before.get("key"), after.get("key")),
            (Some(&json!("stored")), Some(&json!("removed")))
        );
        assert_eq!(after.get("merchant_private_key"), Some(&json!("set")));
        assert!(!format!("{before:?} {after:?}").contains("pem\""));
    }
}
