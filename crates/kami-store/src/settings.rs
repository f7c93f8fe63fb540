//! Settings saved in the console (`settings`): one row per key, JSON values, secrets sealed
//! (`kami/settings.secret/<key>`), and a version number every saved change increments in its
//! transaction. Which keys exist and what their values may be is the server's business: the
//! store keeps rows, seals secrets, writes the audit row with before/after (secrets only as
//! "(set)") and runs the caller's check of the resulting rows inside the transaction, so two
//! saves racing from two processes cannot together store what neither would have been
//! allowed to.

use std::collections::BTreeMap;
use std::sync::Arc;

use kami_core::Millis;
use serde_json::{json, Map, Value as Json};

use crate::audit;
use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::model::Actor;
use crate::params;
use crate::sealed::{self, Keyring};

/// What an audit row shows for a saved secret (never its value).
pub const SECRET_MARK: &str = "(set)";

/// A saved value: JSON, or a secret kept sealed at rest (plain text here).
#[derive(Clone, PartialEq, Eq)]
pub enum SettingValue {
    Json(Json),
    Secret(String),
}

impl std::fmt::Debug for SettingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingValue::Json(v) => write!(f, "Json({v})"),
            SettingValue::Secret(_) => f.write_str("Secret(..)"),
        }
    }
}

impl SettingValue {
    /// As the audit log shows it: JSON, or [`SECRET_MARK`].
    fn audited(&self) -> Json {
        match self {
            SettingValue::Json(v) => v.clone(),
            SettingValue::Secret(_) => Json::String(SECRET_MARK.into()),
        }
    }
}

/// One saved setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSetting {
    pub value: SettingValue,
    pub updated_at: Millis,
    /// The actor who saved it (`user:NAME`, `token:NAME`).
    pub updated_by: String,
}

/// Every saved setting by key, and the version they are at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedSettings {
    pub version: i64,
    pub rows: BTreeMap<String, SavedSetting>,
}

impl SavedSettings {
    /// The saved values only, by key.
    pub fn values(&self) -> BTreeMap<String, SettingValue> {
        self.rows
            .iter()
            .map(|(k, r)| (k.clone(), r.value.clone()))
            .collect()
    }
}

/// Changes to save: a value per key, or `None` to delete the key's row (back to the
/// configuration's value).
pub type SettingsChanges = Vec<(String, Option<SettingValue>)>;

/// The caller's check of the values as they would be after the change (an error says what
/// does not fit; nothing is written then).
pub type SettingsCheck =
    Arc<dyn Fn(&BTreeMap<String, SettingValue>) -> std::result::Result<(), String> + Send + Sync>;

/// Where a setting's secret is sealed: its key.
pub(crate) fn secret_place(key: &str) -> Vec<u8> {
    let mut v = b"kami/settings.secret/".to_vec();
    v.extend_from_slice(key.as_bytes());
    v
}

pub(crate) fn version(tx: &mut dyn Tx) -> Result<i64> {
    let r = tx.query_one("SELECT version FROM settings_version WHERE id = 1", &[])?;
    r.get("version")
}

pub(crate) fn load(tx: &mut dyn Tx, ring: &Keyring) -> Result<SavedSettings> {
    let version = version(tx)?;
    let mut rows = BTreeMap::new();
    for r in tx.query(
        "SELECT key, value, secret, updated_at, updated_by FROM settings ORDER BY key",
        &[],
    )? {
        let key: String = r.get("key")?;
        let value = match (
            r.get::<Option<String>>("value")?,
            r.get::<Option<Vec<u8>>>("secret")?,
        ) {
            (Some(text), None) => {
                SettingValue::Json(serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!("setting `{key}` is not JSON: {e}"))
                })?)
            }
            (None, Some(sealed)) => {
                SettingValue::Secret(ring.open_string(&secret_place(&key), &sealed)?)
            }
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "setting `{key}` has neither or both of a value and a secret"
                )))
            }
        };
        rows.insert(
            key,
            SavedSetting {
                value,
                updated_at: r.get("updated_at")?,
                updated_by: r.get("updated_by")?,
            },
        );
    }
    Ok(SavedSettings { version, rows })
}

/// Apply `changes` under the version row's lock, after `check` accepted the result; the keys
/// whose saved value really changes get the audit row (`settings.update`, target `settings`,
/// before/after by key, `null` for "not saved"). Nothing changes → nothing written.
pub(crate) fn save(
    tx: &mut dyn Tx,
    ring: &Keyring,
    changes: &SettingsChanges,
    check: &SettingsCheck,
    actor: &Actor,
    now: Millis,
) -> Result<SavedSettings> {
    // The lock first: concurrent saves (other processes too) run one after the other, each
    // seeing what the previous one committed.
    tx.query_one(
        "SELECT version FROM settings_version WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let current = load(tx, ring)?;
    let mut after_values = current.values();
    let (mut before, mut after) = (Map::new(), Map::new());
    for (key, value) in changes {
        let old = after_values.get(key).cloned();
        if old.as_ref() == value.as_ref() {
            continue;
        }
        before.insert(
            key.clone(),
            old.as_ref().map_or(Json::Null, SettingValue::audited),
        );
        after.insert(
            key.clone(),
            value.as_ref().map_or(Json::Null, SettingValue::audited),
        );
        match value {
            Some(v) => after_values.insert(key.clone(), v.clone()),
            None => after_values.remove(key),
        };
    }
    if after.is_empty() {
        return Ok(current);
    }
    check(&after_values).map_err(StoreError::InvalidInput)?;
    for key in after.keys() {
        match after_values.get(key) {
            None => {
                tx.exec("DELETE FROM settings WHERE key = $1", params![key.as_str()])?;
            }
            Some(v) => {
                let (json, secret) = match v {
                    SettingValue::Json(j) => (Some(j.to_string()), None),
                    SettingValue::Secret(s) => {
                        (None, Some(ring.seal(&secret_place(key), s.as_bytes())?))
                    }
                };
                tx.exec(
                    "INSERT INTO settings (key, value, secret, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                     secret = excluded.secret, updated_at = excluded.updated_at, \
                     updated_by = excluded.updated_by",
                    params![key.as_str(), json, secret, now, actor.actor.as_str()],
                )?;
            }
        }
    }
    tx.exec(
        "UPDATE settings_version SET version = version + 1 WHERE id = 1",
        &[],
    )?;
    audit::record(
        tx,
        &actor.entry(
            "settings.update",
            "settings".into(),
            Some(json!(before)),
            Some(json!(after)),
        ),
        now,
    )?;
    load(tx, ring)
}

/// Re-seal the settings' secrets not under the primary key (few rows, one transaction); how
/// many changed.
pub(crate) fn reseal(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let mut changed = 0;
    for r in tx.query(
        "SELECT key, secret FROM settings WHERE secret IS NOT NULL ORDER BY key",
        &[],
    )? {
        let key: String = r.get("key")?;
        let stored: Vec<u8> = r.get("secret")?;
        if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
            continue;
        }
        let place = secret_place(&key);
        let fresh = ring.seal(&place, &ring.open(&place, &stored)?)?;
        changed += tx.exec(
            "UPDATE settings SET secret = $2 WHERE key = $1 AND secret = $3",
            params![key.as_str(), fresh, stored],
        )?;
    }
    Ok(changed)
}

/// Open every sealed setting; how many there are.
pub(crate) fn verify(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let mut n = 0;
    for r in tx.query(
        "SELECT key, secret FROM settings WHERE secret IS NOT NULL",
        &[],
    )? {
        let key: String = r.get("key")?;
        let stored: Vec<u8> = r.get("secret")?;
        ring.open(&secret_place(&key), &stored)?;
        n += 1;
    }
    Ok(n)
}
