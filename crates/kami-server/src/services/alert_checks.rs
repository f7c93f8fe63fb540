//! The conditions kami evaluates itself, every `alerting.evaluate_seconds` (from `jobs/`):
//!
//! - `success_rate_low` (subject: the channel id): the channel's paid/created over the last
//!   hour is `success_rate_drop_percent` below its rate over the 7 days before, judged only
//!   when both windows have at least `min_orders` orders (a quiet hour says nothing);
//!   resolved once a judged hour is back above that line;
//! - `silent_channel` (channel id): an enabled channel that paid at least
//!   `silent_min_daily_paid` orders a day over the last 7 days has had no paid order for
//!   max(`silent_min_minutes`, the time its rate needs for `silent_expected_orders`);
//! - `exception_order` (order number): firing while the order is in `exception`;
//! - `low_stock` (product slug): firing while the product on sale has fewer keys (or manual
//!   stock) than `console.low_stock_threshold`, as the dashboard shows it;
//! - `notify_lag` (channel id): over the last 30 minutes, the median time from the gateway's
//!   pay time to the notification of the channel's notified payments is above
//!   `alerting.notify_lag_seconds` (judged from 3 payments; resolved when the median is back
//!   under it, or when the channel had no notified payment in the window).
//!
//! Signals are written only where the finding differs from the condition's state, and the
//! conditions de-duplicate anyway, so several processes may evaluate at once.

use std::collections::{BTreeMap, BTreeSet};

use kami_core::{Millis, OrderStatus};
use kami_store::{AlertEvent, AlertSignal, CreatedPaid, StoreError};
use serde_json::{json, Value};

use crate::config::AlertingConfig;
use crate::services::dashboard::is_low;
use crate::state::AppState;

const HOUR_MS: i64 = 3_600_000;
const WEEK_MS: i64 = 7 * 24 * HOUR_MS;
/// The window `notify_lag` is judged over, and how many notified payments it needs.
const LAG_WINDOW_MS: i64 = 30 * 60_000;
const LAG_MIN_PAYMENTS: i64 = 3;
/// Exception orders looked at per round (the oldest first); resolves are judged only when
/// every exception order fits.
const EXCEPTIONS_PER_ROUND: u32 = 1000;

/// What one evaluation says of one subject.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Firing(Value),
    Resolved,
    /// Not enough to judge: the condition stays as it is.
    Unknown,
}

fn rate(c: CreatedPaid) -> f64 {
    c.paid as f64 / c.created as f64
}

/// `success_rate_low` for one channel: `recent` is the last hour, `baseline` the 7 days before.
pub fn judge_success_rate(
    recent: CreatedPaid,
    baseline: CreatedPaid,
    cfg: &AlertingConfig,
) -> Verdict {
    let min = i64::from(cfg.min_orders);
    if recent.created < min || baseline.created < min || baseline.paid == 0 {
        return Verdict::Unknown;
    }
    let line = rate(baseline) * (1.0 - f64::from(cfg.success_rate_drop_percent) / 100.0);
    let now = rate(recent);
    if now < line {
        Verdict::Firing(json!({
            "created_last_hour": recent.created,
            "paid_last_hour": recent.paid,
            "success_rate": round(now),
            "baseline_rate": round(rate(baseline)),
            "baseline_orders": baseline.created,
        }))
    } else {
        Verdict::Resolved
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `notify_lag` for one channel: `lags` are (lag in seconds, payments) of its notified
/// payments in the window.
pub fn judge_notify_lag(lags: &[(i64, i64)], cfg: &AlertingConfig) -> Verdict {
    let total: i64 = lags.iter().map(|(_, n)| n).sum();
    if total < LAG_MIN_PAYMENTS {
        return Verdict::Unknown;
    }
    let mut sorted = lags.to_vec();
    sorted.sort_unstable();
    let mut seen = 0;
    let mut median = 0;
    for (lag, n) in &sorted {
        seen += n;
        if seen * 2 >= total {
            median = *lag;
            break;
        }
    }
    let late = sorted
        .iter()
        .filter(|(lag, _)| *lag > i64::from(cfg.notify_lag_seconds))
        .map(|(_, n)| n)
        .sum::<i64>();
    if median > i64::from(cfg.notify_lag_seconds) {
        Verdict::Firing(json!({
            "median_lag_seconds": median,
            "threshold_seconds": cfg.notify_lag_seconds,
            "late_payments": late,
            "notified_payments": total,
            "window_minutes": LAG_WINDOW_MS / 60_000,
        }))
    } else {
        Verdict::Resolved
    }
}

/// `silent_channel` for one channel that paid `paid_week` orders in the last 7 days, the
/// latest at `last_paid_at`.
pub fn judge_silence(
    paid_week: i64,
    last_paid_at: Millis,
    now: Millis,
    cfg: &AlertingConfig,
) -> Verdict {
    if paid_week < i64::from(cfg.silent_min_daily_paid) * 7 {
        return Verdict::Resolved;
    }
    let per_ms = paid_week as f64 / WEEK_MS as f64;
    let expected_ms = (f64::from(cfg.silent_expected_orders) / per_ms) as i64;
    let window = expected_ms.max(i64::from(cfg.silent_min_minutes) * 60_000);
    let silent_for = now - last_paid_at;
    if silent_for >= window {
        Verdict::Firing(json!({
            "minutes_without_payment": silent_for / 60_000,
            "window_minutes": window / 60_000,
            "paid_last_7_days": paid_week,
        }))
    } else {
        Verdict::Resolved
    }
}

/// The signals that bring `event`'s conditions in line with `verdicts`; a subject firing now
/// without a verdict is resolved when `missing_resolves`.
fn signals(
    event: AlertEvent,
    verdicts: BTreeMap<String, Verdict>,
    firing: &[String],
    missing_resolves: bool,
) -> Vec<AlertSignal> {
    let firing: BTreeSet<&String> = firing.iter().collect();
    let mut out = Vec::new();
    for (subject, v) in &verdicts {
        match v {
            Verdict::Firing(details) if !firing.contains(subject) => out.push(AlertSignal {
                event,
                subject: subject.clone(),
                firing: true,
                details: details.clone(),
            }),
            Verdict::Resolved if firing.contains(subject) => out.push(resolved(event, subject)),
            _ => {}
        }
    }
    if missing_resolves {
        for subject in firing {
            if !verdicts.contains_key(subject) {
                out.push(resolved(event, subject));
            }
        }
    }
    out
}

fn resolved(event: AlertEvent, subject: &str) -> AlertSignal {
    AlertSignal {
        event,
        subject: subject.to_owned(),
        firing: false,
        details: json!({}),
    }
}

/// One round of every evaluator; returns how many signals it wrote.
pub async fn evaluate_once(state: &AppState) -> Result<usize, StoreError> {
    let now = state.now_ms();
    let mut out = Vec::new();
    out.extend(success_rate(state, now).await?);
    out.extend(silence(state, now).await?);
    out.extend(exception_orders(state).await?);
    out.extend(low_stock(state).await?);
    out.extend(notify_lag(state, now).await?);
    let n = out.len();
    state.store.emit_alerts(out, now).await?;
    Ok(n)
}

async fn success_rate(state: &AppState, now: Millis) -> Result<Vec<AlertSignal>, StoreError> {
    let cfg = &state.config.alerting;
    let recent: BTreeMap<String, CreatedPaid> = state
        .store
        .created_and_paid(now - HOUR_MS, now)
        .await?
        .into_iter()
        .collect();
    let baseline: BTreeMap<String, CreatedPaid> = state
        .store
        .created_and_paid(now - WEEK_MS - HOUR_MS, now - HOUR_MS)
        .await?
        .into_iter()
        .collect();
    let verdicts = recent
        .iter()
        .map(|(id, r)| {
            let b = baseline.get(id).copied().unwrap_or_default();
            (id.clone(), judge_success_rate(*r, b, cfg))
        })
        .collect();
    let firing = state
        .store
        .firing_alert_subjects(AlertEvent::SuccessRateLow)
        .await?;
    Ok(signals(
        AlertEvent::SuccessRateLow,
        verdicts,
        &firing,
        false,
    ))
}

async fn silence(state: &AppState, now: Millis) -> Result<Vec<AlertSignal>, StoreError> {
    let cfg = &state.config.alerting;
    let verdicts = state
        .store
        .paid_since(now - WEEK_MS)
        .await?
        .into_iter()
        .map(|p| {
            let enabled = state
                .channels
                .entry(&p.channel_id)
                .is_some_and(|e| e.enabled);
            let v = if enabled {
                judge_silence(p.paid, p.last_paid_at, now, cfg)
            } else {
                Verdict::Resolved
            };
            (p.channel_id, v)
        })
        .collect();
    let firing = state
        .store
        .firing_alert_subjects(AlertEvent::SilentChannel)
        .await?;
    Ok(signals(AlertEvent::SilentChannel, verdicts, &firing, true))
}

async fn notify_lag(state: &AppState, now: Millis) -> Result<Vec<AlertSignal>, StoreError> {
    let since = now - LAG_WINDOW_MS;
    let mut lags: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for r in state.store.channel_found_rows(since).await? {
        if let (true, Some(lag)) = (r.found_by == "notify", r.lag_s) {
            lags.entry(r.channel).or_default().push((lag, r.payments));
        }
    }
    let verdicts = lags
        .into_iter()
        .map(|(channel, l)| (channel, judge_notify_lag(&l, &state.config.alerting)))
        .collect();
    let firing = state
        .store
        .firing_alert_subjects(AlertEvent::NotifyLag)
        .await?;
    Ok(signals(AlertEvent::NotifyLag, verdicts, &firing, true))
}

async fn exception_orders(state: &AppState) -> Result<Vec<AlertSignal>, StoreError> {
    let (total, orders) = state
        .store
        .orders_in_status(OrderStatus::Exception, EXCEPTIONS_PER_ROUND)
        .await?;
    let verdicts = orders
        .into_iter()
        .map(|o| {
            let details = json!({
                "order_no": o.order_no,
                "product": o.product_title,
                "amount": o.amount,
                "currency": o.currency,
            });
            (o.order_no, Verdict::Firing(details))
        })
        .collect();
    let firing = state
        .store
        .firing_alert_subjects(AlertEvent::ExceptionOrder)
        .await?;
    let complete = total <= i64::from(EXCEPTIONS_PER_ROUND);
    Ok(signals(
        AlertEvent::ExceptionOrder,
        verdicts,
        &firing,
        complete,
    ))
}

async fn low_stock(state: &AppState) -> Result<Vec<AlertSignal>, StoreError> {
    let threshold = state.config.console.low_stock_threshold;
    let verdicts = state
        .store
        .stock_levels()
        .await?
        .into_iter()
        .map(|p| {
            let v = if is_low(&p, threshold) {
                Verdict::Firing(json!({
                    "product": p.title,
                    "available": p.available,
                    "threshold": threshold,
                }))
            } else {
                Verdict::Resolved
            };
            (p.slug, v)
        })
        .collect();
    let firing = state
        .store
        .firing_alert_subjects(AlertEvent::LowStock)
        .await?;
    // A product no longer on sale is not low any more.
    Ok(signals(AlertEvent::LowStock, verdicts, &firing, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(created: i64, paid: i64) -> CreatedPaid {
        CreatedPaid { created, paid }
    }

    #[test]
    fn success_rate_needs_volume_and_a_real_drop() {
        let cfg = AlertingConfig::default(); // 50 % drop, 20 orders
        let baseline = cp(1000, 800);
        // Below the volume guard: no judgement, however bad.
        assert_eq!(
            judge_success_rate(cp(19, 0), baseline, &cfg),
            Verdict::Unknown
        );
        // Enough volume, rate 0.1 against 0.8: firing.
        assert!(matches!(
            judge_success_rate(cp(30, 3), baseline, &cfg),
            Verdict::Firing(_)
        ));
        // 0.5 against 0.8 is above the line (0.4).
        assert_eq!(
            judge_success_rate(cp(30, 15), baseline, &cfg),
            Verdict::Resolved
        );
        // No baseline to compare with.
        assert_eq!(
            judge_success_rate(cp(30, 0), cp(5, 1), &cfg),
            Verdict::Unknown
        );
    }

    #[test]
    fn silence_waits_for_ten_expected_orders() {
        let cfg = AlertingConfig::default();
        // 7 a day is below 24 a day: never "usually converts".
        assert_eq!(judge_silence(49, 0, WEEK_MS, &cfg), Verdict::Resolved);
        // 1 an hour: 10 expected take 10 hours.
        let week = 7 * 24;
        let last = 1_000_000_000_000;
        assert_eq!(
            judge_silence(week, last, last + 9 * HOUR_MS, &cfg),
            Verdict::Resolved
        );
        assert!(matches!(
            judge_silence(week, last, last + 10 * HOUR_MS, &cfg),
            Verdict::Firing(_)
        ));
        // 60 an hour: 10 expected take 10 minutes, but the floor is 30.
        let busy = week * 60;
        assert_eq!(
            judge_silence(busy, last, last + 29 * 60_000, &cfg),
            Verdict::Resolved
        );
        assert!(matches!(
            judge_silence(busy, last, last + 30 * 60_000, &cfg),
            Verdict::Firing(_)
        ));
    }

    #[test]
    fn notify_lag_is_the_median_of_enough_payments() {
        let cfg = AlertingConfig::default(); // 120 s
        assert_eq!(judge_notify_lag(&[(900, 2)], &cfg), Verdict::Unknown);
        // One very late payment among on-time ones is not a late channel.
        assert_eq!(
            judge_notify_lag(&[(2, 5), (3600, 1)], &cfg),
            Verdict::Resolved
        );
        let Verdict::Firing(d) = judge_notify_lag(&[(1, 1), (300, 2), (400, 1)], &cfg) else {
            panic!("a median of 300 s is late");
        };
        assert_eq!(d["median_lag_seconds"], 300);
        assert_eq!(d["late_payments"], 3);
        assert_eq!(d["notified_payments"], 4);
        // The line itself is on time.
        assert_eq!(judge_notify_lag(&[(120, 3)], &cfg), Verdict::Resolved);
    }

    #[test]
    fn only_changes_are_signalled() {
        let mut v = BTreeMap::new();
        v.insert("a".to_owned(), Verdict::Firing(json!({})));
        v.insert("b".to_owned(), Verdict::Firing(json!({})));
        v.insert("c".to_owned(), Verdict::Resolved);
        v.insert("d".to_owned(), Verdict::Unknown);
        let firing = ["b", "c", "d", "e"].map(String::from);
        let s = signals(AlertEvent::LowStock, v.clone(), &firing, true);
        let got: Vec<(&str, bool)> = s.iter().map(|s| (s.subject.as_str(), s.firing)).collect();
        assert_eq!(got, [("a", true), ("c", false), ("e", false)]);
        let s = signals(AlertEvent::LowStock, v, &firing, false);
        assert_eq!(s.len(), 2);
    }
}
