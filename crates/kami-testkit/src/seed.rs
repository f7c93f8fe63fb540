//! Bulk data for measurements: many orders written straight into the database in one
//! statement (as an import would), not through the order engine.

use crate::inspect::sqlite_path;

/// Insert `n` orders of product `product_id` spread over the 30 days before `now_ms` (one
/// every 26 s): two in three paid and delivered, one in ten in USD, the rest expired unpaid;
/// plus one recorded `sandbox` create call per order.
pub async fn orders(url: &str, product_id: i64, n: i64, now_ms: i64) {
    // Order numbers as kami makes them: `K` + 14 digits + 12 digits (`K20260101000000` + g).
    const SELECT: &str = "SELECT 'K20260101000000' || ORDER_TAIL, PID, 1, 1000 + (g % 7) * 100, \
         CASE WHEN g % 10 = 0 THEN 'USD' ELSE 'CNY' END, 'b' || g || '@example.com', 'sandbox', \
         'sandbox', CASE WHEN g % 3 = 0 THEN 'expired' ELSE 'delivered' END, 'x', \
         NOW_MS - g * 26000, NOW_MS - g * 26000 + 900000, \
         CASE WHEN g % 3 = 0 THEN NULL ELSE NOW_MS - g * 26000 + 60000 END, \
         CASE WHEN g % 3 = 0 THEN NULL ELSE NOW_MS - g * 26000 + 60000 END";
    const INTO: &str = "INSERT INTO orders (order_no, product_id, quantity, amount, currency, \
         email, method, channel_id, status, access_token_hash, created_at, expires_at, paid_at, \
         delivered_at) ";
    const CALLS: &str = "INSERT INTO channel_calls (channel_id, method, outcome, duration_ms, at) \
         SELECT 'sandbox', 'create', CASE WHEN g % 50 = 0 THEN 'error' ELSE 'ok' END, \
         20 + (g % 97), NOW_MS - g * 26000 ";
    let postgres = sqlite_path(url).is_none();
    let fill = |s: &str| {
        let tail = if postgres {
            "lpad(CAST(g AS TEXT), 12, '0')"
        } else {
            "printf('%012d', g)"
        };
        s.replace("PID", &product_id.to_string())
            .replace("NOW_MS", &now_ms.to_string())
            .replace("ORDER_TAIL", tail)
    };
    let url = url.to_owned();
    let series_pg = format!("FROM generate_series(CAST(1 AS BIGINT), {n}) AS s(g)");
    let series_lite = format!(
        "FROM (WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) \
         SELECT g FROM s)"
    );
    let statements = match sqlite_path(&url) {
        Some(_) => [
            fill(&format!("{INTO}{SELECT} {series_lite}")),
            fill(&format!("{CALLS}{series_lite}")),
        ],
        None => [
            fill(&format!("{INTO}{SELECT} {series_pg}")),
            fill(&format!("{CALLS}{series_pg}")),
        ],
    };
    tokio::task::spawn_blocking(move || match sqlite_path(&url) {
        Some(db) => {
            let c = rusqlite::Connection::open(db).expect("open the SQLite file");
            c.busy_timeout(std::time::Duration::from_secs(30))
                .expect("busy timeout");
            for sql in &statements {
                c.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            }
        }
        None => {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            for sql in &statements {
                c.batch_execute(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            }
            c.batch_execute("ANALYZE").expect("analyze");
        }
    })
    .await
    .expect("seed task")
}
