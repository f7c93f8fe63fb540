//! Counters and gauges for `/metrics`, in a `prometheus-client` registry owned by the app
//! state (one per application, so tests running several servers in one process stay
//! isolated). Encoded in the Prometheus text format (0.0.4).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use kami_core::OrderStatus;
use kami_store::Counts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
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
}

/// How long the database's counts are reused between scrapes.
pub const COUNTS_TTL_MS: i64 = 5_000;

/// What the database says at scrape time.
pub struct Snapshot<'a> {
    pub orders_by_status: &'a [(OrderStatus, i64)],
    pub cards_available: i64,
    pub cards_sold: i64,
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
}
