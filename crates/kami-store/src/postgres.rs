//! PostgreSQL backend: a pool of synchronous `postgres` clients used from blocking tasks.
//! Row claims use `FOR UPDATE SKIP LOCKED`, status changes compare-and-set, and a
//! transaction that loses a serialization race or a deadlock is retried from the start.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{GenericClient, NoTls, Statement};
use tokio::sync::Semaphore;

use crate::db::{Row, Tx, Value};
use crate::error::{Result, StoreError};

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("integer parameter for a {ty} column").into()),
            },
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

pub(crate) struct PgConn {
    client: postgres::Client,
    statements: HashMap<&'static str, Statement>,
    /// When a transaction last succeeded on this connection: a connection that just worked
    /// is not asked again before its next use (see `PgManager::is_valid`).
    last_ok: Instant,
}

/// A pooled connection idle longer than this is checked with an empty query before use; one
/// used more recently is trusted (under load that saves a round trip per transaction).
const TRUST_RECENT: Duration = Duration::from_secs(2);

fn convert_row(row: &postgres::Row, names: &Arc<[String]>) -> Result<Row> {
    let mut vals = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            ref other => {
                return Err(StoreError::Corrupt(format!(
                    "unsupported column type {other}"
                )))
            }
        };
        vals.push(v.unwrap_or(Value::Null));
    }
    Ok(Row::new(names.clone(), vals))
}

fn as_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A transaction, or for reads a plain connection (one statement needs no BEGIN/COMMIT).
struct PgTx<'a, C: GenericClient> {
    client: &'a mut C,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl<C: GenericClient> PgTx<'_, C> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

impl<C: GenericClient> Tx for PgTx<'_, C> {
    fn exec(&mut self, sql: &'static str, params: &[Value]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.client.execute(&stmt, &as_params(params))?)
    }

    fn query(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let names: Arc<[String]> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        self.client
            .query(&stmt, &as_params(params))?
            .iter()
            .map(|r| convert_row(r, &names))
            .collect()
    }

    fn lock_key(&mut self, key: &str) -> Result<()> {
        // 7263007: kami's class of per-key locks (the migrations take 7263001).
        self.exec(
            "SELECT pg_advisory_xact_lock(7263007, hashtext($1))",
            crate::params![key],
        )
        .map(|_| ())
    }

    fn is_postgres(&self) -> bool {
        true
    }
}

pub(crate) struct PgManager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        let client = self.config.connect(NoTls)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            last_ok: Instant::now(),
        })
    }
    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        if conn.last_ok.elapsed() < TRUST_RECENT && !conn.client.is_closed() {
            return Ok(());
        }
        conn.client.simple_query("").map(|_| ())?;
        conn.last_ok = Instant::now();
        Ok(())
    }
    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

pub(crate) struct Postgres {
    /// Always `Some` until dropped (see `Drop`).
    pool: Option<r2d2::Pool<PgManager>>,
    /// Bounds blocking tasks to the pool size so waiting happens on the async side.
    permits: Arc<Semaphore>,
}

/// SQLSTATEs after which the whole transaction is simply run again.
fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(m) if m.starts_with("40001") || m.starts_with("40P01"))
}

impl Postgres {
    pub(crate) fn open(url: &str, max_connections: u32) -> Result<Postgres> {
        let mut config = postgres::Config::from_str(url)
            .map_err(|e| StoreError::Database(format!("bad postgres url: {e}")))?;
        config.connect_timeout(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("kami");
        }
        let size = max_connections.clamp(1, 200);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(PgManager { config })?;
        Ok(Postgres {
            pool: Some(pool),
            permits: Arc::new(Semaphore::new(size as usize)),
        })
    }

    fn pool(&self) -> Result<r2d2::Pool<PgManager>> {
        self.pool
            .clone()
            .ok_or_else(|| StoreError::Database("pool closed".into()))
    }

    pub(crate) async fn run<T, F>(&self, read_only: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Database("pool closed".into()))?;
        let pool = self.pool()?;
        tokio::task::spawn_blocking(move || {
            let mut f = f;
            let mut conn = pool.get()?;
            let PgConn {
                client,
                statements,
                last_ok,
            } = &mut *conn;
            if read_only {
                // Reads here are single statements or read immutable rows (delivered keys):
                // autocommit saves two round trips.
                let r = f(&mut PgTx { client, statements });
                if r.is_ok() {
                    *last_ok = Instant::now();
                }
                return r;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut tx = client.transaction()?;
                let r = f(&mut PgTx {
                    client: &mut tx,
                    statements: &mut *statements,
                });
                let r = match r {
                    Ok(v) => tx
                        .commit()
                        .map(|_| v)
                        .map_err(StoreError::from)
                        .inspect(|_| {
                            *last_ok = Instant::now();
                        }),
                    Err(e) => {
                        let _ = tx.rollback();
                        Err(e)
                    }
                };
                match r {
                    Err(e) if is_retryable(&e) && attempt < 8 => {
                        tracing::debug!(attempt, "retrying transaction: {e}");
                        std::thread::sleep(Duration::from_millis(2 * attempt));
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| StoreError::Database(format!("postgres task: {e}")))?
    }

    /// Run a closure with a raw client (migrations).
    pub(crate) async fn with_client<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut postgres::Client) -> Result<T> + Send + 'static,
    {
        let pool = self.pool()?;
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            let r = f(&mut conn.client);
            // The schema may have changed under cached statements.
            conn.statements.clear();
            r
        })
        .await
        .map_err(|e| StoreError::Database(format!("postgres task: {e}")))?
    }
}

impl Drop for Postgres {
    /// A synchronous `postgres::Client` blocks on its own runtime when dropped, which panics on
    /// an async worker thread; close the pool on a plain thread instead.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::Builder::new()
                .name("kami-pg-close".into())
                .spawn(move || drop(pool));
        }
    }
}
