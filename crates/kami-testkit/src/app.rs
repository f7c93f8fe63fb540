//! [`TestApp`]: a real kami server on 127.0.0.1:0 over a fresh database, in this process, with
//! an admin token. It derefs to the [`Shop`] that drives it over HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kami_server::{AppState, Application, BuildOptions, Config};
use kami_store::{KeyFiles, Store};

use crate::sims::simulators;
use crate::{Backend, Shop, TestDb, SANDBOX_SECRET};

pub struct TestApp {
    pub shop: Shop,
    pub state: Arc<AppState>,
    pub backend: Backend,
    /// The database URL, to open a second store as another process would.
    pub db_url: String,
    /// The master key file every instance on this database shares (generated at first start,
    /// in a directory of this test's own).
    pub key_file: PathBuf,
    /// Keeps the key file's directory; shared by every instance on the database.
    _keys: Arc<tempfile::TempDir>,
    _shutdown: tokio::sync::watch::Sender<bool>,
    /// `None` for another instance on a database some other `TestApp` owns.
    _db: Option<TestDb>,
}

impl std::ops::Deref for TestApp {
    type Target = Shop;
    fn deref(&self) -> &Shop {
        &self.shop
    }
}

/// The configuration of every test server: port 0, `db_url`, the master key `key_file`, and
/// a `sandbox` channel (method `sandbox`, secret [`SANDBOX_SECRET`], opted in with
/// `allow_sandbox`; unless `extra` defines a channel `sandbox` itself); `extra` TOML is
/// appended. Suites place many orders from 127.0.0.1, so `[risk]` limits are raised to
/// [`RAISED_RISK`] unless `extra` has its own `[risk]` section (the abuse tests set low
/// ones); `extra` may have a `[server]` section of its own (e.g. `trusted_proxies`). Suites
/// also fire dozens of requests at once for one client (through a trusted proxy), so
/// `server.max_in_flight_per_ip` is raised unless `extra` sets it.
fn test_config(db_url: &str, key_file: &Path, max_connections: u32, extra: &str) -> Config {
    // The data directory (product pictures) is the key file's: the test's own, shared by
    // every instance on the database.
    let data_dir = if extra.contains("data_dir") {
        String::new()
    } else {
        let dir = key_file.parent().unwrap_or(Path::new("."));
        format!("data_dir = \"{}\"\n", dir.display())
    };
    let key_file = key_file.display();
    let server_keys = if extra.contains("max_in_flight_per_ip") {
        format!("listen = \"127.0.0.1:0\"\n{data_dir}")
    } else {
        format!("listen = \"127.0.0.1:0\"\nmax_in_flight_per_ip = 1000000\n{data_dir}")
    };
    let server_keys = server_keys.as_str();
    let (server, extra) = if extra.contains("[server]\n") {
        (
            String::new(),
            extra.replacen("[server]\n", &format!("[server]\n{server_keys}"), 1),
        )
    } else {
        (format!("[server]\n{server_keys}"), extra.to_owned())
    };
    let risk = if extra.contains("[risk]") {
        ""
    } else {
        RAISED_RISK
    };
    // The daily reconciliation stays off unless a test asks for it (it would reconcile
    // yesterday at start in every test server after 10:00 Beijing time).
    let reconciliation = if extra.contains("[reconciliation]") {
        ""
    } else {
        "[reconciliation]\nenabled = false\n"
    };
    // `extra` may define the `sandbox` channel itself (other routing keys, limits).
    let sandbox = if extra.contains("id = \"sandbox\"") {
        String::new()
    } else {
        format!(
            "[[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
             secret = \"{SANDBOX_SECRET}\"\nallow_sandbox = true\n"
        )
    };
    let toml = format!(
        "{server}\
         [database]\nurl = \"{db_url}\"\nmax_connections = {max_connections}\n\
         [security]\nmaster_key_file = \"{key_file}\"\n\
         {sandbox}{extra}
{risk}{reconciliation}"
    );
    Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("test configuration: {e}\n{toml}"))
        .config
}

/// The `[risk]` section of test servers that do not set their own: limits no suite reaches.
pub const RAISED_RISK: &str = "[risk]\nmax_pending_orders_per_ip = 1000000\n\
     max_pending_orders_per_email = 1000000\norders_per_minute_per_ip = 1000000\n\
     password_checks_per_minute_per_ip = 1000000\npassword_hashes_at_once_per_ip = 1000000\n";

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, "").await
    }

    /// `extra` is appended to the generated TOML configuration.
    pub async fn spawn_with(backend: Backend, extra: &str) -> TestApp {
        TestApp::spawn_opts(backend, extra, simulators(false)).await
    }

    /// With every gateway simulator mounted and one channel of each kind wired to it
    /// (`alipay` → Alipay, `wxpay` → WeChat Pay, `qqpay` → Epay, `sandbox`), fast retries.
    pub async fn spawn_gateways(backend: Backend, extra: &str) -> TestApp {
        TestApp::spawn_opts(backend, extra, simulators(true)).await
    }

    /// [`TestApp::spawn_gateways`], with the simulators themselves (their merchant keys, for
    /// channels a test adds through the admin API).
    pub async fn spawn_gateways_keeping(
        backend: Backend,
        extra: &str,
    ) -> (TestApp, Arc<kami_sim::gateways::Gateways>) {
        let slot = crate::GatewaysSlot::default();
        let app =
            TestApp::spawn_opts(backend, extra, crate::simulators_keeping(slot.clone())).await;
        let gw = slot
            .lock()
            .unwrap()
            .take()
            .expect("the gateway simulators were built");
        (app, gw)
    }

    /// Every simulator mounted (as [`TestApp::spawn_gateways`]), the server, every simulator
    /// and the gateway simulators' channels on `clock`, and the simulators handed back to
    /// drive (reconciliation tests: bills, dropped notifications, failing queries).
    pub async fn spawn_with_sims(
        backend: Backend,
        extra: &str,
        clock: kami_core::SharedClock,
    ) -> (TestApp, crate::Sims) {
        let kept = crate::KeptSims::default();
        let opts = crate::sims::on_clock_keeping(clock, kept.clone());
        let app = TestApp::spawn_opts(backend, extra, opts).await;
        let sims = kept.take();
        (app, sims)
    }

    pub async fn spawn_opts(backend: Backend, extra: &str, opts: BuildOptions) -> TestApp {
        let db = TestDb::create(backend).await;
        let db_url = db.url().to_owned();
        let keys = Arc::new(tempfile::tempdir().expect("temp dir for the master key"));
        let mut app = TestApp::start(backend, &db_url, keys, 16, extra, opts).await;
        app._db = Some(db);
        app
    }

    /// Another kami process (as far as the database can tell) on this app's database, with its
    /// own configuration `extra`; the database stays this app's.
    pub async fn another_instance(&self, extra: &str) -> TestApp {
        TestApp::start(
            self.backend,
            &self.db_url,
            self._keys.clone(),
            8,
            extra,
            simulators(false),
        )
        .await
    }

    /// [`TestApp::another_instance`] with build options of its own (its channels).
    pub async fn another_instance_with(&self, extra: &str, opts: BuildOptions) -> TestApp {
        TestApp::start(
            self.backend,
            &self.db_url,
            self._keys.clone(),
            8,
            extra,
            opts,
        )
        .await
    }

    /// Claimers in two kami processes at once, as far as the database can tell: four tasks, two
    /// on this app's store and two on a second store with connections of its own, each calling
    /// `claim` `rounds` times. Returns everything claimed, sorted, after checking that nothing
    /// came twice (`what` says what would have happened twice, for the failure message).
    pub async fn claim_from_two_processes<T, F, Fut>(
        &self,
        rounds: usize,
        what: &str,
        claim: F,
    ) -> Vec<T>
    where
        T: Ord + std::fmt::Debug + Send + 'static,
        F: Fn(Store) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Vec<T>> + Send + 'static,
    {
        let other = Store::connect(&self.db_url, 8, &KeyFiles::new(&self.key_file))
            .await
            .expect("a second store on the test database");
        let stores = [
            self.state.store.clone(),
            other.clone(),
            self.state.store.clone(),
            other,
        ];
        let workers: Vec<_> = stores
            .into_iter()
            .map(|store| {
                let claim = claim.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..rounds {
                        mine.extend(claim(store.clone()).await);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.expect("claimer task"));
        }
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(n, all.len(), "{what} twice");
        all
    }

    async fn start(
        backend: Backend,
        db_url: &str,
        keys: Arc<tempfile::TempDir>,
        max_connections: u32,
        extra: &str,
        opts: BuildOptions,
    ) -> TestApp {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ))
            .with_test_writer()
            .try_init();
        let key_file = keys.path().join("master.key");
        let config = test_config(db_url, &key_file, max_connections, extra);
        let app = Application::build_with(config, opts)
            .await
            .expect("app builds");
        let state = app.state();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(app.run(rx));
        let token = kami_core::SecretToken::generate();
        state
            .store
            .create_admin_token("test", &token.hash(), 0)
            .await
            .expect("admin token");
        TestApp {
            shop: Shop::new(state.public_url.clone(), token.expose()),
            state,
            backend,
            db_url: db_url.to_owned(),
            key_file,
            _keys: keys,
            _shutdown: tx,
            _db: None,
        }
    }
}
