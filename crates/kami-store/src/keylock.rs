//! The database's key lock: who may use the master key while `kami keys rotate` moves secrets.
//!
//! Every kami process that opens a database holds the lock **shared** — `kami serve` for its
//! whole life, the other commands while they run — taken before the key files are read.
//! `kami keys rotate` takes it **exclusive** and refuses at once, naming why, while anyone else
//! holds it: a server running during a rotation would keep only the old key in memory, seal
//! new secrets under it and fail to open what the rotation moved. A server that starts while
//! a rotation runs waits for it to finish, then reads the new key files.
//!
//! - SQLite: `flock(2)` on `<database file>.lock` beside the database (one host, like SQLite).
//! - PostgreSQL: a session-level advisory lock (`pg_advisory_lock_shared` /
//!   `pg_try_advisory_lock`, class 7263009, key 1) held on a dedicated connection, so it works
//!   across hosts. The connection lives on its own thread and is checked every few seconds; if
//!   it drops, the lock is gone with it ([`KeyLock::is_held`] turns false): a shared holder
//!   reconnects and takes it again (waiting for a rotation that started meanwhile, loudly),
//!   an exclusive holder (a rotation) stops before its next irreversible step.
//!
//! Either lock is released when the process ends, however it ends (the kernel closes the file
//! or the connection).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::error::{Result, StoreError};

/// Advisory lock class of the key lock (migrations use 7263001, per-key locks 7263007).
const PG_CLASS: i32 = 7263009;
const PG_KEY: i32 = 1;
/// How often a holder checks its PostgreSQL lock connection.
const PG_CHECK: Duration = Duration::from_secs(5);
/// How long an exclusive taker keeps trying before it refuses: a server stopped a moment ago
/// may still be closing its lock connection.
const GRACE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(100);

/// Held shared by every process using a database, exclusive by `kami keys rotate`. Released
/// when dropped (or when the process ends).
pub struct KeyLock {
    exclusive: bool,
    held: Arc<AtomicBool>,
    _hold: Hold,
}

enum Hold {
    File(#[allow(dead_code)] File),
    /// Dropping the sender ends the lock thread, which closes its connection.
    Postgres(#[allow(dead_code)] mpsc::Sender<()>),
}

impl std::fmt::Debug for KeyLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLock")
            .field("exclusive", &self.exclusive)
            .field("held", &self.is_held())
            .finish()
    }
}

fn refused(holders: &str) -> StoreError {
    StoreError::InUse(format!(
        "kami keys rotate refused: this database is in use by {holders}. A server running \
         during a rotation would keep sealing new secrets under the old key and could not read \
         the ones moved to the new one. Stop every `kami serve` on this database (on every \
         host) and any other kami command using it, then run `kami keys rotate` again"
    ))
}

/// `<database file>.lock`.
pub(crate) fn sqlite_lock_path(db: &str) -> PathBuf {
    PathBuf::from(format!("{db}.lock"))
}

impl KeyLock {
    /// Take the lock shared (every process using the database): waits while a rotation holds
    /// it exclusive, saying so once. `who` names this process to a refused rotation
    /// (PostgreSQL: its `application_name`).
    pub async fn shared(url: &str, who: &str) -> Result<KeyLock> {
        KeyLock::take(url, who, false, Duration::ZERO).await
    }

    /// Take the lock exclusive (`kami keys rotate`), or fail with [`StoreError::InUse`]
    /// saying who holds it (after a grace of two seconds for holders that are just ending).
    pub async fn exclusive(url: &str, who: &str) -> Result<KeyLock> {
        KeyLock::take(url, who, true, GRACE).await
    }

    async fn take(url: &str, who: &str, exclusive: bool, grace: Duration) -> Result<KeyLock> {
        if let Some(path) = crate::sqlite::path_from_url(url) {
            let path = sqlite_lock_path(path);
            let file = tokio::task::spawn_blocking(move || lock_file(&path, exclusive, grace))
                .await
                .map_err(|e| StoreError::Database(format!("key lock task: {e}")))??;
            Ok(KeyLock {
                exclusive,
                held: Arc::new(AtomicBool::new(true)),
                _hold: Hold::File(file),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut config = postgres::Config::from_str(url)
                .map_err(|e| StoreError::Database(format!("bad postgres url: {e}")))?;
            config.connect_timeout(Duration::from_secs(10));
            config.application_name(&format!("{who} (key lock)"));
            let held = Arc::new(AtomicBool::new(false));
            let (release, released) = mpsc::channel();
            let (ready, is_ready) = tokio::sync::oneshot::channel();
            let h = held.clone();
            std::thread::Builder::new()
                .name("kami-key-lock".into())
                .spawn(move || pg_lock_thread(config, exclusive, grace, h, ready, released))
                .map_err(|e| StoreError::Database(format!("spawn key lock thread: {e}")))?;
            is_ready
                .await
                .map_err(|_| StoreError::Database("the key lock thread stopped".into()))??;
            Ok(KeyLock {
                exclusive,
                held,
                _hold: Hold::Postgres(release),
            })
        } else {
            Err(StoreError::BadUrl)
        }
    }

    /// Is the lock still held? (False once a PostgreSQL lock connection dropped.)
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

fn lock_file(path: &Path, exclusive: bool, grace: Duration) -> Result<File> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Key(format!("{what} the key lock file {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::keyfiles::create_private_dir(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("cannot open", e))?;
    let give_up = std::time::Instant::now() + grace;
    let tried = loop {
        let tried = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match tried {
            Err(TryLockError::WouldBlock) if exclusive && std::time::Instant::now() < give_up => {
                std::thread::sleep(RETRY)
            }
            other => break other,
        }
    };
    match tried {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) if exclusive => Err(refused(&format!(
            "another kami process (`kami serve` or another command holds {})",
            path.display()
        ))),
        Err(TryLockError::WouldBlock) => {
            tracing::warn!(lock = %path.display(), "a master key rotation (`kami keys rotate`) is running on this database; waiting for it to finish");
            file.lock_shared().map_err(|e| io("cannot lock", e))?;
            tracing::info!("the key rotation has finished; continuing");
            Ok(file)
        }
        Err(TryLockError::Error(e)) => Err(io("cannot lock", e)),
    }
}

/// Connect and take the advisory lock: shared waits for a rotation; exclusive tries for
/// `grace`, then refuses saying who holds it.
fn pg_take(
    config: &postgres::Config,
    exclusive: bool,
    grace: Duration,
) -> Result<postgres::Client> {
    let mut client = config.connect(postgres::NoTls)?;
    if exclusive {
        let give_up = std::time::Instant::now() + grace;
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&PG_CLASS, &PG_KEY])?
                .get(0);
            if got {
                return Ok(client);
            }
            if std::time::Instant::now() >= give_up {
                return Err(refused(&pg_holders(&mut client)?));
            }
            std::thread::sleep(RETRY);
        }
    }
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock_shared($1, $2)",
            &[&PG_CLASS, &PG_KEY],
        )?
        .get(0);
    if !got {
        tracing::warn!("a master key rotation (`kami keys rotate`) is running on this database; waiting for it to finish");
        client.execute(
            "SELECT pg_advisory_lock_shared($1, $2)",
            &[&PG_CLASS, &PG_KEY],
        )?;
        tracing::info!("the key rotation has finished; continuing");
    }
    Ok(client)
}

/// Who else holds the key lock: "2 sessions (`kami serve` from 10.0.0.5, ...)".
fn pg_holders(client: &mut postgres::Client) -> Result<String> {
    let rows = client.query(
        "SELECT a.application_name AS app, coalesce(host(a.client_addr), 'a local socket') AS addr \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.classid = $1::int::oid AND l.objid = $2::int::oid \
           AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid()",
        &[&PG_CLASS, &PG_KEY],
    )?;
    if rows.is_empty() {
        return Ok("another kami process (it has just released the lock; try again)".into());
    }
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            // NULL where this role may not see another role's sessions.
            let app: String = r
                .try_get::<_, Option<String>>("app")
                .ok()
                .flatten()
                .unwrap_or_else(|| "a kami process".into());
            let addr: String = r
                .try_get::<_, Option<String>>("addr")
                .ok()
                .flatten()
                .unwrap_or_else(|| "an unknown address".into());
            let app = app.strip_suffix(" (key lock)").unwrap_or(&app).to_owned();
            format!("`{app}` from {addr}")
        })
        .collect();
    Ok(format!(
        "{} kami process{} on PostgreSQL ({})",
        names.len(),
        if names.len() == 1 { "" } else { "es" },
        names.join(", ")
    ))
}

fn pg_lock_thread(
    config: postgres::Config,
    exclusive: bool,
    grace: Duration,
    held: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<Result<()>>,
    released: mpsc::Receiver<()>,
) {
    let mut client = match pg_take(&config, exclusive, grace) {
        Ok(c) => {
            held.store(true, Ordering::SeqCst);
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        match released.recv_timeout(PG_CHECK) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Released (the guard dropped): closing the connection ends the lock.
            _ => return,
        }
        if client.simple_query("SELECT 1").is_ok() {
            continue;
        }
        held.store(false, Ordering::SeqCst);
        if exclusive {
            tracing::error!("lost the connection holding the key lock; the rotation stops before its next step (run it again)");
            return;
        }
        tracing::error!("lost the connection holding the key lock; reconnecting (a key rotation started meanwhile would leave this process with the old key: restart it after the rotation)");
        loop {
            match released.recv_timeout(PG_CHECK) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            match pg_take(&config, false, Duration::ZERO) {
                Ok(c) => {
                    client = c;
                    held.store(true, Ordering::SeqCst);
                    tracing::info!("the key lock is held again");
                    break;
                }
                Err(e) => tracing::warn!("cannot take the key lock again yet: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(dir: &Path) -> String {
        format!("sqlite://{}/kami.db", dir.display())
    }

    async fn try_exclusive(url: &str) -> Result<KeyLock> {
        KeyLock::take(url, "kami keys rotate", true, Duration::ZERO).await
    }

    #[tokio::test]
    async fn shared_holders_refuse_an_exclusive_one_which_makes_shared_ones_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let url = url(tmp.path());
        let a = KeyLock::shared(&url, "kami serve").await.unwrap();
        let b = KeyLock::shared(&url, "kami serve").await.unwrap();
        assert!(a.is_held() && !a.is_exclusive());
        let err = try_exclusive(&url).await.unwrap_err();
        assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("kami keys rotate refused"), "{msg}");
        assert!(msg.contains("kami.db.lock"), "{msg}");
        drop(a);
        assert!(try_exclusive(&url).await.is_err());
        drop(b);
        let x = KeyLock::exclusive(&url, "kami keys rotate").await.unwrap();
        assert!(x.is_exclusive());
        assert!(try_exclusive(&url).await.is_err());
        // A process starting during a rotation waits until it ends.
        let waiting = tokio::spawn({
            let url = url.clone();
            async move { KeyLock::shared(&url, "kami serve").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "a shared lock was granted during a rotation"
        );
        drop(x);
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the shared lock is granted once the rotation ends")
            .unwrap()
            .unwrap();
        assert!(got.is_held());
        // A rotation started just as the last server stops gets the lock within its grace.
        let rotate = tokio::spawn({
            let url = url.clone();
            async move { KeyLock::exclusive(&url, "kami keys rotate").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(got);
        assert!(rotate.await.unwrap().unwrap().is_exclusive());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tmp.path().join("kami.db.lock"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
