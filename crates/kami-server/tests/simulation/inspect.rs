//! The simulation's own view of kami's database: raw SQL from outside kami, as an auditor
//! would read it (the invariants), and the one test-only write (sabotage) that proves the
//! invariants can fail. SQLite through a connection of its own; PostgreSQL through the
//! blocking client on a thread of its own (it cannot run inside the async runtime).

use std::sync::mpsc;

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

pub type Row = Vec<Cell>;

pub fn int(r: &Row, i: usize) -> i64 {
    match &r[i] {
        Cell::Int(v) => *v,
        other => panic!("column {i} is not an integer: {other:?}"),
    }
}

pub fn opt_int(r: &Row, i: usize) -> Option<i64> {
    match &r[i] {
        Cell::Null => None,
        _ => Some(int(r, i)),
    }
}

pub fn text(r: &Row, i: usize) -> String {
    match &r[i] {
        Cell::Text(v) => v.clone(),
        Cell::Int(v) => v.to_string(),
        Cell::Null => String::new(),
    }
}

type Job = (String, bool, mpsc::Sender<Result<Vec<Row>, String>>);

pub enum Inspector {
    Sqlite(rusqlite::Connection),
    Postgres(mpsc::Sender<Job>),
}

impl Inspector {
    pub fn open(url: &str) -> Inspector {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let c = rusqlite::Connection::open(path).expect("open the SQLite file");
            c.busy_timeout(std::time::Duration::from_secs(10))
                .expect("busy timeout");
            return Inspector::Sqlite(c);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let url = url.to_owned();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            for (sql, write, reply) in rx {
                let r = if write {
                    c.batch_execute(&sql).map(|_| Vec::new())
                } else {
                    c.query(sql.as_str(), &[])
                        .map(|rows| rows.iter().map(pg_row).collect())
                };
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
        });
        Inspector::Postgres(tx)
    }

    /// Rows of a read (panics on a bad query: that is the harness's bug).
    pub fn rows(&self, sql: &str) -> Vec<Row> {
        self.run(sql, false)
            .unwrap_or_else(|e| panic!("inspection query failed: {e}\n{sql}"))
    }

    /// A test-only write straight into the database (sabotage).
    pub fn write(&self, sql: &str) {
        self.run(sql, true)
            .unwrap_or_else(|e| panic!("sabotage write failed: {e}\n{sql}"));
    }

    fn run(&self, sql: &str, write: bool) -> Result<Vec<Row>, String> {
        match self {
            Inspector::Sqlite(c) => {
                if write {
                    return c
                        .execute_batch(sql)
                        .map(|_| Vec::new())
                        .map_err(|e| e.to_string());
                }
                let mut stmt = c.prepare_cached(sql).map_err(|e| e.to_string())?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => Cell::Null,
                                    rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                                    rusqlite::types::ValueRef::Real(v) => Cell::Int(v as i64),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                    rusqlite::types::ValueRef::Blob(_) => {
                                        Cell::Text("<blob>".into())
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Row>>()
                    })
                    .map_err(|e| e.to_string())?;
                rows.collect::<rusqlite::Result<Vec<Row>>>()
                    .map_err(|e| e.to_string())
            }
            Inspector::Postgres(tx) => {
                let (reply, rx) = mpsc::channel();
                tx.send((sql.to_owned(), write, reply))
                    .map_err(|_| "inspector thread gone".to_owned())?;
                rx.recv().map_err(|_| "inspector thread gone".to_owned())?
            }
        }
    }
}

fn pg_row(r: &postgres::Row) -> Row {
    use postgres::types::Type;
    (0..r.len())
        .map(|i| {
            let t = r.columns()[i].type_().clone();
            let cell = if t == Type::INT8 {
                r.get::<_, Option<i64>>(i).map(Cell::Int)
            } else if t == Type::INT4 {
                r.get::<_, Option<i32>>(i).map(|v| Cell::Int(i64::from(v)))
            } else if t == Type::INT2 {
                r.get::<_, Option<i16>>(i).map(|v| Cell::Int(i64::from(v)))
            } else if t == Type::BOOL {
                r.get::<_, Option<bool>>(i).map(|v| Cell::Int(i64::from(v)))
            } else if t == Type::BYTEA {
                r.get::<_, Option<Vec<u8>>>(i)
                    .map(|_| Cell::Text("<blob>".into()))
            } else {
                r.get::<_, Option<String>>(i).map(Cell::Text)
            };
            cell.unwrap_or(Cell::Null)
        })
        .collect()
}
