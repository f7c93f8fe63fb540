//! Looking at a test database from outside kami, as an operator (or an attacker with a copy of
//! the files) would: its size on disk, raw SQL counts, and the alert signals written.

use std::path::PathBuf;

/// The SQLite database file of a `sqlite://` URL (`None` for PostgreSQL).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").map(PathBuf::from)
}

/// Bytes the database takes: for SQLite the file with its WAL and shared-memory files; for
/// PostgreSQL `pg_database_size`.
pub async fn database_bytes(url: &str) -> u64 {
    match sqlite_path(url) {
        Some(db) => ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = db.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum(),
        None => {
            let n = scalar(url, "SELECT pg_database_size(current_database())").await;
            u64::try_from(n).expect("a database size is not negative")
        }
    }
}

/// The one integer a SQL query returns (`SELECT COUNT(*) ...`), on either backend (a
/// PostgreSQL `integer` needs `CAST(... AS BIGINT)`).
pub async fn scalar(url: &str, sql: &str) -> i64 {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    // Both clients block: not on an async worker thread.
    tokio::task::spawn_blocking(move || match sqlite_path(&url) {
        Some(db) => {
            let c = rusqlite::Connection::open(db).expect("open the SQLite file");
            c.query_row(&sql, [], |r| r.get::<_, i64>(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
        None => {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            c.query_one(&sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get::<_, i64>(0)
        }
    })
    .await
    .expect("query task")
}

/// The `alert.signal` outbox rows (applied or not) of `event` for `subject`, firing or
/// resolving.
pub async fn alert_signals(url: &str, event: &str, subject: &str, firing: bool) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'alert.signal' \
         AND payload LIKE '%\"event\":\"{event}\"%' \
         AND payload LIKE '%\"subject\":\"{subject}\"%' \
         AND payload LIKE '%\"firing\":{firing}%'"
    );
    scalar(url, &sql).await
}
