//! Alert targets the seller adds in the console or the API (`alert_targets`), beside the
//! configuration's `[[alerts]]`. The webhook secret or Telegram bot token is sealed under the
//! master key, bound to the target's name, and re-sealed by `kami keys rotate`; callers see
//! plain text. Whether a target's settings make sense is the server's to check before it
//! calls here. Each change writes its audit row in its transaction, the secret only as
//! `"stored"` / `"replaced"`.

use std::fmt;

use kami_core::Millis;
use serde_json::{json, Map, Value};

use crate::alert_signal::AlertEvent;
use crate::audit;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::Actor;
use crate::params;
use crate::sealed::{self, Keyring};

/// A webhook secret or bot token: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetSecret(String);

impl TargetSecret {
    pub fn new(text: String) -> TargetSecret {
        TargetSecret(text)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TargetSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TargetSecret(***)")
    }
}

/// What the seller sets for a stored target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTargetSpec {
    /// Checked by the server (a short identifier).
    pub name: String,
    /// `webhook`, `telegram` or `email` (checked by the server).
    pub kind: String,
    /// Never empty.
    pub events: Vec<AlertEvent>,
    /// `url`, `chat_id`, `api_base`, `to`: the kind's keys that are not secret.
    pub settings: Map<String, Value>,
    pub secret: Option<TargetSecret>,
    pub enabled: bool,
}

/// A stored target as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlertTarget {
    pub spec: AlertTargetSpec,
    pub created_at: Millis,
    pub updated_at: Millis,
}

fn place(name: &str) -> Vec<u8> {
    let mut v = b"kami/alert_targets.secret/".to_vec();
    v.extend_from_slice(name.as_bytes());
    v
}

fn corrupt(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("alert target {what}: {e}"))
}

fn events_json(events: &[AlertEvent]) -> String {
    json!(events.iter().map(|e| e.as_str()).collect::<Vec<_>>()).to_string()
}

fn parse_events(text: &str) -> Result<Vec<AlertEvent>> {
    let names: Vec<String> = serde_json::from_str(text).map_err(|e| corrupt("events", e))?;
    names
        .iter()
        .map(|n| AlertEvent::parse(n).ok_or_else(|| corrupt("events", n)))
        .collect()
}

fn from_row(ring: &Keyring, r: &Row) -> Result<StoredAlertTarget> {
    let name: String = r.get("name")?;
    let settings: Map<String, Value> =
        serde_json::from_str(&r.get::<String>("settings")?).map_err(|e| corrupt("settings", e))?;
    let secret = match r.get::<Option<Vec<u8>>>("secret")? {
        Some(stored) => Some(TargetSecret(ring.open_string(&place(&name), &stored)?)),
        None => None,
    };
    Ok(StoredAlertTarget {
        spec: AlertTargetSpec {
            kind: r.get("kind")?,
            events: parse_events(&r.get::<String>("events")?)?,
            settings,
            secret,
            enabled: r.get("enabled")?,
            name,
        },
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

fn sealed_secret(ring: &Keyring, s: &AlertTargetSpec) -> Result<Option<Vec<u8>>> {
    s.secret
        .as_ref()
        .map(|x| ring.seal(&place(&s.name), x.0.as_bytes()))
        .transpose()
}

/// The fields as the audit log shows them: the secret only as `"stored"`.
fn audit_fields(s: &AlertTargetSpec) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("kind".into(), json!(s.kind));
    out.insert(
        "events".into(),
        json!(s.events.iter().map(|e| e.as_str()).collect::<Vec<_>>()),
    );
    out.insert("enabled".into(), json!(s.enabled));
    for (k, v) in &s.settings {
        out.insert(k.clone(), v.clone());
    }
    if s.secret.is_some() {
        out.insert("secret".into(), json!("stored"));
    }
    out
}

fn audit_target(name: &str) -> String {
    format!("alert_target:{name}")
}

fn check(s: &AlertTargetSpec) -> Result<()> {
    if s.name.is_empty() {
        return Err(StoreError::InvalidInput("a target needs a name".into()));
    }
    if s.events.is_empty() {
        return Err(StoreError::InvalidInput(
            "a target takes at least one event".into(),
        ));
    }
    Ok(())
}

/// The columns every read selects (`from_row` reads them by name).
macro_rules! target_columns {
    () => {
        "SELECT name, kind, events, settings, secret, enabled, created_at, updated_at \
         FROM alert_targets "
    };
}

pub(crate) fn list(tx: &mut dyn Tx, ring: &Keyring) -> Result<Vec<StoredAlertTarget>> {
    const SQL: &str = concat!(target_columns!(), "ORDER BY created_at, name");
    tx.query(SQL, params![])?
        .iter()
        .map(|r| from_row(ring, r))
        .collect()
}

pub(crate) fn get(tx: &mut dyn Tx, ring: &Keyring, name: &str) -> Result<StoredAlertTarget> {
    const SQL: &str = concat!(target_columns!(), "WHERE name = $1");
    let r = tx
        .query_opt(SQL, params![name])?
        .ok_or(StoreError::AlertTargetNotFound)?;
    from_row(ring, &r)
}

fn locked(tx: &mut dyn Tx, ring: &Keyring, name: &str) -> Result<StoredAlertTarget> {
    const SQL: &str = concat!(target_columns!(), "WHERE name = $1 FOR UPDATE");
    let r = tx
        .query_opt(SQL, params![name])?
        .ok_or(StoreError::AlertTargetNotFound)?;
    from_row(ring, &r)
}

/// The names of the enabled stored targets that want `event` (their delivery target ids).
pub(crate) fn wanting(tx: &mut dyn Tx, event: AlertEvent) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for r in tx.query(
        "SELECT name, events FROM alert_targets WHERE enabled = 1 ORDER BY name",
        params![],
    )? {
        if parse_events(&r.get::<String>("events")?)?.contains(&event) {
            out.push(r.get::<String>("name")?);
        }
    }
    Ok(out)
}

pub(crate) fn create(
    tx: &mut dyn Tx,
    ring: &Keyring,
    s: &AlertTargetSpec,
    actor: &Actor,
    now: Millis,
) -> Result<StoredAlertTarget> {
    check(s)?;
    let inserted = tx.exec(
        "INSERT INTO alert_targets (name, kind, events, settings, secret, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) DO NOTHING",
        params![
            s.name.as_str(),
            s.kind.as_str(),
            events_json(&s.events),
            Value::Object(s.settings.clone()).to_string(),
            sealed_secret(ring, s)?,
            s.enabled,
            now
        ],
    )?;
    if inserted != 1 {
        return Err(StoreError::AlertTargetExists);
    }
    let entry = actor.entry(
        "alert_target.create",
        audit_target(&s.name),
        None,
        Some(Value::Object(audit_fields(s))),
    );
    audit::record(tx, &entry, now)?;
    get(tx, ring, &s.name)
}

/// Replace a stored target's spec (its name and kind stay); no audit row when nothing changes.
pub(crate) fn update(
    tx: &mut dyn Tx,
    ring: &Keyring,
    s: &AlertTargetSpec,
    actor: &Actor,
    now: Millis,
) -> Result<StoredAlertTarget> {
    check(s)?;
    let cur = locked(tx, ring, &s.name)?;
    if cur.spec.kind != s.kind {
        return Err(StoreError::InvalidInput(
            "a target's kind cannot change".into(),
        ));
    }
    if cur.spec == *s {
        return Ok(cur);
    }
    tx.exec(
        "UPDATE alert_targets SET events = $2, settings = $3, secret = $4, enabled = $5, \
           updated_at = CASE WHEN updated_at >= $6 THEN updated_at + 1 ELSE $6 END \
         WHERE name = $1",
        params![
            s.name.as_str(),
            events_json(&s.events),
            Value::Object(s.settings.clone()).to_string(),
            sealed_secret(ring, s)?,
            s.enabled,
            now
        ],
    )?;
    let (mut before, mut after) = (audit_fields(&cur.spec), audit_fields(s));
    if cur.spec.secret.is_some() && s.secret.is_some() && cur.spec.secret != s.secret {
        after.insert("secret".into(), json!("replaced"));
    }
    let same: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) == Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    for k in same {
        before.remove(&k);
        after.remove(&k);
    }
    let entry = actor.entry(
        "alert_target.update",
        audit_target(&s.name),
        Some(Value::Object(before)),
        Some(Value::Object(after)),
    );
    audit::record(tx, &entry, now)?;
    get(tx, ring, &s.name)
}

pub(crate) fn remove(
    tx: &mut dyn Tx,
    ring: &Keyring,
    name: &str,
    actor: &Actor,
    now: Millis,
) -> Result<()> {
    let cur = locked(tx, ring, name)?;
    tx.exec("DELETE FROM alert_targets WHERE name = $1", params![name])?;
    let entry = actor.entry(
        "alert_target.delete",
        audit_target(name),
        Some(Value::Object(audit_fields(&cur.spec))),
        None,
    );
    audit::record(tx, &entry, now)
}

/// Re-seal every target secret not under the primary key (few rows, one transaction).
pub(crate) fn reseal(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let rows = tx.query(
        "SELECT name, secret FROM alert_targets WHERE secret IS NOT NULL ORDER BY name",
        params![],
    )?;
    let mut changed = 0;
    for r in &rows {
        let name: String = r.get("name")?;
        let stored: Vec<u8> = r.get("secret")?;
        if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
            continue;
        }
        let fresh = ring.seal(&place(&name), &ring.open(&place(&name), &stored)?)?;
        changed += tx.exec(
            "UPDATE alert_targets SET secret = $2 WHERE name = $1 AND secret = $3",
            params![name.as_str(), fresh, stored],
        )?;
    }
    Ok(changed)
}

/// Open every target secret; how many there are.
pub(crate) fn verify(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let mut n = 0;
    for r in tx.query(
        "SELECT name, secret FROM alert_targets WHERE secret IS NOT NULL",
        params![],
    )? {
        let name: String = r.get("name")?;
        ring.open(&place(&name), &r.get::<Vec<u8>>("secret")?)?;
        n += 1;
    }
    Ok(n)
}

impl crate::Store {
    /// Every stored alert target, oldest first, secrets opened.
    pub async fn alert_targets(&self) -> Result<Vec<StoredAlertTarget>> {
        let ring = self.ring()?;
        self.read(move |tx| list(tx, &ring)).await
    }

    /// One stored target (`AlertTargetNotFound`).
    pub async fn alert_target(&self, name: &str) -> Result<StoredAlertTarget> {
        let (ring, name) = (self.ring()?, name.to_owned());
        self.read(move |tx| get(tx, &ring, &name)).await
    }

    /// A new stored target (`AlertTargetExists` if the name is taken), audited.
    pub async fn create_alert_target(
        &self,
        spec: AlertTargetSpec,
        actor: &Actor,
        now: Millis,
    ) -> Result<StoredAlertTarget> {
        let (ring, actor) = (self.ring()?, actor.clone());
        self.write(move |tx| create(tx, &ring, &spec, &actor, now))
            .await
    }

    /// Replace a stored target's spec, audited when anything changed.
    pub async fn update_alert_target(
        &self,
        spec: AlertTargetSpec,
        actor: &Actor,
        now: Millis,
    ) -> Result<StoredAlertTarget> {
        let (ring, actor) = (self.ring()?, actor.clone());
        self.write(move |tx| update(tx, &ring, &spec, &actor, now))
            .await
    }

    /// Delete a stored target, audited (`AlertTargetNotFound`).
    pub async fn remove_alert_target(&self, name: &str, actor: &Actor, now: Millis) -> Result<()> {
        let (ring, name, actor) = (self.ring()?, name.to_owned(), actor.clone());
        self.write(move |tx| remove(tx, &ring, &name, &actor, now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_audit() {
        let spec = AlertTargetSpec {
            name: "ops".into(),
            kind: "webhook".into(),
            events: vec![AlertEvent::ChannelDown],
            settings: Map::new(),
            secret: Some(TargetSecret::new("hunter2".into())),
            enabled: true,
        };
        assert!(!format!("{spec:?}").contains("hunter2"));
        let audit = Value::Object(audit_fields(&spec)).to_string();
        assert!(!audit.contains("hunter2"), "{audit}");
        assert!(audit.contains("\"secret\":\"stored\""), "{audit}");
    }
}
