//! Request limits per client and per searched target: orders per minute
//! (`risk.orders_per_minute_per_ip`, the JSON API and the form together), password hashes
//! (`risk.password_checks_per_minute_per_ip`, `risk.password_hashes_at_once_per_ip`), order
//! lookups (`shop.lookup_per_minute`, per client and per (target, client) with a higher
//! ceiling per target), and failed admin-token attempts. IPv6 clients are limited per /64:
//! one host usually holds a whole /64.
//!
//! Memory stays bounded: keys are fixed-size (an address, a 64-bit hash of a searched
//! target), and idle keys are forgotten once a minute, sooner under a flood of keys.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{RiskConfig, ShopConfig};

/// Idle keys are forgotten at least this often (ms).
const SWEEP_EVERY_MS: i64 = 60_000;
/// Above this many remembered keys in one limiter, idle ones are forgotten every second.
const SWEEP_ABOVE: usize = 10_000;
/// Failed admin-token attempts one client may make per minute; then `429` until the minute
/// is over, whatever it presents.
pub const ADMIN_FAILURES_PER_MINUTE: u32 = 10;
/// The buyer's "I have paid" asks the channel about one order at most this often (seconds).
pub const BUYER_CHECK_EVERY_SECS: u32 = 10;
/// Method switches of one order: a burst of this many, then one every 10 seconds.
pub const SWITCH_BURST: u32 = 3;
const SWITCHES_PER_MINUTE: u32 = 6;
/// One searched target may be looked up this many times more often (from all clients
/// together) than from one client.
const TARGET_CEILING_FACTOR: u32 = 5;

/// A refusal: try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

pub struct Limits {
    /// Order lookups per client.
    lookups: DefaultKeyedRateLimiter<IpAddr>,
    /// Lookups of one target (hashed order number or email) from one client.
    lookup_pairs: DefaultKeyedRateLimiter<(u64, IpAddr)>,
    /// Lookups of one target from all clients: guessing one buyer's query password from many
    /// addresses stays slow, while one client's guesses cannot lock the buyer out.
    lookup_targets: DefaultKeyedRateLimiter<u64>,
    /// Orders per client, JSON API and form together: each one reserves stock. Replaced
    /// (counting afresh) when the console changes the rate.
    orders: PerMinute,
    /// Password hashes per client (orders with a query password, lookups).
    password_checks: PerMinute,
    hashing: Mutex<HashMap<IpAddr, u32>>,
    hashes_at_once: AtomicU32,
    /// The buyer's "I have paid" per order (hashed order number): one channel query every
    /// [`BUYER_CHECK_EVERY_SECS`] seconds at most, however often it is pressed.
    buyer_checks: DefaultKeyedRateLimiter<u64>,
    /// The buyer's method switches per order (hashed order number): each closes a trade
    /// and opens another at a gateway.
    method_switches: DefaultKeyedRateLimiter<u64>,
    /// Failed admin-token attempts per client: (minute, count).
    admin_failures: Mutex<HashMap<IpAddr, (i64, u32)>>,
    targets: RandomState,
    last_sweep: AtomicI64,
}

/// A per-client rate per minute that the settings can change: (the rate, its limiter).
struct PerMinute(RwLock<(u32, Arc<DefaultKeyedRateLimiter<IpAddr>>)>);

impl PerMinute {
    fn new(n: u32) -> PerMinute {
        PerMinute(RwLock::new((n, Self::limiter(n))))
    }

    fn limiter(n: u32) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
        Arc::new(RateLimiter::keyed(Quota::per_minute(nonzero(n))))
    }

    fn get(&self) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// A new rate starts counting afresh; the same rate keeps its counts.
    fn set(&self, n: u32) {
        let mut cur = self.0.write().unwrap_or_else(|p| p.into_inner());
        if cur.0 != n {
            *cur = (n, Self::limiter(n));
        }
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// One target: a burst of `n`, then 3 × `n` per hour.
fn target_quota(n: u32) -> Quota {
    Quota::per_hour(nonzero(n.saturating_mul(3))).allow_burst(nonzero(n))
}

impl Limits {
    pub fn new(shop: &ShopConfig, risk: &RiskConfig) -> Limits {
        let lookup = shop.lookup_per_minute;
        Limits {
            lookups: RateLimiter::keyed(Quota::per_minute(nonzero(lookup))),
            lookup_pairs: RateLimiter::keyed(target_quota(lookup)),
            lookup_targets: RateLimiter::keyed(target_quota(
                lookup.saturating_mul(TARGET_CEILING_FACTOR),
            )),
            orders: PerMinute::new(risk.orders_per_minute_per_ip),
            password_checks: PerMinute::new(risk.password_checks_per_minute_per_ip),
            hashing: Mutex::new(HashMap::new()),
            hashes_at_once: AtomicU32::new(risk.password_hashes_at_once_per_ip),
            buyer_checks: RateLimiter::keyed(
                Quota::per_hour(nonzero(3600 / BUYER_CHECK_EVERY_SECS)).allow_burst(nonzero(1)),
            ),
            method_switches: RateLimiter::keyed(
                Quota::per_minute(nonzero(SWITCHES_PER_MINUTE)).allow_burst(nonzero(SWITCH_BURST)),
            ),
            admin_failures: Mutex::new(HashMap::new()),
            targets: RandomState::new(),
            last_sweep: AtomicI64::new(0),
        }
    }

    /// Take the `[risk]` rates of the settings in effect (the console changed them): a changed
    /// rate counts afresh from now.
    pub fn apply_risk(&self, risk: &RiskConfig) {
        self.orders.set(risk.orders_per_minute_per_ip);
        self.password_checks
            .set(risk.password_checks_per_minute_per_ip);
        self.hashes_at_once
            .store(risk.password_hashes_at_once_per_ip, Ordering::Relaxed);
    }

    /// May the buyer's "I have paid" ask the channel about this order now?
    pub fn allow_buyer_check(&self, order_no: &str, now_ms: i64) -> Result<(), RetryAfter> {
        self.sweep(now_ms);
        let h = self.targets.hash_one(order_no);
        check(&self.buyer_checks, &h)
    }

    /// May the buyer switch this order's payment method now?
    pub fn allow_method_switch(&self, order_no: &str, now_ms: i64) -> Result<(), RetryAfter> {
        self.sweep(now_ms);
        let h = self.targets.hash_one(order_no);
        check(&self.method_switches, &h)
    }

    /// May this client look an order up now?
    pub fn allow_lookup(&self, ip: Option<IpAddr>, now_ms: i64) -> Result<(), RetryAfter> {
        self.sweep(now_ms);
        check(&self.lookups, &client_key(ip))
    }

    /// May this client place an order now (JSON API or form)?
    pub fn allow_order(&self, ip: Option<IpAddr>, now_ms: i64) -> Result<(), RetryAfter> {
        self.sweep(now_ms);
        check(&self.orders.get(), &client_key(ip))
    }

    /// May this client search for this order number or email now? `target` is case-folded
    /// here and remembered only as a 64-bit keyed hash.
    pub fn allow_lookup_target(
        &self,
        target: &str,
        ip: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<(), RetryAfter> {
        self.sweep(now_ms);
        let h = self.targets.hash_one(target.to_lowercase());
        check(&self.lookup_pairs, &(h, client_key(ip)))?;
        check(&self.lookup_targets, &h)
    }

    /// A turn to hash a password for this client: within its rate, and fewer than
    /// `password_hashes_at_once_per_ip` of its hashes running or queued. Held until dropped.
    pub fn hash_slot(&self, ip: Option<IpAddr>, now_ms: i64) -> Result<HashSlot<'_>, RetryAfter> {
        self.sweep(now_ms);
        let key = client_key(ip);
        let mut running = self.hashing.lock().unwrap_or_else(|p| p.into_inner());
        let at_once = self.hashes_at_once.load(Ordering::Relaxed);
        if running.get(&key).is_some_and(|n| *n >= at_once) {
            return Err(RetryAfter(1));
        }
        check(&self.password_checks.get(), &key)?;
        // Only a granted slot is remembered (the drop removes it again at zero), so refused
        // attempts leave nothing behind.
        *running.entry(key).or_insert(0) += 1;
        Ok(HashSlot { limits: self, key })
    }

    /// Has this client used up its failed admin-token attempts for this minute?
    pub fn admin_locked_out(&self, ip: Option<IpAddr>, now_ms: i64) -> Option<RetryAfter> {
        self.sweep(now_ms);
        let minute = now_ms.div_euclid(60_000);
        let failures = self
            .admin_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match failures.get(&client_key(ip)) {
            Some(&(m, n)) if m == minute && n >= ADMIN_FAILURES_PER_MINUTE => {
                Some(RetryAfter(seconds_left_in_minute(now_ms)))
            }
            _ => None,
        }
    }

    /// Count a failed admin-token attempt from this client.
    pub fn admin_failed(&self, ip: Option<IpAddr>, now_ms: i64) {
        let minute = now_ms.div_euclid(60_000);
        let mut failures = self
            .admin_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let e = failures.entry(client_key(ip)).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// Keys remembered by the lookup limiters (tests: memory stays bounded).
    pub fn lookup_keys(&self) -> usize {
        self.lookups.len() + self.lookup_pairs.len() + self.lookup_targets.len()
    }

    /// Forget idle keys once a minute, or every second while a limiter holds many (called on
    /// requests and by the housekeeping job's timer, so memory is returned when traffic stops).
    pub fn sweep(&self, now_ms: i64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        let (orders, password_checks) = (self.orders.get(), self.password_checks.get());
        let crowded = self.lookup_pairs.len() > SWEEP_ABOVE
            || self.lookup_targets.len() > SWEEP_ABOVE
            || self.lookups.len() > SWEEP_ABOVE
            || self.buyer_checks.len() > SWEEP_ABOVE
            || self.method_switches.len() > SWEEP_ABOVE
            || orders.len() > SWEEP_ABOVE
            || password_checks.len() > SWEEP_ABOVE;
        let due = now_ms - last > SWEEP_EVERY_MS || (crowded && now_ms - last > 1_000);
        if !due
            || self
                .last_sweep
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.lookups.retain_recent();
        self.lookup_pairs.retain_recent();
        self.lookup_targets.retain_recent();
        self.buyer_checks.retain_recent();
        self.method_switches.retain_recent();
        orders.retain_recent();
        password_checks.retain_recent();
        let minute = now_ms.div_euclid(60_000);
        self.admin_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (m, _)| *m == minute);
    }
}

/// A password hash this client may run; gives its turn back when dropped.
pub struct HashSlot<'a> {
    limits: &'a Limits,
    key: IpAddr,
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        let mut running = self
            .limits
            .hashing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.key);
            }
        }
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), RetryAfter> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        RetryAfter(wait.as_secs_f64().ceil().max(1.0) as u64)
    })
}

fn seconds_left_in_minute(now_ms: i64) -> u64 {
    let left = 60_000 - now_ms.rem_euclid(60_000);
    u64::try_from((left + 999) / 1000).unwrap_or(60).max(1)
}

/// The key one client is limited under: its IPv4 address, or its IPv6 /64.
pub fn client_key(ip: Option<IpAddr>) -> IpAddr {
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

/// The client key as the store keeps it with an order (`orders.client_ip`): `192.0.2.7`, or
/// `2001:db8:1:2::/64`.
pub fn client_key_text(ip: IpAddr) -> String {
    match client_key(Some(ip)) {
        IpAddr::V6(v6) => format!("{v6}/64"),
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let (a, b, c) = (
            ip("2001:db8:1:2:aaaa::1"),
            ip("2001:db8:1:2:bbbb::9"),
            ip("2001:db8:1:3::1"),
        );
        assert_eq!(client_key(Some(a)), client_key(Some(b)));
        assert_ne!(client_key(Some(a)), client_key(Some(c)));
        assert_eq!(client_key_text(a), "2001:db8:1:2::/64");
        assert_eq!(
            client_key(Some(ip("::ffff:192.0.2.7"))),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(client_key_text(ip("::ffff:192.0.2.7")), "192.0.2.7");
    }

    #[test]
    fn lookup_guesses_from_one_client_do_not_lock_out_another() {
        let shop = ShopConfig {
            lookup_per_minute: 3,
            ..ShopConfig::default()
        };
        let l = Limits::new(&shop, &RiskConfig::default());
        let (a, b) = (Some(ip("192.0.2.1")), Some(ip("198.51.100.7")));
        for _ in 0..3 {
            assert!(l.allow_lookup_target("Buyer@Example.com", a, 0).is_ok());
        }
        assert!(l.allow_lookup_target("buyer@example.com", a, 0).is_err());
        assert!(l.allow_lookup_target("buyer@example.com", b, 0).is_ok());
        // The per-target ceiling still holds across clients: 5 × 3 in all.
        let mut allowed = 4;
        for i in 0..40u8 {
            let c = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)));
            allowed += usize::from(l.allow_lookup_target("buyer@example.com", c, 0).is_ok());
        }
        assert_eq!(allowed, 15);
    }

    #[test]
    fn risk_rates_from_the_settings_apply_at_once() {
        let mut risk = RiskConfig {
            orders_per_minute_per_ip: 1,
            password_hashes_at_once_per_ip: 1,
            ..RiskConfig::default()
        };
        let l = Limits::new(&ShopConfig::default(), &risk);
        let a = Some(ip("192.0.2.1"));
        assert!(l.allow_order(a, 0).is_ok());
        assert!(l.allow_order(a, 0).is_err());
        risk.orders_per_minute_per_ip = 3;
        risk.password_hashes_at_once_per_ip = 2;
        l.apply_risk(&risk);
        for _ in 0..3 {
            assert!(l.allow_order(a, 0).is_ok(), "a new rate counts afresh");
        }
        assert!(l.allow_order(a, 0).is_err());
        l.apply_risk(&risk);
        assert!(
            l.allow_order(a, 0).is_err(),
            "the same rate keeps its counts"
        );
        let s1 = l.hash_slot(a, 0);
        let s2 = l.hash_slot(a, 0);
        assert!(s1.is_ok() && s2.is_ok(), "two at once now");
        assert!(l.hash_slot(a, 0).is_err());
    }

    #[test]
    fn the_buyers_check_asks_once_per_pause_per_order() {
        let l = Limits::new(&ShopConfig::default(), &RiskConfig::default());
        assert!(l.allow_buyer_check("K1", 0).is_ok());
        let wait = l.allow_buyer_check("K1", 0).unwrap_err();
        assert!(
            (1..=u64::from(BUYER_CHECK_EVERY_SECS)).contains(&wait.0),
            "{wait:?}"
        );
        assert!(l.allow_buyer_check("K2", 0).is_ok(), "another order");
    }

    #[test]
    fn hash_slots_per_client_and_admin_failures() {
        let l = Limits::new(&ShopConfig::default(), &RiskConfig::default());
        let a = Some(ip("192.0.2.1"));
        let s1 = l.hash_slot(a, 0);
        let s2 = l.hash_slot(a, 0);
        assert!(s1.is_ok() && s2.is_ok());
        assert!(l.hash_slot(a, 0).is_err(), "a third concurrent hash");
        assert!(l.hash_slot(Some(ip("192.0.2.2")), 0).is_ok());
        drop(s1);
        assert!(l.hash_slot(a, 0).is_ok());
        drop(s2);

        for _ in 0..ADMIN_FAILURES_PER_MINUTE {
            assert!(l.admin_locked_out(a, 1_000).is_none());
            l.admin_failed(a, 1_000);
        }
        assert_eq!(l.admin_locked_out(a, 1_000), Some(RetryAfter(59)));
        assert!(l.admin_locked_out(Some(ip("192.0.2.2")), 1_000).is_none());
        assert!(l.admin_locked_out(a, 61_000).is_none(), "a new minute");
    }
}
