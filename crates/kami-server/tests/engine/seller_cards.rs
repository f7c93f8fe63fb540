//! Seller operations on card keys (DESIGN 4.3 "Seller operations"): listing with filters,
//! import batches, deleting one / a batch / all unsold (never a reserved or sold key), the
//! CSV export, and their audit rows.

use serde_json::{json, Value};

use kami_testkit::both_backends;
use kami_testkit::{Backend, TestApp};

use super::seller_products::{admin_call, audit};

async fn cards(app: &TestApp, slug: &str, query: &str) -> Vec<Value> {
    app.admin_get(&format!("/api/v1/admin/products/{slug}/cards?{query}"))
        .await["cards"]
        .as_array()
        .unwrap()
        .clone()
}

fn secrets(cards: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = cards
        .iter()
        .map(|c| c["secret"].as_str().unwrap().to_owned())
        .collect();
    s.sort();
    s
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    admin_call(app, reqwest::Method::DELETE, path, None).await
}

/// A product with keys `A1..A3` (batch a) and `B1..B2` (batch b); `A1` reserved by a pending
/// order and `A2` sold to a paid one. Returns (batch a, batch b, pending order, paid order).
async fn stocked(app: &TestApp, slug: &str) -> (i64, i64, Value, Value) {
    app.create_product(slug, 300, "auto").await;
    let a = app.import_text(slug, "A1\nA2\nA3\n", false).await;
    assert_eq!(
        (a["imported"].clone(), a["duplicates"].clone()),
        (json!(3), json!(0))
    );
    let pending = app.order(slug, 1).await;
    let paid = app.order(slug, 1).await;
    app.pay(&paid).await;
    assert_eq!(app.wait_settled(&paid).await["status"], "delivered");
    let b = app.import_text(slug, "B1\nA3\nB2\n", false).await;
    assert_eq!(
        (b["imported"].clone(), b["duplicates"].clone()),
        (json!(2), json!(1))
    );
    let (a, b) = (a["batch"].as_i64().unwrap(), b["batch"].as_i64().unwrap());
    assert_ne!(a, b);
    (a, b, pending, paid)
}

async fn keys_are_listed_filtered_and_batched(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b, pending, paid) = stocked(&app, "keys").await;

    let all = cards(&app, "keys", "").await;
    assert_eq!(secrets(&all), ["A1", "A2", "A3", "B1", "B2"]);
    let ids: Vec<i64> = all.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    assert_eq!(
        secrets(&cards(&app, "keys", &format!("batch={a}")).await),
        ["A1", "A2", "A3"]
    );
    assert_eq!(
        secrets(&cards(&app, "keys", &format!("batch={b}")).await),
        ["B1", "B2"]
    );
    assert_eq!(
        secrets(&cards(&app, "keys", "status=available").await),
        ["A3", "B1", "B2"]
    );
    let reserved = cards(&app, "keys", "status=reserved").await;
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0]["order_no"], pending["order_no"]);
    assert_eq!(reserved[0]["sold_at"], Value::Null);
    let sold = cards(&app, "keys", "status=sold").await;
    assert_eq!(sold.len(), 1);
    assert_eq!(sold[0]["order_no"], paid["order_no"]);
    assert!(sold[0]["sold_at"].is_string());
    assert_eq!(sold[0]["batch"], a);
    assert_eq!(sold[0]["is_loop"], false);
    // The key sold is the one the buyer got.
    let (_, bought) = app
        .read_order(
            paid["order_no"].as_str().unwrap(),
            paid["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!(bought["cards"], json!([sold[0]["secret"]]));
    assert!(cards(&app, "keys", "status=available&batch=999999")
        .await
        .is_empty());

    // Paging backwards.
    let page = app
        .admin_get("/api/v1/admin/products/keys/cards?limit=2")
        .await;
    assert_eq!(page["cards"].as_array().unwrap().len(), 2);
    let next = page["next_before"].as_i64().unwrap();
    let rest = cards(&app, "keys", &format!("before={next}")).await;
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|c| c["id"].as_i64().unwrap() < next));

    let (s, v) = admin_call(
        &app,
        reqwest::Method::GET,
        "/api/v1/admin/products/keys/cards?status=lost",
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_status"))
    );
    let (s, v) = admin_call(
        &app,
        reqwest::Method::GET,
        "/api/v1/admin/products/none/cards",
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("product_not_found"))
    );

    // Batches: newest first, with what each brought and who imported it.
    let batches = app.admin_get("/api/v1/admin/products/keys/batches").await["batches"].clone();
    let batches = batches.as_array().unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        (
            batches[0]["id"].as_i64(),
            batches[0]["imported"].clone(),
            batches[0]["duplicates"].clone()
        ),
        (Some(b), json!(2), json!(1))
    );
    assert_eq!(
        (batches[1]["id"].as_i64(), batches[1]["imported"].clone()),
        (Some(a), json!(3))
    );
    assert_eq!(batches[0]["actor"], "token:test");
    let imports: Vec<Value> = audit(&app, "product:keys")
        .await
        .into_iter()
        .filter(|r| r.entry.action == "cards.import")
        .map(|r| r.entry.after.unwrap())
        .collect();
    assert_eq!(
        imports,
        [
            json!({"batch": a, "imported": 3, "duplicates": 0, "rejected": 0, "loop": false}),
            json!({"batch": b, "imported": 2, "duplicates": 1, "rejected": 0, "loop": false}),
        ]
    );
}
both_backends!(keys_are_listed_filtered_and_batched);

async fn deleting_one_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, _, _, _) = stocked(&app, "one").await;
    let id_of = |list: &[Value], secret: &str| {
        list.iter().find(|c| c["secret"] == secret).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let all = cards(&app, "one", "").await;
    let (a1, a2, a3) = (id_of(&all, "A1"), id_of(&all, "A2"), id_of(&all, "A3"));

    let (s, v) = delete(&app, &format!("/api/v1/admin/products/one/cards/{a3}")).await;
    assert_eq!((s, v), (200, json!({"deleted": 1})));
    for (id, why) in [(a1, "reserved"), (a2, "sold")] {
        let (s, v) = delete(&app, &format!("/api/v1/admin/products/one/cards/{id}")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (409, Some("card_sold")),
            "{why}"
        );
    }
    let (s, v) = delete(&app, &format!("/api/v1/admin/products/one/cards/{a3}")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("card_not_found")),
        "twice"
    );
    let (s, _) = delete(&app, "/api/v1/admin/products/one/cards/x").await;
    assert_eq!(s, 404);
    // Another product's key is not this product's.
    app.create_product("two", 300, "auto").await;
    app.import_text("two", "C1\n", false).await;
    let c1 = cards(&app, "two", "").await[0]["id"].as_i64().unwrap();
    let (s, v) = delete(&app, &format!("/api/v1/admin/products/one/cards/{c1}")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("card_not_found"))
    );
    assert_eq!(cards(&app, "two", "").await.len(), 1);
    assert_eq!(
        secrets(&cards(&app, "one", "").await),
        ["A1", "A2", "B1", "B2"]
    );

    let rows = audit(&app, &format!("card:{a3}")).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.action, "card.delete");
    assert_eq!(rows[0].entry.actor, "token:test");
    let before = rows[0].entry.before.clone().unwrap();
    assert_eq!(before["status"], "available");
    assert!(
        !before.to_string().contains("A3"),
        "no secret in the audit row: {before}"
    );
    assert!(audit(&app, &format!("card:{a1}")).await.is_empty());

    // A loop key an order delivered stays: the order shows it.
    app.create_product("loopy", 300, "auto").await;
    let r = app.import_text("loopy", "SHARED-KEY\n", true).await;
    assert_eq!(r["imported"], 1);
    let shared = cards(&app, "loopy", "").await[0]["id"].as_i64().unwrap();
    let order = app.order("loopy", 1).await;
    app.pay(&order).await;
    assert_eq!(app.wait_settled(&order).await["status"], "delivered");
    let (s, v) = delete(
        &app,
        &format!("/api/v1/admin/products/loopy/cards/{shared}"),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("card_sold")));
}
both_backends!(deleting_one_key);

async fn deleting_a_batch_or_all_unsold(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b, pending, _) = stocked(&app, "bulk").await;

    let (s, v) = delete(
        &app,
        &format!("/api/v1/admin/products/bulk/cards?batch={a}"),
    )
    .await;
    assert_eq!(
        (s, v),
        (200, json!({"deleted": 1})),
        "only A3 of batch a is unsold"
    );
    assert_eq!(
        secrets(&cards(&app, "bulk", "").await),
        ["A1", "A2", "B1", "B2"]
    );

    for (query, status, code) in [
        ("", 422, "invalid_selection"),
        (
            &format!("batch={b}&all=unsold") as &str,
            422,
            "invalid_selection",
        ),
        ("all=sold", 422, "invalid_selection"),
        ("batch=999999", 404, "batch_not_found"),
    ] {
        let (s, v) = delete(&app, &format!("/api/v1/admin/products/bulk/cards?{query}")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }
    // Another product's batch is not this product's.
    app.create_product("other", 300, "auto").await;
    let o = app.import_text("other", "O1\n", false).await["batch"]
        .as_i64()
        .unwrap();
    let (s, _) = delete(
        &app,
        &format!("/api/v1/admin/products/bulk/cards?batch={o}"),
    )
    .await;
    assert_eq!(s, 404);

    let (s, v) = delete(&app, "/api/v1/admin/products/bulk/cards?all=unsold").await;
    assert_eq!((s, v), (200, json!({"deleted": 2})));
    assert_eq!(
        secrets(&cards(&app, "bulk", "").await),
        ["A1", "A2"],
        "reserved and sold stay"
    );
    assert_eq!(
        cards(&app, "other", "").await.len(),
        1,
        "other products untouched"
    );
    let (s, v) = delete(&app, "/api/v1/admin/products/bulk/cards?all=unsold").await;
    assert_eq!((s, v), (200, json!({"deleted": 0})));

    // The pending order still gets its reserved key.
    app.pay(&pending).await;
    let v = app.wait_settled(&pending).await;
    assert_eq!(
        (v["status"].clone(), v["cards"].clone()),
        (json!("delivered"), json!(["A1"]))
    );

    let rows: Vec<Value> = audit(&app, "product:bulk")
        .await
        .into_iter()
        .filter(|r| r.entry.action == "cards.delete")
        .map(|r| r.entry.after.unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            json!({"batch": a, "all_unsold": false, "deleted": 1}),
            json!({"batch": null, "all_unsold": true, "deleted": 2}),
            json!({"batch": null, "all_unsold": true, "deleted": 0}),
        ]
    );
}
both_backends!(deleting_a_batch_or_all_unsold);

async fn export(
    app: &TestApp,
    slug: &str,
    query: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = app
        .http
        .get(app.url(&format!("/api/v1/admin/products/{slug}/cards.csv?{query}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    (s, h, r.text().await.unwrap())
}

async fn exporting_unsold_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b, _, _) = stocked(&app, "csv").await;
    let nasty = app
        .import_text(
            "csv",
            "=cmd|' /C calc'!A0\n+86 123\n-1\n@SUM(A1)\nplain,comma\n",
            false,
        )
        .await;
    let c = nasty["batch"].as_i64().unwrap();
    assert_eq!(nasty["imported"], 5, "{nasty}");

    let (s, headers, body) = export(&app, "csv", "status=available").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"csv-available.csv\""
    );
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "id,secret,batch,created_at");
    // id,SECRET,batch,created_at: the secret may be quoted and hold a comma.
    let secret_of = |line: &str| -> String {
        let (head, _created) = line.rsplit_once(',').unwrap();
        let (head, _batch) = head.rsplit_once(',').unwrap();
        head.split_once(',').unwrap().1.to_owned()
    };
    let rows: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|l| (l.split(',').next().unwrap().to_owned(), secret_of(l)))
        .collect();
    let got: Vec<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        got,
        [
            "A3",
            "B1",
            "B2",
            "'=cmd|' /C calc'!A0",
            "'+86 123",
            "'-1",
            "'@SUM(A1)",
            "\"plain,comma\""
        ],
        "unsold only, oldest first, formulas defused, quoted"
    );
    let available = cards(&app, "csv", "status=available").await;
    let a3 = available.iter().find(|c| c["secret"] == "A3").unwrap();
    assert!(
        lines[1].starts_with(&format!("{},A3,{a},", a3["id"])),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(&format!(",B1,{b},")));
    assert!(lines[4].contains(&format!(",{c},")));
    assert!(lines[1].ends_with('Z'), "RFC 3339 time: {}", lines[1]);

    let (s, _, body) = export(&app, "csv", "status=reserved").await;
    assert_eq!(s, 200);
    assert_eq!(body.lines().count(), 2, "the one reserved key: {body}");
    assert!(body.contains(",A1,"));
    let (s, _, body) = export(&app, "csv", "status=sold").await;
    assert_eq!(s, 422, "{body}");
    let (s, _, _) = export(&app, "missing", "").await;
    assert_eq!(s, 404);

    // Audited, without secrets.
    let rows: Vec<Value> = audit(&app, "product:csv")
        .await
        .into_iter()
        .filter(|r| r.entry.action == "cards.export")
        .map(|r| r.entry.after.unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            json!({"status": "available", "keys": 8}),
            json!({"status": "reserved", "keys": 1})
        ]
    );
}
both_backends!(exporting_unsold_keys);

/// More keys than one page of the export: every key once, in id order.
async fn exporting_many_keys_pages_through(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_product("big", 100, "auto").await;
    let mut keys = app.import_keys("big", 1234).await;
    let (s, _, body) = export(&app, "big", "").await;
    assert_eq!(s, 200);
    let lines: Vec<&str> = body.lines().skip(1).collect();
    assert_eq!(lines.len(), 1234);
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect();
    got.sort();
    keys.sort();
    assert_eq!(got, keys);
}
both_backends!(exporting_many_keys_pages_through);
