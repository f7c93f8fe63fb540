//! Secrets at rest on a SQLite file: nothing readable in the raw bytes, plain text of an older
//! kami sealed at start, wrong or missing keys refused, rotation.

use std::path::{Path, PathBuf};

use kami_core::{Currency, Money, PriceTiers, Slug};

use crate::model::{Delivery, NewProduct};
use crate::{KeyFiles, KeyLock, RotateStep, Rotation, Store, StoreError};

fn product(slug: &str) -> NewProduct {
    NewProduct {
        prices: Default::default(),
        slug: Slug::parse(slug).unwrap(),
        title: "Keys".into(),
        description: String::new(),
        price: Money::new(100, Currency::parse("CNY").unwrap()).unwrap(),
        delivery: Delivery::Auto,
        manual_stock: None,
        category: String::new(),
        sort_order: 0,
        tiers: PriceTiers::parse("").unwrap(),
        min_quantity: 1,
        max_quantity: 10,
    }
}

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("kami.db")
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.file().display())
    }
    fn keys(&self) -> KeyFiles {
        KeyFiles::new(self.dir.path().join("keys/master.key"))
    }
    async fn connect(&self) -> crate::Result<Store> {
        Store::connect(&self.url(), 2, &self.keys()).await
    }
    /// `kami keys rotate` as the CLI runs it: under the exclusive key lock.
    async fn rotate(&self, store: &Store) -> crate::Result<Rotation> {
        self.rotate_with(store, &|_| {}).await
    }
    async fn rotate_with(
        &self,
        store: &Store,
        step: &(dyn Fn(RotateStep) + Sync),
    ) -> crate::Result<Rotation> {
        let lock = KeyLock::exclusive(&self.url(), "test rotate").await?;
        store.rotate_keys(&self.keys(), &lock, step).await
    }
    /// The database file and its WAL, as raw bytes.
    fn raw(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal"] {
            let p = format!("{}{suffix}", self.file().display());
            if let Ok(b) = std::fs::read(Path::new(&p)) {
                all.extend(b);
            }
        }
        all
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-{i:05}-{:016x}", rand::random::<u64>()))
        .collect()
}

#[tokio::test]
async fn imported_keys_are_sealed_on_disk_and_deduplicated_by_keyed_hash() {
    let db = Db::new();
    let store = db.connect().await.unwrap();
    store.create_product(product("keys"), 1).await.unwrap();
    let ks = keys("PLAINCARD", 300);
    let r = store
        .import_cards("keys", ks.clone(), false, 2, &|_| {})
        .await
        .unwrap();
    assert_eq!((r.imported, r.duplicates), (300, 0));
    let again = store
        .import_cards("keys", ks[..50].to_vec(), false, 3, &|_| {})
        .await
        .unwrap();
    assert_eq!((again.imported, again.duplicates), (0, 50));
    let raw = db.raw();
    assert!(raw.len() > 10_000);
    for k in &ks {
        assert!(!contains(&raw, k), "{k} is readable in the database files");
    }
    assert!(!contains(&raw, "PLAINCARD"));
    let census = store.sealed_census().await.unwrap();
    assert_eq!(census.len(), 1, "{census:?}");
    assert_eq!(census[0].1, 300);
    assert!(census[0].0.is_some(), "no plain-text value");
}

/// A database as kami left it before secrets were sealed (schema 1-5), with plain-text keys
/// and a fulfilment content.
fn legacy_database(file: &Path, card_keys: &[String], content: &str) {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE kami_migrations \
         (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .unwrap();
    for (v, sql) in [
        include_str!("migrations/sqlite/0001_init.sql"),
        include_str!("migrations/sqlite/0002_checks_refunds.sql"),
        include_str!("migrations/sqlite/0003_storefront.sql"),
        include_str!("migrations/sqlite/0004_outbox_mail.sql"),
        include_str!("migrations/sqlite/0005_fulfilment.sql"),
    ]
    .iter()
    .enumerate()
    {
        conn.execute_batch(sql).unwrap();
        conn.execute(
            "INSERT INTO kami_migrations VALUES (?1, 'm', 0)",
            [v as i64 + 1],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO products (id, slug, title, price, currency, delivery, created_at) \
         VALUES (1, 'keys', 'Keys', 100, 'CNY', 'auto', 0), \
                (2, 'gift', 'Gift', 100, 'CNY', 'manual', 0)",
    )
    .unwrap();
    for k in card_keys {
        conn.execute(
            "INSERT INTO cards (product_id, secret, status, created_at) VALUES (1, ?1, 'available', 0)",
            [k],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO orders (id, order_no, product_id, quantity, amount, currency, email, method, \
           channel_id, status, access_token_hash, created_at, expires_at, paid_at, fulfilment) \
         VALUES (1, 'K20260101000000123456789012', 2, 1, 100, 'CNY', 'a@b.cn', 'sandbox', 'sandbox', \
           'fulfilled', 'h', 0, 1, 1, ?1)",
        [content],
    )
    .unwrap();
    // Checkpointed into the file (closing the connection does the rest).
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .unwrap();
}

#[tokio::test]
async fn plain_text_of_an_older_kami_is_sealed_at_start_and_leaves_no_trace() {
    let db = Db::new();
    let ks = keys("OLDPLAIN", 500);
    let content = "FULFILMENT-CONTENT-license-0123456789";
    legacy_database(&db.file(), &ks, content);
    assert!(
        contains(&db.raw(), &ks[0]),
        "the legacy file holds plain text"
    );
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    let wal = PathBuf::from(format!("{}-wal", db.file().display()));
    std::fs::set_permissions(
        db.file(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let store = db.connect().await.unwrap();
    assert_eq!(
        mode(&db.file()),
        0o600,
        "an older kami's database file stays readable"
    );
    // SQLite gives the WAL the mode of the database file.
    assert_eq!(mode(&wal), 0o600);
    let raw = db.raw();
    for k in &ks {
        assert!(!contains(&raw, k), "{k} survived the upgrade in the files");
    }
    assert!(!contains(&raw, content));
    assert!(!contains(&raw, "OLDPLAIN"));
    let census = store.sealed_census().await.unwrap();
    assert!(census.iter().all(|(id, _)| id.is_some()), "{census:?}");
    assert_eq!(census.iter().map(|c| c.1).sum::<u64>(), 501);
    // The fulfilment opens to the same text; re-importing the keys finds them all.
    let order = store
        .order(&kami_core::OrderNo::parse("K20260101000000123456789012").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.fulfilment.as_deref(), Some(content));
    let again = store
        .import_cards("keys", ks.clone(), false, 5, &|_| {})
        .await
        .unwrap();
    assert_eq!((again.imported, again.duplicates), (0, 500));
    drop(store);
    // A second start finds nothing more to seal and the same key.
    let store = db.connect().await.unwrap();
    assert_eq!(store.sealed_census().await.unwrap(), census);
}

#[tokio::test]
async fn a_wrong_or_missing_key_refuses_to_open_a_database_with_secrets() {
    let db = Db::new();
    let store = db.connect().await.unwrap();
    store.create_product(product("keys"), 1).await.unwrap();
    store
        .import_cards("keys", keys("K", 3), false, 2, &|_| {})
        .await
        .unwrap();
    drop(store);
    let key_file = db.keys().path().to_path_buf();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let good = std::fs::read(&key_file).unwrap();

    // Another key in its place.
    std::fs::remove_file(&key_file).unwrap();
    let other = tempfile::tempdir().unwrap();
    KeyFiles::new(other.path().join("k")).create().unwrap();
    std::fs::copy(other.path().join("k"), &key_file).unwrap();
    let err = db
        .connect()
        .await
        .err()
        .expect("a wrong key must be refused");
    assert!(matches!(err, StoreError::Key(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("is not this database's key"), "{msg}");
    assert!(msg.contains(&key_file.display().to_string()), "{msg}");

    // No key at all: refused, and no new key file is made.
    std::fs::remove_file(&key_file).unwrap();
    let err = db
        .connect()
        .await
        .err()
        .expect("a missing key must be refused");
    let msg = err.to_string();
    assert!(msg.contains("is missing"), "{msg}");
    assert!(msg.contains("restore the key file"), "{msg}");
    assert!(
        !key_file.exists(),
        "a fresh key was created for an existing database"
    );

    // The right key opens it again.
    std::fs::write(&key_file, &good).unwrap();
    let store = db.connect().await.unwrap();
    assert_eq!(store.sealed_census().await.unwrap()[0].1, 3);
}

#[tokio::test]
async fn rotation_moves_every_secret_to_a_new_key_and_keeps_the_old_one_beside() {
    let db = Db::new();
    let store = db.connect().await.unwrap();
    store.create_product(product("keys"), 1).await.unwrap();
    let ks = keys("ROT", 450);
    store
        .import_cards("keys", ks.clone(), false, 2, &|_| {})
        .await
        .unwrap();
    let before = store.sealed_census().await.unwrap();
    let rotation = db.rotate(&store).await.unwrap();
    assert_eq!(rotation.resealed, 450);
    assert_ne!(rotation.from, rotation.to);
    assert_eq!(before[0].0, Some(rotation.from));
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(rotation.to), 450)]
    );
    assert!(db.keys().old_key_path(rotation.from).exists());
    assert!(!db.keys().next_path().exists());
    drop(store);
    // Restarted on the new key: keys are still found as duplicates.
    let store = db.connect().await.unwrap();
    let again = store
        .import_cards("keys", ks[..10].to_vec(), false, 3, &|_| {})
        .await
        .unwrap();
    assert_eq!(again.duplicates, 10);
    // A second rotation keeps the first key's file too: no key file is overwritten.
    let second = db.rotate(&store).await.unwrap();
    assert_eq!(second.from, rotation.to);
    assert!(db.keys().old_key_path(rotation.from).exists());
    assert!(db.keys().old_key_path(rotation.to).exists());
    // Without the old keys the database still opens: nothing is under them any more.
    for p in db.keys().old_key_paths().unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    drop(store);
    assert_eq!(
        db.connect().await.unwrap().verify_secrets().await.unwrap(),
        450
    );
}

#[tokio::test]
async fn backup_is_a_0600_copy_with_secrets_still_sealed() {
    let db = Db::new();
    let store = db.connect().await.unwrap();
    store.create_product(product("keys"), 1).await.unwrap();
    let ks = keys("BAK", 20);
    store
        .import_cards("keys", ks.clone(), false, 2, &|_| {})
        .await
        .unwrap();
    let copy = db.dir.path().join("backup.db");
    store.backup_to(&copy).await.unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let bytes = std::fs::read(&copy).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    assert!(!ks.iter().any(|k| contains(&bytes, k)));
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM cards", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20);
    // An existing file is never overwritten.
    let err = store.backup_to(&copy).await.unwrap_err().to_string();
    assert!(err.contains("cannot create"), "{err}");
}

#[tokio::test]
async fn secrets_a_running_kami_sealed_under_the_old_key_are_moved_by_the_next_rotation() {
    let db = Db::new();
    let running = db.connect().await.unwrap();
    running.create_product(product("keys"), 1).await.unwrap();
    running
        .import_cards("keys", keys("A", 20), false, 2, &|_| {})
        .await
        .unwrap();
    let tool = db.connect().await.unwrap();
    let first = db.rotate(&tool).await.unwrap();
    // A kami that ignored the key lock still seals under the old key...
    running
        .import_cards("keys", keys("B", 5), false, 3, &|_| {})
        .await
        .unwrap();
    let census = tool.sealed_census().await.unwrap();
    assert!(census.contains(&(Some(first.from), 5)), "{census:?}");
    // ... and cannot read what the rotation moved: a precise error, never garbage.
    let err = running.verify_secrets().await.unwrap_err();
    match &err {
        StoreError::UnknownKey(id) => assert_eq!(id, &first.to.to_string()),
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("rotated after this process started"),
        "{err}"
    );
    // Still readable with master.key.old.<id> beside the new key; the next rotation moves them.
    assert_eq!(
        db.connect().await.unwrap().verify_secrets().await.unwrap(),
        25
    );
    let second = db.rotate(&tool).await.unwrap();
    assert_eq!(second.resealed, 25);
    assert_eq!(
        tool.sealed_census().await.unwrap(),
        vec![(Some(second.to), 25)]
    );
}

/// Run `fut` from inside a synchronous rotation hook.
fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut))
}

/// A value sealed under the old key after the files were switched (a kami ignoring the key
/// lock): the rotation refuses to unregister the old key, naming what it found, and a re-run
/// moves it and finishes. A value sealed during re-sealing is caught by the census and moved
/// in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_never_unregisters_a_key_something_is_still_sealed_under() {
    let db = Db::new();
    let running = db.connect().await.unwrap();
    running.create_product(product("keys"), 1).await.unwrap();
    running
        .import_cards("keys", keys("A", 450), false, 2, &|_| {})
        .await
        .unwrap();
    let old = running.sealed_census().await.unwrap()[0].0.unwrap();
    let tool = db.connect().await.unwrap();
    let straggle = |tag: &'static str| {
        let running = running.clone();
        move |step: RotateStep| {
            if step == RotateStep::Promoted {
                block_on(running.import_cards("keys", keys(tag, 3), false, 3, &|_| {})).unwrap();
            }
        }
    };
    let err = db.rotate_with(&tool, &straggle("B")).await.unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("3 under key {old}")), "{msg}");
    assert!(msg.contains("refusing to unregister"), "{msg}");
    // The old key is still registered and kept on disk: a restart opens everything.
    assert!(db.keys().old_key_path(old).exists());
    assert_eq!(
        db.connect().await.unwrap().verify_secrets().await.unwrap(),
        453
    );
    // A re-run finishes that rotation (moving the stragglers) rather than starting another.
    let done = db.rotate(&tool).await.unwrap();
    assert_eq!(
        (done.from, done.resealed, done.finished_interrupted),
        (old, 3, true)
    );
    assert_eq!(
        tool.sealed_census().await.unwrap(),
        vec![(Some(done.to), 453)]
    );

    // Written during re-sealing (after the first batch): moved by the next pass of this run.
    let during = |step: RotateStep| {
        static ONCE: std::sync::Once = std::sync::Once::new();
        if step == RotateStep::Resealing {
            ONCE.call_once(|| {
                block_on(running.import_cards("keys", keys("C", 2), false, 4, &|_| {})).unwrap();
            });
        }
    };
    let r = db.rotate_with(&tool, &during).await.unwrap();
    assert_eq!(tool.sealed_census().await.unwrap(), vec![(Some(r.to), 455)]);
}

/// Several processes starting at once on a database an older kami left: each returns from
/// unlocking only when no card is left unsealed, and they never collide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_seal_legacy_rows_once_and_wait_until_all_are_sealed() {
    let db = Db::new();
    let ks = keys("RACE", 1200);
    legacy_database(&db.file(), &ks, "CONTENT");
    let first = db.connect().await.unwrap();
    drop(first);
    // The key exists now; put plain rows back as an older kami would have kept writing them.
    let conn = rusqlite::Connection::open(db.file()).unwrap();
    let more = keys("LATE", 900);
    for k in &more {
        conn.execute(
            "INSERT INTO cards (product_id, secret, status, created_at) VALUES (1, ?1, 'available', 0)",
            [k],
        )
        .unwrap();
    }
    drop(conn);
    let starts = (0..3).map(|_| async {
        let s = db.connect().await.unwrap();
        let unsealed: i64 = rusqlite::Connection::open(db.file())
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM cards WHERE secret_hash IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unsealed, 0, "a start returned with cards still unsealed");
        s.import_cards("keys", more[..50].to_vec(), false, 9, &|_| {})
            .await
            .unwrap()
    });
    for r in futures::future::join_all(starts).await {
        assert_eq!((r.imported, r.duplicates), (0, 50));
    }
    assert_eq!(
        db.connect().await.unwrap().verify_secrets().await.unwrap(),
        2101
    );
}

#[tokio::test]
async fn rotation_moves_admin_totp_secrets_too() {
    let db = Db::new();
    let store = db.connect().await.unwrap();
    let entry = || crate::AuditEntry {
        actor: "user:a".into(),
        action: "2fa.enable".into(),
        target: "user:a".into(),
        ip: None,
        before: None,
        after: None,
    };
    assert!(store.create_admin_user("a", "hash", 1).await.unwrap());
    assert!(store.create_admin_user("b", "hash", 1).await.unwrap());
    let a = store.admin_user("a").await.unwrap().unwrap().id;
    let b = store.admin_user("b").await.unwrap().unwrap().id;
    store
        .begin_admin_totp(a, b"secret-a".to_vec())
        .await
        .unwrap();
    assert!(store
        .enable_admin_totp(a, 5, vec!["h".into()], entry(), 2)
        .await
        .unwrap());
    store
        .begin_admin_totp(b, b"pending-b".to_vec())
        .await
        .unwrap();
    let rotation = db.rotate(&store).await.unwrap();
    assert_eq!(rotation.resealed, 2, "a's secret and b's pending one");
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(rotation.to), 2)]
    );
    for p in db.keys().old_key_paths().unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    drop(store);
    let store = db.connect().await.unwrap();
    assert_eq!(
        store.verify_secrets().await.unwrap(),
        2,
        "both open under the new key"
    );
    assert_eq!(
        store.admin_totp_secret(a).await.unwrap().as_deref(),
        Some(&b"secret-a"[..])
    );
    assert_eq!(
        store.admin_totp_pending(b).await.unwrap().as_deref(),
        Some(&b"pending-b"[..])
    );
}

#[tokio::test]
async fn buyer_answers_are_sealed_and_moved_by_rotation() {
    use kami_core::{ChannelId, Email, FieldSpec, InputFields, Method, OrderNo, Quantity};

    use crate::model::{Actor, NewOrder, ProductPatch};

    let db = Db::new();
    let store = db.connect().await.unwrap();
    let mut p = product("topup");
    p.delivery = Delivery::Manual;
    store.create_product(p, 1).await.unwrap();
    let fields = InputFields::new(vec![FieldSpec {
        name: "account".into(),
        label: "Account".into(),
        required: true,
        pattern: None,
    }])
    .unwrap();
    let patch = ProductPatch {
        input_fields: Some(fields),
        ..ProductPatch::default()
    };
    store
        .update_product("topup", patch, &Actor::new("cli", None), 2)
        .await
        .unwrap();
    let order_no = OrderNo::generate("20260101000000");
    store
        .create_order(NewOrder {
            fx: Default::default(),
            order_no: order_no.clone(),
            product: Slug::parse("topup").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            email: Email::parse("b@example.com").unwrap(),
            method: Method::Sandbox,
            channel_id: ChannelId::parse("sandbox").unwrap(),
            access_token_hash: "h".into(),
            query_password_hash: None,
            locale: "en".into(),
            now: 3,
            expires_at: 1_000,
            first_check_at: 100,
            client_ip: None,
            pending_caps: Default::default(),
            fields: [("account".to_owned(), "PLAYER-7781".to_owned())].into(),
            coupon: None,
            stored_channel: false,
            route: Vec::new(),
        })
        .await
        .unwrap();
    assert!(!contains(&db.raw(), "PLAYER-7781"), "sealed on disk");
    let rotation = db.rotate(&store).await.unwrap();
    assert_eq!(rotation.resealed, 1);
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(rotation.to), 1)]
    );
    for p in db.keys().old_key_paths().unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    drop(store);
    let store = db.connect().await.unwrap();
    assert_eq!(store.verify_secrets().await.unwrap(), 1);
    let order = store.order(&order_no).await.unwrap().unwrap();
    assert_eq!(order.fields["account"], "PLAYER-7781");
}

#[tokio::test]
async fn stored_channel_keys_are_sealed_and_moved_by_rotation() {
    use kami_core::{ChannelId, Method};

    use crate::model::{Actor, AuditFilter};
    use crate::{ChannelSecrets, ChannelSpec};

    let db = Db::new();
    let store = db.connect().await.unwrap();
    let mut secrets = ChannelSecrets::default();
    secrets.insert("key".into(), "EPAYMERCHANTKEY-0f3c9a".into());
    let mut settings = serde_json::Map::new();
    settings.insert("pid".into(), serde_json::json!("1001"));
    let spec = ChannelSpec {
        id: ChannelId::parse("ep").unwrap(),
        kind: "epay".into(),
        methods: vec![Method::Qqpay],
        priority: 10,
        weight: 1,
        enabled: true,
        limits: Default::default(),
        settings,
        secrets,
    };
    let actor = Actor::new("user:owner", None);
    store
        .create_stored_channel(spec.clone(), &actor, 2)
        .await
        .unwrap();
    assert!(!contains(&db.raw(), "EPAYMERCHANTKEY"), "sealed on disk");
    let audit = store
        .audit_log(AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert!(
        !format!("{audit:?}").contains("EPAYMERCHANTKEY"),
        "{audit:?}"
    );

    let rotation = db.rotate(&store).await.unwrap();
    assert_eq!(rotation.resealed, 1);
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(rotation.to), 1)]
    );
    for p in db.keys().old_key_paths().unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    drop(store);
    let store = db.connect().await.unwrap();
    assert_eq!(store.verify_secrets().await.unwrap(), 1);
    let back = store.stored_channel(&spec.id).await.unwrap();
    assert_eq!(back.spec, spec, "opens to the same key material");
    assert!(!format!("{back:?}").contains("EPAYMERCHANTKEY"));
}

#[tokio::test]
async fn saved_settings_seal_their_secret_audit_without_it_and_move_with_rotation() {
    use std::sync::Arc;

    use crate::model::{Actor, AuditFilter};
    use crate::settings::{SettingValue, SettingsCheck};

    let db = Db::new();
    let store = db.connect().await.unwrap();
    let password = "smtp-Pa55word-never-shown";
    let ok: SettingsCheck = Arc::new(|_| Ok(()));
    let actor = Actor::new("user:owner", Some("192.0.2.1".into()));
    let saved = store
        .save_settings(
            vec![
                (
                    "smtp.password".into(),
                    Some(SettingValue::Secret(password.into())),
                ),
                (
                    "shop.name".into(),
                    Some(SettingValue::Json(serde_json::json!("Shop"))),
                ),
            ],
            ok.clone(),
            &actor,
            10,
        )
        .await
        .unwrap();
    assert_eq!(saved.version, 1);
    assert_eq!(
        saved.rows["smtp.password"].value,
        SettingValue::Secret(password.into())
    );
    assert_eq!(saved.rows["shop.name"].updated_by, "user:owner");
    assert!(!contains(&db.raw(), password), "sealed on disk");
    assert_eq!(store.verify_secrets().await.unwrap(), 1);

    // The same values again: nothing written, no audit row, the version stays.
    let again = store
        .save_settings(
            vec![(
                "smtp.password".into(),
                Some(SettingValue::Secret(password.into())),
            )],
            ok.clone(),
            &actor,
            20,
        )
        .await
        .unwrap();
    assert_eq!(again.version, 1);

    // A refused check writes nothing.
    let no: SettingsCheck = Arc::new(|_| Err("shop.name: nope".into()));
    let e = store
        .save_settings(vec![("shop.name".into(), None)], no, &actor, 30)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::InvalidInput(ref m) if m == "shop.name: nope"),
        "{e}"
    );
    assert_eq!(store.settings_version().await.unwrap(), 1);

    let log = store
        .audit_log(AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    let row = &log[0].entry;
    assert_eq!(
        (row.action.as_str(), row.target.as_str()),
        ("settings.update", "settings")
    );
    assert_eq!(
        row.after,
        Some(serde_json::json!({"shop.name": "Shop", "smtp.password": "(set)"}))
    );
    assert_eq!(
        row.before,
        Some(serde_json::json!({"shop.name": null, "smtp.password": null}))
    );

    let rotation = db.rotate(&store).await.unwrap();
    assert_eq!(rotation.resealed, 1);
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(rotation.to), 1)]
    );
    for p in db.keys().old_key_paths().unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    drop(store);
    let store = db.connect().await.unwrap();
    let saved = store.settings().await.unwrap();
    assert_eq!(
        saved.rows["smtp.password"].value,
        SettingValue::Secret(password.into())
    );
    // Reset: the row goes, the version moves on.
    let saved = store
        .save_settings(vec![("smtp.password".into(), None)], ok, &actor, 40)
        .await
        .unwrap();
    assert_eq!(saved.version, 2);
    assert!(!saved.rows.contains_key("smtp.password"));
    assert_eq!(store.verify_secrets().await.unwrap(), 0);
}

#[tokio::test]
async fn alert_target_secrets_are_sealed_and_moved_by_rotation() {
    use crate::model::Actor;
    use crate::{AlertEvent, AlertTargetSpec, TargetSecret};

    let db = Db::new();
    let store = db.connect().await.unwrap();
    let mut settings = serde_json::Map::new();
    settings.insert(
        "url".into(),
        serde_json::json!("https://ops.example.com/kami"),
    );
    let spec = AlertTargetSpec {
        name: "ops".into(),
        kind: "webhook".into(),
        events: vec![AlertEvent::ChannelDown],
        settings,
        secret: Some(TargetSecret::new("ALERTHOOKSECRET-77a1".into())),
        enabled: true,
    };
    let actor = Actor::new("user:owner", None);
    store
        .create_alert_target(spec.clone(), &actor, 2)
        .await
        .unwrap();
    assert!(!contains(&db.raw(), "ALERTHOOKSECRET"), "sealed on disk");

    let rotation = db.rotate(&store).await.unwrap();
    assert_eq!(rotation.resealed, 1);
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(rotation.to), 1)]
    );
    for p in db.keys().old_key_paths().unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    drop(store);
    let store = db.connect().await.unwrap();
    assert_eq!(store.verify_secrets().await.unwrap(), 1);
    let back = store.alert_target("ops").await.unwrap();
    assert_eq!(back.spec, spec, "opens to the same secret");
    assert!(!format!("{back:?}").contains("ALERTHOOKSECRET"));
}
