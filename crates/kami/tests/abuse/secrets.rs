//! Attack 5 of issue 9, "database file copied": card keys and fulfilment contents must not be
//! readable in the database files (SQLite file and WAL, PostgreSQL relation files), the files
//! are the owner's alone, a wrong or missing master key refuses to start, `kami keys rotate`
//! is refused while `kami serve` runs and survives SIGKILL or an abrupt exit at any of its
//! steps without losing a secret or a key, and `kami backup` copies without decrypting.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kami_store::sealed::KeyId;
use kami_store::{KeyFiles, RotateStep, Store};
use kami_testkit::process::{self, Proc};
use kami_testkit::{both_backends, cards, hex_rand, Backend, Shop, TestDb, SANDBOX_SECRET};
use rand::Rng;
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kami"))
}

/// A shop directory: `kami.toml`, `data/` (SQLite file, master key), and the database.
struct Site {
    dir: tempfile::TempDir,
    url: String,
    /// PostgreSQL: the test database (dropped with the site).
    _pg: Option<TestDb>,
}

impl Site {
    async fn new(backend: Backend) -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let (url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/kami.db", data.display()), None),
            Backend::Postgres => {
                let db = TestDb::create(Backend::Postgres).await;
                (db.url().to_owned(), Some(db))
            }
        };
        std::fs::write(
            dir.path().join("kami.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
                 [database]\nurl = \"{url}\"\n\
                 [[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
                 secret = \"{SANDBOX_SECRET}\"\nallow_sandbox = true\n",
                data.display()
            ),
        )
        .expect("write config");
        Site { dir, url, _pg: pg }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn config(&self) -> PathBuf {
        self.path().join("kami.toml")
    }
    fn config_arg(&self) -> String {
        self.config().display().to_string()
    }
    fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    fn key_files(&self) -> KeyFiles {
        KeyFiles::new(self.data().join("master.key"))
    }

    /// `kami ARGS --config kami.toml`, which must succeed.
    async fn kami(&self, args: &[&str]) -> String {
        let cfg = self.config_arg();
        let mut all = args.to_vec();
        all.extend(["--config", cfg.as_str()]);
        process::run(bin(), &all, self.path()).await
    }

    /// `kami ARGS --config kami.toml`, whatever it does.
    async fn kami_output(&self, args: &[&str]) -> process::Output {
        let cfg = self.config_arg();
        let mut all = args.to_vec();
        all.extend(["--config", cfg.as_str()]);
        process::output(bin(), &all, self.path(), Duration::from_secs(60)).await
    }

    /// `kami keys rotate` with the fail point `KAMI_TEST_ROTATE_FAIL_AT=step`.
    async fn rotate_failing_at(&self, step: &str) -> process::Output {
        let cfg = self.config_arg();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(bin())
                .args(["keys", "rotate", "--config", &cfg])
                .current_dir(self.path())
                .env("RUST_LOG", "warn")
                .env("KAMI_TEST_ROTATE_FAIL_AT", step)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kami keys rotate did not exit within 60 s")
        .expect("kami keys rotate runs");
        process::Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kami serve` and a shop driving it with a fresh admin token.
    async fn serve(&self) -> (Proc, Shop) {
        let token = process::admin_token(bin(), &self.config(), self.path()).await;
        let log = self.path().join(format!("serve-{}.log", hex_rand()));
        let (proc, base) = Proc::serve(bin(), &self.config(), self.path(), &[], log).await;
        (proc, Shop::new(base, token))
    }

    /// This process's own store on the database, with the site's key files.
    async fn store(&self) -> Store {
        Store::connect(&self.url, 4, &self.key_files())
            .await
            .expect("the store opens with the site's master key")
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Pay an order through a sandbox notification signed as the gateway would sign it.
async fn pay(shop: &Shop, order: &Value) {
    let no = order["order_no"].as_str().expect("order_no");
    let minor = order["amount"].as_i64().expect("amount");
    let amount = format!("{}.{:02}", minor / 100, minor % 100);
    let params = shop.notification(no, &amount, "CNY", &format!("SBX{no}"));
    let (status, body) = shop.send_notification(&params).await;
    assert_eq!((status, body.as_str()), (200, "success"));
}

/// A manual order paid and fulfilled with `content`; its order number.
async fn fulfilled_order(shop: &Shop, slug: &str, content: &str) -> String {
    let o = shop.order(slug, 1).await;
    pay(shop, &o).await;
    let settled = shop.wait_settled(&o).await;
    assert_eq!(settled["status"], "awaiting_fulfilment", "{settled}");
    let no = o["order_no"].as_str().expect("order_no").to_owned();
    let (status, v) = shop
        .admin_post(
            &format!("/api/v1/admin/orders/{no}/fulfil"),
            json!({ "content": content }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, seen) = shop
        .read_order(&no, o["access_token"].as_str().expect("token"), 0)
        .await;
    assert_eq!(seen["fulfilment"], content, "{seen}");
    no
}

/// The raw bytes of PostgreSQL's files for `tables`, after a CHECKPOINT (as a copy of the
/// data directory would hold them).
async fn pg_relation_bytes(url: &str, tables: &[&'static str]) -> Vec<Vec<u8>> {
    let (url, tables) = (url.to_owned(), tables.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.batch_execute("CHECKPOINT")
            .expect("CHECKPOINT (the test user is a superuser)");
        tables
            .iter()
            .map(|t| {
                c.query_one(
                    "SELECT pg_read_binary_file(pg_relation_filepath($1::text::regclass)) AS b",
                    &[&t],
                )
                .unwrap_or_else(|e| panic!("read the {t} relation file: {e}"))
                .get::<_, Vec<u8>>("b")
            })
            .collect()
    })
    .await
    .expect("postgres task")
}

/// The SQLite database file and its WAL.
fn sqlite_bytes(site: &Site) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["kami.db", "kami.db-wal"] {
        if let Ok(b) = std::fs::read(site.data().join(f)) {
            all.extend(b);
        }
    }
    all
}

fn assert_none_readable(bytes: &[u8], secrets: &[String], when: &str) {
    for s in secrets {
        assert!(
            !contains(bytes, s),
            "{s:?} is readable in the database files {when}"
        );
    }
}

/// Keys imported and sold, a manual order fulfilled: no key and no content in the raw
/// database files, while the server runs and after it is killed; the buyer gets the exact
/// keys; a re-import counts duplicates; the files are private; `kami backup` copies sealed.
async fn secrets_never_reach_the_database_files(backend: Backend) {
    let site = Site::new(backend).await;
    let (mut proc, shop) = site.serve().await;
    shop.create_product("sec", 100, "auto").await;
    shop.create_product("gift", 100, "manual").await;
    let keys = shop.import_keys("sec", 60).await;
    let again = shop.import_text("sec", &keys[..15].join("\n"), false).await;
    assert_eq!(
        (again["imported"].clone(), again["duplicates"].clone()),
        (json!(0), json!(15))
    );

    let mut sold = Vec::new();
    for _ in 0..4 {
        let o = shop.order("sec", 2).await;
        pay(&shop, &o).await;
        let v = shop.wait_settled(&o).await;
        assert_eq!(v["status"], "delivered", "{v}");
        let got = cards(&v);
        assert_eq!(got.len(), 2);
        for k in &got {
            assert!(
                keys.contains(k),
                "delivered {k:?}, which was never imported"
            );
            assert!(!sold.contains(k), "{k:?} delivered twice");
        }
        sold.extend(got);
    }
    let content = format!("LICENSE-FULFILMENT-{}", hex_rand());
    fulfilled_order(&shop, "gift", &content).await;
    let mut secrets = keys.clone();
    secrets.push(content.clone());

    match backend {
        Backend::Sqlite => {
            let live = sqlite_bytes(&site);
            // The files are real: what is not secret is there in clear.
            assert!(
                contains(&live, "Product sec"),
                "the product title is not in the files"
            );
            assert_none_readable(&live, &secrets, "while the server runs");
            assert_eq!(mode(&site.data()), 0o700, "data directory");
            for f in ["kami.db", "kami.db-wal", "kami.db-shm", "master.key"] {
                assert_eq!(mode(&site.data().join(f)), 0o600, "{f}");
            }

            // An online backup: a 0600 SQLite file whose keys are still sealed, and which
            // opens with the master key.
            let copy = site.path().join("backup.db");
            let copy_arg = copy.display().to_string();
            let out = site.kami(&["backup", &copy_arg]).await;
            assert!(out.contains("master key"), "{out}");
            assert_eq!(mode(&copy), 0o600);
            let bytes = std::fs::read(&copy).expect("backup file");
            assert!(bytes.starts_with(b"SQLite format 3\0"));
            assert!(contains(&bytes, "Product sec"));
            assert_none_readable(&bytes, &secrets, "in the backup");
            let copy_store = Store::connect(&format!("sqlite://{copy_arg}"), 2, &site.key_files())
                .await
                .expect("the backup opens with the master key");
            assert_eq!(copy_store.verify_secrets().await.expect("secrets open"), 61);
            let refused = site.kami_output(&["backup", &copy_arg]).await;
            assert!(
                !refused.status.success(),
                "an existing backup file was overwritten"
            );

            proc.kill().await;
            assert_none_readable(&sqlite_bytes(&site), &secrets, "after the server stops");
        }
        Backend::Postgres => {
            let files = pg_relation_bytes(&site.url, &["products", "cards", "orders"]).await;
            assert!(
                contains(&files[0], "Product sec"),
                "the product relation file is not read"
            );
            assert!(files[1].len() >= 8192, "the cards relation file is empty");
            assert_none_readable(&files[1], &secrets, "(cards relation file)");
            assert_none_readable(&files[2], &secrets, "(orders relation file)");
            let out = site.kami_output(&["backup", "backup.db"]).await;
            assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
            assert!(out.stderr.contains("pg_dump"), "{}", out.stderr);
            proc.stop().await;
        }
    }
}
both_backends!(secrets_never_reach_the_database_files);

/// First start creates a 0600 key and says to back it up; another key, or none, for a
/// database with secrets is refused with a message saying what is wrong, and no key is made.
async fn a_wrong_or_missing_master_key_refuses_to_start(backend: Backend) {
    let site = Site::new(backend).await;
    let first = site.kami_output(&["migrate"]).await;
    assert!(first.status.success(), "{}", first.stderr);
    let key = site.data().join("master.key");
    assert!(
        first.stderr.contains("BACK UP THIS FILE"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains(&key.display().to_string()),
        "{}",
        first.stderr
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&site.data()), 0o700);
    let good = std::fs::read(&key).expect("key");
    assert_eq!(good.len(), 32);
    assert!(!first.stderr.contains(&format!("{good:?}")));
    let second = site.kami_output(&["migrate"]).await;
    assert!(second.status.success(), "{}", second.stderr);
    assert!(
        !second.stderr.contains("BACK UP"),
        "the key was created twice: {}",
        second.stderr
    );

    // Someone else's key.
    let wrong: [u8; 32] = rand::random();
    std::fs::write(&key, wrong).expect("write key");
    let out = site.kami_output(&["serve"]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("is not this database's key"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&key.display().to_string()),
        "{}",
        out.stderr
    );

    // No key at all: refused, and no fresh key made that would open nothing.
    std::fs::remove_file(&key).expect("remove key");
    let out = site.kami_output(&["serve"]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("is missing"), "{}", out.stderr);
    assert!(
        out.stderr.contains("restore the key file"),
        "{}",
        out.stderr
    );
    assert!(
        !key.exists(),
        "a new key was created for a database that has one"
    );

    std::fs::write(&key, &good).expect("restore key");
    let back = site.kami_output(&["migrate"]).await;
    assert!(back.status.success(), "{}", back.stderr);
}
both_backends!(a_wrong_or_missing_master_key_refuses_to_start);

const ROTATE_KEYS: usize = 3000;

/// `kami keys rotate` SIGKILLed at random points, several times: after each kill every
/// secret still opens with the key files on disk; a last run finishes, and then everything is
/// under the new key, imports still find every key as a duplicate and the buyer's keys and
/// the fulfilment content read back exactly.
async fn rotation_survives_sigkill_at_any_point(backend: Backend) {
    let site = Site::new(backend).await;
    let (mut proc, shop) = site.serve().await;
    shop.create_product("rot", 100, "auto").await;
    shop.create_product("gift", 100, "manual").await;
    let keys: Vec<String> = (0..ROTATE_KEYS)
        .map(|i| format!("ROT-{i:05}-{}", hex_rand()))
        .collect();
    let r = shop.import_text("rot", &keys.join("\n"), false).await;
    assert_eq!(r["imported"], ROTATE_KEYS as u64, "{r}");
    let o = shop.order("rot", 3).await;
    pay(&shop, &o).await;
    let delivered = cards(&shop.wait_settled(&o).await);
    let content = format!("GIFT-{}", hex_rand());
    let gift = fulfilled_order(&shop, "gift", &content).await;
    // The shop is stopped for a rotation (`kami keys rotate --help`).
    proc.kill().await;
    let total = ROTATE_KEYS as u64 + 1;
    let first_key = site.key_files().load().unwrap().unwrap().primary().id();

    // One full rotation, timed, to know where to kill the next ones.
    let t0 = Instant::now();
    site.kami(&["keys", "rotate"]).await;
    let full = t0.elapsed();
    let mut killed_midway = 0;
    // Kill points fall within the fastest rotation seen so far: a slow first run (a cold
    // cache, a busy machine) must not make every later one finish before its kill.
    let mut fastest = full;
    let cfg = site.config_arg();
    for round in 0..12 {
        if round >= 6 && killed_midway >= 3 {
            break;
        }
        let delay = Duration::from_micros(
            rand::thread_rng().gen_range(0..fastest.as_micros().max(1) as u64),
        );
        let started = Instant::now();
        let mut child = tokio::process::Command::new(bin())
            .args(["keys", "rotate", "--config", &cfg])
            .current_dir(site.path())
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn kami keys rotate");
        tokio::select! {
            status = child.wait() => {
                assert!(status.expect("wait").success(), "round {round}: rotate failed");
                fastest = fastest.min(started.elapsed());
            }
            _ = tokio::time::sleep(delay) => {
                child.start_kill().expect("SIGKILL");
                let status = child.wait().await.expect("wait");
                if !status.success() {
                    killed_midway += 1;
                }
            }
        }
        // Whatever the point of the kill, every secret opens with the files on disk.
        let store = site.store().await;
        assert_eq!(
            store.verify_secrets().await.expect("every secret opens"),
            total,
            "round {round}"
        );
    }
    assert!(
        killed_midway >= 3,
        "only {killed_midway} runs were killed before finishing"
    );

    site.kami(&["keys", "rotate"]).await;
    let files = site.key_files();
    assert!(!files.next_path().exists(), "the rotation did not finish");
    let now_key = files.load().unwrap().unwrap().primary().id();
    assert_ne!(now_key, first_key);
    let store = site.store().await;
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(now_key), total)],
        "not everything is under the current key"
    );
    let again = store
        .import_cards("rot", keys.clone(), false, 1, &|_| {})
        .await
        .unwrap();
    assert_eq!((again.imported, again.duplicates), (0, ROTATE_KEYS as u64));
    let no = kami_core::OrderNo::parse(o["order_no"].as_str().unwrap()).unwrap();
    let order = store.order(&no).await.unwrap().unwrap();
    assert_eq!(order.cards, Some(delivered));
    let gift = kami_core::OrderNo::parse(&gift).unwrap();
    let order = store.order(&gift).await.unwrap().unwrap();
    assert_eq!(order.fulfilment.as_deref(), Some(content.as_str()));
    drop(store);
    // The database no longer needs the former keys: without `master.key.old.*` it opens.
    let olds = files.old_key_paths().unwrap();
    assert!(!olds.is_empty());
    for p in olds {
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(site.store().await.verify_secrets().await.unwrap(), total);
}
both_backends!(rotation_survives_sigkill_at_any_point);

/// `kami keys rotate` while `kami serve` runs: refused at once, with a message naming why and
/// who holds the database, a non-zero status, and nothing touched (no next key, the same key,
/// every secret still under it); the shop keeps selling. Other commands still run beside the
/// server. Once the server is stopped the rotation runs, and a server started afterwards
/// sells the remaining keys under the new key.
async fn rotation_is_refused_while_kami_serve_runs(backend: Backend) {
    let site = Site::new(backend).await;
    let (proc, shop) = site.serve().await;
    shop.create_product("busy", 100, "auto").await;
    let keys = shop.import_keys("busy", 30).await;
    let files = site.key_files();
    let before = files.load().unwrap().unwrap().primary().id();

    let out = site.kami_output(&["keys", "rotate"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("kami keys rotate refused: this database is in use by"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Stop every `kami serve` on this database"),
        "{}",
        out.stderr
    );
    match backend {
        Backend::Sqlite => assert!(out.stderr.contains("kami.db.lock"), "{}", out.stderr),
        Backend::Postgres => assert!(
            out.stderr
                .contains("1 kami process on PostgreSQL (`kami serve` from"),
            "{}",
            out.stderr
        ),
    }
    assert!(
        !files.next_path().exists(),
        "a refused rotation wrote a next key"
    );
    assert!(files.old_key_paths().unwrap().is_empty());
    assert_eq!(files.load().unwrap().unwrap().primary().id(), before);
    // Another command beside the server is not refused.
    site.kami(&["migrate"]).await;
    let o = shop.order("busy", 2).await;
    pay(&shop, &o).await;
    let sold = cards(&shop.wait_settled(&o).await);
    assert_eq!(sold.len(), 2);
    assert!(sold.iter().all(|k| keys.contains(k)), "{sold:?}");
    assert_eq!(
        site.store().await.sealed_census().await.unwrap(),
        vec![(Some(before), 30)]
    );

    proc.stop().await;
    let out = site.kami(&["keys", "rotate"]).await;
    assert!(out.contains("re-encrypted 30 secrets"), "{out}");
    let after = files.load().unwrap().unwrap().primary().id();
    assert_ne!(after, before);
    assert!(files.old_key_path(before).exists());
    let (proc, shop) = site.serve().await;
    let o = shop.order("busy", 3).await;
    pay(&shop, &o).await;
    let more = cards(&shop.wait_settled(&o).await);
    assert_eq!(more.len(), 3);
    assert!(
        more.iter().all(|k| keys.contains(k) && !sold.contains(k)),
        "{more:?}"
    );
    proc.stop().await;
}
both_backends!(rotation_is_refused_while_kami_serve_runs);

/// After an interruption: every stored secret opens with the key files on disk, and every key
/// file that ever existed is still there.
async fn nothing_is_lost(site: &Site, total: u64, ever: &mut Vec<KeyId>, when: &str) {
    let ring = site.key_files().load().unwrap().unwrap();
    for k in ring.keys() {
        if !ever.contains(&k.id()) {
            ever.push(k.id());
        }
    }
    for id in ever.iter() {
        assert!(
            ring.contains(*id),
            "{when}: key {id} is gone from the key files"
        );
    }
    let store = site.store().await;
    assert_eq!(
        store
            .verify_secrets()
            .await
            .unwrap_or_else(|e| panic!("{when}: a secret does not open: {e}")),
        total,
        "{when}"
    );
}

/// `kami keys rotate` exiting abruptly (the test-only fail point `KAMI_TEST_ROTATE_FAIL_AT`,
/// status 86, no cleanup) at each of its steps in turn, some twice: after every exit each
/// secret opens with the files on disk and no key file is lost; re-runs continue the same
/// rotation (the same next key) rather than starting another, the one interrupted after
/// switching the files is finished by the next run, and at the end everything is under the
/// last key and the shop sells and reads back exactly what it stored.
async fn rotation_interrupted_at_each_step_loses_nothing(backend: Backend) {
    const KEYS: usize = 450; // three re-sealing batches
    let site = Site::new(backend).await;
    let (proc, shop) = site.serve().await;
    shop.create_product("step", 100, "auto").await;
    shop.create_product("gift", 100, "manual").await;
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("STEP-{i:04}-{}", hex_rand()))
        .collect();
    let r = shop.import_text("step", &keys.join("\n"), false).await;
    assert_eq!(r["imported"], KEYS as u64, "{r}");
    let o = shop.order("step", 2).await;
    pay(&shop, &o).await;
    let delivered = cards(&shop.wait_settled(&o).await);
    let content = format!("GIFT-{}", hex_rand());
    let gift = fulfilled_order(&shop, "gift", &content).await;
    proc.stop().await;
    let total = KEYS as u64 + 1;
    let files = site.key_files();
    let first = files.load().unwrap().unwrap().primary().id();
    let mut ever = vec![first];

    let fail_at = |step: RotateStep| {
        let site = &site;
        async move {
            let out = site.rotate_failing_at(step.name()).await;
            assert_eq!(
                out.status.code(),
                Some(86),
                "the rotation did not stop at {}: {}",
                step.name(),
                out.stderr
            );
            assert!(
                out.stderr
                    .contains(&format!("exiting at step {}", step.name())),
                "{}",
                out.stderr
            );
        }
    };
    // The first rotation, interrupted at each step up to the switch of the files.
    fail_at(RotateStep::NextRegistered).await;
    let next = files.load_next().unwrap().expect("the next key file").id();
    nothing_is_lost(&site, total, &mut ever, "next-registered").await;
    for step in [
        RotateStep::Resealing,
        RotateStep::Resealing,
        RotateStep::Resealed,
        RotateStep::OldKept,
    ] {
        fail_at(step).await;
        nothing_is_lost(&site, total, &mut ever, step.name()).await;
        assert_eq!(
            files.load_next().unwrap().map(|k| k.id()),
            Some(next),
            "a re-run after {} started another rotation",
            step.name()
        );
    }
    assert!(
        files.old_key_path(first).exists(),
        "old-kept: {first} not kept"
    );
    assert_eq!(files.load().unwrap().unwrap().primary().id(), first);
    fail_at(RotateStep::Promoted).await;
    nothing_is_lost(&site, total, &mut ever, "promoted").await;
    assert_eq!(files.load().unwrap().unwrap().primary().id(), next);
    assert!(!files.next_path().exists());
    // The next run finishes that rotation (interrupted once more on the way).
    fail_at(RotateStep::FinishResealed).await;
    nothing_is_lost(&site, total, &mut ever, "finish-resealed").await;
    let out = site.kami(&["keys", "rotate"]).await;
    assert!(out.contains("finished the interrupted rotation"), "{out}");
    assert!(out.contains(&format!("key {first} → {next}")), "{out}");
    nothing_is_lost(&site, total, &mut ever, "finished").await;
    assert_eq!(
        site.store().await.sealed_census().await.unwrap(),
        vec![(Some(next), total)]
    );

    // A second rotation stopped after its very last step is complete; a third runs whole.
    fail_at(RotateStep::Unregistered).await;
    nothing_is_lost(&site, total, &mut ever, "unregistered").await;
    let out = site.kami(&["keys", "rotate"]).await;
    assert!(
        out.contains(&format!("re-encrypted {total} secrets")),
        "{out}"
    );
    nothing_is_lost(&site, total, &mut ever, "third rotation").await;
    let last = files.load().unwrap().unwrap().primary().id();
    assert_eq!(ever.len(), 4, "{ever:?}");
    assert_eq!(
        files.old_key_paths().unwrap().len(),
        3,
        "each former key is kept under its own id"
    );
    let store = site.store().await;
    assert_eq!(
        store.sealed_census().await.unwrap(),
        vec![(Some(last), total)]
    );
    let again = store
        .import_cards("step", keys.clone(), false, 1, &|_| {})
        .await
        .unwrap();
    assert_eq!((again.imported, again.duplicates), (0, KEYS as u64));
    drop(store);

    // The shop, on the last key, reads back exactly what it delivered and stored.
    let (proc, shop) = site.serve().await;
    let (status, seen) = shop
        .read_order(
            o["order_no"].as_str().unwrap(),
            o["access_token"].as_str().unwrap(),
            0,
        )
        .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(cards(&seen), delivered);
    let gift = kami_core::OrderNo::parse(&gift).unwrap();
    let order = site.store().await.order(&gift).await.unwrap().unwrap();
    assert_eq!(order.fulfilment.as_deref(), Some(content.as_str()));
    proc.stop().await;
}
both_backends!(rotation_interrupted_at_each_step_loses_nothing);

/// Make the PostgreSQL database at `url` what an older kami left (schema 1-5, `keys` of
/// product `old` and one fulfilment `content`, all in plain text).
async fn legacy_postgres(url: &str, keys: &[String], content: &str) {
    let (url, k, c) = (url.to_owned(), keys.to_vec(), content.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        db.batch_execute(
            "CREATE TABLE kami_migrations \
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .unwrap();
        let old = [
            include_str!("../../../kami-store/src/migrations/postgres/0001_init.sql"),
            include_str!("../../../kami-store/src/migrations/postgres/0002_checks_refunds.sql"),
            include_str!("../../../kami-store/src/migrations/postgres/0003_storefront.sql"),
            include_str!("../../../kami-store/src/migrations/postgres/0004_outbox_mail.sql"),
            include_str!("../../../kami-store/src/migrations/postgres/0005_fulfilment.sql"),
        ];
        for (v, sql) in old.iter().enumerate() {
            db.batch_execute(sql).unwrap();
            db.execute(
                "INSERT INTO kami_migrations VALUES ($1, 'm', 0)",
                &[&(v as i64 + 1)],
            )
            .unwrap();
        }
        db.batch_execute(
            "INSERT INTO products (id, slug, title, price, currency, delivery, created_at) \
             VALUES (1, 'old', 'Product old', 100, 'CNY', 'auto', 0), \
                    (2, 'gift', 'Gift', 100, 'CNY', 'manual', 0)",
        )
        .unwrap();
        for key in &k {
            db.execute(
                "INSERT INTO cards (product_id, secret, status, created_at) \
                 VALUES (1, $1, 'available', 0)",
                &[key],
            )
            .unwrap();
        }
        db.execute(
            "INSERT INTO orders (id, order_no, product_id, quantity, amount, currency, email, \
               method, channel_id, status, access_token_hash, created_at, expires_at, paid_at, \
               fulfilment) \
             VALUES (1, 'K20260101000000123456789012', 2, 1, 100, 'CNY', 'a@b.cn', 'sandbox', \
               'sandbox', 'fulfilled', 'h', 0, 1, 1, $1)",
            &[&c],
        )
        .unwrap();
    })
    .await
    .expect("legacy database");
}

/// A PostgreSQL database as an older kami left it (schema 1-5, keys and a fulfilment in plain
/// text): the first start seals everything in place, and the relation files keep no plain
/// text (the tables are rewritten).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL at KAMI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)"]
async fn an_older_kamis_plain_text_is_sealed_at_start_postgres() {
    let site = Site::new(Backend::Postgres).await;
    let keys: Vec<String> = (0..200)
        .map(|i| format!("LEGACY-{i:04}-{}", hex_rand()))
        .collect();
    let content = format!("LEGACY-CONTENT-{}", hex_rand());
    legacy_postgres(&site.url, &keys, &content).await;
    let before = pg_relation_bytes(&site.url, &["cards"]).await;
    assert!(
        contains(&before[0], &keys[0]),
        "the legacy relation file holds plain text"
    );

    let out = site.kami_output(&["migrate"]).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("BACK UP THIS FILE"), "{}", out.stderr);
    let files = pg_relation_bytes(&site.url, &["products", "cards", "orders"]).await;
    assert!(contains(&files[0], "Product old"));
    let mut secrets = keys.clone();
    secrets.push(content.clone());
    assert_none_readable(&files[1], &secrets, "(cards, after the upgrade)");
    assert_none_readable(&files[2], &secrets, "(orders, after the upgrade)");

    let store = site.store().await;
    assert_eq!(store.verify_secrets().await.unwrap(), 201);
    let again = store
        .import_cards("old", keys.clone(), false, 1, &|_| {})
        .await
        .unwrap();
    assert_eq!((again.imported, again.duplicates), (0, 200));
    let no = kami_core::OrderNo::parse("K20260101000000123456789012").unwrap();
    let order = store.order(&no).await.unwrap().unwrap();
    assert_eq!(order.fulfilment.as_deref(), Some(content.as_str()));
}

/// Several kami processes starting at once on a PostgreSQL database an older kami left: the
/// legacy sealing is serialised between them, none returns while a card is still unsealed
/// (so none imports a key whose stored duplicate it cannot see yet), and a later start does
/// not trip over the unique index.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL at KAMI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)"]
async fn concurrent_starts_on_an_older_kamis_database_wait_until_all_is_sealed_postgres() {
    let site = Site::new(Backend::Postgres).await;
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("RACE-{i:04}-{}", hex_rand()))
        .collect();
    legacy_postgres(&site.url, &keys, "RACE-CONTENT").await;
    site.key_files().create().expect("the master key");
    let unsealed = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            db.query_one("SELECT COUNT(*) FROM cards WHERE secret_hash IS NULL", &[])
                .expect("count")
                .get::<_, i64>(0)
        })
        .await
        .expect("count task")
    };
    let starts = (0..3).map(|i| {
        let (site, keys, unsealed) = (&site, &keys, &unsealed);
        async move {
            let store = site.store().await;
            assert_eq!(
                unsealed(site.url.clone()).await,
                0,
                "start {i} returned while cards were still unsealed"
            );
            let at = i * 500;
            let r = store
                .import_cards("old", keys[at..at + 100].to_vec(), false, 1, &|_| {})
                .await
                .unwrap();
            assert_eq!((r.imported, r.duplicates), (0, 100), "start {i}");
        }
    });
    futures::future::join_all(starts).await;
    assert_eq!(site.store().await.verify_secrets().await.unwrap(), 3001);
}
