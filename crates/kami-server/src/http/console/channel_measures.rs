//! The channel page's measures block (`console/channel_measures.html`, included by
//! `console/channels.html`): per channel and method, the last 24 hours and 7 days
//! (`services::channel_measures`), as rows of text ready for the template.

use minijinja::{context, Value};

use super::channels::percent;
use crate::services::channel_admin::ChannelView;
use crate::services::channel_measures::{of_channel, ChannelMeasures, Window};

/// `a: n, b: m` of a count map, in its (sorted) order; empty when there is nothing.
fn breakdown(counts: &std::collections::BTreeMap<String, i64>) -> String {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn window_row(channel: &str, method: &str, name: &str, w: &Window) -> Value {
    context! {
        key => format!("{channel}-{}-{name}", if method.is_empty() { "none" } else { method }),
        channel => channel,
        method => method,
        window => name,
        calls => w.create_calls,
        calls_ok => w.create_calls_by_outcome.get("ok").copied().unwrap_or(0),
        outcomes => breakdown(&w.create_calls_by_outcome),
        p95 => w.create_p95_ms,
        created => w.orders_created,
        paid => w.orders_paid,
        conversion => percent(w.conversion),
        lag_p50 => w.notify_lag_p50_s,
        lag_p95 => w.notify_lag_p95_s,
        found => w.found_without_notify,
        found_by => breakdown(&w.payments_by_found_by),
    }
}

/// The block's context: `measures` (one row per channel, method and window, the channels in
/// the list's order, each method it serves even without figures) and `measure_failures`
/// (failed notifications per channel).
pub fn context(list: &[ChannelView], all: &[ChannelMeasures]) -> (Vec<Value>, Vec<Value>) {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for view in list {
        let c = of_channel(all, &view.id, &view.methods);
        for m in &c.methods {
            rows.push(window_row(&view.id, &m.method, "24h", &m.last_24h));
            rows.push(window_row(&view.id, &m.method, "7d", &m.last_7d));
        }
        if c.verification_failures_7d.total > 0 {
            failures.push(context! {
                channel => view.id.as_str(),
                day => c.verification_failures_24h.total,
                week => c.verification_failures_7d.total,
                by_outcome => breakdown(&c.verification_failures_7d.by_outcome),
            });
        }
    }
    (rows, failures)
}
