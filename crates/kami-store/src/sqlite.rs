//! SQLite backend: WAL, `synchronous=FULL`, one writer thread, a pool of readers.
//!
//! All writes go through a single thread that owns the only write connection. It drains
//! whatever jobs are queued, runs them in one `BEGIN IMMEDIATE` transaction with a
//! `SAVEPOINT` per job (a failing job rolls back only itself), commits once, and only then
//! answers every job. Under load this is group commit: many orders share one fsync, and
//! there is never a "database is locked" between kami's own connections.

use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{types::ValueRef, Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::db::{sqlite_sql, Row, Tx, Value};
use crate::error::{Result, StoreError};

/// Most jobs folded into one transaction: bounds the latency one commit adds.
const MAX_BATCH: usize = 128;
/// Jobs that may wait for the writer; beyond this, callers wait (backpressure, bounded memory).
const QUEUE_DEPTH: usize = 4096;
/// WAL size (pages) at which the writer itself checkpoints; normally the background
/// checkpointer has already copied almost all of it, so this is short.
const WRITER_CHECKPOINT_PAGES: i64 = 4000;
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) struct SqliteTx<'c> {
    conn: &'c Connection,
}

fn bind(params: &[Value]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
        })
        .collect()
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &'static str, params: &[Value]) -> Result<u64> {
        tracing::trace!(target: "kami_store::sql", "{sql}");
        let mut stmt = self.conn.prepare_cached(sqlite_sql(sql))?;
        let n = stmt.execute(rusqlite::params_from_iter(bind(params)))?;
        Ok(n as u64)
    }

    fn insert_returning_id(&mut self, sql: &'static str, params: &[Value]) -> Result<i64> {
        let Some(insert) = sql.strip_suffix(" RETURNING id") else {
            return self.query_one(sql, params)?.get("id");
        };
        if self.exec(insert, params)? != 1 {
            return Err(StoreError::Corrupt(format!(
                "expected one inserted row: {sql}"
            )));
        }
        Ok(self.conn.last_insert_rowid())
    }

    fn query(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>> {
        tracing::trace!(target: "kami_store::sql", "{sql}");
        let mut stmt = self.conn.prepare_cached(sqlite_sql(sql))?;
        let cols = stmt.column_count();
        let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(bind(params)))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(cols);
            for i in 0..cols {
                vals.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Int(v as i64),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(Row::new(names.clone(), vals));
        }
        Ok(out)
    }
}

/// A write job as the writer thread sees it: run inside a savepoint, then learn whether the
/// enclosing transaction committed.
trait Job: Send {
    fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool;
    fn finish(self: Box<Self>, committed: Result<(), String>);
    /// Raw jobs take the connection alone, outside any batch transaction.
    fn is_raw(&self) -> bool {
        false
    }
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&mut dyn Tx) -> Result<T> + Send,
{
    fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = match catch_unwind(AssertUnwindSafe(|| f(tx))) {
            Ok(r) => r,
            Err(_) => Err(StoreError::Database("write job panicked".into())),
        };
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let r = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Database("write job did not run".into()))),
            // A job that failed on its own keeps its own error; the others learn nothing landed.
            Err(e) => match self.result {
                Some(Err(job_err)) => Err(job_err),
                _ => Err(StoreError::Database(format!("commit failed: {e}"))),
            },
        };
        // The caller may have gone away (request cancelled); the outcome is committed anyway.
        let _ = self.reply.send(r);
    }
}

pub(crate) struct Sqlite {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: r2d2::Pool<ReadManager>,
    /// Tells the checkpointer thread to stop.
    stop: Arc<AtomicBool>,
    path: String,
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct ReadManager {
    path: String,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl r2d2::ManageConnection for ReadManager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        configure(&conn)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }
    fn is_valid(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        conn.execute_batch("SELECT 1")
    }
    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

impl Sqlite {
    /// `path` is a file path (`data/kami.db`); parent directories are created.
    pub(crate) fn open(path: &str, readers: u32) -> Result<Sqlite> {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                crate::keyfiles::create_private_dir(dir)?;
            }
        }
        restrict_files(path)?;
        let conn = Connection::open(path)?;
        configure(&conn)?;
        // WAL checkpoints are done by a background connection (below) so that they do not run
        // inside the writer's commit, where they would stall every queued job behind a
        // checkpoint's writes and fsync (measured: 46-66 ms stalls every few seconds under
        // load). The writer keeps a high threshold as a backstop: under unrelenting writes a
        // passive checkpoint never sees the WAL's end, and only a writer can restart the WAL.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        // Every job runs in a savepoint, and SQLite copies each page a savepoint changes into
        // a statement journal, which it spills to a new temporary file past 64 KiB: a group
        // commit of a few orders did (measured: 0.5 temporary files created and unlinked, and
        // 65 of 122 page writes per order). In memory it costs one job's changed pages.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = Connection::open(path)?;
        configure(&checkpointer)?;
        checkpointer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let stop_flag = stop.clone();
        std::thread::Builder::new()
            .name("kami-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop_flag))
            .map_err(|e| StoreError::Database(format!("spawn checkpointer: {e}")))?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("kami-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Database(format!("spawn writer: {e}")))?;
        let readers = r2d2::Pool::builder()
            .max_size(readers.clamp(1, 32))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(ReadManager {
                path: path.to_owned(),
            })?;
        Ok(Sqlite {
            writer: tx,
            readers,
            stop,
            path: path.to_owned(),
        })
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = TypedJob {
            f: Some(f),
            result: None,
            reply,
        };
        self.writer
            .send(Box::new(job))
            .await
            .map_err(|_| StoreError::Database("sqlite writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Database("sqlite writer dropped the job".into()))?
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get()?;
            // A reader abandoned mid-transaction (a panicking read) must not keep its snapshot.
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK")?;
            }
            // One read transaction so multi-query reads see one snapshot.
            conn.execute_batch("BEGIN")?;
            let r = f(&mut SqliteTx { conn: &conn });
            let _ = conn.execute_batch("COMMIT");
            r
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task: {e}")))?
    }

    /// Run a closure on the writer connection outside any batch (migrations).
    pub(crate) async fn with_writer_raw<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Box::new(RawJob {
                f: Some(f),
                reply: Some(reply),
            }))
            .await
            .map_err(|_| StoreError::Database("sqlite writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Database("sqlite writer dropped the job".into()))?
    }
}

impl Sqlite {
    /// A consistent copy of the database (`VACUUM INTO`, a read transaction: writers carry
    /// on) in a new file of mode 0600, fsynced.
    pub(crate) async fn backup_to(&self, file: &Path) -> Result<()> {
        let (src, dst) = (self.path.clone(), file.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)
                .map_err(|e| {
                    StoreError::InvalidInput(format!("cannot create {}: {e}", dst.display()))
                })?;
            drop(created);
            let copy = (|| -> Result<()> {
                let dst_str = dst.to_str().ok_or_else(|| {
                    StoreError::InvalidInput(format!("{} is not a UTF-8 path", dst.display()))
                })?;
                let conn = Connection::open_with_flags(
                    &src,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(Duration::from_secs(10))?;
                conn.execute("VACUUM INTO ?1", [dst_str])?;
                std::fs::File::open(&dst)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| StoreError::Database(format!("sync {}: {e}", dst.display())))
            })();
            if copy.is_err() {
                let _ = std::fs::remove_file(&dst);
            }
            copy
        })
        .await
        .map_err(|e| StoreError::Database(format!("backup task: {e}")))?
    }
}

/// The database file is created 0600 (SQLite gives its `-wal` and `-shm` the mode of the
/// database file); files of an older kami are restricted to 0600 too.
fn restrict_files(path: &str) -> Result<()> {
    if !Path::new(path).exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Database(format!("create {path}: {e}")))?;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        crate::keyfiles::restrict_file(Path::new(&format!("{path}{suffix}")))?;
    }
    Ok(())
}

/// A job that takes the connection itself, outside the batch transaction.
struct RawJob<T, F> {
    f: Option<F>,
    reply: Option<oneshot::Sender<Result<T>>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Job for RawJob<T, F> {
    fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool {
        if let (Some(f), Some(reply)) = (self.f.take(), self.reply.take()) {
            let r = catch_unwind(AssertUnwindSafe(|| f(tx.conn)))
                .unwrap_or_else(|_| Err(StoreError::Database("raw job panicked".into())));
            let _ = reply.send(r);
        }
        true
    }
    fn finish(self: Box<Self>, _: Result<(), String>) {}
    fn is_raw(&self) -> bool {
        true
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut pending: Option<Box<dyn Job>> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.blocking_recv() {
                Some(j) => j,
                None => return, // store dropped
            },
        };
        if first.is_raw() {
            let mut first = first;
            first.run(&mut SqliteTx { conn: &conn });
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) if j.is_raw() => {
                    pending = Some(j);
                    break;
                }
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let t0 = std::time::Instant::now();
        let committed = run_batch(&conn, &mut batch);
        let took = t0.elapsed();
        if took > Duration::from_millis(20) {
            tracing::debug!(
                jobs = batch.len(),
                ms = took.as_millis() as u64,
                "slow write batch"
            );
        }
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

/// Copy committed WAL frames into the database file in the background. PASSIVE takes no
/// write lock: the writer keeps committing meanwhile.
fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("wal checkpoint: {e}");
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    for job in batch.iter_mut() {
        conn.execute_batch("SAVEPOINT job")
            .map_err(|e| e.to_string())?;
        let ok = job.run(&mut SqliteTx { conn });
        if !ok {
            conn.execute_batch("ROLLBACK TO job")
                .map_err(|e| e.to_string())?;
        }
        conn.execute_batch("RELEASE job")
            .map_err(|e| e.to_string())?;
    }
    conn.execute_batch("COMMIT").map_err(|e| e.to_string())
}

/// `sqlite://data/kami.db`, `sqlite:data/kami.db`, `sqlite:///abs/path.db` → file path.
pub(crate) fn path_from_url(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(path_from_url("sqlite://data/kami.db"), Some("data/kami.db"));
        assert_eq!(path_from_url("sqlite:///tmp/x.db"), Some("/tmp/x.db"));
        assert_eq!(path_from_url("sqlite:x.db?mode=rwc"), Some("x.db"));
        assert_eq!(path_from_url("sqlite://"), None);
        assert_eq!(path_from_url("postgres://x"), None);
    }
}
