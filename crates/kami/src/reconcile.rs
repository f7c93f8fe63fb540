//! `kami reconcile [--channel ID] [--date YYYY-MM-DD]`: reconcile one bill day (default
//! yesterday, Beijing time) for one channel or every channel, as the daily job would. Prints
//! one human line per channel, then the JSON report as the last line; fails (non-zero exit)
//! when a batch failed.

use anyhow::{bail, Context};
use kami_server::services::reconciliation;
use kami_server::{Application, BuildOptions, Config};

pub async fn run(
    mut config: Config,
    channel: Option<String>,
    date: Option<String>,
) -> anyhow::Result<()> {
    // The command serves nothing: the server's parts are built on a port of its own, never
    // started, so it runs beside `kami serve` on the same configuration.
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let app = Application::build_with(config, BuildOptions::default())
        .await
        .context("opening the shop")?;
    let state = app.state();
    let day = match date.as_deref() {
        Some(d) => reconciliation::parse_day(d)?,
        None => reconciliation::default_day(state.now_ms()),
    };
    let reports = reconciliation::run_all(&state, channel.as_deref(), day, "cli").await?;
    for r in &reports {
        println!("{}", r.summary());
    }
    let failed = reports.iter().filter(|r| r.failed()).count();
    println!("{}", reconciliation::reports_json(day, &reports));
    if failed > 0 {
        bail!("{failed} reconciliation(s) failed; run it again once the bill can be had");
    }
    Ok(())
}
