//! Calibration: how many durable single-row commits per second this disk (or this
//! PostgreSQL server) does, measured in the same run as the load.

use crate::stats::{summarize_us, LatencySummary};
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Commits done before timing starts (file creation, first WAL frames, plan caching).
const WARMUP_COMMITS: u64 = 20;

/// Roughly the size of an order row.
const PAYLOAD: &str = "kami-bench calibration row: order_no=K202501010000000000 \
email=buyer@bench.test amount=100 currency=CNY status=pending channel=sandbox \
method=sandbox access_token=0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The file (SQLite) or database (PostgreSQL) written to.
    pub target: String,
    pub commits: u64,
    pub seconds: f64,
    pub commits_per_s: f64,
    pub us_per_commit: f64,
    /// Per-commit latency distribution.
    pub latency: Option<LatencySummary>,
    /// Durability-relevant settings as the database reports them.
    pub settings: BTreeMap<String, String>,
}

fn finish(
    backend: &str,
    target: String,
    samples: &mut [u64],
    elapsed_s: f64,
    settings: BTreeMap<String, String>,
) -> Calibration {
    let commits = samples.len() as u64;
    let (per_s, us) = if commits > 0 && elapsed_s > 0.0 {
        (
            commits as f64 / elapsed_s,
            elapsed_s * 1_000_000.0 / commits as f64,
        )
    } else {
        (0.0, 0.0)
    };
    Calibration {
        backend: backend.to_string(),
        target,
        commits,
        seconds: elapsed_s,
        commits_per_s: per_s,
        us_per_commit: us,
        latency: summarize_us(samples),
        settings,
    }
}

/// `commits` single-row `BEGIN IMMEDIATE; INSERT; COMMIT` transactions on a fresh SQLite
/// file in `dir` with `journal_mode=WAL` and `synchronous=FULL` (the file and its WAL are
/// removed afterwards).
pub fn calibrate_sqlite(dir: &Path, commits: u64) -> Result<Calibration> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create calibration dir {}", dir.display()))?;
    let path = dir.join(format!("kami-bench-calibrate-{}.db", crate::rand_hex(8)));
    let result = run_sqlite(&path, commits);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    result
}

fn run_sqlite(path: &Path, commits: u64) -> Result<Calibration> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open SQLite file {}", path.display()))?;
    let journal: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .context("PRAGMA journal_mode=WAL")?;
    if !journal.eq_ignore_ascii_case("wal") {
        bail!(
            "SQLite refused WAL mode on {} (got {journal})",
            path.display()
        );
    }
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .context("PRAGMA synchronous=FULL")?;
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .context("PRAGMA synchronous")?;
    conn.execute_batch(
        "CREATE TABLE calibration (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL)",
    )
    .context("create calibration table")?;

    let mut stmt = conn
        .prepare("INSERT INTO calibration (n, payload) VALUES (?1, ?2)")
        .context("prepare insert")?;
    let mut one = |i: u64| -> Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        stmt.execute(params![i as i64, PAYLOAD])?;
        conn.execute_batch("COMMIT")?;
        Ok(())
    };
    for i in 0..WARMUP_COMMITS {
        one(i).context("warm-up commit")?;
    }
    let mut samples = Vec::with_capacity(commits as usize);
    let start = Instant::now();
    for i in 0..commits {
        let t = Instant::now();
        one(WARMUP_COMMITS + i).context("calibration commit")?;
        samples.push(t.elapsed().as_micros() as u64);
    }
    let elapsed = start.elapsed().as_secs_f64();

    let mut settings = BTreeMap::new();
    settings.insert("journal_mode".to_string(), journal.to_lowercase());
    settings.insert(
        "synchronous".to_string(),
        match synchronous {
            0 => "OFF".to_string(),
            1 => "NORMAL".to_string(),
            2 => "FULL".to_string(),
            3 => "EXTRA".to_string(),
            n => n.to_string(),
        },
    );
    settings.insert(
        "sqlite_version".to_string(),
        rusqlite::version().to_string(),
    );
    Ok(finish(
        "sqlite",
        path.display().to_string(),
        &mut samples,
        elapsed,
        settings,
    ))
}

/// `commits` single-row autocommit `INSERT`s into a scratch table of the database at `url`
/// (the table is dropped afterwards). Blocking: call it outside the tokio runtime.
pub fn calibrate_postgres(url: &str, commits: u64) -> Result<Calibration> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .with_context(|| format!("cannot connect to {}", crate::pg::redact(url)))?;
    let table = format!("kami_bench_calibration_{}", crate::rand_hex(6));
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, payload TEXT NOT NULL)"
        ))
        .context("create calibration table")?;
    let result = run_postgres(&mut client, &table, commits);
    let _ = client.batch_execute(&format!("DROP TABLE IF EXISTS {table}"));
    let mut cal = result?;
    let dbname = client
        .query_one("SELECT current_database()", &[])
        .ok()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .unwrap_or_default();
    cal.target = format!("{} (database {dbname})", crate::pg::redact(url));
    Ok(cal)
}

fn run_postgres(client: &mut postgres::Client, table: &str, commits: u64) -> Result<Calibration> {
    let mut settings = BTreeMap::new();
    for name in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "full_page_writes",
        "commit_delay",
    ] {
        if let Ok(row) = client.query_one(&format!("SHOW {name}"), &[]) {
            if let Ok(v) = row.try_get::<_, String>(0) {
                settings.insert(name.to_string(), v);
            }
        }
    }
    let stmt = client
        .prepare(&format!("INSERT INTO {table} (n, payload) VALUES ($1, $2)"))
        .context("prepare insert")?;
    for i in 0..WARMUP_COMMITS {
        client
            .execute(&stmt, &[&(i as i64), &PAYLOAD])
            .context("warm-up insert")?;
    }
    let mut samples = Vec::with_capacity(commits as usize);
    let start = Instant::now();
    for i in 0..commits {
        let t = Instant::now();
        client
            .execute(&stmt, &[&((WARMUP_COMMITS + i) as i64), &PAYLOAD])
            .context("calibration insert")?;
        samples.push(t.elapsed().as_micros() as u64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(finish(
        "postgres",
        String::new(),
        &mut samples,
        elapsed,
        settings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_calibration_runs_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cal = calibrate_sqlite(dir.path(), 50).expect("calibration");
        assert_eq!(cal.backend, "sqlite");
        assert_eq!(cal.commits, 50);
        assert!(cal.commits_per_s > 0.0);
        assert!(cal.us_per_commit > 0.0);
        assert_eq!(cal.latency.as_ref().map(|l| l.count), Some(50));
        assert_eq!(
            cal.settings.get("journal_mode").map(String::as_str),
            Some("wal")
        );
        assert_eq!(
            cal.settings.get("synchronous").map(String::as_str),
            Some("FULL")
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .collect();
        assert!(left.is_empty(), "calibration files left behind: {left:?}");
    }

    #[test]
    fn sqlite_calibration_zero_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cal = calibrate_sqlite(dir.path(), 0).expect("calibration");
        assert_eq!(cal.commits, 0);
        assert_eq!(cal.commits_per_s, 0.0);
        assert!(cal.latency.is_none());
    }
}
