//! The store's side of secrets at rest: which master keys a database knows (`kami_keys`),
//! unlocking it at start (a wrong or missing key refuses, never opens nothing), sealing the
//! plain-text rows an older kami left, `kami keys rotate`, and `kami backup`.
//!
//! Rotation is interruptible at any point: the next key's file is written and fsynced, then
//! registered, before anything is sealed under it; each batch re-seals its rows (value and
//! keyed hash together) in one transaction; the key files are switched only once every
//! value is under the next key, and the old key's registration goes last. Every secret is
//! always under a key that `master.key`, `master.key.next` or `master.key.old` holds.

use std::path::Path;
use std::sync::{Arc, RwLock};

use kami_core::Millis;

use crate::db::Tx;
use crate::error::{Result, StoreError};
use crate::keyfiles::KeyFiles;
use crate::params;
use crate::sealed::{self, card_place, fulfilment_place, KeyId, Keyring, MasterKey};
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

/// Does the database hold any card key or fulfilment content (sealed or not)?
fn has_secrets(tx: &mut dyn Tx) -> Result<bool> {
    let r = tx.query_one(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM cards LIMIT 1) c) + \
                (SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE fulfilment IS NOT NULL LIMIT 1) o) AS n",
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
                     `.next` or its `.old` holds (key files present: {}); restore that key file \
                     beside master.key as master.key.old",
                    path.display(),
                    ids(&ring.keys().map(MasterKey::id).collect::<Vec<_>>())
                )))
            }
        }
    }
    register(tx, ring.primary())
}

/// Seal up to [`BATCH`] plain-text card keys; how many were sealed.
fn seal_legacy_cards(tx: &mut dyn Tx, ring: &Keyring) -> Result<u64> {
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
    Ok(n)
}

/// Re-seal the fulfilment contents of orders after `after` (by id) that are plain text or
/// under another key than the primary; returns the last id seen (`None`: done) and how many
/// changed.
fn reseal_fulfilments(tx: &mut dyn Tx, ring: &Keyring, after: i64) -> Result<(Option<i64>, u64)> {
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
        if sealed::sealed_key_id(&stored) == Some(ring.primary().id()) {
            continue;
        }
        let place = fulfilment_place(id);
        let plain = if sealed::is_sealed(&stored) {
            ring.open(&place, &stored)?
        } else {
            stored.clone()
        };
        changed += tx.exec(
            "UPDATE orders SET fulfilment = $2 WHERE id = $1 AND fulfilment = $3",
            params![id, ring.seal(&place, &plain)?, stored],
        )?;
    }
    Ok((last, changed))
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

/// What `kami keys rotate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub from: KeyId,
    pub to: KeyId,
    /// Values re-sealed by this run (an interrupted run's work is not counted again).
    pub resealed: u64,
    /// Values found under another key once the rotation finished: written by a kami that
    /// ran during the rotation. They stay readable while `master.key.old` exists; stop the
    /// shop and rotate again.
    pub stragglers: u64,
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
    /// the database so no copy of the plain text stays in free pages.
    async fn seal_legacy(&self) -> Result<()> {
        let ring = self.ring()?;
        let mut sealed = 0;
        loop {
            let r = ring.clone();
            let n = self.write(move |tx| seal_legacy_cards(tx, &r)).await?;
            sealed += n;
            if n == 0 {
                break;
            }
        }
        let mut after = 0;
        loop {
            let r = ring.clone();
            let (last, n) = self
                .write(move |tx| reseal_plain_fulfilments(tx, &r, after))
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
    async fn reseal_all(&self, ring: Arc<Keyring>) -> Result<u64> {
        let mut changed = 0;
        let mut after = 0;
        loop {
            let r = ring.clone();
            let (last, n) = self.write(move |tx| reseal_cards(tx, &r, after)).await?;
            changed += n;
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
        after = 0;
        loop {
            let r = ring.clone();
            let (last, n) = self
                .write(move |tx| reseal_fulfilments(tx, &r, after))
                .await?;
            changed += n;
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
        Ok(changed)
    }

    /// `kami keys rotate`: move every secret to a new master key (see the module doc). The
    /// store must have been unlocked with `files`. Run it again after an interruption: it
    /// finishes the rotation it finds (`master.key.next`) instead of starting another.
    pub async fn rotate_keys(&self, files: &KeyFiles) -> Result<Rotation> {
        let path = files.path().to_path_buf();
        let current = files
            .load()?
            .ok_or_else(|| StoreError::Key(format!("no master key at {}", path.display())))?;
        let from = current.primary().id();
        let mut resealed = 0;
        let next = match files.load_next()? {
            Some(k) => k.id(),
            None => {
                // A rotation that stopped after switching the files still has the older key
                // registered: finish it first, so no registration outlives its key file.
                let known = self.read(registered).await?;
                if known.iter().any(|(id, _)| *id != from) {
                    resealed += self.reseal_all(Arc::new(current)).await?;
                    let keep = from.as_bytes().to_vec();
                    self.write(move |tx| {
                        tx.exec(
                            "DELETE FROM kami_keys WHERE key_id <> $1",
                            params![keep.clone()],
                        )
                    })
                    .await?;
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
        resealed += self.reseal_all(ring.clone()).await?;
        files.promote_next()?;
        let keep = next.as_bytes().to_vec();
        self.write(move |tx| {
            tx.exec(
                "DELETE FROM kami_keys WHERE key_id <> $1",
                params![keep.clone()],
            )
        })
        .await?;
        let stragglers = self
            .sealed_census()
            .await?
            .iter()
            .filter(|(id, _)| *id != Some(next))
            .map(|(_, n)| n)
            .sum();
        Ok(Rotation {
            from,
            to: next,
            resealed,
            stragglers,
        })
    }

    /// How many stored secrets are sealed under each key, plus the plain-text ones (`None`).
    pub async fn sealed_census(&self) -> Result<Vec<(Option<KeyId>, u64)>> {
        self.read(|tx| {
            let mut counts: std::collections::BTreeMap<Option<KeyId>, u64> = Default::default();
            for sql in [
                "SELECT secret AS v FROM cards",
                "SELECT fulfilment AS v FROM orders WHERE fulfilment IS NOT NULL",
            ] {
                for r in tx.query(sql, &[])? {
                    let v: Vec<u8> = r.get("v")?;
                    *counts.entry(sealed::sealed_key_id(&v)).or_default() += 1;
                }
            }
            Ok(counts.into_iter().collect())
        })
        .await
    }

    /// Open every stored secret (card keys, fulfilment contents); how many there are. Any
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
/// left to rotation).
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
