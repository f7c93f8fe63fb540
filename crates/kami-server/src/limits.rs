//! Request limits per client and per searched target (`shop.lookup_per_minute`,
//! `shop.orders_per_minute`). IPv6 clients are limited per /64: one host usually holds a
//! whole /64.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::ShopConfig;

/// Above this many remembered keys, idle ones are forgotten (at most once a minute), so
/// memory stays bounded under a flood of addresses without a full scan per request.
const SWEEP_ABOVE: usize = 10_000;

pub struct Limits {
    /// Order lookups per client IP.
    lookups: DefaultKeyedRateLimiter<IpAddr>,
    /// Lookups per searched order number or email, whatever the client's address: guessing
    /// one buyer's query password from many addresses stays slow.
    lookup_targets: DefaultKeyedRateLimiter<String>,
    /// Orders from the product page per client IP: each one reserves stock, so one client
    /// cannot hold the whole stock hostage.
    orders: DefaultKeyedRateLimiter<IpAddr>,
    last_sweep: AtomicI64,
}

impl Limits {
    pub fn new(shop: &ShopConfig) -> Limits {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Limits {
            lookups: RateLimiter::keyed(quota(shop.lookup_per_minute)),
            // One target: a burst of `lookup_per_minute`, then 3 × that per hour.
            lookup_targets: RateLimiter::keyed(
                Quota::per_hour(
                    NonZeroU32::new(shop.lookup_per_minute.saturating_mul(3))
                        .unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(shop.lookup_per_minute).unwrap_or(NonZeroU32::MIN)),
            ),
            orders: RateLimiter::keyed(quota(shop.orders_per_minute)),
            last_sweep: AtomicI64::new(0),
        }
    }

    /// May this client look an order up now?
    pub fn allow_lookup(&self, ip: Option<IpAddr>, now_ms: i64) -> bool {
        self.allow_ip(&self.lookups, ip, now_ms)
    }

    /// May this client place an order from the product page now?
    pub fn allow_order(&self, ip: Option<IpAddr>, now_ms: i64) -> bool {
        self.allow_ip(&self.orders, ip, now_ms)
    }

    /// May anyone search for this order number or email now? (`target` is case-folded.)
    pub fn allow_lookup_target(&self, target: &str) -> bool {
        if self.lookup_targets.len() > SWEEP_ABOVE {
            self.lookup_targets.retain_recent();
        }
        self.lookup_targets.check_key(&target.to_owned()).is_ok()
    }

    fn allow_ip(
        &self,
        limiter: &DefaultKeyedRateLimiter<IpAddr>,
        ip: Option<IpAddr>,
        now_ms: i64,
    ) -> bool {
        if limiter.len() > SWEEP_ABOVE
            && now_ms - self.last_sweep.swap(now_ms, Ordering::Relaxed) > 60_000
        {
            limiter.retain_recent();
        }
        limiter.check_key(&client_key(ip)).is_ok()
    }
}

/// The key one client is limited under: its IPv4 address, or its IPv6 /64.
pub(crate) fn client_key(ip: Option<IpAddr>) -> IpAddr {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        Some(v4) => v4,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let b: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let c: IpAddr = "2001:db8:1:3::1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(client_key(Some(a)), client_key(Some(b)));
        assert_ne!(client_key(Some(a)), client_key(Some(c)));
        let mapped: IpAddr = "::ffff:192.0.2.7"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            client_key(Some(mapped)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
    }
}
