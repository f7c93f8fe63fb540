//! The card keys page: import by form (no script) and by raw body (the script's path, any
//! size, with the form token in a header), the de-duplication result, filters, delete one /
//! a batch / all unsold (never reserved or sold), CSV export; every change audited.

use kami_testkit::{both_backends, Backend};

use crate::support::{audit, spawn, Browser, USER};

async fn import_filter_delete_and_export_keys(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("keys", 500, "auto").await;
    let mut owner = Browser::signed_in(&app).await;
    let page = owner.get("/admin/products/keys/cards").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();

    // Without script: the form's textarea.
    let p = owner
        .post(
            "/admin/products/keys/cards/import",
            &[("csrf", &csrf), ("keys", "A-1\nA-2\nA-2\n\nA-3\n")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let done = owner.get(p.location()).await;
    let result = done.testid("import-result").unwrap();
    assert!(
        result.contains("Imported 3") || result.contains("已导入 3"),
        "{result}"
    );

    // The script's path: raw body, token in a header; a repeat is counted as such.
    let body = (1..=2000)
        .map(|i| format!("B-{i:05}\n"))
        .collect::<String>()
        + "A-1\n";
    let p = owner
        .post_raw(
            "/admin/products/keys/cards/import",
            body.into_bytes(),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
    assert_eq!(
        (v["imported"].as_u64(), v["duplicates"].as_u64()),
        (Some(2000), Some(1)),
        "{v}"
    );
    let second_batch = v["batch"].as_i64().unwrap();
    // A wrong or missing token: refused before anything is imported.
    for headers in [vec![], vec![("x-csrf-token", "0")]] {
        let p = owner
            .post_raw(
                "/admin/products/keys/cards/import",
                b"C-1\n".to_vec(),
                &headers,
            )
            .await;
        assert_eq!(p.status, 403);
    }
    assert_eq!(app.stock("keys").await, serde_json::json!(2003));

    // One order holds a key: it is never deleted.
    let held = app.order("keys", 1).await;
    assert_eq!(held["status"], "pending");

    // Filters: by batch and by status; secrets shown on demand.
    let batch_page = owner
        .get(&format!(
            "/admin/products/keys/cards?batch={second_batch}&status=available"
        ))
        .await;
    assert_eq!(
        batch_page.body.matches("<tr data-testid=\"card-").count(),
        100,
        "a page of 100"
    );
    assert!(batch_page.body.contains("B-02000") || batch_page.body.contains("B-01999"));
    assert!(!batch_page.body.contains("A-3"), "another batch");

    // Delete one, then the rest of the first batch, then all unsold.
    let first = owner
        .get("/admin/products/keys/cards?status=available")
        .await;
    let id = first
        .body
        .split("data-testid=\"delete-")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let p = owner
        .post(
            "/admin/products/keys/cards/delete",
            &[("csrf", &csrf), ("card", &id)],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(app.stock("keys").await, serde_json::json!(2001));
    let p = owner
        .post(
            "/admin/products/keys/cards/delete",
            &[("csrf", &csrf), ("batch", &second_batch.to_string())],
        )
        .await;
    assert_eq!(p.status, 303);
    let csv = owner
        .get("/admin/products/keys/cards.csv?status=available")
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.body.starts_with("id,secret,batch,created_at"),
        "{}",
        &csv.body[..80.min(csv.body.len())]
    );
    let left: Vec<&str> = csv.body.lines().skip(1).collect();
    assert!(left.len() <= 3 && !left.is_empty(), "{left:?}");
    assert!(left.iter().all(|l| l.contains(",A-")), "{left:?}");
    let p = owner
        .post(
            "/admin/products/keys/cards/delete",
            &[("csrf", &csrf), ("all", "unsold")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(app.stock("keys").await, serde_json::json!(0));
    let v = app
        .admin_get("/api/v1/admin/products/keys/cards?status=reserved")
        .await;
    assert_eq!(
        v["cards"].as_array().unwrap().len(),
        1,
        "the held key is still there: {v}"
    );

    // Without the token nothing is deleted.
    let p = owner
        .post("/admin/products/keys/cards/delete", &[("all", "unsold")])
        .await;
    assert_eq!(p.status, 403);

    let who = format!("user:{USER}");
    assert!(audit(&app, "cards.export")
        .await
        .iter()
        .all(|r| r.entry.actor == who));
    assert_eq!(audit(&app, "cards.export").await.len(), 1);
    assert_eq!(audit(&app, "card.delete").await.len(), 1);
    assert_eq!(
        audit(&app, "cards.delete").await.len(),
        2,
        "the batch, then all unsold"
    );
    assert!(audit(&app, "cards.import")
        .await
        .iter()
        .all(|r| r.entry.actor == who));
}
both_backends!(import_filter_delete_and_export_keys);
