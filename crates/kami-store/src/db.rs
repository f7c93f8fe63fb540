//! The small SQL surface the business logic is written against, implemented once for SQLite
//! (rusqlite) and once for PostgreSQL (postgres). Queries are written in PostgreSQL syntax with
//! `$1`-style parameters; the SQLite side rewrites `$N` to `?N` and drops row-lock clauses
//! (`FOR UPDATE [OF t] [SKIP LOCKED]`), which a single-writer SQLite does not need.

use crate::error::{Result, StoreError};

/// Build a parameter slice: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::db::Value::from($v)),*] };
}

pub use crate::row::{FromValue, Row, Value};

/// A transaction (or, for reads, a connection) the business logic runs against.
pub trait Tx {
    fn exec(&mut self, sql: &'static str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>>;

    fn query_opt(&mut self, sql: &'static str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// Serialise the transactions that pass the same `key` until commit (PostgreSQL: an
    /// advisory transaction lock). SQLite has one writer, so nothing to do there.
    fn lock_key(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }
    /// As [`Tx::lock_key`], shared: transactions holding it shared run together; one that
    /// takes it exclusive waits for them all (and they for it).
    fn lock_key_shared(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }
    /// For the few places where one round trip matters enough to call a PostgreSQL function.
    fn is_postgres(&self) -> bool {
        false
    }
    /// Run an `INSERT … RETURNING id` of one row and return the id. SQLite runs it without
    /// the `RETURNING` (which buffers its rows in a temporary table) and reads the row id.
    fn insert_returning_id(&mut self, sql: &'static str, params: &[Value]) -> Result<i64> {
        self.query_one(sql, params)?.get("id")
    }
    fn query_one(&mut self, sql: &'static str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("expected a row from: {sql}")))
    }
}

/// Remove every `FOR UPDATE [OF t] [SKIP LOCKED]` clause (SQLite has no row locks).
fn strip_row_locks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find(" FOR UPDATE") {
        out.push_str(&rest[..i]);
        rest = &rest[i + " FOR UPDATE".len()..];
        if let Some(after) = rest.strip_prefix(" OF ") {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            rest = &after[end..];
        }
        if let Some(after) = rest.strip_prefix(" SKIP LOCKED") {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// [`to_sqlite`] of one of the program's SQL texts, rewritten once and remembered: every
/// statement runs through here, and rewriting costs more than running a small one. Keyed by
/// the text's address (a literal keeps one for the life of the program); bounded by the
/// number of SQL literals in the program.
pub(crate) fn sqlite_sql(sql: &'static str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{OnceLock, RwLock};
    type Rewritten = RwLock<HashMap<(usize, usize), &'static str>>;
    static REWRITTEN: OnceLock<Rewritten> = OnceLock::new();
    let map = REWRITTEN.get_or_init(Rewritten::default);
    let key = (sql.as_ptr() as usize, sql.len());
    if let Some(s) = map.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return s;
    }
    let mut w = map.write().unwrap_or_else(|p| p.into_inner());
    w.entry(key)
        .or_insert_with(|| Box::leak(to_sqlite(sql).into_boxed_str()))
}

/// Rewrite PostgreSQL-style SQL for SQLite: `$N` → `?N`, drop `FOR UPDATE [SKIP LOCKED]`.
pub(crate) fn to_sqlite(sql: &str) -> String {
    let sql = strip_row_locks(sql);
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_for_sqlite() {
        assert_eq!(
            to_sqlite("SELECT id FROM t WHERE a = $1 AND b = $12 LIMIT $2 FOR UPDATE SKIP LOCKED"),
            "SELECT id FROM t WHERE a = ?1 AND b = ?12 LIMIT ?2"
        );
        assert_eq!(
            to_sqlite("SELECT 1 FROM t WHERE x=$3 FOR UPDATE"),
            "SELECT 1 FROM t WHERE x=?3"
        );
        assert_eq!(
            to_sqlite("SELECT 1 FROM t o JOIN u ON 1 FOR UPDATE OF o SKIP LOCKED"),
            "SELECT 1 FROM t o JOIN u ON 1"
        );
        static SQL: &str = "SELECT a FROM t WHERE b = $1 FOR UPDATE";
        assert_eq!(sqlite_sql(SQL), "SELECT a FROM t WHERE b = ?1");
        assert!(
            std::ptr::eq(sqlite_sql(SQL), sqlite_sql(SQL)),
            "rewritten once"
        );
        assert_eq!(
            to_sqlite(
                "WITH p AS (SELECT id FROM c LIMIT $1 FOR UPDATE SKIP LOCKED) UPDATE c SET x = $2"
            ),
            "WITH p AS (SELECT id FROM c LIMIT ?1) UPDATE c SET x = ?2"
        );
    }
}
