//! `[risk]`: how much one client or one email may hold and ask for, and who is refused.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::server::cidrs;
use super::{check_range, invalid, ConfigError, Origins};

/// `[risk]` (DESIGN 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskConfig {
    /// Unpaid orders one client IP (IPv6: its /64) may hold at once, default 3.
    pub max_pending_orders_per_ip: u32,
    /// Unpaid orders one email may hold at once, default 3.
    pub max_pending_orders_per_email: u32,
    /// Orders one client IP may place per minute, the JSON API and the product page's form
    /// together, default 10.
    pub orders_per_minute_per_ip: u32,
    /// Password hashes one client IP may cause per minute (orders with a query password,
    /// lookups), default 20. Beyond it, `429`.
    pub password_checks_per_minute_per_ip: u32,
    /// Password hashes one client IP may have running or waiting at once, default 2; beyond
    /// it `429`, so one client's flood cannot queue ahead of everyone else's orders.
    pub password_hashes_at_once_per_ip: u32,
    /// Clients refused with `403 blocked` (CIDRs; a bare address is its /32 or /128).
    pub blocked_ips: Vec<IpNet>,
    /// Buyer emails refused with `403 blocked`: `a@b.com`, or `*@b.com` for a whole domain;
    /// stored lower-cased (matching ignores case).
    pub blocked_emails: Vec<String>,
}

impl Default for RiskConfig {
    fn default() -> RiskConfig {
        RiskConfig {
            max_pending_orders_per_ip: 3,
            max_pending_orders_per_email: 3,
            orders_per_minute_per_ip: 10,
            password_checks_per_minute_per_ip: 20,
            password_hashes_at_once_per_ip: 2,
            blocked_ips: Vec::new(),
            blocked_emails: Vec::new(),
        }
    }
}

impl RiskConfig {
    /// Is this client address on `blocked_ips`?
    pub fn is_blocked_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.blocked_ips.iter().any(|net| net.contains(&ip))
    }

    /// Is this email (any case) on `blocked_emails`, itself or by its `*@domain`?
    pub fn is_blocked_email(&self, email: &str) -> bool {
        let email = email.trim().to_lowercase();
        let domain = email.rsplit_once('@').map(|(_, d)| d);
        self.blocked_emails
            .iter()
            .any(|b| match b.strip_prefix("*@") {
                Some(d) => domain == Some(d),
                None => *b == email,
            })
    }
}

/// `[risk]` as written: the limits are optional so that the deprecated
/// `shop.orders_per_minute` can stand in for `orders_per_minute_per_ip`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawRisk {
    max_pending_orders_per_ip: Option<u32>,
    max_pending_orders_per_email: Option<u32>,
    orders_per_minute_per_ip: Option<u32>,
    password_checks_per_minute_per_ip: Option<u32>,
    password_hashes_at_once_per_ip: Option<u32>,
    #[serde(deserialize_with = "cidrs")]
    blocked_ips: Vec<IpNet>,
    blocked_emails: Vec<String>,
}

/// Checks `[risk]`; `shop_orders_per_minute` is the deprecated `shop.orders_per_minute`,
/// used (with a warning) when `risk.orders_per_minute_per_ip` is not set.
pub(super) fn build_risk(
    raw: RawRisk,
    shop_orders_per_minute: Option<u32>,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<RiskConfig, ConfigError> {
    let d = RiskConfig::default();
    let orders_per_minute_per_ip = match (raw.orders_per_minute_per_ip, shop_orders_per_minute) {
        (Some(n), Some(_)) => {
            warnings.push(
                "`shop.orders_per_minute` is deprecated and ignored: \
                 `risk.orders_per_minute_per_ip` is set"
                    .into(),
            );
            n
        }
        (None, Some(n)) => {
            warnings.push(format!(
                "`shop.orders_per_minute` is deprecated: use `risk.orders_per_minute_per_ip` \
                 (now {n}, shared by the JSON API and the product page)"
            ));
            n
        }
        (n, None) => n.unwrap_or(d.orders_per_minute_per_ip),
    };
    let risk = RiskConfig {
        max_pending_orders_per_ip: raw
            .max_pending_orders_per_ip
            .unwrap_or(d.max_pending_orders_per_ip),
        max_pending_orders_per_email: raw
            .max_pending_orders_per_email
            .unwrap_or(d.max_pending_orders_per_email),
        orders_per_minute_per_ip,
        password_checks_per_minute_per_ip: raw
            .password_checks_per_minute_per_ip
            .unwrap_or(d.password_checks_per_minute_per_ip),
        password_hashes_at_once_per_ip: raw
            .password_hashes_at_once_per_ip
            .unwrap_or(d.password_hashes_at_once_per_ip),
        blocked_ips: raw.blocked_ips,
        blocked_emails: raw
            .blocked_emails
            .iter()
            .map(|e| check_blocked_email(e).map_err(|m| invalid(origins, "risk.blocked_emails", m)))
            .collect::<Result<_, _>>()?,
    };
    for (key, value) in [
        (
            "risk.max_pending_orders_per_ip",
            risk.max_pending_orders_per_ip,
        ),
        (
            "risk.max_pending_orders_per_email",
            risk.max_pending_orders_per_email,
        ),
        (
            "risk.orders_per_minute_per_ip",
            risk.orders_per_minute_per_ip,
        ),
        (
            "risk.password_checks_per_minute_per_ip",
            risk.password_checks_per_minute_per_ip,
        ),
        (
            "risk.password_hashes_at_once_per_ip",
            risk.password_hashes_at_once_per_ip,
        ),
    ] {
        let key =
            if key == "risk.orders_per_minute_per_ip" && raw.orders_per_minute_per_ip.is_none() {
                "shop.orders_per_minute"
            } else {
                key
            };
        check_range(origins, key, value, (1, 1_000_000))?;
    }
    Ok(risk)
}

/// `a@b.com` or `*@b.com`, lower-cased.
pub(super) fn check_blocked_email(e: &str) -> Result<String, String> {
    let e = e.trim().to_lowercase();
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && (local == "*" || !local.contains('*'))
                && !domain.is_empty()
                && !domain.contains(['@', '*'])
                && !domain.contains(char::is_whitespace)
                && !local.contains(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(e)
    } else {
        Err(format!(
            "`{e}` is not an email or `*@domain` (expected e.g. \"a@example.com\" or \"*@example.com\")"
        ))
    }
}
