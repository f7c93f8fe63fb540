//! The channel page's measures (issue 11 part 2), per channel and payment method, over the
//! last 24 hours and the last 7 days, read from the database so every kami process sharing it
//! counts (`kami_store::ChannelMeasureRows`: one range scan per figure, both windows at once):
//! create calls by outcome and their p95 latency, orders created and paid (conversion), the
//! notify lag (p50 / p95, gateway pay time → received), payments found without a notification
//! (掉单 recovered: by query, close, the seller's check or a bill) and, per channel, the
//! notifications that failed. Also the health gauge `/metrics` shows.

use std::collections::BTreeMap;

use kami_core::Method;
use kami_pay::routing::HealthState as Health;
use kami_store::{ChannelMeasureRows, StoreError};
use serde::Serialize;

use super::stats::percentile;
use crate::metrics::{HealthLevel, HealthSample};
use crate::state::AppState;

/// The short window: the last 24 hours.
pub const RECENT_MS: i64 = 24 * 3_600_000;
/// The long window: the last 7 days.
pub const WEEK_MS: i64 = 7 * 24 * 3_600_000;

/// One channel and method over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Create calls, and by outcome (`ok`, `gateway_error`, `transport_error`, `timeout`,
    /// `bad_response`, `unsupported`, `config_error`).
    pub create_calls: i64,
    pub create_calls_by_outcome: BTreeMap<String, i64>,
    /// The 95th percentile of create call durations, in milliseconds.
    pub create_p95_ms: Option<i64>,
    pub orders_created: i64,
    /// Of the orders created in the window, those paid by now.
    pub orders_paid: i64,
    /// `orders_paid / orders_created`.
    pub conversion: Option<f64>,
    /// Notify lag of the payments confirmed by their notification, in whole seconds.
    pub notify_lag_p50_s: Option<i64>,
    pub notify_lag_p95_s: Option<i64>,
    /// Payments confirmed in the window, by what found them (`notify`, `query`, `close`,
    /// `seller_check`, `bill`).
    pub payments_by_found_by: BTreeMap<String, i64>,
    /// Of those, found by anything but their notification (lost notifications recovered).
    pub found_without_notify: i64,
}

/// One channel and method over both windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodMeasures {
    /// The payment method (`""`: create calls recorded before methods were).
    pub method: String,
    pub last_24h: Window,
    pub last_7d: Window,
}

/// Failed notifications of one channel over one window, by outcome (`rejected`,
/// `amount_mismatch`, `unknown_order`, `unconfirmed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Failures {
    pub total: i64,
    pub by_outcome: BTreeMap<String, i64>,
}

/// One channel's measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelMeasures {
    pub channel: String,
    pub methods: Vec<MethodMeasures>,
    pub verification_failures_24h: Failures,
    pub verification_failures_7d: Failures,
}

#[derive(Default)]
struct Acc {
    window: Window,
    durations: BTreeMap<i64, i64>,
    lags: BTreeMap<i64, i64>,
}

impl Acc {
    fn finish(mut self) -> Window {
        let w = &mut self.window;
        w.create_p95_ms = percentile(&self.durations, 95);
        w.notify_lag_p50_s = percentile(&self.lags, 50);
        w.notify_lag_p95_s = percentile(&self.lags, 95);
        w.conversion =
            (w.orders_created > 0).then(|| w.orders_paid as f64 / w.orders_created as f64);
        self.window
    }
}

#[derive(Default)]
struct Both {
    day: Acc,
    week: Acc,
}

impl Both {
    /// The accumulators a row counts in: the week always, the day when recent.
    fn each(&mut self, recent: bool, mut f: impl FnMut(&mut Acc)) {
        f(&mut self.week);
        if recent {
            f(&mut self.day);
        }
    }
}

/// The rows grouped per channel, then method (sorted by both).
pub fn assemble(rows: &ChannelMeasureRows) -> Vec<ChannelMeasures> {
    let mut per_failures: BTreeMap<String, (Failures, Failures)> = BTreeMap::new();
    let mut grouped: BTreeMap<(String, String), Both> = BTreeMap::new();
    for r in &rows.calls {
        at(&mut grouped, &r.channel, &r.method).each(r.recent, |a| {
            a.window.create_calls += r.calls;
            *a.window
                .create_calls_by_outcome
                .entry(r.outcome.clone())
                .or_default() += r.calls;
            *a.durations.entry(r.duration_ms).or_default() += r.calls;
        });
    }
    for r in &rows.orders {
        at(&mut grouped, &r.channel, &r.method).each(r.recent, |a| {
            a.window.orders_created += r.created;
            a.window.orders_paid += r.paid;
        });
    }
    for r in &rows.found {
        at(&mut grouped, &r.channel, &r.method).each(r.recent, |a| {
            *a.window
                .payments_by_found_by
                .entry(r.found_by.clone())
                .or_default() += r.payments;
            if r.found_by != "notify" {
                a.window.found_without_notify += r.payments;
            }
            if let Some(lag) = r.lag_s {
                // A gateway clock ahead of ours reads as no lag.
                *a.lags.entry(lag.max(0)).or_default() += r.payments;
            }
        });
    }
    for r in &rows.failures {
        let (day, week) = per_failures.entry(r.channel.clone()).or_default();
        for (f, counts) in [(week, true), (day, r.recent)] {
            if counts {
                f.total += r.events;
                *f.by_outcome.entry(r.outcome.clone()).or_default() += r.events;
            }
        }
    }
    let mut out: BTreeMap<String, ChannelMeasures> = BTreeMap::new();
    for ((channel, method), both) in grouped {
        out.entry(channel.clone())
            .or_insert_with(|| empty(&channel))
            .methods
            .push(MethodMeasures {
                method,
                last_24h: both.day.finish(),
                last_7d: both.week.finish(),
            });
    }
    for (channel, (day, week)) in per_failures {
        let c = out
            .entry(channel.clone())
            .or_insert_with(|| empty(&channel));
        c.verification_failures_24h = day;
        c.verification_failures_7d = week;
    }
    out.into_values().collect()
}

fn at<'a>(
    grouped: &'a mut BTreeMap<(String, String), Both>,
    channel: &str,
    method: &str,
) -> &'a mut Both {
    grouped
        .entry((channel.to_owned(), method.to_owned()))
        .or_default()
}

fn empty(channel: &str) -> ChannelMeasures {
    ChannelMeasures {
        channel: channel.to_owned(),
        methods: Vec::new(),
        verification_failures_24h: Failures::default(),
        verification_failures_7d: Failures::default(),
    }
}

/// Every channel's measures now (channels without any figure are absent).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn measures(state: &AppState) -> Result<Vec<ChannelMeasures>, StoreError> {
    // Count the create calls still waiting in memory too.
    super::channel_calls::flush(state).await;
    let now = state.now_ms();
    let rows = state
        .store
        .channel_measure_rows(now - WEEK_MS, now - RECENT_MS)
        .await?;
    Ok(assemble(&rows))
}

/// One channel's measures, listing each of its `methods` (with zeros when it has no figures
/// for one) and any other method it has figures for (a method it served before).
pub async fn channel(
    state: &AppState,
    id: &str,
    methods: &[Method],
) -> Result<ChannelMeasures, StoreError> {
    Ok(of_channel(&measures(state).await?, id, methods))
}

/// Channel `id`'s measures out of `all`, with every one of its `methods`, sorted by method.
pub fn of_channel(all: &[ChannelMeasures], id: &str, methods: &[Method]) -> ChannelMeasures {
    let mut c = all
        .iter()
        .find(|c| c.channel == id)
        .cloned()
        .unwrap_or_else(|| empty(id));
    for m in methods {
        if !c.methods.iter().any(|x| x.method == m.as_str()) {
            c.methods.push(MethodMeasures {
                method: m.as_str().to_owned(),
                last_24h: Window::default(),
                last_7d: Window::default(),
            });
        }
    }
    c.methods.sort_by(|a, b| a.method.cmp(&b.method));
    c
}

/// Each channel's health per method for `kami_channel_health_state`, from the router's
/// state per (channel, method).
pub fn health_samples(state: &AppState) -> Vec<HealthSample> {
    let now = state.now_ms();
    let mut out = Vec::new();
    for e in state.channels.entries() {
        let id = e.id().as_str();
        for lane in state.channels.lanes(id, e.channel.methods(), now) {
            out.push(HealthSample {
                channel: id.to_owned(),
                method: lane.method,
                level: match lane.state {
                    Health::Healthy => HealthLevel::Healthy,
                    Health::Degraded => HealthLevel::Degraded,
                    Health::Down => HealthLevel::Down,
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kami_store::{MeasureCallRow, MeasureFailureRow, MeasureFoundRow, MeasureOrderRow};

    #[test]
    fn windows_split_recent_rows_and_percentiles_come_from_counts() {
        let call = |outcome: &str, ms: i64, recent: bool, n: i64| MeasureCallRow {
            channel: "ali".into(),
            method: "alipay".into(),
            outcome: outcome.into(),
            duration_ms: ms,
            recent,
            calls: n,
        };
        let found = |by: &str, lag: Option<i64>, recent: bool, n: i64| MeasureFoundRow {
            channel: "ali".into(),
            method: "alipay".into(),
            found_by: by.into(),
            recent,
            lag_s: lag,
            payments: n,
        };
        let rows = ChannelMeasureRows {
            calls: vec![
                call("ok", 100, true, 19),
                call("timeout", 5000, true, 1),
                call("gateway_error", 40, false, 1),
            ],
            orders: vec![
                MeasureOrderRow {
                    channel: "ali".into(),
                    method: "alipay".into(),
                    recent: true,
                    created: 4,
                    paid: 3,
                },
                MeasureOrderRow {
                    channel: "ali".into(),
                    method: "alipay".into(),
                    recent: false,
                    created: 6,
                    paid: 2,
                },
            ],
            found: vec![
                found("notify", Some(2), true, 9),
                found("notify", Some(-3), true, 1),
                found("notify", Some(30), false, 10),
                found("query", None, true, 2),
                found("bill", None, false, 1),
            ],
            failures: vec![MeasureFailureRow {
                channel: "ep".into(),
                outcome: "rejected".into(),
                recent: false,
                events: 5,
            }],
        };
        let all = assemble(&rows);
        assert_eq!(all.len(), 2);
        let ali = &all[0];
        assert_eq!(ali.channel, "ali");
        let m = &ali.methods[0];
        assert_eq!(m.last_24h.create_calls, 20);
        assert_eq!(m.last_7d.create_calls, 21);
        assert_eq!(m.last_7d.create_calls_by_outcome["gateway_error"], 1);
        // Nearest rank: the 19th of 20 calls is 100 ms, and the 20th of 21 (one of 40 ms
        // first); the 5-second timeout is beyond the 95th percentile.
        assert_eq!(m.last_24h.create_p95_ms, Some(100));
        assert_eq!(m.last_7d.create_p95_ms, Some(100));
        assert_eq!((m.last_24h.orders_created, m.last_24h.orders_paid), (4, 3));
        assert_eq!(m.last_24h.conversion, Some(0.75));
        assert_eq!(m.last_7d.conversion, Some(0.5));
        // 24 h: nine at 2 s, one at 0 s (clock ahead); 7 d: ten more at 30 s.
        assert_eq!(m.last_24h.notify_lag_p50_s, Some(2));
        assert_eq!(m.last_24h.notify_lag_p95_s, Some(2));
        assert_eq!(m.last_7d.notify_lag_p50_s, Some(2));
        assert_eq!(m.last_7d.notify_lag_p95_s, Some(30));
        assert_eq!(m.last_24h.found_without_notify, 2);
        assert_eq!(m.last_7d.found_without_notify, 3);
        assert_eq!(m.last_7d.payments_by_found_by["notify"], 20);
        let ep = &all[1];
        assert!(ep.methods.is_empty());
        assert_eq!(ep.verification_failures_24h.total, 0);
        assert_eq!(ep.verification_failures_7d.total, 5);
    }
}
