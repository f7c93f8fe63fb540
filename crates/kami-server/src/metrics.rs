//! Counters and gauges for `/metrics`, in a `prometheus-client` registry owned by the app
//! state (one per application, so tests running several servers in one process stay
//! isolated). Encoded in the Prometheus text format (0.0.4).
//!
//! Per channel and payment method (`kami_channel_*`): create calls by outcome and their
//! latency, orders created and paid (conversion = paid / created), the notify lag (gateway
//! pay time → received), payments found without a notification (掉单 recovered, by what found
//! them), verification failures, reconciliation mismatches and the health state. Labels are
//! bounded sets only: channel ids (configured or stored), method names and fixed outcome
//! words, never order numbers or addresses. A channel id is interned once (an `Arc<str>`),
//! so counting on the hot path allocates nothing after a channel's first use.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kami_core::{Method, OrderStatus};
use kami_store::{CallOutcome, Counts, FoundBy};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
}

/// A channel id as a label value (interned: see [`Metrics::channel_label`]).
type ChannelLabel = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelMethod {
    channel: ChannelLabel,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    channel: ChannelLabel,
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FoundLabels {
    channel: ChannelLabel,
    method: &'static str,
    found_by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    channel: ChannelLabel,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MismatchLabels {
    channel: ChannelLabel,
    kind: &'static str,
}

type HistogramFamily = Family<ChannelMethod, Histogram, fn() -> Histogram>;

/// Create call durations, seconds: QR channels answer in ~0.1–1 s; ~3 s is where a channel
/// counts as degraded (channel-ops 3).
const CREATE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];
/// Notify lag, seconds: usually a few seconds; minutes or hours mean retries.
const LAG_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0,
];

fn create_histogram() -> Histogram {
    Histogram::new(CREATE_BUCKETS)
}

fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
}

/// A channel's health for one method, as the gauge says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthLevel {
    Healthy = 0,
    Degraded = 1,
    Down = 2,
}

/// One `kami_channel_health_state` sample.
#[derive(Debug, Clone)]
pub struct HealthSample {
    pub channel: String,
    pub method: Method,
    pub level: HealthLevel,
}

/// The per channel and method families.
struct ChannelFamilies {
    create_calls: Family<CallLabels, Counter>,
    create_seconds: HistogramFamily,
    orders_created: Family<ChannelMethod, Counter>,
    orders_paid: Family<ChannelMethod, Counter>,
    notify_lag: HistogramFamily,
    found_without_notify: Family<FoundLabels, Counter>,
    verification_failures: Family<FailureLabels, Counter>,
    reconciliation_mismatches: Family<MismatchLabels, Counter>,
    health: Family<ChannelMethod, Gauge>,
}

impl ChannelFamilies {
    fn new() -> ChannelFamilies {
        ChannelFamilies {
            create_calls: Family::default(),
            create_seconds: Family::new_with_constructor(create_histogram),
            orders_created: Family::default(),
            orders_paid: Family::default(),
            notify_lag: Family::new_with_constructor(lag_histogram),
            found_without_notify: Family::default(),
            verification_failures: Family::default(),
            reconciliation_mismatches: Family::default(),
            health: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "kami_channel_create_calls",
            "Payment channel create calls, by channel, method and outcome",
            self.create_calls.clone(),
        );
        r.register(
            "kami_channel_create_seconds",
            "Payment channel create call duration",
            self.create_seconds.clone(),
        );
        r.register(
            "kami_channel_orders_created",
            "Orders created, by channel and method",
            self.orders_created.clone(),
        );
        r.register(
            "kami_channel_orders_paid",
            "Orders paid, by channel and method (conversion = paid / created)",
            self.orders_paid.clone(),
        );
        r.register(
            "kami_channel_notify_lag_seconds",
            "Gateway pay time to notification received",
            self.notify_lag.clone(),
        );
        r.register(
            "kami_channel_payments_found_without_notify",
            "Payments confirmed by a query, close, seller check or bill before any notification (lost notifications recovered)",
            self.found_without_notify.clone(),
        );
        r.register(
            "kami_channel_verification_failures",
            "Payment signals refused: bad signature, wrong merchant, amount mismatch, unknown trade, not confirmed by query",
            self.verification_failures.clone(),
        );
        r.register(
            "kami_reconciliation_mismatches",
            "Differences between a channel's bill and kami's payments, by kind",
            self.reconciliation_mismatches.clone(),
        );
        r.register(
            "kami_channel_health_state",
            "Channel health for a method: 0 healthy, 1 degraded, 2 down",
            self.health.clone(),
        );
    }
}

pub struct Metrics {
    registry: Registry,
    orders_created: Counter,
    orders_out_of_stock: Counter,
    orders_expired: Counter,
    notifications: Family<Outcome, Counter>,
    orders: Family<Status, Gauge>,
    cards: Family<Status, Gauge>,
    /// The database's counts and when they were read: a scrape reuses them for
    /// [`COUNTS_TTL_MS`], so scraping costs no GROUP BY over all orders per hit.
    counts: tokio::sync::Mutex<Option<(i64, Counts)>>,
    counts_reads: AtomicU64,
    channels: ChannelFamilies,
    /// Channel ids seen so far, each allocated once.
    channel_labels: RwLock<HashSet<Arc<str>>>,
}

/// How long the database's counts are reused between scrapes.
pub const COUNTS_TTL_MS: i64 = 5_000;

/// What the database says at scrape time.
pub struct Snapshot<'a> {
    pub orders_by_status: &'a [(OrderStatus, i64)],
    pub cards_available: i64,
    pub cards_sold: i64,
    /// Every channel's health per method, now.
    pub health: &'a [HealthSample],
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            orders_created: Counter::default(),
            orders_out_of_stock: Counter::default(),
            orders_expired: Counter::default(),
            notifications: Family::default(),
            orders: Family::default(),
            cards: Family::default(),
            registry: Registry::default(),
            counts: tokio::sync::Mutex::new(None),
            counts_reads: AtomicU64::new(0),
            channels: ChannelFamilies::new(),
            channel_labels: RwLock::new(HashSet::new()),
        };
        let mut registry = Registry::default();
        let counters = [
            ("kami_orders_created", "Orders created", &m.orders_created),
            (
                "kami_orders_out_of_stock",
                "Orders refused for lack of stock",
                &m.orders_out_of_stock,
            ),
            (
                "kami_orders_expired",
                "Unpaid orders expired",
                &m.orders_expired,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "kami_notifications",
            "Gateway notifications and channel answers, by outcome",
            m.notifications.clone(),
        );
        registry.register("kami_orders", "Orders by status", m.orders.clone());
        registry.register("kami_cards", "Card keys by status", m.cards.clone());
        m.channels.register(&mut registry);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn order_created(&self) {
        self.orders_created.inc();
    }
    pub fn out_of_stock(&self) {
        self.orders_out_of_stock.inc();
    }
    pub fn order_expired(&self) {
        self.orders_expired.inc();
    }
    /// A notification (or a query answer applied like one) ended with this outcome code.
    pub fn notification(&self, outcome: &'static str) {
        self.notifications.get_or_create(&Outcome { outcome }).inc();
    }

    /// `channel` as a label value: the interned copy (allocated on a channel's first use).
    fn channel_label(&self, channel: &str) -> ChannelLabel {
        if let Some(c) = self
            .channel_labels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
        {
            return c.clone();
        }
        let mut labels = self
            .channel_labels
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = labels.get(channel) {
            return c.clone();
        }
        let c: Arc<str> = Arc::from(channel);
        labels.insert(c.clone());
        c
    }

    fn channel_method(&self, channel: &str, method: Method) -> ChannelMethod {
        ChannelMethod {
            channel: self.channel_label(channel),
            method: method.as_str(),
        }
    }

    /// A create call of `channel` for `method` ended with `outcome` after `seconds`.
    pub fn create_call(&self, channel: &str, method: Method, outcome: CallOutcome, seconds: f64) {
        let cm = self.channel_method(channel, method);
        self.channels
            .create_seconds
            .get_or_create(&cm)
            .observe(seconds);
        let labels = CallLabels {
            channel: cm.channel,
            method: cm.method,
            outcome: outcome.as_str(),
        };
        self.channels.create_calls.get_or_create(&labels).inc();
    }

    /// An order was created on `channel` for `method`.
    pub fn channel_order_created(&self, channel: &str, method: Method) {
        let cm = self.channel_method(channel, method);
        self.channels.orders_created.get_or_create(&cm).inc();
    }

    /// A payment moved an order of `channel` / `method` to paid, found by `found_by`;
    /// `lag_seconds`: its notification's lag, when notified and the gateway said its pay time.
    pub fn channel_order_paid(
        &self,
        channel: &str,
        method: Method,
        found_by: FoundBy,
        lag_seconds: Option<f64>,
    ) {
        let cm = self.channel_method(channel, method);
        self.channels.orders_paid.get_or_create(&cm).inc();
        if let Some(lag) = lag_seconds {
            self.channels.notify_lag.get_or_create(&cm).observe(lag);
        }
        if found_by != FoundBy::Notify {
            let labels = FoundLabels {
                channel: cm.channel,
                method: cm.method,
                found_by: found_by.as_str(),
            };
            self.channels
                .found_without_notify
                .get_or_create(&labels)
                .inc();
        }
    }

    /// A payment signal of `channel` was refused for `reason` (a fixed word: `bad_signature`,
    /// `amount_mismatch`, `unconfirmed`, ...).
    pub fn verification_failure(&self, channel: &str, reason: &'static str) {
        let labels = FailureLabels {
            channel: self.channel_label(channel),
            reason,
        };
        self.channels
            .verification_failures
            .get_or_create(&labels)
            .inc();
    }

    /// Reconciliation found `n` differences of `kind` (a fixed word, e.g. `amount`,
    /// `missing_in_kami`) in `channel`'s bill.
    pub fn reconciliation_mismatch(&self, channel: &str, kind: &'static str, n: u64) {
        let labels = MismatchLabels {
            channel: self.channel_label(channel),
            kind,
        };
        self.channels
            .reconciliation_mismatches
            .get_or_create(&labels)
            .inc_by(n);
    }

    /// The database's counts: the last ones read if younger than [`COUNTS_TTL_MS`], else
    /// `read` again (one read at a time; concurrent scrapes wait for it and share it).
    pub async fn store_counts<E, F, Fut>(&self, now_ms: i64, read: F) -> Result<Counts, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Counts, E>>,
    {
        let mut cached = self.counts.lock().await;
        if let Some((at, c)) = cached.as_ref() {
            if (0..COUNTS_TTL_MS).contains(&(now_ms - at)) {
                return Ok(c.clone());
            }
        }
        let fresh = read().await?;
        self.counts_reads.fetch_add(1, Ordering::Relaxed);
        *cached = Some((now_ms, fresh.clone()));
        Ok(fresh)
    }

    /// How often the database's counts were read (tests: scrapes stay cheap).
    pub fn counts_reads(&self) -> u64 {
        self.counts_reads.load(Ordering::Relaxed)
    }

    /// The Prometheus text of every metric, with the database's figures as gauges.
    pub fn encode(&self, db: &Snapshot<'_>) -> Result<String, std::fmt::Error> {
        for status in OrderStatus::ALL {
            let n = db
                .orders_by_status
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.gauge(&self.orders, status.as_str(), n);
        }
        self.gauge(&self.cards, "available", db.cards_available);
        self.gauge(&self.cards, "sold", db.cards_sold);
        // Channels come and go (stored ones): the gauge shows those of now only.
        self.channels.health.clear();
        for h in db.health {
            let cm = self.channel_method(&h.channel, h.method);
            self.channels.health.get_or_create(&cm).set(h.level as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn gauge(&self, family: &Family<Status, Gauge>, status: &str, n: i64) {
        family
            .get_or_create(&Status {
                status: status.to_owned(),
            })
            .set(n);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encodes_counters_and_gauges() {
        let m = Metrics::default();
        m.order_created();
        m.order_created();
        m.notification("delivered");
        let text = m
            .encode(&Snapshot {
                orders_by_status: &[(OrderStatus::Delivered, 7)],
                cards_available: 3,
                cards_sold: 9,
                health: &[],
            })
            .unwrap();
        for line in [
            "kami_orders_created_total 2",
            "kami_notifications_total{outcome=\"delivered\"} 1",
            "kami_orders{status=\"delivered\"} 7",
            "kami_orders{status=\"pending\"} 0",
            "kami_cards{status=\"available\"} 3",
            "kami_cards{status=\"sold\"} 9",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[test]
    fn registries_are_per_app() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.order_expired();
        let empty = Snapshot {
            orders_by_status: &[],
            cards_available: 0,
            cards_sold: 0,
            health: &[],
        };
        assert!(a
            .encode(&empty)
            .unwrap()
            .contains("kami_orders_expired_total 1"));
        assert!(b
            .encode(&empty)
            .unwrap()
            .contains("kami_orders_expired_total 0"));
    }

    #[test]
    fn channel_families_have_bounded_labels_and_values() {
        let m = Metrics::default();
        m.create_call("ali", Method::Alipay, CallOutcome::Ok, 0.2);
        m.create_call("ali", Method::Alipay, CallOutcome::Timeout, 4.0);
        m.channel_order_created("ali", Method::Alipay);
        m.channel_order_created("ali", Method::Alipay);
        m.channel_order_paid("ali", Method::Alipay, FoundBy::Notify, Some(3.0));
        m.channel_order_paid("ali", Method::Alipay, FoundBy::Bill, None);
        m.verification_failure("ep", "bad_signature");
        m.reconciliation_mismatch("ali", "amount", 2);
        let health = [HealthSample {
            channel: "ep".into(),
            method: Method::Qqpay,
            level: HealthLevel::Down,
        }];
        let text = m
            .encode(&Snapshot {
                orders_by_status: &[],
                cards_available: 0,
                cards_sold: 0,
                health: &health,
            })
            .unwrap();
        let ali = "channel=\"ali\",method=\"alipay\"";
        for line in [
            format!("kami_channel_create_calls_total{{{ali},outcome=\"ok\"}} 1"),
            format!("kami_channel_create_calls_total{{{ali},outcome=\"timeout\"}} 1"),
            format!("kami_channel_create_seconds_count{{{ali}}} 2"),
            format!("kami_channel_create_seconds_bucket{{{ali},le=\"0.25\"}} 1"),
            format!("kami_channel_orders_created_total{{{ali}}} 2"),
            format!("kami_channel_orders_paid_total{{{ali}}} 2"),
            format!("kami_channel_notify_lag_seconds_count{{{ali}}} 1"),
            format!("kami_channel_notify_lag_seconds_sum{{{ali}}} 3.0"),
            format!(
                "kami_channel_payments_found_without_notify_total{{{ali},found_by=\"bill\"}} 1"
            ),
            "kami_channel_verification_failures_total{channel=\"ep\",reason=\"bad_signature\"} 1"
                .to_owned(),
            "kami_reconciliation_mismatches_total{channel=\"ali\",kind=\"amount\"} 2".to_owned(),
            "kami_channel_health_state{channel=\"ep\",method=\"qqpay\"} 2".to_owned(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        // Notified payments are not "found without notify".
        assert!(!text.contains("found_by=\"notify\""));
        // A channel no longer present leaves the health gauge.
        let text = m
            .encode(&Snapshot {
                orders_by_status: &[],
                cards_available: 0,
                cards_sold: 0,
                health: &[],
            })
            .unwrap();
        assert!(!text.contains("kami_channel_health_state{"), "{text}");
        // One allocation per channel id.
        assert!(Arc::ptr_eq(
            &m.channel_label("ali"),
            &m.channel_label("ali")
        ));
    }
}
