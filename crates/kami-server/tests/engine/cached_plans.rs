//! The order path's lookups stay on their own index whatever plan PostgreSQL caches. The
//! statements are the ones `kami-store` sends (`kami_store::planned`; the pending counts are
//! its function itself).
//!
//! A plan made while the tables are empty (a new shop, the benchmark) costs every usable
//! index alike; PostgreSQL keeps the newest index on a tie and the pooled connection keeps the
//! plan. Twice that was an index that answers the lookup by scanning a whole range (migrations
//! 0028, 0029). Here the plans are made on empty tables, generic as a connection's are after
//! five runs, then the tables are filled and the pages the same plans read are counted: on
//! the wrong index they grow with the rows, on the right one they stay a handful.
//! PostgreSQL only: SQLite plans each statement when it is prepared, by rule.

use kami_store::planned;
use kami_testkit::{Backend, TestApp};
use postgres::{Client, NoTls};

/// Pending orders, each from its own client and email, with a payment each; and the shop's
/// history, delivered orders the sweep must not read. Expiry (and payment creation) times are
/// shuffled against the insertion order, so a scan in their order visits a page per row.
const ROWS: i64 = 400;
const HISTORY: i64 = 2_000;
/// Pages a keyed lookup may read (index descent and the row); the wrong index reads hundreds.
const FEW_PAGES: i64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at KAMI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)"]
async fn lookups_planned_on_empty_tables_stay_on_their_index() {
    let app = TestApp::spawn(Backend::Postgres).await;
    app.create_product("plan", 100, "auto").await;
    let url = app.db_url.clone();
    tokio::task::spawn_blocking(move || probe(&url))
        .await
        .unwrap();
}

fn probe(url: &str) {
    let mut db = Client::connect(url, NoTls).unwrap();
    db.batch_execute(&format!(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE lookup(text, text) AS {};
         PREPARE sweep(bigint, bigint) AS {};",
        planned::PAYMENT_LOOKUP,
        planned::EXPIRY_SWEEP,
    ))
    .unwrap();
    // Plan everything on empty tables, in this session.
    db.batch_execute(
        "BEGIN; SELECT * FROM kami_pending_counts('10.0.0.1', 'first@plan.test', 0); COMMIT;
         EXECUTE lookup('sandbox', 'T0'); EXECUTE sweep(0, 10);",
    )
    .unwrap();

    db.batch_execute(&format!(
        "INSERT INTO orders (order_no, product_id, quantity, amount, currency, email, method,
                             channel_id, status, access_token_hash, created_at, expires_at,
                             client_ip)
         SELECT 'P' || i, (SELECT id FROM products WHERE slug = 'plan'), 1, 100, 'CNY',
                'b' || i || '@plan.test', 'sandbox', 'sandbox',
                CASE WHEN i <= {ROWS} THEN 'pending' ELSE 'delivered' END, 'h' || i,
                1000, 100000 + (i * 7919) % ({ROWS} + {HISTORY}), '10.1.' || (i / 256) || '.' || (i % 256)
         FROM generate_series(1, {ROWS} + {HISTORY}) AS i;
         INSERT INTO payments (order_id, channel_id, trade_no, amount, currency, status,
                               created_at)
         SELECT id, 'sandbox', 'T' || order_no, 100, 'CNY', 'pending', expires_at FROM orders;
         INSERT INTO payment_events (channel_id, received_at, http_method, query, headers, body,
                                     verified, trade_no, outcome, detail)
         SELECT 'sandbox', expires_at, 'POST', '', '', '', 1, 'T' || order_no, 'unconfirmed', ''
         FROM orders;"
    ))
    .unwrap();

    // The caps' counts: the client and the email of one of the orders, at a time all are
    // unexpired; each count finds exactly its own order.
    let (pages, row) = pages_read(
        &mut db,
        "SELECT client_n, email_n FROM kami_pending_counts('10.1.0.7', 'b7@plan.test', 0)",
    );
    assert_eq!(row, (1, 1), "each key holds one pending order");
    assert!(
        pages <= FEW_PAGES,
        "the pending counts read {pages} pages for {ROWS} orders"
    );

    // A notification's payment lookup, with whether the trade was held as unconfirmed: every
    // trade here was, once.
    let (pages, _) = pages_read(&mut db, "EXECUTE lookup('sandbox', 'TP7')");
    let payments = ROWS + HISTORY;
    assert!(
        pages <= FEW_PAGES,
        "the payment lookup read {pages} pages for {payments} payments, each held once"
    );

    // The expiry sweep visits the pending orders (one page each at most), never the history.
    let (pages, _) = pages_read(&mut db, "EXECUTE sweep(100005, 10)");
    assert!(
        pages <= ROWS + FEW_PAGES,
        "the expiry sweep read {pages} pages for {ROWS} pending orders among {HISTORY} more"
    );
}

/// Shared pages the statement read (hit or read from disk, nested statements included: the
/// top node's `Buffers:` line) and, when it returns two numbers, the first row.
fn pages_read(db: &mut Client, statement: &str) -> (i64, (i64, i64)) {
    let mut tx = db.transaction().unwrap();
    let row = tx
        .query(statement, &[])
        .unwrap()
        .first()
        .and_then(|r| Some((r.try_get::<_, i64>(0).ok()?, r.try_get::<_, i64>(1).ok()?)));
    let plan: Vec<String> = tx
        .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {statement}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.rollback().unwrap();
    let buffers = plan
        .iter()
        .find_map(|l| l.trim().strip_prefix("Buffers: shared "))
        .unwrap_or_else(|| panic!("no Buffers line in {plan:#?}"));
    let pages = buffers
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| matches!(*k, "hit" | "read"))
        .map(|(_, n)| n.parse::<i64>().unwrap())
        .sum();
    (pages, row.unwrap_or((-1, -1)))
}
