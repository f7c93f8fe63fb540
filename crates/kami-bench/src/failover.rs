//! The failover benchmark (issue 11): the gateway simulators run standalone
//! (`kami sim --write-config`), and kami gets the simulator's Alipay channel twice for
//! method `alipay`: `alipay-primary` (priority 20) behind the flaky proxy (`proxy.rs`), and
//! `alipay-backup` (priority 10) straight to the simulator, with the same keys (one simulated
//! merchant). `--single-channel` keeps only the primary (still behind the proxy, so the
//! baseline pays for the same hop). After the run, the admin order listing says which channel
//! took how many of the run's orders, in which status.

use anyhow::{bail, Context, Result};
use reqwest::{header, Client, Url};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use toml::{Table, Value as TomlValue};

use crate::load::{api_url, snippet, OrderRecord, Outcome};
use crate::proxy::{Fault, FaultPlan, FlakyProxy, ProxyCounts};
use crate::server::SpawnedServer;

/// The channel `kami sim --write-config` writes for Alipay.
pub const SIM_CHANNEL: &str = "alipay-sim";
pub const PRIMARY: &str = "alipay-primary";
pub const BACKUP: &str = "alipay-backup";
const PRIMARY_PRIORITY: i64 = 20;
const BACKUP_PRIORITY: i64 = 10;

/// The `[[channels]]` of the failover run, as TOML, from the simulator's written config
/// (`sim_toml`, whose relative `*_file` paths are relative to `sim_dir`). The primary's
/// `gateway` is the simulator's gateway path on `proxy_base`.
pub fn channels_toml(
    sim_toml: &str,
    sim_dir: &Path,
    proxy_base: &str,
    single: bool,
) -> Result<String> {
    let written: Table = toml::from_str(sim_toml).context("the simulator's config is not TOML")?;
    let Some(mut alipay) = written
        .get("channels")
        .and_then(TomlValue::as_array)
        .and_then(|chs| {
            chs.iter()
                .filter_map(TomlValue::as_table)
                .find(|t| t.get("id").and_then(TomlValue::as_str) == Some(SIM_CHANNEL))
        })
        .cloned()
    else {
        bail!("the simulator's config has no channel {SIM_CHANNEL}");
    };
    // Key files by absolute path: kami's config need not sit beside the simulator's.
    for (key, value) in alipay.iter_mut() {
        if let (true, Some(path)) = (key.ends_with("_file"), value.as_str()) {
            *value = TomlValue::String(sim_dir.join(path).display().to_string());
        }
    }
    let gateway = alipay
        .get("gateway")
        .and_then(TomlValue::as_str)
        .context("the simulator's Alipay channel has no gateway")?;
    let gateway = Url::parse(gateway).with_context(|| format!("bad gateway URL {gateway}"))?;
    let proxied = format!("{}{}", proxy_base.trim_end_matches('/'), gateway.path());

    let channel = |id: &str, priority: i64, gateway: &str| {
        let mut t = alipay.clone();
        t.insert("id".into(), id.into());
        t.insert("priority".into(), priority.into());
        t.insert("gateway".into(), gateway.into());
        TomlValue::Table(t)
    };
    let mut channels = vec![channel(PRIMARY, PRIMARY_PRIORITY, &proxied)];
    if !single {
        channels.push(channel(BACKUP, BACKUP_PRIORITY, gateway.as_str()));
    }
    let mut out = Table::new();
    out.insert("channels".into(), TomlValue::Array(channels));
    toml::to_string(&out).context("writing the channels as TOML")
}

/// The failover run's helpers: the standalone simulators and the flaky proxy in front of
/// them (both stop when dropped).
pub struct FailoverRun {
    pub sim: SpawnedServer,
    pub proxy: FlakyProxy,
    pub plan: FaultPlan,
    pub single: bool,
}

impl FailoverRun {
    /// Starts `kami sim` (writing `tmp/sim.toml` and its keys) and the proxy; returns them
    /// with the `[[channels]]` kami's configuration needs.
    pub async fn start(
        kami: &Path,
        tmp: &Path,
        plan: FaultPlan,
        single: bool,
        timeout: Duration,
    ) -> Result<(Self, String)> {
        let sim_toml = tmp.join("sim.toml");
        let sim = SpawnedServer::start_sim(kami, &sim_toml, &tmp.join("sim.log"), timeout).await?;
        let text = std::fs::read_to_string(&sim_toml)
            .with_context(|| format!("reading {}", sim_toml.display()))?;
        let proxy = FlakyProxy::start(&sim.base_url, plan).await?;
        let channels = channels_toml(&text, tmp, &proxy.base_url, single)?;
        Ok((
            Self {
                sim,
                proxy,
                plan,
                single,
            },
            channels,
        ))
    }

    /// The report's failover part from the buyers' records and the server's counts.
    pub fn report(
        &self,
        records: &[OrderRecord],
        server_channels: BTreeMap<String, BTreeMap<String, u64>>,
    ) -> FailoverReport {
        let mut buyer_channels: BTreeMap<String, u64> = BTreeMap::new();
        for c in records.iter().filter_map(|r| r.channel.as_ref()) {
            *buyer_channels.entry(c.clone()).or_default() += 1;
        }
        FailoverReport {
            primary_fail_percent: self.plan.percent,
            fault: self.plan.fault,
            seed: self.plan.seed,
            single_channel: self.single,
            simulator: self.sim.base_url.clone(),
            proxy: self.proxy.base_url.clone(),
            proxy_counts: self.proxy.counts(),
            create_errors: records.iter().filter(|r| create_failed(r)).count() as u64,
            buyer_channels,
            server_channels,
        }
    }
}

/// The buyer's create call was answered with an error, or not at all: no payment offered.
/// (Out of stock is not a channel's doing and is counted apart.)
pub fn create_failed(r: &OrderRecord) -> bool {
    matches!(&r.outcome, Outcome::Failed { kind, .. } if kind.starts_with("create_"))
}

/// What the failover run adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub primary_fail_percent: u8,
    pub fault: Fault,
    pub seed: u64,
    pub single_channel: bool,
    pub simulator: String,
    pub proxy: String,
    pub proxy_counts: ProxyCounts,
    /// Create calls the buyers saw answered with an error (no payment offered).
    pub create_errors: u64,
    /// Channel named in each successful create answer (`payment.channel`) → orders.
    pub buyer_channels: BTreeMap<String, u64>,
    /// Server side, every order of the run's product: channel → status → orders.
    pub server_channels: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Every order of `product` on the server, counted by channel and status, through
/// `GET /api/v1/admin/orders?product=SLUG&limit=500[&before=NO]`.
pub async fn orders_by_channel(
    client: &Client,
    base: &Url,
    token: &str,
    product: &str,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let list_url = api_url(base, &["api", "v1", "admin", "orders"])?;
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut before: Option<String> = None;
    loop {
        let mut url = list_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("product", product)
                .append_pair("limit", "500");
            if let Some(b) = &before {
                q.append_pair("before", b);
            }
        }
        let resp = client
            .get(url.clone())
            .bearer_auth(token)
            .header(header::ACCEPT, "application/json")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let text = resp.text().await.context("admin orders body")?;
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}: {}", snippet(&text, 300));
        }
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("admin orders reply is not JSON: {}", snippet(&text, 200)))?;
        let orders = v
            .get("orders")
            .and_then(Value::as_array)
            .context("admin orders reply lacks `orders`")?;
        for o in orders {
            let field = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
            *out.entry(field("channel"))
                .or_default()
                .entry(field("status"))
                .or_default() += 1;
        }
        match v.get("next_before").and_then(Value::as_str) {
            Some(n) if !orders.is_empty() && before.as_deref() != Some(n) => {
                before = Some(n.to_owned());
            }
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kami sim --write-config` writes for Alipay (`kami_sim::gateways`), and a
    /// channel after it.
    const SIM_TOML: &str = r#"[[channels]]
id = "alipay-sim"
kind = "alipay"
methods = ["alipay"]
priority = 10
gateway = "http://127.0.0.1:4001/sim/alipay/gateway.do"
app_id = "2021000000000000"
app_private_key_file = "sim.toml.keys/alipay_app_private_key.pem"
alipay_public_key_file = "sim.toml.keys/alipay_public_key.pem"
seller_id = "2088000000000000"
sign_type = "RSA2"
mode = "auto"

[[channels]]
id = "epay-sim"
kind = "epay"
methods = ["qqpay"]
gateway = "http://127.0.0.1:4001/sim/epay/"
"#;

    fn channels(text: &str) -> Vec<Table> {
        let t: Table = toml::from_str(text).expect("valid toml");
        t["channels"]
            .as_array()
            .expect("array")
            .iter()
            .map(|c| c.as_table().expect("table").clone())
            .collect()
    }

    #[test]
    fn two_channels_share_the_merchant_and_only_the_primary_is_proxied() {
        let text = channels_toml(
            SIM_TOML,
            Path::new("/tmp/run"),
            "http://127.0.0.1:5002/",
            false,
        )
        .expect("channels");
        let chs = channels(&text);
        assert_eq!(chs.len(), 2);
        let (p, b) = (&chs[0], &chs[1]);
        assert_eq!(p["id"].as_str(), Some(PRIMARY));
        assert_eq!(b["id"].as_str(), Some(BACKUP));
        assert_eq!(p["priority"].as_integer(), Some(20));
        assert_eq!(b["priority"].as_integer(), Some(10));
        assert_eq!(
            p["gateway"].as_str(),
            Some("http://127.0.0.1:5002/sim/alipay/gateway.do")
        );
        assert_eq!(
            b["gateway"].as_str(),
            Some("http://127.0.0.1:4001/sim/alipay/gateway.do")
        );
        // Everything else is the simulator's channel, key files made absolute.
        for c in [p, b] {
            assert_eq!(c["kind"].as_str(), Some("alipay"));
            assert_eq!(c["methods"].as_array().map(Vec::len), Some(1));
            assert_eq!(c["methods"][0].as_str(), Some("alipay"));
            assert_eq!(c["app_id"].as_str(), Some("2021000000000000"));
            assert_eq!(c["seller_id"].as_str(), Some("2088000000000000"));
            assert_eq!(
                c["app_private_key_file"].as_str(),
                Some("/tmp/run/sim.toml.keys/alipay_app_private_key.pem")
            );
            assert_eq!(
                c["alipay_public_key_file"].as_str(),
                Some("/tmp/run/sim.toml.keys/alipay_public_key.pem")
            );
        }
    }

    #[test]
    fn single_channel_is_the_primary_alone() {
        let text = channels_toml(SIM_TOML, Path::new("/r"), "http://127.0.0.1:5002", true)
            .expect("channels");
        let chs = channels(&text);
        assert_eq!(chs.len(), 1);
        assert_eq!(chs[0]["id"].as_str(), Some(PRIMARY));
        assert_eq!(
            chs[0]["gateway"].as_str(),
            Some("http://127.0.0.1:5002/sim/alipay/gateway.do")
        );
    }

    #[test]
    fn appended_to_the_bench_config_it_is_one_valid_configuration() {
        let base = crate::server::render_config(Path::new("/d"), "sqlite:///d/k.db", 15);
        let text = format!(
            "{base}\n{}",
            channels_toml(SIM_TOML, Path::new("/r"), "http://127.0.0.1:5002", false)
                .expect("channels")
        );
        let ids: Vec<String> = channels(&text)
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, ["sandbox", PRIMARY, BACKUP]);
        let t: Table = toml::from_str(&text).expect("valid");
        assert_eq!(t["database"]["url"].as_str(), Some("sqlite:///d/k.db"));
    }

    #[test]
    fn a_config_without_the_alipay_channel_is_refused() {
        let err = channels_toml(
            "[[channels]]\nid = \"epay-sim\"\n",
            Path::new("/r"),
            "http://p",
            false,
        )
        .expect_err("refused");
        assert!(err.to_string().contains(SIM_CHANNEL), "{err}");
        assert!(channels_toml("not toml [", Path::new("/r"), "http://p", false).is_err());
    }
}
