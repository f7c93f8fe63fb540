//! `kami reconcile` as a process beside a running shop (in this test's process, on a manual
//! clock at 1 December 2026): it recovers a payment whose notification was dropped from the
//! sandbox's bill, prints a summary line then the JSON report as the last line, and exits
//! non-zero when the bill is bad (its totals tampered with), having applied nothing new.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use kami_core::ManualClock;
use kami_testkit::{both_backends, process, Backend, TestApp, SANDBOX_SECRET};
use serde_json::Value;

/// 2026-12-01T04:00:00Z: noon of 1 December in Beijing.
const DEC_1_NOON_BEIJING: i64 = 1_796_097_600_000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kami"))
}

async fn cli_reconciles_and_reports(backend: Backend) {
    let clock = Arc::new(ManualClock::new(DEC_1_NOON_BEIJING));
    let (app, sims) = TestApp::spawn_with_sims(backend, "", clock).await;
    app.create_product("cli-rc", 1000, "auto").await;
    app.import_keys("cli-rc", 2).await;
    let o = app.order("cli-rc", 1).await;
    let no = o["order_no"].as_str().unwrap().to_owned();
    sims.sandbox.set_query_failure(true);
    let (s, body) = app.pay_with(&o, "drop").await;
    assert_eq!(s, 200, "{body}");

    // The same database, master key and sandbox gateway as the running shop.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kami.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{data}\"\n[database]\nurl = \"{db}\"\n\
             [security]\nmaster_key_file = \"{key}\"\n\
             [[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n\
             gateway = \"{gw}\"\nsecret = \"{SANDBOX_SECRET}\"\nallow_sandbox = true\n",
            data = dir.path().display(),
            db = app.db_url,
            key = app.key_file.display(),
            gw = app.base,
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "reconcile",
        "--channel",
        "sandbox",
        "--date",
        "2026-12-01",
        "--config",
        config,
    ];
    let out = process::output(bin(), &args, dir.path(), process::STEP).await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("sandbox 2026-12-01: succeeded (bill), 0 mismatch(es): recovered 1"),
        "{}",
        out.stdout
    );
    let report: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(report["date"], "2026-12-01");
    let batch = &report["reconciliations"][0];
    assert_eq!(
        (batch["status"].as_str(), batch["actor"].as_str()),
        (Some("succeeded"), Some("cli"))
    );
    assert_eq!(batch["items"][0]["kind"], "recovered");
    assert_eq!(batch["items"][0]["order_no"], no.as_str());
    assert_eq!(app.admin_order(&no).await["status"], "delivered");

    // A bad bill: the batch fails, the exit status says so, the JSON is still the last line.
    sims.sandbox.tamper_next_bill();
    let out = process::output(bin(), &args, dir.path(), process::STEP).await;
    assert!(!out.status.success(), "{}", out.stdout);
    let report: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["reconciliations"][0]["status"], "failed", "{report}");
    assert!(
        out.stderr.contains("reconciliation(s) failed"),
        "{}",
        out.stderr
    );
    assert_eq!(app.stock("cli-rc").await, 1, "nothing sold twice");
}
both_backends!(cli_reconciles_and_reports);
