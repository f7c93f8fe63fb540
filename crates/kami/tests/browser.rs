#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The browser end-to-end suite (`e2e/`, headless Chromium driven by playwright-core under
//! Node's test runner) against this build's `kami serve --demo`, so that `cargo test
//! --workspace -- --include-ignored` runs it: buyers pay through every simulator channel on a desktop and a phone
//! and see the key appear in place, order lookup, the language switch; and the seller console
//! on a desktop and a phone (`e2e/console-*.test.mjs`): sign-in with TOTP, key import, price
//! change, manual fulfilment, check payment, coupons, every page in both languages, and the
//! pages that skip themselves until they exist (`console-later`). Every `*.test.mjs` in `e2e/`
//! is picked up. Screenshots and `timings.json` land in `target/e2e-screenshots` (or
//! `KAMI_E2E_SHOTS`).
//!
//! Needs node, Chromium (`/usr/bin/chromium` or `CHROMIUM`) and `e2e/node_modules`: `bash
//! e2e/setup.sh` installs them. So it is ignored by default; run with `--include-ignored` (as
//! CI does), anything missing fails it with what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole suite takes about four minutes on a busy two-core machine.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

/// What is missing to run the suite, if anything.
fn missing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => out.push(format!("node --version failed ({})", o.status)),
        Err(e) => out.push(format!("node not found ({e})")),
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        out.push(format!("Chromium not found at {chromium}"));
    }
    let pw = root.join("e2e/node_modules/playwright-core/package.json");
    if !pw.exists() {
        out.push(format!("{} is missing", pw.display()));
    }
    out
}

#[test]
#[ignore = "needs chromium and e2e/node_modules: bash e2e/setup.sh"]
fn browser_end_to_end() {
    let root = kami_testkit::workspace_root();
    let missing = missing(&root);
    if !missing.is_empty() {
        kami_testkit::require(
            "node, Chromium and e2e/node_modules",
            "Run bash e2e/setup.sh.",
            missing.join("; "),
        );
    }
    let shots = std::env::var_os("KAMI_E2E_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/e2e-screenshots"));
    std::fs::create_dir_all(&shots).expect("screenshot folder");

    // Inherited stdout/stderr: node's report streams straight to the terminal / CI log.
    let started = Instant::now();
    let mut child = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "e2e/",
        ])
        .current_dir(&root)
        .env("KAMI_BIN", env!("CARGO_BIN_EXE_kami"))
        .env("KAMI_E2E_SHOTS", &shots)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting node --test e2e/");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break status;
        }
        if started.elapsed() > SUITE_TIMEOUT {
            stop(&mut child);
            panic!("the browser suite did not finish within {SUITE_TIMEOUT:?}; stopped");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "browser suite: {status} after {:.1} s; screenshots and timings.json in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(status.success(), "node --test e2e/ failed ({status})");
}

/// SIGTERM first: node's test runner then ends its test-file processes, whose harness kills
/// their kami server and Chromium; SIGKILL if that takes more than ten seconds.
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
