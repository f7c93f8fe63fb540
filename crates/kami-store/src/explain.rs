//! Query plans for the tests that prove a read is served by an index: each query's plan text,
//! on PostgreSQL with sequential scans switched off for the transaction (so the plan shows
//! whether an index *can* serve it whatever the table's size), on SQLite `EXPLAIN QUERY PLAN`.

use kami_core::Millis;

use crate::db::Tx;
use crate::error::Result;
use crate::params;

/// One query to explain: its name, its PostgreSQL `EXPLAIN …` and its SQLite
/// `EXPLAIN QUERY PLAN …` text.
pub(crate) type Explained = (&'static str, &'static str, &'static str);

/// The plan of each query, by name, run with the parameters `$1 = a`, `$2 = b`.
pub(crate) fn plans(
    tx: &mut dyn Tx,
    queries: &[Explained],
    a: Millis,
    b: Millis,
) -> Result<Vec<(&'static str, String)>> {
    let postgres = tx.is_postgres();
    if postgres {
        tx.exec("SET LOCAL enable_seqscan = off", params![])?;
    }
    let column = if postgres { "QUERY PLAN" } else { "detail" };
    let mut out = Vec::with_capacity(queries.len());
    for (name, pg, lite) in queries {
        let sql = if postgres { pg } else { lite };
        let lines = tx
            .query(sql, params![a, b])?
            .iter()
            .map(|r| r.get::<String>(column))
            .collect::<Result<Vec<_>>>()?;
        out.push((*name, lines.join("\n")));
    }
    Ok(out)
}
