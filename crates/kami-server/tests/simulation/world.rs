//! The simulated world of one seed: a database (a copy of a prepared catalogue), the engine
//! built on it exactly as `kami serve` builds it (but without its listener loop and jobs: the
//! simulation runs the jobs' services itself, when the seed says), six fake gateways (two per
//! payment method: a primary and a backup, or two sharing a priority) that outlive engine
//! crashes, a manual clock, and the seed's random source — which also seeds kami's routing
//! (`Channels::seed_routing`) at every start, so the weighted draw replays too.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kami_core::{Currency, ManualClock, Method, Money, OrderNo, PriceTiers, Slug};
use kami_pay::PaymentChannel;
use kami_server::theme::Theme;
use kami_server::{AppState, Application, BuildOptions, Config, Extra};
use kami_store::{Delivery, KeyFiles, NewProduct, Store};
use kami_testkit::Backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fake_gateway::{FakeGateway, Spec};
use crate::inspect::Inspector;
use crate::sched::Gates;

/// When the simulated time starts (2026-01-01T00:00:00Z): every seed starts here.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

/// A product of the prepared catalogue.
pub struct SimProduct {
    pub slug: &'static str,
    pub delivery: Delivery,
    /// Keys imported so far (loop keys included), or the manual stock at the start.
    pub stock: i64,
    pub is_loop: bool,
    pub max_quantity: i64,
}

/// The catalogue every seed starts from: a product with almost no stock (oversell pressure),
/// one with plenty, one with a shared (loop) key, one delivered by hand with a small stock.
pub fn catalogue() -> Vec<SimProduct> {
    vec![
        SimProduct {
            slug: "scarce",
            delivery: Delivery::Auto,
            stock: 2,
            is_loop: false,
            max_quantity: 2,
        },
        SimProduct {
            slug: "plenty",
            delivery: Delivery::Auto,
            stock: 40,
            is_loop: false,
            max_quantity: 3,
        },
        SimProduct {
            slug: "shared",
            delivery: Delivery::Auto,
            stock: 1,
            is_loop: true,
            max_quantity: 1,
        },
        SimProduct {
            slug: "manual",
            delivery: Delivery::Manual,
            stock: 3,
            is_loop: false,
            max_quantity: 2,
        },
    ]
}

/// The buyer-facing methods, each served by two of the channels.
pub const METHODS: [Method; 3] = [Method::Alipay, Method::Wxpay, Method::Qqpay];

/// The channels, each with the protocol traits that matter here: the first three are the
/// methods' primaries (`primary(m)`), the last three their second channels. Alipay and QQ Pay
/// fail over by priority to a backup of another kind; WeChat Pay's two share a priority, so
/// the seeded routing draw splits them.
pub fn channel_specs() -> [(&'static str, Method, Spec); 6] {
    [
        (
            "alpha",
            Method::Alipay,
            Spec {
                closable: true,
                idempotent_refunds: true,
                honours_expiry: true,
                priority: 10,
                bill: true,
            },
        ),
        (
            "beta",
            Method::Wxpay,
            Spec {
                closable: true,
                idempotent_refunds: true,
                honours_expiry: false,
                priority: 10,
                bill: true,
            },
        ),
        // Epay-like: cannot close a trade, does not de-duplicate refunds, has no bill.
        (
            "gamma",
            Method::Qqpay,
            Spec {
                closable: false,
                idempotent_refunds: false,
                honours_expiry: false,
                priority: 10,
                bill: false,
            },
        ),
        // Alipay's backup: an Epay-like aggregator.
        (
            "alpha2",
            Method::Alipay,
            Spec {
                closable: false,
                idempotent_refunds: false,
                honours_expiry: false,
                priority: 0,
                bill: false,
            },
        ),
        // WeChat Pay's second channel, at the same priority.
        (
            "beta2",
            Method::Wxpay,
            Spec {
                closable: true,
                idempotent_refunds: true,
                honours_expiry: true,
                priority: 10,
                bill: true,
            },
        ),
        // QQ Pay's backup: a direct channel with a bill.
        (
            "gamma2",
            Method::Qqpay,
            Spec {
                closable: true,
                idempotent_refunds: true,
                honours_expiry: false,
                priority: 0,
                bill: true,
            },
        ),
    ]
}

/// The channel tried first for method `m` (index into [`METHODS`]) unless it is resting
/// (WeChat Pay's two share that place: the routing draw decides).
pub fn primary(m: usize) -> usize {
    m
}

/// How each seed's kami routes (`[routing] mode`): the seed picks one.
const ROUTING_MODES: [&str; 3] = ["priority", "success_rate", "shadow"];

/// A deliberate fault in kami's database, written by the harness, that the invariants must
/// catch (the proof that the checker can fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// A second `order.delivered` row for a delivered order, as a double delivery would leave.
    DoubleDeliver,
}

/// What a run does beyond its seed.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    pub backend: Backend,
    pub steps: usize,
    /// How much more often buyers pay a different amount than asked (1 = the normal mix).
    pub wrong_amount_weight: u32,
    /// From this step on, sabotage the database at the first chance.
    pub sabotage: Option<(usize, Sabotage)>,
    /// Print each step as it runs (replaying one seed).
    pub verbose: bool,
}

/// The engine of the moment: dropped whole at a crash.
pub struct Engine {
    pub state: Arc<AppState>,
    pub router: axum::Router,
}

/// Figures of one run, summed over seeds for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: u64,
    pub orders: u64,
    pub paid: u64,
    pub refunds: u64,
    pub crashes: u64,
    pub notifications: u64,
    pub mismatches_refused: u64,
    pub late_payments: u64,
    /// Orders whose payment was created on a later attempt (the first failed or timed out).
    pub failovers: u64,
    /// Second payments of an order (flagged `payment.conflict`).
    pub conflicts: u64,
    /// Reconciliation runs, and the payments only a bill found.
    pub reconciliations: u64,
    pub found_by_bill: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.orders += o.orders;
        self.paid += o.paid;
        self.refunds += o.refunds;
        self.crashes += o.crashes;
        self.notifications += o.notifications;
        self.mismatches_refused += o.mismatches_refused;
        self.late_payments += o.late_payments;
        self.failovers += o.failovers;
        self.conflicts += o.conflicts;
        self.reconciliations += o.reconciliations;
        self.found_by_bill += o.found_by_bill;
    }
}

/// An order as the database has it (read after every step).
#[derive(Debug, Clone)]
pub struct DbOrder {
    pub id: i64,
    pub no: OrderNo,
    pub status: String,
    pub amount: i64,
}

pub struct World {
    /// First, so it is dropped before the database goes away.
    pub engine: Option<Engine>,
    pub seed: u64,
    pub cfg: RunConfig,
    pub rng: RefCell<StdRng>,
    pub clock: Arc<ManualClock>,
    pub gates: Arc<Gates>,
    pub fakes: Vec<Arc<FakeGateway>>,
    pub products: Vec<SimProduct>,
    pub inspect: Inspector,
    /// Orders read from the database after the last step, by id.
    pub orders: Vec<DbOrder>,
    /// Manual orders once seen holding their stock (awaiting fulfilment or fulfilled): a
    /// refund leaves it taken.
    pub held_manual: BTreeSet<i64>,
    pub trace: RefCell<Vec<String>>,
    pub step: usize,
    pub stats: Stats,
    pub buyers: std::cell::Cell<u64>,
    pub sabotaged: bool,
    /// `[routing] mode` of this seed.
    pub routing_mode: &'static str,
    /// Payments (channel, trade number) of the right amount on a bill a reconciliation run
    /// took without failing: kami must hold each paid from then on.
    pub billed: BTreeSet<(String, String)>,
    /// What a step itself found wrong (a re-run that changed something, a failed batch that
    /// applied something), reported with the invariants after it.
    pub step_violations: Vec<String>,
    /// Last: removed when everything else is gone.
    pub db: SimDb,
}

/// A database of one seed, removed with it.
pub struct SimDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl Drop for SimDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) =
                    postgres::Client::connect(&kami_testkit::pg_admin_url(), postgres::NoTls)
                {
                    let _ = c.batch_execute(&sql);
                }
            })
            .join();
        }
    }
}

/// Shared by every seed of the process: the master key, and the prepared databases.
struct Prepared {
    keys: tempfile::TempDir,
    sqlite: OnceLock<PathBuf>,
    postgres: OnceLock<String>,
}

fn prepared() -> &'static Prepared {
    static P: OnceLock<Prepared> = OnceLock::new();
    P.get_or_init(|| Prepared {
        keys: tempfile::tempdir().expect("a directory for the master key"),
        sqlite: OnceLock::new(),
        postgres: OnceLock::new(),
    })
}

fn key_file() -> PathBuf {
    prepared().keys.path().join("master.key")
}

/// Where the per-seed SQLite files go: memory-backed when the machine has /dev/shm.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("kami-sim").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("a temp dir")
}

/// Build the catalogue once through kami's own store, on a thread and runtime of its own
/// (the callers are inside a runtime already).
fn build_template(url: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let store = Store::connect(&url, 2, &KeyFiles::new(key_file()))
                .await
                .expect("the template database");
            for p in catalogue() {
                store
                    .create_product(
                        NewProduct {
                            prices: Default::default(),
                            slug: Slug::parse(p.slug).expect("slug"),
                            title: p.slug.to_uppercase(),
                            description: String::new(),
                            price: price(p.slug),
                            delivery: p.delivery,
                            manual_stock: (p.delivery == Delivery::Manual).then_some(p.stock),
                            category: String::new(),
                            sort_order: 0,
                            tiers: PriceTiers::default(),
                            min_quantity: 1,
                            max_quantity: p.max_quantity,
                        },
                        EPOCH_MS,
                    )
                    .await
                    .expect("product");
                if p.delivery == Delivery::Auto {
                    store
                        .import_cards(
                            p.slug,
                            fresh_keys(p.slug, p.stock),
                            p.is_loop,
                            EPOCH_MS,
                            &|_: u64| {},
                        )
                        .await
                        .expect("keys");
                }
            }
        });
    })
    .join()
    .expect("template builder");
}

/// Card keys made now (never written in the repository).
pub fn fresh_keys(slug: &str, n: i64) -> Vec<String> {
    (0..n)
        .map(|i| format!("{slug}-{i}-{:016x}", rand::random::<u64>()))
        .collect()
}

pub fn price(slug: &str) -> Money {
    let minor = match slug {
        "scarce" => 990,
        "plenty" => 1_250,
        "shared" => 500,
        _ => 2_000,
    };
    Money::new(minor, Currency::Cny).expect("price")
}

fn sqlite_template() -> &'static PathBuf {
    prepared().sqlite.get_or_init(|| {
        let dir = prepared().keys.path().join("template");
        std::fs::create_dir_all(&dir).expect("template dir");
        let built = dir.join("built.db");
        build_template(format!("sqlite://{}", built.display()));
        // One self-contained file (no WAL beside it) to copy per seed.
        let copy = dir.join("template.db");
        let c = rusqlite::Connection::open(&built).expect("open the template");
        c.execute("VACUUM INTO ?1", [copy.to_str().expect("utf-8 path")])
            .expect("vacuum into");
        copy
    })
}

fn pg_template() -> &'static String {
    prepared().postgres.get_or_init(|| {
        let name = format!("kami_simt_{}", kami_testkit::hex_rand());
        let admin = kami_testkit::pg_admin_url();
        let create = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("PostgreSQL");
            c.batch_execute(&create)
                .expect("create the template database");
        })
        .join()
        .expect("pg");
        build_template(replace_db(&kami_testkit::pg_admin_url(), &name));
        name
    })
}

impl SimDb {
    fn create(backend: Backend, seed: u64) -> SimDb {
        match backend {
            Backend::Sqlite => {
                let dir = scratch();
                let file = dir.path().join("kami.db");
                std::fs::copy(sqlite_template(), &file).expect("copy the template");
                SimDb {
                    url: format!("sqlite://{}", file.display()),
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let template = pg_template().clone();
                let name = format!("kami_sim_{seed}_{}", kami_testkit::hex_rand());
                let sql = format!("CREATE DATABASE {name} TEMPLATE {template}");
                std::thread::spawn(move || {
                    let mut c =
                        postgres::Client::connect(&kami_testkit::pg_admin_url(), postgres::NoTls)
                            .expect("PostgreSQL");
                    // The template's builder may still be closing its connections.
                    let mut tries = 0;
                    while let Err(e) = c.batch_execute(&sql) {
                        tries += 1;
                        assert!(tries < 50, "create a database from the template: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                })
                .join()
                .expect("pg");
                SimDb {
                    url: replace_db(&kami_testkit::pg_admin_url(), &name),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }
}

thread_local! {
    /// The embedded theme, compiled once per thread (most of a start's cost).
    static THEME: Theme = Theme::load(None).expect("the embedded theme");
}

fn theme() -> Theme {
    THEME.with(Theme::clone)
}

/// The PostgreSQL URL of `url`'s server with database `db`.
fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let host_end = base
        .find("://")
        .map(|s| s + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn config(url: &str, routing_mode: &str) -> Config {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://kami.sim\"\n\
         data_dir = \"{dir}\"\n\
         [database]\nurl = \"{url}\"\nmax_connections = 4\n\
         [security]\nmaster_key_file = \"{key}\"\n\
         [routing]\nmode = \"{routing_mode}\"\n{risk}",
        dir = prepared().keys.path().display(),
        key = key_file().display(),
        risk = kami_testkit::RAISED_RISK,
    );
    Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("simulation configuration: {e}\n{toml}"))
        .config
}

impl World {
    pub async fn new(seed: u64, cfg: RunConfig) -> World {
        let clock = Arc::new(ManualClock::new(EPOCH_MS));
        let gates = Arc::new(Gates::default());
        let fakes = channel_specs()
            .into_iter()
            .map(|(id, method, spec)| {
                Arc::new(FakeGateway::new(
                    id,
                    method,
                    spec,
                    clock.clone(),
                    seed,
                    gates.clone(),
                ))
            })
            .collect();
        let db = SimDb::create(cfg.backend, seed);
        let inspect = Inspector::open(&db.url);
        let mut rng = StdRng::seed_from_u64(seed);
        let routing_mode = ROUTING_MODES[rng.gen_range(0..ROUTING_MODES.len())];
        let mut w = World {
            seed,
            cfg,
            rng: RefCell::new(rng),
            routing_mode,
            billed: BTreeSet::new(),
            step_violations: Vec::new(),
            clock,
            gates,
            fakes,
            products: catalogue(),
            db,
            inspect,
            engine: None,
            orders: Vec::new(),
            held_manual: BTreeSet::new(),
            trace: RefCell::new(Vec::new()),
            step: 0,
            stats: Stats::default(),
            buyers: std::cell::Cell::new(0),
            sabotaged: false,
        };
        w.boot().await;
        w
    }

    /// Build the engine on the database, as a `kami serve` start does.
    pub async fn boot(&mut self) {
        let store = Store::connect(&self.db.url, 4, &KeyFiles::new(key_file()))
            .await
            .expect("the store opens");
        let channels: Vec<Arc<dyn PaymentChannel>> = self
            .fakes
            .iter()
            .map(|f| f.clone() as Arc<dyn PaymentChannel>)
            .collect();
        let opts = BuildOptions {
            demo: false,
            extension: Some(Box::new(move |_: &kami_server::ExtensionContext<'_>| {
                Ok(Extra {
                    channels,
                    ..Default::default()
                })
            })),
            clock: Some(self.clock.clone() as kami_core::SharedClock),
        };
        let app = Application::build_with_theme(
            config(&self.db.url, self.routing_mode),
            store,
            theme(),
            opts,
        )
        .await
        .expect("the engine builds");
        let state = app.state();
        // Before any checkout: the routes this engine draws are the seed's.
        state.channels.seed_routing(self.rng.borrow_mut().gen());
        // The listener goes with the application: the simulation calls the router directly.
        drop(app);
        let router = kami_server::http::router(state.clone());
        self.engine = Some(Engine { state, router });
    }

    /// The process dies: the state and everything in flight are dropped; a new one starts
    /// on the same database (the gateways keep their ledgers).
    pub async fn crash_and_restart(&mut self) {
        self.engine = None;
        self.stats.crashes += 1;
        self.boot().await;
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the engine runs")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.engine().state.clone()
    }

    pub fn log(&self, line: String) {
        if self.cfg.verbose {
            println!("{line}");
        }
        self.trace.borrow_mut().push(line);
    }

    pub fn now(&self) -> i64 {
        use kami_core::Clock;
        self.clock.now_ms()
    }
}
