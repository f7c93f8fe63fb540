//! kami-bench — load generator and integrity checker for kami.
//!
//! Runs N concurrent buyers through the whole purchase path of a real kami server —
//! `POST /api/v1/orders` → pay → long-poll `GET /api/v1/orders/{order_no}?wait=10` until
//! `delivered` — then checks integrity
//! (every paid order delivered, no card key in two orders, exactly `quantity` cards per
//! order, the admin API agrees on the delivered count) and, in the same run and on the
//! same disk, calibrates how many durable single-row commits per second the machine can
//! do, so the throughput can be read as "kami durable commits/s vs. what the disk allows".
//!
//! Pay step: with `--method sandbox` (default) `POST payment.url` with `notify=normal`
//! (JSON). With `--method alipay|wxpay|qqpay|usdt|card|paypal` the server is spawned with
//! `serve --demo`, which mounts the gateway simulators on it and routes alipay → `alipay-sim`
//! (Alipay OpenAPI RSA2), wxpay → `wechat-sim` (WeChat Pay v3), qqpay → `epay-sim` (Epay v1
//! MD5), usdt → `usdt-sim` (epusdt MD5), card → `stripe-sim` (Stripe Checkout), paypal →
//! `paypal-sim` (PayPal Orders v2);
//! the buyer then pays like a browser: GET `payment.url` or `payment.qr_code` (a
//! `weixin://` code becomes `{base}/sim/wechatpay/scan/{TOKEN}`), take the page's first
//! `<form method="post">`, POST it with `notify=normal`, expect HTTP 200. The simulator then
//! sends its protocol's signed notification to kami in the background, so the
//! notification's cost lands in the deliver step. `--device pc|mobile` picks the QR or
//! redirect flavour (Alipay precreate / wap.pay, WeChat Native / H5).
//!
//! Failover (issue 11, `--failover-primary-fail PERCENT --method alipay --device pc`): the
//! simulators run standalone (`kami sim --write-config`, `failover.rs`) and kami gets two
//! Alipay channels of the same simulated merchant, `alipay-primary` (priority 20) behind a
//! proxy in this process that fails PERCENT % of its `alipay.trade.precreate` calls
//! (`proxy.rs`, seeded) and `alipay-backup` (priority 10) straight to the simulator;
//! `--single-channel` keeps only the primary. The buyers pay on the simulator's own pages.
//! The report adds the proxy's counts, the create calls that got an error, and the orders
//! each channel took.
//!
//! By default it spawns `target/release/kami` in a fresh temp dir (SQLite, or a fresh
//! `kami_bench_<random>` PostgreSQL database with `--database-url`), creates a product
//! and imports card keys through the admin API, runs the load, prints a table (and a JSON
//! summary with `--json FILE`), and exits non-zero if integrity fails.
//!
//! Examples:
//!
//! ```text
//! # SQLite, 64 buyers, 5000 orders (closed loop)
//! cargo build --release -p kami && cargo run --release -p kami-bench -- --buyers 64 --orders 5000
//!
//! # the same on PostgreSQL (a fresh database is created on that server and dropped afterwards)
//! cargo build --release -p kami && cargo run --release -p kami-bench -- \
//!     --buyers 64 --orders 5000 --database-url postgres://postgres@127.0.0.1/postgres
//!
//! # open loop: 200 orders/s for 60 s, at most 512 orders in flight, JSON summary
//! cargo run --release -p kami-bench -- --rate 200 --duration 60 --max-in-flight 512 --json bench.json
//!
//! # WeChat Pay v3 H5 (redirect) through the in-process simulator
//! cargo run --release -p kami-bench -- --method wxpay --device mobile --buyers 64 --orders 3000
//!
//! # an already running server (RSS only with --pid)
//! cargo run --release -p kami-bench -- --target http://127.0.0.1:8080 --admin-token TOKEN --pid 1234
//!
//! # only the disk calibration
//! cargo run --release -p kami-bench -- --calibrate-only
//! cargo run --release -p kami-bench -- --calibrate-only --database-url postgres://postgres@127.0.0.1/postgres
//! ```
//!
//! Exit status: 0 integrity PASS, 1 integrity FAIL, 2 the bench could not run.
//!
//! `fake_kami.py` beside Cargo.toml is a stand-in server speaking just this contract
//! (`--kami crates/kami-bench/fake_kami.py`), for checking the bench itself.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod browser;
mod calibrate;
mod failover;
mod integrity;
mod load;
mod pg;
mod proxy;
mod report;
mod server;
mod stats;

use anyhow::{bail, Context, Result};
use clap::Parser;
use load::{BuyerCtx, OrderRecord, Outcome, Progress, ServerCount};
use report::{Counts, ErrorEntry, Latencies, Params, Report, ServerInfo, Setup};
use reqwest::Url;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` random lowercase hex digits (identifier-safe).
pub fn rand_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
        .collect()
}

fn default_kami() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    root.join("target/release/kami")
}

const AFTER_HELP: &str = "\
Examples:
  cargo build --release -p kami && cargo run --release -p kami-bench -- --buyers 64 --orders 5000
  cargo run --release -p kami-bench -- --database-url postgres://postgres@127.0.0.1/postgres
  cargo run --release -p kami-bench -- --rate 200 --duration 60 --json bench.json
  cargo run --release -p kami-bench -- --method alipay --device mobile --orders 3000
  cargo run --release -p kami-bench -- --target http://127.0.0.1:8080 --admin-token TOKEN --pid 1234
  cargo run --release -p kami-bench -- --calibrate-only [--database-url postgres://...]
  cargo run --release -p kami-bench -- --method alipay --failover-primary-fail 0 --single-channel
  cargo run --release -p kami-bench -- --method alipay --failover-primary-fail 50

Exit status: 0 integrity PASS, 1 integrity FAIL, 2 the bench could not run.";

/// Load generator for kami: concurrent buyers through create → pay → delivered,
/// integrity checks, and a durable-commit calibration of the same disk.
#[derive(Parser, Debug)]
#[command(name = "kami-bench", version, after_help = AFTER_HELP)]
struct Args {
    /// The kami binary to spawn (spawn mode). Build it with `cargo build --release -p kami`.
    #[arg(long, value_name = "PATH", default_value_os_t = default_kami())]
    kami: PathBuf,

    /// Database. Spawn mode: `postgres://USER@HOST[:PORT]/DB` makes the bench create a fresh
    /// database `kami_bench_<random>` on that server for kami (dropped afterwards);
    /// `sqlite://PATH` uses that file; unset = a fresh SQLite file in the temp dir.
    /// Target mode: only tells the calibration which server / disk to measure.
    /// With --calibrate-only: what to calibrate (unset = SQLite in the temp dir).
    #[arg(
        long,
        value_name = "URL",
        env = "KAMI_BENCH_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Use an already running kami at this base URL instead of spawning one
    /// (needs --admin-token). Every bench buyer comes from this machine's address: raise that
    /// server's `[risk]` limits as the spawned server's configuration does.
    #[arg(long, value_name = "URL", requires = "admin_token")]
    target: Option<String>,

    /// Admin API token for --target (spawn mode creates its own).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KAMI_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// With --target: the server's process id, to read its idle and peak RSS from /proc.
    #[arg(long, value_name = "PID", requires = "target")]
    pid: Option<u32>,

    /// Closed loop: number of concurrent buyers, each running orders back to back.
    #[arg(long, value_name = "N", default_value_t = 64)]
    buyers: usize,

    /// Closed loop: total number of orders to run.
    #[arg(long, value_name = "M", default_value_t = 5000)]
    orders: usize,

    /// Open loop instead: start R new orders per second regardless of how fast they finish.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,

    /// Open loop: how long to keep arriving, in seconds [default: 30].
    #[arg(long, value_name = "S", requires = "rate")]
    duration: Option<f64>,

    /// Open loop: concurrency cap; arrivals beyond it are shed and counted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_in_flight: usize,

    /// Payment method the buyers choose. Anything but sandbox spawns `kami serve --demo`
    /// (in-process Alipay / WeChat Pay v3 / Epay simulators, channels alipay-sim,
    /// wechat-sim, epay-sim) and pays like a browser on the simulator's page.
    #[arg(long, value_enum, value_name = "METHOD", default_value_t = browser::PayMethod::Sandbox)]
    method: browser::PayMethod,

    /// The buyer's device (`device` of the create call): pc = QR flavours (Alipay
    /// precreate, WeChat Native), mobile = redirect flavours (Alipay wap.pay, WeChat H5).
    #[arg(long, value_enum, value_name = "DEVICE", default_value_t = browser::Device::Pc)]
    device: browser::Device,

    /// Card keys per order.
    #[arg(long, value_name = "Q", default_value_t = 1)]
    quantity: u32,

    /// Card keys to import [default: orders × quantity + 10%].
    #[arg(long, value_name = "K")]
    keys: Option<usize>,

    /// Long-poll seconds for `GET /api/v1/orders/{no}?wait=`.
    #[arg(long, value_name = "S", default_value_t = 10)]
    wait: u64,

    /// Seconds after the pay step within which a paid order must be delivered.
    #[arg(long, value_name = "S", default_value_t = 30)]
    deliver_timeout: u64,

    /// Per-request timeout in seconds for create and pay (added to --wait for polls).
    #[arg(long, value_name = "S", default_value_t = 30)]
    request_timeout: u64,

    /// Single-row durable commits for the calibration (0 = skip it).
    #[arg(long, value_name = "N", default_value_t = 3000)]
    calibrate_commits: u64,

    /// Durable commits kami makes per order (creation + notification), for
    /// `kami durable commits/s = orders/s × this`.
    #[arg(long, value_name = "C", default_value_t = 2.0)]
    commits_per_order: f64,

    /// Run only the commit calibration (SQLite, or PostgreSQL with --database-url) and exit.
    #[arg(long)]
    calibrate_only: bool,

    /// Measure kami's RSA-2048 SHA256withRSA signer (aws-lc-rs, the one every outbound
    /// Alipay / WeChat Pay / Epay v2 call uses) for S seconds on 1 and 2 threads, and exit.
    /// Compare with `openssl speed -seconds S rsa2048` on the same machine.
    #[arg(long, value_name = "S")]
    sign_only: Option<f64>,

    /// Where the SQLite calibration writes when it cannot use the server's data dir
    /// (target mode, --calibrate-only) [default: the temp dir].
    #[arg(long, value_name = "DIR")]
    calibrate_dir: Option<PathBuf>,

    /// Parent of the run's temp dir (server data dir, config, log) [default: system temp].
    /// Put it on the disk you want to measure.
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,

    /// Keep the temp dir (config, server log, SQLite database) after the run. It is also
    /// kept when integrity fails.
    #[arg(long)]
    keep: bool,

    /// Seconds to wait for the spawned server's `listening on http://...` line.
    #[arg(long, value_name = "S", default_value_t = 20)]
    startup_timeout: u64,

    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    progress: f64,

    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Failover benchmark (issue 11; `--method alipay --device pc`, spawn mode): run the
    /// gateway simulators standalone (`kami sim --write-config`) and give kami two Alipay
    /// channels of the same simulated merchant, `alipay-primary` (priority 20) behind a
    /// proxy that fails PERCENT % of its `alipay.trade.precreate` calls, and
    /// `alipay-backup` (priority 10) straight to the simulator.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    failover_primary_fail: Option<u8>,

    /// With --failover-primary-fail: only `alipay-primary` (the single-channel baseline).
    #[arg(long, requires = "failover_primary_fail")]
    single_channel: bool,

    /// With --failover-primary-fail: how a failed call fails (drop = the connection closes
    /// unanswered, a transport error; http502 = an HTTP 502 answer).
    #[arg(long, value_enum, value_name = "FAULT", default_value_t = proxy::Fault::Drop,
          requires = "failover_primary_fail")]
    failover_fault: proxy::Fault,

    /// With --failover-primary-fail: the seed choosing which precreate calls fail.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 11,
        requires = "failover_primary_fail"
    )]
    failover_seed: u64,
}

impl Args {
    fn validate(&self) -> Result<()> {
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                bail!("--rate must be a positive number");
            }
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration must be a positive number of seconds");
            }
        }
        if self.buyers == 0 || self.orders == 0 || self.quantity == 0 || self.max_in_flight == 0 {
            bail!("--buyers, --orders, --quantity and --max-in-flight must be at least 1");
        }
        if !(self.commits_per_order.is_finite() && self.commits_per_order >= 0.0) {
            bail!("--commits-per-order must be a non-negative number");
        }
        if !(self.progress.is_finite() && self.progress >= 0.0) {
            bail!("--progress must be a non-negative number of seconds");
        }
        if self.wait == 0 || self.deliver_timeout == 0 || self.request_timeout == 0 {
            bail!("--wait, --deliver-timeout and --request-timeout must be at least 1 s");
        }
        if self.failover_primary_fail.is_some()
            && (self.method != browser::PayMethod::Alipay
                || self.device != browser::Device::Pc
                || self.target.is_some())
        {
            bail!(
                "--failover-primary-fail needs --method alipay --device pc (precreate calls the \
                 gateway at creation) and a spawned server (no --target)"
            );
        }
        Ok(())
    }

    fn duration_s(&self) -> f64 {
        self.duration.unwrap_or(30.0)
    }

    /// Orders the run will try (closed loop exact, open loop planned).
    fn planned_orders(&self) -> usize {
        match self.rate {
            Some(r) => (r * self.duration_s()).ceil() as usize,
            None => self.orders,
        }
    }

    fn key_count(&self) -> usize {
        self.keys.unwrap_or_else(|| {
            let need = self.planned_orders() * self.quantity as usize;
            need + need.div_ceil(10)
        })
    }

    fn concurrency(&self) -> usize {
        if self.rate.is_some() {
            self.max_in_flight
        } else {
            self.buyers
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kami-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn write_json(path: &Path, report: &Report) -> Result<()> {
    let text = serde_json::to_string_pretty(report).context("serialising the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("JSON summary written to {}", path.display());
    Ok(())
}

fn empty_report(mode: &str, database: &str) -> Report {
    Report {
        tool: format!("kami-bench {}", env!("CARGO_PKG_VERSION")),
        mode: mode.to_string(),
        database: database.to_string(),
        params: None,
        server: None,
        setup: None,
        orders: None,
        errors: Default::default(),
        wall_time_s: None,
        orders_per_s: None,
        latency_ms: None,
        calibration: None,
        durable: None,
        integrity: None,
        failover: None,
        warnings: Vec::new(),
    }
}

fn make_tempdir(args: &Args) -> Result<tempfile::TempDir> {
    let parent = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix("kami-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a temp dir in {}", parent.display()))
}

/// The SQLite calibration directory for a `sqlite://` URL (the database file's directory).
fn sqlite_dir(url: &str) -> Option<PathBuf> {
    let path = pg::sqlite_path(url)?;
    let parent = path.parent()?.to_path_buf();
    Some(if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent
    })
}

/// Calibrates on a fresh `kami_bench_<random>` database of the server at `url`.
fn calibrate_fresh_postgres(url: &str, commits: u64) -> Result<calibrate::Calibration> {
    let mut db = pg::BenchDatabase::create(url)?;
    eprintln!("calibrating on fresh database {}", db.name);
    let cal = calibrate::calibrate_postgres(&db.url, commits);
    db.drop_now()?;
    cal
}

/// Signatures per second of kami's signer, single thread and one thread per core.
fn sign_only(secs: f64) -> Result<bool> {
    use kami_pay::crypto::{RsaHash, RsaSigner};
    let signer = std::sync::Arc::new(RsaSigner::generate().map_err(|e| anyhow::anyhow!("{e}"))?);
    // A typical Alipay request sign string (~400 bytes).
    let msg = "app_id=2021000000000000&biz_content={\"out_trade_no\":\"K20261122010203123456789012\",\"total_amount\":\"12.30\",\"subject\":\"Demo game key\"}&charset=utf-8&format=JSON&method=alipay.trade.precreate&notify_url=https://shop.example.com/pay/notify/ali-main&sign_type=RSA2&timestamp=2026-11-22 10:00:00&version=1.0".to_owned();
    println!(
        "kami signer: aws-lc-rs RSA-2048 PKCS#1 v1.5 SHA-256, message {} bytes",
        msg.len()
    );
    for threads in [1usize, 2] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let signer = signer.clone();
                let msg = msg.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while std::time::Instant::now() < deadline {
                        if signer.sign(RsaHash::Sha256, msg.as_bytes()).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        println!(
            "  {threads} thread(s): {total} signatures in {secs:.1} s = {:.0} signs/s",
            total as f64 / secs
        );
    }
    Ok(true)
}

fn calibrate_only(args: &Args) -> Result<bool> {
    let mut report;
    let cal = match args.database_url.as_deref() {
        Some(url) if pg::is_postgres(url) => {
            report = empty_report("calibrate-only", "postgres");
            calibrate_fresh_postgres(url, args.calibrate_commits)?
        }
        other => {
            report = empty_report("calibrate-only", "sqlite");
            let dir = args
                .calibrate_dir
                .clone()
                .or_else(|| other.and_then(sqlite_dir));
            match dir {
                Some(dir) => calibrate::calibrate_sqlite(&dir, args.calibrate_commits)?,
                None => {
                    let tmp = make_tempdir(args)?;
                    calibrate::calibrate_sqlite(tmp.path(), args.calibrate_commits)?
                }
            }
        }
    };
    let mut text = String::new();
    report::render_calibration(&mut text, &cal);
    print!("{text}");
    report.calibration = Some(cal);
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(true)
}

fn run(args: &Args) -> Result<bool> {
    args.validate()?;
    if args.calibrate_only {
        return calibrate_only(args);
    }
    if let Some(secs) = args.sign_only {
        return sign_only(secs);
    }
    let spawn = args.target.is_none();
    let tmp = make_tempdir(args)?;
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;

    // Which database the server uses (spawn mode) / the calibration measures.
    let mut bench_db: Option<pg::BenchDatabase> = None;
    let (db_kind, server_db_url) = match args.database_url.as_deref() {
        Some(url) if pg::is_postgres(url) => {
            if spawn {
                let db = pg::BenchDatabase::create(url)?;
                eprintln!("created database {}", db.name);
                let u = db.url.clone();
                bench_db = Some(db);
                ("postgres", Some(u))
            } else {
                ("postgres", None)
            }
        }
        Some(url) if url.starts_with("sqlite:") => ("sqlite", Some(url.to_string())),
        Some(url) => bail!("unsupported --database-url {}", pg::redact(url)),
        None if spawn => (
            "sqlite",
            Some(format!("sqlite://{}", data_dir.join("kami.db").display())),
        ),
        None => ("unknown", None),
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let outcome = rt.block_on(load_phase(
        args,
        tmp.path(),
        &data_dir,
        server_db_url.as_deref(),
    ));
    rt.shutdown_timeout(Duration::from_secs(2));

    let mut report = match outcome {
        Ok(r) => r,
        Err(e) => {
            if let Some(mut db) = bench_db.take() {
                let _ = db.drop_now();
            }
            if spawn && tmp.path().join("server.log").exists() {
                let kept = tmp.keep();
                eprintln!("temp dir kept for inspection: {}", kept.display());
            }
            return Err(e);
        }
    };
    report.database = db_kind.to_string();

    // Calibration, after the server is gone, on the same disk / database server.
    if args.calibrate_commits > 0 {
        eprintln!(
            "calibrating: {} durable single-row commits...",
            args.calibrate_commits
        );
        let cal = match (db_kind, &bench_db, args.database_url.as_deref()) {
            ("postgres", Some(db), _) => {
                calibrate::calibrate_postgres(&db.url, args.calibrate_commits)
            }
            ("postgres", None, Some(url)) => calibrate_fresh_postgres(url, args.calibrate_commits),
            _ => {
                let dir = args
                    .calibrate_dir
                    .clone()
                    .or_else(|| server_db_url.as_deref().and_then(sqlite_dir))
                    .unwrap_or_else(|| data_dir.clone());
                if !spawn && args.calibrate_dir.is_none() && server_db_url.is_none() {
                    report.warnings.push(format!(
                        "calibrated SQLite in {}; pass --calibrate-dir (the server's data dir) or --database-url to measure the server's disk",
                        dir.display()
                    ));
                }
                calibrate::calibrate_sqlite(&dir, args.calibrate_commits)
            }
        };
        match cal {
            Ok(c) => {
                report.durable = report::durable(
                    report.orders_per_s.unwrap_or(0.0),
                    args.commits_per_order,
                    c.commits_per_s,
                );
                report.calibration = Some(c);
            }
            Err(e) => report.warnings.push(format!("calibration failed: {e:#}")),
        }
    }

    if let Some(mut db) = bench_db.take() {
        match db.drop_now() {
            Ok(()) => eprintln!("dropped database {}", db.name),
            Err(e) => report
                .warnings
                .push(format!("could not drop database {}: {e:#}", db.name)),
        }
    }

    let pass = report.integrity.as_ref().is_some_and(|i| i.pass);
    if spawn && (args.keep || !pass) {
        let kept = tmp.keep();
        report
            .warnings
            .push(format!("temp dir kept: {}", kept.display()));
    }
    print!("{}", report::render(&report));
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(pass)
}

/// Everything that needs the runtime: server start, setup, load, integrity, RSS, stop.
async fn load_phase(
    args: &Args,
    tmp: &Path,
    data_dir: &Path,
    server_db_url: Option<&str>,
) -> Result<Report> {
    let mut report = empty_report(
        if args.target.is_some() {
            "target"
        } else {
            "spawn"
        },
        "",
    );
    let mut failover_run: Option<failover::FailoverRun> = None;
    let (mut server, token, base_url) = match &args.target {
        Some(target) => {
            let token = args
                .admin_token
                .clone()
                .context("--target needs --admin-token")?;
            (None, token, target.clone())
        }
        None => {
            if !args.kami.is_file() {
                bail!(
                    "kami binary not found at {}: build it with `cargo build --release -p kami` or pass --kami PATH",
                    args.kami.display()
                );
            }
            let db_url = server_db_url.context("no database URL for the spawned server")?;
            let mut config_text = server::render_config(data_dir, db_url, 15);
            if let Some(percent) = args.failover_primary_fail {
                let plan = proxy::FaultPlan {
                    percent,
                    seed: args.failover_seed,
                    fault: args.failover_fault,
                };
                let (run, channels) = failover::FailoverRun::start(
                    &args.kami,
                    tmp,
                    plan,
                    args.single_channel,
                    Duration::from_secs(args.startup_timeout),
                )
                .await?;
                eprintln!(
                    "simulators up at {} (pid {}), flaky proxy at {}",
                    run.sim.base_url, run.sim.pid, run.proxy.base_url
                );
                config_text.push('\n');
                config_text.push_str(&channels);
                failover_run = Some(run);
            }
            let config = tmp.join("kami.toml");
            std::fs::write(&config, config_text)
                .with_context(|| format!("writing {}", config.display()))?;
            eprintln!("config {}", config.display());
            let token = server::create_admin_token(&args.kami, &config).await?;
            // The failover run's simulators run on their own, not inside the server.
            let demo = args.method.needs_demo() && failover_run.is_none();
            let s = server::SpawnedServer::start(
                &args.kami,
                &config,
                demo,
                &tmp.join("server.log"),
                Duration::from_secs(args.startup_timeout),
            )
            .await?;
            eprintln!(
                "server up at {} (pid {}{})",
                s.base_url,
                s.pid,
                if demo { ", serve --demo" } else { "" }
            );
            let url = s.base_url.clone();
            (Some(s), token, url)
        }
    };
    let pid = server.as_ref().map(|s| s.pid).or(args.pid);

    // Idle RSS: server up, nothing done yet, after a 1 s pause.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kb = pid.and_then(|p| server::read_status_kb(p, "VmRSS"));

    let driven = drive(
        args,
        &base_url,
        &token,
        server.is_some(),
        failover_run.as_ref(),
        &mut report,
    )
    .await;
    if let Some(run) = failover_run.take() {
        run.sim.stop().await;
    }

    let peak_rss_kb = pid.and_then(|p| server::read_status_kb(p, "VmHWM"));
    let exited = server.as_mut().and_then(server::SpawnedServer::exited);
    let log = server.as_ref().map(|s| s.log_path.clone());
    if let Some(s) = server.take() {
        s.stop().await;
    }
    report.server = Some(ServerInfo {
        base_url: base_url.clone(),
        pid,
        idle_rss_kb,
        peak_rss_kb,
        log: log.as_ref().map(|p| p.display().to_string()),
        exited: exited.clone(),
    });
    if args.target.is_some() && pid.is_some() {
        report.warnings.push(
            "--target: VmHWM is the server's peak since it started, not just this run".into(),
        );
    }
    if let Err(e) = driven {
        let tail = log
            .as_deref()
            .map(|p| {
                format!(
                    "\nserver log tail ({}):\n{}",
                    p.display(),
                    server::tail_file(p, 30)
                )
            })
            .unwrap_or_default();
        bail!("{e:#}{tail}");
    }
    if let (Some(e), Some(i)) = (&exited, report.integrity.as_mut()) {
        i.checks.push(integrity::Check {
            name: "server stayed up".into(),
            pass: false,
            detail: format!("server exited during the run: {e}"),
        });
        i.pass = false;
    }
    Ok(report)
}

fn build_client(args: &Args) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency() + 16)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

/// Setup, load and integrity against a live server; fills `report`.
async fn drive(
    args: &Args,
    base_url: &str,
    token: &str,
    fresh_server: bool,
    failover_run: Option<&failover::FailoverRun>,
    report: &mut Report,
) -> Result<()> {
    let base = Url::parse(base_url).with_context(|| format!("bad server URL {base_url}"))?;
    let pages_base = match failover_run {
        Some(run) => Url::parse(&run.sim.base_url)
            .with_context(|| format!("bad simulator URL {}", run.sim.base_url))?,
        None => base.clone(),
    };
    let client = build_client(args)?;

    // Setup: a product of our own and its card keys.
    let run_id = rand_hex(8);
    let slug = format!("bench-{run_id}");
    load::create_product(&client, &base, token, &slug, 100, args.method.currency()).await?;
    let n_keys = args.key_count();
    let keys = load::generate_keys(&run_id, n_keys);
    let t = Instant::now();
    let (imported, duplicates) =
        load::import_cards(&client, &base, token, &slug, &keys, 10_000).await?;
    let import_seconds = t.elapsed().as_secs_f64();
    eprintln!("product {slug}: imported {imported} keys ({duplicates} duplicates) in {import_seconds:.2} s");
    if imported != n_keys as u64 {
        report.warnings.push(format!(
            "imported {imported} of {n_keys} generated keys ({duplicates} reported as duplicates)"
        ));
    }
    report.setup = Some(Setup {
        product: slug.clone(),
        keys_imported: imported,
        key_duplicates: duplicates,
        import_seconds,
    });
    report.params = Some(Params {
        loop_kind: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .into(),
        buyers: args.rate.is_none().then_some(args.buyers),
        orders: args.rate.is_none().then_some(args.orders),
        rate: args.rate,
        duration_s: args.rate.map(|_| args.duration_s()),
        max_in_flight: args.rate.map(|_| args.max_in_flight),
        quantity: args.quantity,
        method: args.method.as_str().into(),
        device: args.device.as_str().into(),
        payment: None,
        keys: n_keys,
        wait_s: args.wait,
        deliver_timeout_s: args.deliver_timeout,
    });

    // Load.
    let ctx = Arc::new(BuyerCtx {
        client: client.clone(),
        base: base.clone(),
        pages_base,
        slug: slug.clone(),
        quantity: args.quantity,
        method: args.method,
        device: args.device,
        wait_s: args.wait,
        deliver_timeout: Duration::from_secs(args.deliver_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
        progress: Progress::default(),
        first_payment: std::sync::OnceLock::new(),
    });
    let progress = (args.progress > 0.0)
        .then(|| load::spawn_progress(ctx.clone(), Duration::from_secs_f64(args.progress)));
    match args.rate {
        Some(r) => eprintln!(
            "open loop: {r} orders/s for {} s (max {} in flight)",
            args.duration_s(),
            args.max_in_flight
        ),
        None => eprintln!(
            "closed loop: {} buyers, {} orders",
            args.buyers, args.orders
        ),
    }
    eprintln!(
        "paying with method {} on device {} (expected channel {})",
        args.method.as_str(),
        args.device.as_str(),
        if failover_run.is_some() {
            failover::PRIMARY
        } else {
            args.method.demo_channel()
        }
    );
    let start = Instant::now();
    let records = match args.rate {
        Some(rate) => {
            load::open_loop(
                ctx.clone(),
                rate,
                Duration::from_secs_f64(args.duration_s()),
                args.planned_orders(),
                args.max_in_flight,
            )
            .await
        }
        None => load::closed_loop(ctx.clone(), args.buyers, args.orders).await,
    };
    let wall = start.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(p) = report.params.as_mut() {
        p.payment = ctx.first_payment.get().cloned();
    }
    summarize_records(
        &records,
        ctx.progress.shed.load(std::sync::atomic::Ordering::Relaxed),
        wall,
        report,
    );

    // Integrity.
    let imported_set: HashSet<String> = keys.into_iter().collect();
    let mut checks = integrity::check_records(
        &records,
        args.quantity,
        args.deliver_timeout,
        Some(&imported_set),
    );
    let mut warnings = Vec::new();
    let ours: HashSet<String> = records.iter().filter_map(|r| r.order_no.clone()).collect();
    let bench_delivered = records
        .iter()
        .filter(|r| r.delivered_cards().is_some())
        .count() as u64;
    match load::count_server_delivered(&client, &base, token, &ours).await {
        Ok(count) => {
            if let Some(c) =
                integrity::check_server_count(&count, bench_delivered, fresh_server, &mut warnings)
            {
                checks.push(c);
            }
            if let ServerCount::Counted { total, ours, .. } = count {
                if !fresh_server && total != ours {
                    warnings.push(format!(
                        "server lists {total} delivered orders in all, {ours} of them from this run"
                    ));
                }
            }
        }
        Err(e) => checks.push(integrity::Check {
            name: "server-side delivered count matches (admin API)".into(),
            pass: false,
            detail: format!("admin order listing failed: {e:#}"),
        }),
    }
    if let Some(run) = failover_run {
        let by_channel = failover::orders_by_channel(&client, &base, token, &slug)
            .await
            .unwrap_or_else(|e| {
                warnings.push(format!("orders by channel (admin API): {e:#}"));
                Default::default()
            });
        report.failover = Some(run.report(&records, by_channel));
    }
    report.warnings.extend(warnings.iter().cloned());
    report.integrity = Some(integrity::summarize(checks, warnings));
    Ok(())
}

fn summarize_records(records: &[OrderRecord], shed: u64, wall: f64, report: &mut Report) {
    let mut counts = Counts {
        attempted: records.len() as u64,
        shed,
        ..Counts::default()
    };
    let (mut create, mut pay, mut deliver, mut total) = (vec![], vec![], vec![], vec![]);
    let mut polls = 0u64;
    for r in records {
        if r.paid {
            counts.paid += 1;
        }
        match r.outcome {
            Outcome::Delivered { .. } => {
                counts.delivered += 1;
                polls += u64::from(r.polls);
            }
            Outcome::OutOfStock => counts.out_of_stock += 1,
            Outcome::Failed { .. } => counts.failed += 1,
        }
        if !matches!(r.outcome, Outcome::OutOfStock) {
            create.extend(r.create_us);
        }
        pay.extend(r.pay_us);
        deliver.extend(r.deliver_us);
        total.extend(r.total_us);
    }
    let per_s = if wall > 0.0 {
        counts.delivered as f64 / wall
    } else {
        0.0
    };
    report.latency_ms = Some(Latencies {
        create: stats::summarize_us(&mut create),
        pay: stats::summarize_us(&mut pay),
        deliver: stats::summarize_us(&mut deliver),
        end_to_end: stats::summarize_us(&mut total),
        mean_polls: (counts.delivered > 0).then(|| polls as f64 / counts.delivered as f64),
    });
    report.errors = load::errors_by_kind(records)
        .into_iter()
        .map(|(k, (count, example))| (k, ErrorEntry { count, example }))
        .collect();
    report.orders = Some(counts);
    report.wall_time_s = Some(wall);
    report.orders_per_s = Some(per_s);
}

#[cfg(test)]
mod tests;
