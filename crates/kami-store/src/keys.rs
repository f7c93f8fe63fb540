//! The store's side of secrets at rest: which master keys a database knows (`kami_keys`),
//! unlocking it at start (a wrong or missing key refuses, never opens nothing), sealing the
//! plain-text rows an older kami left, `kami keys rotate`, and `kami backup`.
//!
//! Rotation runs under the exclusive [`KeyLock`] (no other kami process uses the database
//! meanwhile) and is interruptible at any point: the next key's file is written and fsynced,
//! then registered, before anything is sealed under it; each batch re-seals its rows (value
//! and keyed hash together) in one transaction; a census then confirms every value is under
//! the next key before the files are switched (the current key kept as `master.key.old.<id>`,
//! never overwriting a key file); the old keys' registrations go last, in one transaction with
//! a census that finds nothing under them. Every secret is always under a key that
//! `master.key`, `master.key.next` or a `master.key.old*` file holds.

use std::path::Path;
use std::sync::{Arc, RwLock};

use kami_core::Millis;

use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::keyfiles::KeyFiles;
use crate::keylock::KeyLock;
use crate::params;
use crate::sealed::{self, card_place, fields_place, fulfilment_place, KeyId, Keyring, MasterKey};
use crate::{Backend, Store};

/// Rows re-sealed per transaction.
const BATCH: i64 = 200;

/// The keys of a store; set once unlocked.
#[derive(Default)]
pub(crate) struct KeyState {
    ring: RwLock<Option<Arc<Keyring>>>,
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ids(list: &[KeyId]) -> String {
    list.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Registered keys with their check values.
fn registered(tx: &mut dyn Tx) -> Result<Vec<(KeyId, Vec<u8>)>> {
    tx.query(
        "SELECT key_id, check_value FROM kami_keys ORDER BY created_at, key_id",
        &[],
    )?
    .iter()
    .map(|r| {
        let id: Vec<u8> = r.get("key_id")?;
        let id = KeyId::from_slice(&id)
            .ok_or_else(|| StoreError::Corrupt("kami_keys holds a malformed key id".into()))?;
        Ok((id, r.get("check_value")?))
    })
    .collect()
}

fn register(tx: &mut dyn Tx, key: &MasterKey) -> Result<()> {
    let check = Keyring::check_value(key)?;
    tx.exec(
        "INSERT INTO kami_keys (key_id, check_value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key_id) DO NOTHING",
        params![key.id().as_bytes().to_vec(), check, now_ms()],
    )?;
    Ok(())
}

/// Does the database hold any card key, fulfilment content, buyer answers, stored channel or
/// sealed setting (sealed or not)?
fn has_secrets(tx: &mut dyn Tx) -> Result<bool> {
    let r = tx.query_one(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM cards LIMIT 1) c) + \
                (SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE fulfilment IS NOT NULL LIMIT 1) o) + \
                (SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE fields IS NOT NULL LIMIT 1) f) + \
                (SELECT COUNT(*) FROM (SELECT 1 FROM channels LIMIT 1) ch) + \
                (SELECT COUNT(*) FROM (SELECT 1 FROM settings WHERE secret IS NOT NULL LIMIT 1) s) AS n",
        &[],
    )?;
    Ok(r.get::<i64>("n")? > 0)
}

/// Check the ring against the database's registered keys, registering the primary (first
/// start, or the key of a rotation in progress). Errors say which keys differ.
fn check_ring(tx: &mut dyn Tx, ring: &Keyring, path: &Path) -> Result<()> {
    let mut known = registered(tx)?;
    if known.is_empty() {
        register(tx, ring.primary())?;
        known = registered(tx)?;
    }
    let known_ids: Vec<KeyId> = known.iter().map(|(id, _)| *id).collect();
    if !known_ids.iter().any(|id| ring.contains(*id)) {
        return Err(StoreError::Key(format!(
            "the master key in {} (key id {}) is not this database's key: its secrets are sealed \
             under key id {}. Point [security] master_key_file at the key file this database was \
             created with (restore it from your backup); kami will not start with a wrong key",
            path.display(),
            ring.primary().id(),
            ids(&known_ids)
        )));
    }
    for (id, check) in &known {
        match ring.get(*id) {
            Some(key) if !Keyring::verify_check(key, check) => {
                return Err(StoreError::Key(format!(
                    "the key with id {id} (in {} or beside it) does not open this database's check \
                     value for that id: the key file or the kami_keys table is damaged",
                    path.display()
                )))
            }
            Some(_) => {}
            None => {
                return Err(StoreError::Key(format!(
                    "this database also has secrets under key id {id}, which none of {}, its \
                     `.next` or its `.old*` files holds (keys present: {}); restore that key \
                     file beside it as {}.old.{id}",
                    path.display(),
                    ids(&ring.keys().map(MasterKey::id).collect::<Vec<_>>()),
                    path.display()
                )))
            }
        }
    }
    register(tx, ring.primary())
}

/// Serialises legacy sealing across processes (PostgreSQL: a transaction advisory lock;
/// SQLite's writer lock already does).
const SEAL_LEGACY_LOCK: &str = "kami:seal-legacy";

/// Seal up to [`BATCH`] plain-text card keys; how many unsealed rows were found and how many
/// were sealed.
fn seal_legacy_cards(tx: &mut dyn Tx, ring: &Keyring) -> Result<(usize, u64)> {
    tx.lock_key(SEAL_LEGACY_LOCK)?;
    let rows = tx.query(
        "SELECT id, product_id, secret FROM cards WHERE secret_hash IS NULL ORDER BY id LIMIT $1",
        params![BATCH],
    )?;
    let mut n = 0;
    for r in &rows {
        let (id, product_id): (i64, i64) = (r.get("id")?, r.get("product_id")?);
        let plain: Vec<u8> = r.get("secret")?;
        let place = card_place(product_id);
        let (sealed, hash) = if sealed::is_sealed(&plain) {
            // Sealed by a kami that crashed before writing the hash: keep the value.
            let open = ring.open(&place, &plain)?;
            (plain, ring.hash(&place, &open))
        } else {
            (ring.seal(&place, &plain)?, ring.hash(&place, &plain))
        };
        n += tx.exec(
            "UPDATE cards SET secret = $2, secret_hash = $3 WHERE id = $1 AND secret_hash IS NULL",
            params![id, sealed, hash],
        )?;
    }
    Ok((rows.len(), n))
}

/// One page of a re-sealing pass: from the id after `after`, the last id seen (`None`: done)
/// and how many values changed.
type ResealPass = fn(&mut dyn Tx, &Keyring, i64) -> Result<(Option<i64>, u64)>;

/// A sealed column of `orders` that rotation re-seals a page at a time.
struct OrderColumn {
    select: &'static str,
    update: &'static str,
    column: &'static str,
    place: fn(i64) -> Vec<u8>,
    /// An older kami stored it in plain text (fulfilment contents); otherwise it was always
    /// sealed and a plain value is an error.
    may_be_plain: bool,
}

const FULFILMENTS: OrderColumn = OrderColumn {
    select: "SELECT id, fulfilment FROM orders WHERE fulfilment IS NOT NULL AND id > $1 \
             ORDER BY id LIMIT $2",
    update: "UPDATE orders SET fulfilment = $2 WHERE id = $1 AND fulfilment = $3",
    column: "fulfilment",
    place: fulfilment_place,
    may_be_plain: true,
};

const ORDER_FIELDS: OrderColumn = OrderColumn {
    select:
        "SELECT id, fields FROM orders WHERE fields IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
    update: "UPDATE orders SET fields = $2 WHERE id = $1 AND fields = $3",
    column: "fields",
    place: fields_place,
    may_be_plain: false,
};

/// Re-seal `col` of orders after `after` (by id) that is plain text (where allowed) or under
/// another key than the primary; returns the last id seen (`None`: done) and how many
/// changed.
fn reseal_order_column(
    tx: &mut dyn Tx,
    ring: &Keyring,
    after: i64,
    col: &OrderColumn,
) -> Result<(Option<i64>, u64)> {
    let rows = tx.query(col.select, params![after, BATCH])?;
    let mut changed = 0;
    let mut last = None;
    for r in &rows {
        let id: i64 = r.get("id")?;
        last = Some(id);
        let stored: Vec<u8> = r.get(col.column)?;
        if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
            continue;
        }
        let place = (col.place)(id);
        let plain = if col.may_be_plain && !sealed::is_sealed(&stored) {
            stored.clone()
        } else {
            ring.open(&place, &stored)?
        };
        changed += tx.exec(col.update, params![id, ring.seal(&place, &plain)?, stored])?;
    }
    Ok((last, changed))
}

fn reseal_fulfilments(tx: &mut dyn Tx, ring: &Keyring, after: i64) -> Result<(Option<i64>, u64)> {
    reseal_order_column(tx, ring, after, &FULFILMENTS)
}

fn reseal_order_fields(tx: &mut dyn Tx, ring: &Keyring, after: i64) -> Result<(Option<i64>, u64)> {
    reseal_order_column(tx, ring, after, &ORDER_FIELDS)
}

/// Re-seal card keys after `after` (by id) not under the primary key, value and keyed hash
/// together; returns the last id seen (`None`: done) and how many changed.
fn reseal_cards(tx: &mut dyn Tx, ring: &Keyring, after: i64) -> Result<(Option<i64>, u64)> {
    let rows = tx.query(
        "SELECT id, product_id, secret FROM cards WHERE id > $1 AND secret_hash IS NOT NULL \
         ORDER BY id LIMIT $2",
        params![after, BATCH],
    )?;
    let mut changed = 0;
    let mut last = None;
    for r in &rows {
        let id: i64 = r.get("id")?;
        last = Some(id);
        let stored: Vec<u8> = r.get("secret")?;
        if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
            continue;
        }
        let place = card_place(r.get("product_id")?);
        let plain = ring.open(&place, &stored)?;
        changed += tx.exec(
            "UPDATE cards SET secret = $2, secret_hash = $3 WHERE id = $1 AND secret = $4",
            params![
                id,
                ring.seal(&place, &plain)?,
                ring.hash(&place, &plain),
                stored
            ],
        )?;
    }
    Ok((last, changed))
}

/// Re-seal the admins' TOTP secrets (confirmed and pending) not under the primary key; few
/// rows, all in one transaction. Returns how many values changed.
fn reseal_totp(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
    let rows = tx.query(
        "SELECT id, totp_secret, totp_pending FROM admin_users \
         WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL ORDER BY id",
        &[],
    )?;
    let mut changed = 0;
    for r in &rows {
        let id: i64 = r.get("id")?;
        let place = sealed::place("admin_users.totp_secret", id);
        for column in ["totp_secret", "totp_pending"] {
            let Some(stored) = r.get::<Option<Vec<u8>>>(column)? else {
                continue;
            };
            if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
                continue;
            }
            let fresh = ring.seal(&place, &ring.open(&place, &stored)?)?;
            let sql = if column == "totp_secret" {
                "UPDATE admin_users SET totp_secret = $2 WHERE id = $1 AND totp_secret = $3"
            } else {
                "UPDATE admin_users SET totp_pending = $2 WHERE id = $1 AND totp_pending = $3"
            };
            changed += tx.exec(sql, params![id, fresh, stored])?;
        }
    }
    Ok(changed)
}

/// What `kami keys rotate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub from: KeyId,
    pub to: KeyId,
    /// Values re-sealed by this run (an interrupted run's work is not counted again).
    pub resealed: u64,
    /// This run finished a rotation that was interrupted after switching the key files
    /// (`from` is the key it had moved from) instead of starting a new one.
    pub finished_interrupted: bool,
}

/// The points of a rotation, in order, reported to [`Store::rotate_keys`]'s `step` hook just
/// after each is reached (the CLI's fail points for tests hang off them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateStep {
    /// Finishing an interrupted rotation: everything re-sealed under `master.key`, the older
    /// keys' registrations not yet removed.
    FinishResealed,
    /// `master.key.next` written and registered; nothing sealed under it yet.
    NextRegistered,
    /// A batch of values re-sealed under the next key (reported after each batch).
    Resealing,
    /// Every value under the next key (census done); the files not switched yet.
    Resealed,
    /// The current key kept as `master.key.old.<id>`; `master.key` not switched yet.
    OldKept,
    /// `master.key.next` renamed over `master.key`; the old key still registered.
    Promoted,
    /// The old keys' registrations removed: the rotation is complete.
    Unregistered,
}

impl RotateStep {
    pub const ALL: [RotateStep; 7] = [
        RotateStep::FinishResealed,
        RotateStep::NextRegistered,
        RotateStep::Resealing,
        RotateStep::Resealed,
        RotateStep::OldKept,
        RotateStep::Promoted,
        RotateStep::Unregistered,
    ];

    /// `next-registered`, `resealing`, ...
    pub fn name(self) -> &'static str {
        match self {
            RotateStep::FinishResealed => "finish-resealed",
            RotateStep::NextRegistered => "next-registered",
            RotateStep::Resealing => "resealing",
            RotateStep::Resealed => "resealed",
            RotateStep::OldKept => "old-kept",
            RotateStep::Promoted => "promoted",
            RotateStep::Unregistered => "unregistered",
        }
    }
}

/// How many stored secrets are sealed under each key, plus the plain-text ones (`None`),
/// counted by the database (only each value's header is read).
fn census(tx: &mut dyn Tx) -> Result<Vec<(Option<KeyId>, u64)>> {
    let mut counts: std::collections::BTreeMap<Option<KeyId>, u64> = Default::default();
    for sql in [
        "SELECT substr(secret, 1, 9) AS h, length(secret) >= 37 AS whole, COUNT(*) AS n \
         FROM cards GROUP BY 1, 2",
        "SELECT substr(fulfilment, 1, 9) AS h, length(fulfilment) >= 37 AS whole, COUNT(*) AS n \
         FROM orders WHERE fulfilment IS NOT NULL GROUP BY 1, 2",
        "SELECT substr(totp_secret, 1, 9) AS h, length(totp_secret) >= 37 AS whole, \
         COUNT(*) AS n FROM admin_users WHERE totp_secret IS NOT NULL GROUP BY 1, 2",
        "SELECT substr(totp_pending, 1, 9) AS h, length(totp_pending) >= 37 AS whole, \
         COUNT(*) AS n FROM admin_users WHERE totp_pending IS NOT NULL GROUP BY 1, 2",
        "SELECT substr(fields, 1, 9) AS h, length(fields) >= 37 AS whole, COUNT(*) AS n \
         FROM orders WHERE fields IS NOT NULL GROUP BY 1, 2",
        "SELECT substr(secrets, 1, 9) AS h, length(secrets) >= 37 AS whole, COUNT(*) AS n \
         FROM channels GROUP BY 1, 2",
        "SELECT substr(secret, 1, 9) AS h, length(secret) >= 37 AS whole, COUNT(*) AS n \
         FROM settings WHERE secret IS NOT NULL GROUP BY 1, 2",
        "SELECT substr(secret, 1, 9) AS h, length(secret) >= 37 AS whole, COUNT(*) AS n \
         FROM alert_targets WHERE secret IS NOT NULL GROUP BY 1, 2",
    ] {
        for r in tx.query(sql, &[])? {
            let head: Vec<u8> = r.get("h")?;
            let whole: bool = r.get("whole")?;
            let n: i64 = r.get("n")?;
            let id =
                (whole && head.len() == 1 + sealed::KEY_ID_LEN && head[0] == sealed::SEALED_V1)
                    .then(|| KeyId::from_slice(&head[1..]))
                    .flatten();
            *counts.entry(id).or_default() += n as u64;
        }
    }
    Ok(counts.into_iter().collect())
}

/// The census entries not under `key`, as "N under key X, M in plain text".
fn not_under(census: &[(Option<KeyId>, u64)], key: KeyId) -> Option<String> {
    let others: Vec<String> = census
        .iter()
        .filter(|(id, n)| *id != Some(key) && *n > 0)
        .map(|(id, n)| match id {
            Some(id) => format!("{n} under key {id}"),
            None => format!("{n} in plain text"),
        })
        .collect();
    (!others.is_empty()).then(|| others.join(", "))
}

fn still_locked(lock: &KeyLock) -> Result<()> {
    if lock.is_exclusive() && lock.is_held() {
        return Ok(());
    }
    Err(StoreError::InUse(
        "the rotation no longer holds the exclusive key lock (its connection dropped); \
         every secret is still readable; run `kami keys rotate` again"
            .into(),
    ))
}

impl Store {
    /// The unlocked key ring.
    pub(crate) fn ring(&self) -> Result<Arc<Keyring>> {
        self.keys
            .ring
            .read()
            .map_err(|_| StoreError::Key("key ring lock poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Key("the store has no master key loaded".into()))
    }

    fn set_ring(&self, ring: Keyring) -> Result<()> {
        *self
            .keys
            .ring
            .write()
            .map_err(|_| StoreError::Key("key ring lock poisoned".into()))? = Some(Arc::new(ring));
        Ok(())
    }

    /// Load the master key from `files` and check it against the database: the right key, or
    /// a precise error. A missing key file is created (mode 0600) only for a database that
    /// holds no secret yet; for one that does, start is refused. Then seal what an older kami
    /// stored in plain text.
    pub async fn unlock(&self, files: &KeyFiles) -> Result<()> {
        let ring = match files.load()? {
            Some(ring) => ring,
            None => {
                let (known, any) = self
                    .read(|tx| Ok((registered(tx)?, has_secrets(tx)?)))
                    .await?;
                if !known.is_empty() {
                    let known: Vec<KeyId> = known.iter().map(|(id, _)| *id).collect();
                    return Err(StoreError::Key(format!(
                        "the master key file {} is missing, but this database holds secrets sealed \
                         under key id {}; restore the key file from your backup (kami does not \
                         create a new key for a database that already has one)",
                        files.path().display(),
                        ids(&known)
                    )));
                }
                let ring = files.create()?;
                if any {
                    tracing::warn!(file = %files.path().display(), "created a master key for a database that holds plain-text card keys; they are encrypted under it now. BACK UP THIS FILE: without it the card keys cannot be read");
                } else {
                    tracing::warn!(file = %files.path().display(), "created a new master key (card keys and stored secrets are encrypted under it). BACK UP THIS FILE separately from the database: without it they cannot be read");
                }
                ring
            }
        };
        self.unlock_with(ring, files.path()).await
    }

    /// As [`Store::unlock`] with a key ring in hand (tests, tools); `origin` names it in errors.
    pub async fn unlock_with(&self, ring: Keyring, origin: &Path) -> Result<()> {
        let ring = Arc::new(ring);
        let (r, path) = (ring.clone(), origin.to_path_buf());
        self.write(move |tx| check_ring(tx, &r, &path)).await?;
        let ring = Arc::try_unwrap(ring).map_err(|_| StoreError::Key("key ring shared".into()))?;
        self.set_ring(ring)?;
        self.seal_legacy().await
    }

    /// Seal every plain-text secret an older kami stored, then (when there were any) rewrite
    /// the database so no copy of the plain text stays in free pages. Batches are serialised
    /// across processes (each takes the legacy-sealing lock), and this returns only once no
    /// card is left without its keyed hash: a process starting beside another that is sealing
    /// does not go on to import keys whose duplicates it could not yet see.
    async fn seal_legacy(&self) -> Result<()> {
        let ring = self.ring()?;
        let mut sealed = 0;
        let mut stalled = 0;
        loop {
            let r = ring.clone();
            let (seen, n) = self.write(move |tx| seal_legacy_cards(tx, &r)).await?;
            sealed += n;
            if seen == 0 {
                break;
            }
            // Rows found but none sealed: another process sealed them first. Never forever.
            stalled = if n == 0 { stalled + 1 } else { 0 };
            if stalled > 100 {
                return Err(StoreError::Database(
                    "card keys without a keyed hash stay unsealed after 100 attempts".into(),
                ));
            }
        }
        let mut after = 0;
        loop {
            let r = ring.clone();
            let (last, n) = self
                .write(move |tx| {
                    tx.lock_key(SEAL_LEGACY_LOCK)?;
                    reseal_plain_fulfilments(tx, &r, after)
                })
                .await?;
            sealed += n;
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
        if sealed > 0 {
            tracing::info!(sealed, "encrypted plain-text secrets left by an older kami");
            self.compact().await?;
        }
        Ok(())
    }

    /// Rewrite the database files so freed space keeps no old bytes (SQLite: VACUUM and an
    /// emptied WAL; PostgreSQL: VACUUM FULL of the tables holding secrets).
    pub async fn compact(&self) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite(db) => {
                db.with_writer_raw(|conn| {
                    conn.execute_batch("PRAGMA secure_delete = ON; VACUUM;")?;
                    for _ in 0..50 {
                        let busy: i64 =
                            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                        if busy == 0 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    conn.execute_batch("PRAGMA secure_delete = OFF")?;
                    Ok(())
                })
                .await
            }
            Backend::Postgres(db) => db.with_client(pg_compact).await,
        }
    }

    /// Re-seal every stored secret under the primary key, in batches; how many changed.
    async fn reseal_all(
        &self,
        ring: Arc<Keyring>,
        step: &(dyn Fn(RotateStep) + Sync),
    ) -> Result<u64> {
        let mut changed = 0;
        changed += self.reseal_in_pages(&ring, step, reseal_cards).await?;
        changed += self
            .reseal_in_pages(&ring, step, reseal_fulfilments)
            .await?;
        let r = ring.clone();
        changed += self.write(move |tx| reseal_totp(tx, &r)).await?;
        changed += self
            .reseal_in_pages(&ring, step, reseal_order_fields)
            .await?;
        let r = ring.clone();
        changed += self
            .write(move |tx| crate::stored_channels::reseal(tx, &r))
            .await?;
        let r = ring.clone();
        changed += self
            .write(move |tx| crate::settings::reseal(tx, &r))
            .await?;
        let r = ring.clone();
        changed += self
            .write(move |tx| crate::alert_targets::reseal(tx, &r))
            .await?;
        Ok(changed)
    }

    /// Run one page-at-a-time re-sealing pass (`pass` answers the last id it saw and how many
    /// it changed) to the end, a transaction per page; returns how many changed.
    async fn reseal_in_pages(
        &self,
        ring: &Arc<Keyring>,
        step: &(dyn Fn(RotateStep) + Sync),
        pass: ResealPass,
    ) -> Result<u64> {
        let mut changed = 0;
        let mut after = 0;
        loop {
            let r = ring.clone();
            let (last, n) = self.write(move |tx| pass(tx, &r, after)).await?;
            changed += n;
            match last {
                Some(id) => after = id,
                None => return Ok(changed),
            }
            step(RotateStep::Resealing);
        }
    }

    /// Re-seal everything under the ring's primary until a census finds every value under
    /// it; refuses (naming what is left where) if a few passes do not get there, which only a
    /// kami process ignoring the key lock (an older version) could cause.
    async fn reseal_until_clean(
        &self,
        ring: Arc<Keyring>,
        step: &(dyn Fn(RotateStep) + Sync),
    ) -> Result<u64> {
        let key = ring.primary().id();
        let mut resealed = 0;
        for _ in 0..3 {
            resealed += self.reseal_all(ring.clone(), step).await?;
            let left = not_under(&self.sealed_census().await?, key);
            let Some(left) = left else {
                return Ok(resealed);
            };
            tracing::warn!(
                "after re-sealing, secrets are still not under key {key}: {left}; once more"
            );
        }
        let left = not_under(&self.sealed_census().await?, key).unwrap_or_default();
        Err(StoreError::InUse(format!(
            "secrets keep appearing under other keys than {key} while rotating ({left}): a kami \
             process that does not take the key lock (an older version?) is writing to this \
             database. Stop it and run `kami keys rotate` again; every secret is still readable"
        )))
    }

    /// Remove every key registration but `keep`'s, in one transaction with a census that
    /// finds every stored secret under `keep` (else refuses, naming what is under which key).
    /// PostgreSQL: the census holds SHARE locks on cards and orders, so nothing is written
    /// under another key between the count and the delete.
    async fn unregister_others(&self, keep: KeyId) -> Result<()> {
        let pg = matches!(&*self.backend, Backend::Postgres(_));
        self.write(move |tx| {
            if pg {
                tx.exec(
                    "LOCK TABLE cards, orders, admin_users, channels, settings IN SHARE MODE",
                    &[],
                )?;
            }
            if let Some(left) = not_under(&census(tx)?, keep) {
                return Err(StoreError::InUse(format!(
                    "refusing to unregister the older master keys: stored secrets are not all \
                     under key {keep} ({left}); was a kami process running? Every secret is \
                     still readable with the key files present; stop every kami process on \
                     this database and run `kami keys rotate` again"
                )));
            }
            tx.exec(
                "DELETE FROM kami_keys WHERE key_id <> $1",
                params![keep.as_bytes().to_vec()],
            )
        })
        .await?;
        Ok(())
    }

    /// `kami keys rotate`: move every secret to a new master key (see the module doc). The
    /// store must have been unlocked with `files` while `lock` was held exclusive (taken
    /// before opening the store); `step` is called as each [`RotateStep`] is reached. Run it
    /// again after an interruption: it finishes the rotation it finds (`master.key.next`, or
    /// older keys still registered after the files were switched) instead of starting another.
    pub async fn rotate_keys(
        &self,
        files: &KeyFiles,
        lock: &KeyLock,
        step: &(dyn Fn(RotateStep) + Sync),
    ) -> Result<Rotation> {
        still_locked(lock)?;
        let path = files.path().to_path_buf();
        let current = files
            .load()?
            .ok_or_else(|| StoreError::Key(format!("no master key at {}", path.display())))?;
        let from = current.primary().id();
        let mut resealed = 0;
        let next = match files.load_next()? {
            Some(k) => k.id(),
            None => {
                // A rotation that stopped after switching the files still has older keys
                // registered: finish it first, so no registration outlives its use.
                let known = self.read(registered).await?;
                if let Some(older) = known.iter().map(|(id, _)| *id).find(|id| *id != from) {
                    resealed += self.reseal_until_clean(Arc::new(current), step).await?;
                    step(RotateStep::FinishResealed);
                    still_locked(lock)?;
                    self.unregister_others(from).await?;
                    step(RotateStep::Unregistered);
                    return Ok(Rotation {
                        from: older,
                        to: from,
                        resealed,
                        finished_interrupted: true,
                    });
                }
                files.create_next()?.id()
            }
        };
        // Register the next key (its file is on disk already) before sealing anything under it.
        let ring = files
            .load()?
            .and_then(|r| r.with_primary(next))
            .ok_or_else(|| StoreError::Key("the next key file vanished".into()))?;
        let ring = Arc::new(ring);
        let r = ring.clone();
        self.write(move |tx| register(tx, r.primary())).await?;
        step(RotateStep::NextRegistered);
        resealed += self.reseal_until_clean(ring.clone(), step).await?;
        step(RotateStep::Resealed);
        // The files: keep the current key under its id (never overwriting a key file), then
        // switch. A key `master.key` holds is always kept before it is replaced.
        still_locked(lock)?;
        let now = files
            .load()?
            .ok_or_else(|| StoreError::Key(format!("no master key at {}", path.display())))?;
        if now.primary().id() != next {
            files.keep_old(now.primary())?;
            step(RotateStep::OldKept);
            files.switch_to_next()?;
        }
        step(RotateStep::Promoted);
        still_locked(lock)?;
        self.unregister_others(next).await?;
        step(RotateStep::Unregistered);
        Ok(Rotation {
            from,
            to: next,
            resealed,
            finished_interrupted: false,
        })
    }

    /// How many stored secrets are sealed under each key, plus the plain-text ones (`None`).
    pub async fn sealed_census(&self) -> Result<Vec<(Option<KeyId>, u64)>> {
        self.read(census).await
    }

    /// Open every stored secret (card keys, fulfilment contents, buyer answers, admins' TOTP
    /// secrets, stored channels' key material, sealed settings); how many there are. Any
    /// that does not open is an error naming why.
    pub async fn verify_secrets(&self) -> Result<u64> {
        let ring = self.ring()?;
        self.read(move |tx| {
            let mut n = 0;
            for r in tx.query("SELECT product_id, secret FROM cards", &[])? {
                let v: Vec<u8> = r.get("secret")?;
                ring.open(&card_place(r.get("product_id")?), &v)?;
                n += 1;
            }
            for r in tx.query(
                "SELECT id, fulfilment FROM orders WHERE fulfilment IS NOT NULL",
                &[],
            )? {
                let v: Vec<u8> = r.get("fulfilment")?;
                ring.open(&fulfilment_place(r.get("id")?), &v)?;
                n += 1;
            }
            for r in tx.query(
                "SELECT id, fields FROM orders WHERE fields IS NOT NULL",
                &[],
            )? {
                let v: Vec<u8> = r.get("fields")?;
                ring.open(&fields_place(r.get("id")?), &v)?;
                n += 1;
            }
            for r in tx.query(
                "SELECT id, totp_secret, totp_pending FROM admin_users \
                 WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL",
                &[],
            )? {
                let place = sealed::place("admin_users.totp_secret", r.get("id")?);
                for column in ["totp_secret", "totp_pending"] {
                    if let Some(v) = r.get::<Option<Vec<u8>>>(column)? {
                        ring.open(&place, &v)?;
                        n += 1;
                    }
                }
            }
            n += crate::stored_channels::verify(tx, &ring)?;
            n += crate::settings::verify(tx, &ring)?;
            n += crate::alert_targets::verify(tx, &ring)?;
            Ok(n)
        })
        .await
    }

    /// `kami backup FILE` on SQLite: a consistent copy (`VACUUM INTO`) of the live database,
    /// created with mode 0600. Secrets stay sealed in it. PostgreSQL → `InvalidInput`.
    pub async fn backup_to(&self, file: &Path) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite(db) => db.backup_to(file).await,
            Backend::Postgres(_) => Err(StoreError::InvalidInput(
                "a PostgreSQL database is backed up with its own tools: pg_dump".into(),
            )),
        }
    }
}

/// VACUUM FULL keeps old row versions that a transaction still running anywhere on the server
/// might see; wait (up to 30 s) until every transaction older than the sealing has ended, so
/// the rewrite drops the plain text.
fn pg_compact(c: &mut postgres::Client) -> Result<()> {
    let marker: i64 = c.query_one("SELECT txid_current() AS x", &[])?.get(0);
    let marker = (marker % (1 << 32)).to_string();
    let mut clear = false;
    for _ in 0..60 {
        let older: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND \
                 ((backend_xid IS NOT NULL AND age(backend_xid) >= age($1::text::xid)) OR \
                  (backend_xmin IS NOT NULL AND age(backend_xmin) >= age($1::text::xid)))",
                &[&marker],
            )?
            .get(0);
        if older == 0 {
            clear = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    if !clear {
        tracing::warn!("a long transaction on the PostgreSQL server may keep old plain-text row versions of cards/orders; run `VACUUM FULL cards, orders` once it has ended");
    }
    c.batch_execute("VACUUM FULL cards")?;
    c.batch_execute("VACUUM FULL orders")?;
    Ok(())
}

/// Seal the plain-text fulfilment contents after `after` (keys other than the primary are
/// left to rotation). Not folded into [`reseal_fulfilments`]: an older kami's SQLite column
/// holds TEXT, which its compare-and-set on the stored bytes (a BLOB) would never match.
fn reseal_plain_fulfilments(
    tx: &mut dyn Tx,
    ring: &Keyring,
    after: i64,
) -> Result<(Option<i64>, u64)> {
    let rows = tx.query(
        "SELECT id, fulfilment FROM orders WHERE fulfilment IS NOT NULL AND id > $1 \
         ORDER BY id LIMIT $2",
        params![after, BATCH],
    )?;
    let mut changed = 0;
    let mut last = None;
    for r in &rows {
        let id: i64 = r.get("id")?;
        last = Some(id);
        let stored: Vec<u8> = r.get("fulfilment")?;
        if sealed::is_sealed(&stored) {
            continue;
        }
        changed += tx.exec(
            "UPDATE orders SET fulfilment = $2 WHERE id = $1",
            params![id, ring.seal(&fulfilment_place(id), &stored)?],
        )?;
    }
    Ok((last, changed))
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
