//! Throw-away databases: SQLite in a temp dir, or a PostgreSQL database created for one test
//! and dropped with it.

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL tests connect unless `KAMI_TEST_PG_URL` says otherwise.
const PG_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server the tests create their databases on (`KAMI_TEST_PG_URL`).
pub fn pg_admin_url() -> String {
    std::env::var("KAMI_TEST_PG_URL").unwrap_or_else(|_| PG_DEFAULT_URL.into())
}

/// A database that disappears with the test.
pub struct TestDb {
    url: String,
    kind: Kind,
}

enum Kind {
    /// Held for its `Drop`, which removes the directory.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        name: String,
    },
}

impl TestDb {
    /// A fresh, empty database. For PostgreSQL, an unreachable server fails the test with a
    /// message saying where it was looked for.
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir for SQLite");
                let url = format!("sqlite://{}/kami.db", dir.path().display());
                TestDb {
                    url,
                    kind: Kind::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("kami_t_{}", hex_rand());
                let admin = pg_admin_url();
                let create = format!("CREATE DATABASE {name}");
                // The postgres crate runs its own runtime: not on an async worker thread.
                let created = tokio::task::spawn_blocking(move || {
                    let mut c = postgres::Client::connect(&admin, postgres::NoTls)?;
                    c.batch_execute(&create)
                })
                .await
                .expect("PostgreSQL setup task");
                if let Err(e) = created {
                    // The connection error's own text is terse; its cause says what happened.
                    let cause = std::error::Error::source(&e)
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default();
                    crate::require(
                        "PostgreSQL",
                        "Start it, or point KAMI_TEST_PG_URL at one (default \
                         postgres://postgres@127.0.0.1:5432/postgres).",
                        format_args!("cannot create a database at {}: {e}{cause}", pg_admin_url()),
                    );
                }
                let url = replace_db(&pg_admin_url(), &name);
                TestDb {
                    url,
                    kind: Kind::Postgres { name },
                }
            }
        }
    }

    /// The database URL, as `[database] url` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { name } = &self.kind {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // Best effort; a leftover test database is harmless.
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = postgres::Client::connect(&pg_admin_url(), postgres::NoTls) {
                    let _ = c.batch_execute(&drop);
                }
            })
            .join();
        }
    }
}

/// Swap the database name in a postgres URL.
pub fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// 16 random hex digits, for names that must not collide between tests.
pub fn hex_rand() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::replace_db;

    #[test]
    fn replace_db_keeps_host_and_query() {
        assert_eq!(
            replace_db("postgres://u@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5432/t1?sslmode=disable"
        );
        assert_eq!(replace_db("postgres://u@h", "t2"), "postgres://u@h/t2");
    }
}
