//! The run summary: one serialisable struct, printed as a table and written as JSON.

use crate::calibrate::Calibration;
use crate::failover::FailoverReport;
use crate::integrity::Integrity;
use crate::stats::LatencySummary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// `closed` (N buyers back to back) or `open` (fixed arrival rate).
    pub loop_kind: String,
    pub buyers: Option<usize>,
    pub orders: Option<usize>,
    pub rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub max_in_flight: Option<usize>,
    pub quantity: u32,
    /// `--method` and `--device` of the create call.
    pub method: String,
    pub device: String,
    /// `channel …, action …` of the first created order.
    pub payment: Option<String>,
    pub keys: usize,
    pub wait_s: u64,
    pub deliver_timeout_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub product: String,
    pub keys_imported: u64,
    pub key_duplicates: u64,
    pub import_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Orders the buyers started.
    pub attempted: u64,
    pub delivered: u64,
    /// Orders whose pay step succeeded (sandbox `paid`; real protocols: Pay form HTTP 200).
    pub paid: u64,
    pub out_of_stock: u64,
    pub failed: u64,
    /// Open loop only: arrivals dropped because `max_in_flight` orders were running.
    pub shed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorEntry {
    pub count: u64,
    pub example: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub create: Option<LatencySummary>,
    pub pay: Option<LatencySummary>,
    pub deliver: Option<LatencySummary>,
    pub end_to_end: Option<LatencySummary>,
    /// Mean GET polls per delivered order.
    pub mean_polls: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub base_url: String,
    pub pid: Option<u32>,
    pub idle_rss_kb: Option<u64>,
    pub peak_rss_kb: Option<u64>,
    pub log: Option<String>,
    /// Set when the server process was gone by the end of the run.
    pub exited: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Durable {
    pub commits_per_order: f64,
    pub kami_commits_per_s: f64,
    pub calibrated_commits_per_s: f64,
    /// kami_commits_per_s / calibrated_commits_per_s.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    /// `spawn`, `target` or `calibrate-only`.
    pub mode: String,
    pub database: String,
    pub params: Option<Params>,
    pub server: Option<ServerInfo>,
    pub setup: Option<Setup>,
    pub orders: Option<Counts>,
    pub errors: BTreeMap<String, ErrorEntry>,
    pub wall_time_s: Option<f64>,
    pub orders_per_s: Option<f64>,
    pub latency_ms: Option<Latencies>,
    pub calibration: Option<Calibration>,
    pub durable: Option<Durable>,
    pub integrity: Option<Integrity>,
    /// `--failover-primary-fail`: the flaky proxy's counts and the orders per channel.
    pub failover: Option<FailoverReport>,
    pub warnings: Vec<String>,
}

/// `kami durable commits/s = orders/s × commits_per_order`, and its share of the
/// calibrated rate.
pub fn durable(orders_per_s: f64, commits_per_order: f64, calibrated: f64) -> Option<Durable> {
    if calibrated <= 0.0 {
        return None;
    }
    let kami = orders_per_s * commits_per_order;
    Some(Durable {
        commits_per_order,
        kami_commits_per_s: kami,
        calibrated_commits_per_s: calibrated,
        ratio: kami / calibrated,
    })
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a".to_string(),
        |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
    )
}

fn lat_row(out: &mut String, name: &str, s: &Option<LatencySummary>) {
    match s {
        Some(s) => {
            let _ = writeln!(
                out,
                "  {name:<11} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms
            );
        }
        None => {
            let _ = writeln!(out, "  {name:<11} {:>8}", 0);
        }
    }
}

/// The calibration paragraph (shared with `--calibrate-only`).
pub fn render_calibration(out: &mut String, c: &Calibration) {
    let settings: Vec<String> = c.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "calibration  {} durable single-row commits", c.backend);
    let _ = writeln!(out, "  target     {}", c.target);
    let _ = writeln!(out, "  settings   {}", settings.join(" "));
    let _ = writeln!(
        out,
        "  result     {} commits in {:.2} s = {:.0} commits/s, {:.0} µs/commit",
        c.commits, c.seconds, c.commits_per_s, c.us_per_commit
    );
    if let Some(l) = &c.latency {
        let _ = writeln!(
            out,
            "  per commit p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        );
    }
}

/// The failover paragraph: the proxy's counts, what the buyers got, orders per channel.
fn render_failover(out: &mut String, f: &FailoverReport, l: Option<&Latencies>) {
    let p = &f.proxy_counts;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "failover     {}, primary fails {} % of precreate calls ({:?}, seed {})",
        if f.single_channel {
            "single channel alipay-primary"
        } else {
            "alipay-primary (priority 20, via proxy) + alipay-backup (priority 10)"
        },
        f.primary_fail_percent,
        f.fault,
        f.seed
    );
    let _ = writeln!(out, "  simulator  {}   proxy {}", f.simulator, f.proxy);
    let _ = writeln!(
        out,
        "  proxy      forwarded {}  precreate calls {}  failed on purpose {}  upstream errors {}",
        p.forwarded, p.precreate_calls, p.precreate_failed, p.upstream_errors
    );
    let p99 = l
        .and_then(|l| l.create.as_ref())
        .map_or_else(|| "n/a".to_string(), |c| format!("{:.2} ms", c.p99_ms));
    let _ = writeln!(
        out,
        "  buyers     create errors (no payment offered) {}   create p99 {p99}",
        f.create_errors
    );
    let took: Vec<String> = f
        .buyer_channels
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "  payments   by channel (create answers): {}",
        took.join(", ")
    );
    for (channel, statuses) in &f.server_channels {
        let total: u64 = statuses.values().sum();
        let each: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = writeln!(
            out,
            "  server     {channel}: {total} orders ({})",
            each.join(", ")
        );
    }
}

/// The human-readable table.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "== kami-bench: {} mode, {} ==", r.mode, r.database);
    if let Some(p) = &r.params {
        let how = match p.loop_kind.as_str() {
            "open" => format!(
                "open loop {:.1} orders/s for {:.0} s (max {} in flight)",
                p.rate.unwrap_or(0.0),
                p.duration_s.unwrap_or(0.0),
                p.max_in_flight.unwrap_or(0)
            ),
            _ => format!(
                "closed loop, {} buyers, {} orders",
                p.buyers.unwrap_or(0),
                p.orders.unwrap_or(0)
            ),
        };
        let _ = writeln!(
            out,
            "load         {how}, quantity {}, {} keys",
            p.quantity, p.keys
        );
        let _ = writeln!(
            out,
            "payment      method {}, device {}{}",
            p.method,
            p.device,
            p.payment
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    if let Some(s) = &r.server {
        let _ = writeln!(
            out,
            "server       {}{}",
            s.base_url,
            s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
    }
    if let Some(s) = &r.setup {
        let _ = writeln!(
            out,
            "setup        product {}: {} keys imported ({} duplicates) in {:.2} s",
            s.product, s.keys_imported, s.key_duplicates, s.import_seconds
        );
    }
    if let Some(c) = &r.orders {
        let _ = writeln!(
            out,
            "orders       attempted {}  delivered {}  paid {}  out_of_stock {}  failed {}  shed {}",
            c.attempted, c.delivered, c.paid, c.out_of_stock, c.failed, c.shed
        );
    }
    if let (Some(w), Some(t)) = (r.wall_time_s, r.orders_per_s) {
        let _ = writeln!(
            out,
            "throughput   {t:.1} delivered orders/s over {w:.2} s wall time"
        );
    }
    if let Some(l) = &r.latency_ms {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<11} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency ms", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        lat_row(&mut out, "create", &l.create);
        lat_row(&mut out, "pay", &l.pay);
        lat_row(&mut out, "deliver", &l.deliver);
        lat_row(&mut out, "end-to-end", &l.end_to_end);
        if let Some(p) = l.mean_polls {
            let _ = writeln!(out, "  ({p:.2} GET polls per delivered order on average)");
        }
    }
    if let Some(f) = &r.failover {
        render_failover(&mut out, f, r.latency_ms.as_ref());
    }
    if !r.errors.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "errors");
        for (kind, e) in &r.errors {
            let _ = writeln!(out, "  {kind:<28} {:>7}  e.g. {}", e.count, e.example);
        }
    }
    if let Some(s) = &r.server {
        if s.pid.is_some() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "server RSS   idle {}   peak (VmHWM) {}",
                mib(s.idle_rss_kb),
                mib(s.peak_rss_kb)
            );
        }
        if let Some(e) = &s.exited {
            let _ = writeln!(out, "server       EXITED during the run: {e}");
        }
        if let Some(log) = &s.log {
            let _ = writeln!(out, "server log   {log}");
        }
    }
    if let Some(c) = &r.calibration {
        let _ = writeln!(out);
        render_calibration(&mut out, c);
    }
    if let Some(d) = &r.durable {
        let _ = writeln!(
            out,
            "kami durable commits/s = {:.1} orders/s × {} = {:.1}  ({:.1}% of the calibrated {:.0}/s)",
            r.orders_per_s.unwrap_or(0.0),
            d.commits_per_order,
            d.kami_commits_per_s,
            d.ratio * 100.0,
            d.calibrated_commits_per_s
        );
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(out);
        for w in &r.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
    }
    if let Some(i) = &r.integrity {
        let _ = writeln!(out);
        let _ = writeln!(out, "integrity");
        for c in &i.checks {
            let _ = writeln!(
                out,
                "  {}  {}: {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let _ = writeln!(out, "INTEGRITY: {}", if i.pass { "PASS" } else { "FAIL" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_ratio() {
        let d = durable(400.0, 2.0, 1600.0).expect("some");
        assert_eq!(d.kami_commits_per_s, 800.0);
        assert_eq!(d.ratio, 0.5);
        assert!(durable(400.0, 2.0, 0.0).is_none());
    }

    #[test]
    fn renders_minimal_report() {
        let r = Report {
            tool: "kami-bench".into(),
            mode: "spawn".into(),
            database: "sqlite".into(),
            params: None,
            server: None,
            setup: None,
            orders: Some(Counts::default()),
            errors: BTreeMap::new(),
            wall_time_s: Some(1.0),
            orders_per_s: Some(0.0),
            latency_ms: Some(Latencies {
                create: None,
                pay: None,
                deliver: None,
                end_to_end: None,
                mean_polls: None,
            }),
            calibration: None,
            durable: None,
            integrity: None,
            failover: None,
            warnings: vec!["w".into()],
        };
        let mut r = r;
        let mut server_channels = BTreeMap::new();
        server_channels.insert(
            "alipay-primary".to_string(),
            BTreeMap::from([("delivered".to_string(), 4), ("expired".to_string(), 3)]),
        );
        r.failover = Some(FailoverReport {
            primary_fail_percent: 50,
            fault: crate::proxy::Fault::Drop,
            seed: 11,
            single_channel: false,
            simulator: "http://sim".into(),
            proxy: "http://proxy".into(),
            proxy_counts: crate::proxy::ProxyCounts::default(),
            create_errors: 3,
            buyer_channels: BTreeMap::from([("alipay-backup".to_string(), 5)]),
            server_channels,
        });
        let text = render(&r);
        assert!(
            text.contains("create errors (no payment offered) 3"),
            "{text}"
        );
        assert!(
            text.contains("by channel (create answers): alipay-backup 5"),
            "{text}"
        );
        assert!(
            text.contains("alipay-primary: 7 orders (delivered 4, expired 3)"),
            "{text}"
        );
        assert!(text.contains("spawn mode, sqlite"));
        assert!(text.contains("end-to-end"));
        assert!(text.contains("warning: w"));
        assert!(serde_json::to_string(&r).is_ok());
    }
}
