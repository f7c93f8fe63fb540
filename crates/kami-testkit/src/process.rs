//! The real `kami` binary as a child process: one-shot commands and long-running `serve` /
//! `sim`. The binary's path comes from the test crate (`env!("CARGO_BIN_EXE_kami")`, which
//! only the `kami` crate's tests have).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound of starting a process or running a one-shot command.
pub const STEP: Duration = Duration::from_secs(120);

/// What a one-shot command did.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `bin ARGS` in `cwd` (RUST_LOG=warn), bounded by `limit`.
pub async fn output(bin: &Path, args: &[&str], cwd: &Path, limit: Duration) -> Output {
    let out = tokio::time::timeout(
        limit,
        Command::new(bin)
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("kami {args:?} did not exit within {limit:?}"))
    .unwrap_or_else(|e| panic!("kami {args:?} does not run: {e}"));
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `bin ARGS` in `cwd`, which must succeed; returns its stdout.
pub async fn run(bin: &Path, args: &[&str], cwd: &Path) -> String {
    let out = output(bin, args, cwd, STEP).await;
    assert!(
        out.status.success(),
        "kami {args:?} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// `kami admin token create NAME --config CONFIG`: the new token (its last stdout line).
pub async fn admin_token(bin: &Path, config: &Path, cwd: &Path) -> String {
    let config = config.to_str().expect("utf-8 config path");
    let stdout = run(
        bin,
        &["admin", "token", "create", "test", "--config", config],
        cwd,
    )
    .await;
    let token = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(!token.is_empty(), "no token printed: {stdout}");
    token
}

/// A running `kami` process. Dropping it kills the process, so nothing outlives the test, even
/// when an assertion fails; on a panic the tail of its log is printed.
pub struct Proc {
    /// Shared with [`Proc::killer`]; `None` once killed and reaped.
    child: Arc<Mutex<Option<Child>>>,
    log: PathBuf,
}

impl Proc {
    /// Spawn `bin ARGS` in `cwd` with `env` (stderr to `log`) and wait for the stdout line
    /// starting with `prefix`; returns the process and the rest of that line.
    pub async fn start(
        bin: &Path,
        args: &[&str],
        cwd: &Path,
        env: &[(&str, &str)],
        prefix: &'static str,
        log: PathBuf,
    ) -> (Proc, String) {
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(bin)
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("kami {args:?} does not start: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        // Find the machine-readable line, then keep draining so the pipe never fills.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_owned());
                    }
                }
            }
        });
        let proc = Proc {
            child: Arc::new(Mutex::new(Some(child))),
            log,
        };
        let rest = match tokio::time::timeout(STEP, rx).await {
            Ok(Ok(rest)) => rest,
            Ok(Err(_)) => panic!(
                "kami {args:?} exited before printing {prefix:?}:\n{}",
                proc.log_text()
            ),
            Err(_) => panic!("kami {args:?} did not print {prefix:?} in time"),
        };
        (proc, rest)
    }

    /// `kami serve --config CONFIG` (plus `env`); returns the process and its base URL.
    pub async fn serve(
        bin: &Path,
        config: &Path,
        cwd: &Path,
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> (Proc, String) {
        let config = config.to_str().expect("utf-8 config path");
        let (proc, base) = Proc::start(
            bin,
            &["serve", "--config", config],
            cwd,
            env,
            "listening on ",
            log,
        )
        .await;
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "odd listen line: {base}"
        );
        (proc, base)
    }

    /// The process id (`None` once reaped): for reading its memory and descriptors in /proc.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref()?.id()
    }

    /// What the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A function that sends SIGKILL (what `Child::start_kill` sends on unix) at once.
    pub fn killer(&self) -> impl Fn() + Send + 'static {
        let child = Arc::clone(&self.child);
        move || {
            if let Some(c) = child.lock().unwrap().as_mut() {
                let _ = c.start_kill();
            }
        }
    }

    /// SIGKILL (if not sent yet) and reap; the exit status, `None` if already reaped.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        let child = self.child.lock().unwrap().take();
        let mut child = child?;
        // Fails harmlessly if the signal was already delivered by `killer`.
        let _ = child.start_kill();
        let status = tokio::time::timeout(STEP, child.wait())
            .await
            .expect("the killed process did not exit in time")
            .expect("wait for the process");
        Some(status)
    }

    /// Kill and reap, whatever it says.
    pub async fn stop(mut self) {
        let _ = self.kill().await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            if let Some(c) = child.as_mut() {
                let _ = c.start_kill();
            }
        }
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
