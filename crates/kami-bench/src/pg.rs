//! PostgreSQL helpers: a throw-away `kami_bench_<random>` database on the server the
//! user points at, and database-URL parsing shared with the SQLite side.

use anyhow::{bail, Context, Result};
use postgres::{Client, NoTls};
use reqwest::Url;
use std::path::PathBuf;

/// True when `url` names a PostgreSQL server (`postgres://` or `postgresql://`).
pub fn is_postgres(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The same connection URL with its database name replaced by `dbname`
/// (user, password, host, port and query parameters are kept).
pub fn with_database(url: &str, dbname: &str) -> Result<String> {
    if !is_postgres(url) {
        bail!("not a postgres:// URL: {}", redact(url));
    }
    let mut parsed = Url::parse(url.trim())
        .with_context(|| format!("cannot parse database URL {}", redact(url)))?;
    parsed.set_path(&format!("/{dbname}"));
    Ok(parsed.to_string())
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            if u.set_password(Some("***")).is_ok() {
                u.to_string()
            } else {
                "<database url>".to_string()
            }
        }
        Ok(u) => u.to_string(),
        Err(_) => "<database url>".to_string(),
    }
}

/// The file path of a `sqlite://PATH[?params]` or `sqlite:PATH` URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// A fresh database created for this run; dropped by [`BenchDatabase::drop_now`] or,
/// failing that, when the value is dropped.
pub struct BenchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
    dropped: bool,
}

impl BenchDatabase {
    /// Connects to the server of `admin_url` and creates `kami_bench_<random>`.
    pub fn create(admin_url: &str) -> Result<Self> {
        let name = format!("kami_bench_{}", crate::rand_hex(10));
        let url = with_database(admin_url, &name)?;
        let mut client = Client::connect(admin_url, NoTls)
            .with_context(|| format!("cannot connect to {}", redact(admin_url)))?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .with_context(|| format!("CREATE DATABASE {name} failed"))?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
            url,
            dropped: false,
        })
    }

    /// Drops the database (terminating leftover connections where the server supports it).
    pub fn drop_now(&mut self) -> Result<()> {
        if self.dropped {
            return Ok(());
        }
        let mut client = Client::connect(&self.admin_url, NoTls)
            .with_context(|| format!("cannot connect to {}", redact(&self.admin_url)))?;
        let name = &self.name;
        if client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .is_err()
        {
            // PostgreSQL < 13 has no FORCE: terminate the backends by hand.
            let _ = client.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[name],
            );
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .with_context(|| format!("DROP DATABASE {name} failed"))?;
        }
        self.dropped = true;
        Ok(())
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Err(e) = self.drop_now() {
            eprintln!(
                "warning: could not drop database {}: {e:#}; drop it by hand",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1/postgres", "kami_bench_x").ok(),
            Some("postgres://postgres@127.0.0.1/kami_bench_x".to_string())
        );
        assert_eq!(
            with_database("postgresql://u:p%40ss@db:5433/shop?sslmode=disable", "b").ok(),
            Some("postgresql://u:p%40ss@db:5433/b?sslmode=disable".to_string())
        );
        assert_eq!(
            with_database("postgres://127.0.0.1:5432", "b").ok(),
            Some("postgres://127.0.0.1:5432/b".to_string())
        );
        assert!(with_database("sqlite://data/kami.db", "b").is_err());
    }

    #[test]
    fn detects_postgres() {
        assert!(is_postgres("postgres://x"));
        assert!(is_postgres("PostgreSQL://x"));
        assert!(!is_postgres("sqlite://data/kami.db"));
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db".to_string()
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db".to_string());
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/x/data/kami.db"),
            Some(PathBuf::from("/tmp/x/data/kami.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://data/kami.db?mode=rwc"),
            Some(PathBuf::from("data/kami.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:kami.db"),
            Some(PathBuf::from("kami.db"))
        );
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
