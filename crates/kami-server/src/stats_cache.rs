//! The stats rows of whole UTC days that are over, kept in memory for a few minutes, so the
//! dashboard's 7 and 30 days and the stats API read only the recent part from the database.
//! A closed day still changes a little (a late payment converts one of its orders, a
//! refund's row lands in the day it settles, which is today), so a day is read again once its
//! copy is [`TTL_MS`] old: what the dashboard shows for past days is at most that stale, and
//! today and yesterday are always read fresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kami_core::Millis;
use kami_store::{StatsRows, Store, BUCKET_MS, DAY_MS};

/// How long a closed day's rows are trusted.
pub const TTL_MS: i64 = 5 * 60_000;
/// The warm-up job (every minute) renews days this old, so they never reach [`TTL_MS`].
pub const WARM_AGE_MS: i64 = 3 * 60_000;
/// Days that ended less than this long ago are always read fresh.
const SETTLE_MS: i64 = DAY_MS;
/// At most this many days are kept (a year and a bit); the oldest copies go first.
const MAX_DAYS: usize = 400;

#[derive(Default)]
pub struct StatsCache {
    days: Mutex<HashMap<i64, (Millis, Arc<StatsRows>)>>,
}

impl StatsCache {
    /// The rows of `[from, to)` (bucket-aligned): whole closed UTC days from the cache (read
    /// together in one query when missing or stale), the rest from the database.
    pub async fn rows(
        &self,
        store: &Store,
        from: Millis,
        to: Millis,
        now: Millis,
    ) -> kami_store::Result<StatsRows> {
        self.rows_max_age(store, from, to, now, TTL_MS).await
    }

    /// As [`StatsCache::rows`], reading again every day older than [`WARM_AGE_MS`]: the
    /// warm-up job renews days before a seller's request would find them stale.
    pub async fn warm(
        &self,
        store: &Store,
        from: Millis,
        to: Millis,
        now: Millis,
    ) -> kami_store::Result<StatsRows> {
        self.rows_max_age(store, from, to, now, WARM_AGE_MS).await
    }

    async fn rows_max_age(
        &self,
        store: &Store,
        from: Millis,
        to: Millis,
        now: Millis,
        max_age: Millis,
    ) -> kami_store::Result<StatsRows> {
        let plan = Plan::new(from, to, now);
        let mut out = StatsRows::default();
        if plan.head.0 < plan.head.1 {
            append(&mut out, &store.stats_rows(plan.head.0, plan.head.1).await?);
        }
        let (first, last) = plan.days;
        if first < last {
            let stale: Vec<i64> = {
                let days = self.lock();
                (first..last)
                    .filter(|d| days.get(d).is_none_or(|(at, _)| now - at >= max_age))
                    .collect()
            };
            if let (Some(&lo), Some(&hi)) = (stale.first(), stale.last()) {
                let fresh = store.stats_rows(lo * DAY_MS, (hi + 1) * DAY_MS).await?;
                let mut split = split_by_day(&fresh, lo, hi + 1);
                let mut days = self.lock();
                for d in stale {
                    let rows = split.remove(&d).unwrap_or_default();
                    days.insert(d, (now, Arc::new(rows)));
                }
                if days.len() > MAX_DAYS {
                    let mut by_age: Vec<(i64, Millis)> =
                        days.iter().map(|(d, (at, _))| (*d, *at)).collect();
                    by_age.sort_by_key(|(d, at)| (*at, *d));
                    let excess = days.len() - MAX_DAYS;
                    for (d, _) in by_age.into_iter().take(excess) {
                        if !(first..last).contains(&d) {
                            days.remove(&d);
                        }
                    }
                }
            }
            let days = self.lock();
            for d in first..last {
                if let Some((_, rows)) = days.get(&d) {
                    append(&mut out, rows);
                }
            }
        }
        if plan.tail.0 < plan.tail.1 {
            append(&mut out, &store.stats_rows(plan.tail.0, plan.tail.1).await?);
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Millis, Arc<StatsRows>)>> {
        self.days.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How `[from, to)` is read: `head` and `tail` from the database, the UTC days
/// `days.0 .. days.1` through the cache.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    head: (Millis, Millis),
    days: (i64, i64),
    tail: (Millis, Millis),
}

impl Plan {
    fn new(from: Millis, to: Millis, now: Millis) -> Plan {
        // Whole days inside the range that ended at least a day ago.
        let first = from.div_euclid(DAY_MS) + i64::from(from.rem_euclid(DAY_MS) != 0);
        let settled = (now - SETTLE_MS).div_euclid(DAY_MS);
        let last = to.div_euclid(DAY_MS).min(settled).max(first);
        if first >= last {
            return Plan {
                head: (from, to),
                days: (0, 0),
                tail: (to, to),
            };
        }
        Plan {
            head: (from, first * DAY_MS),
            days: (first, last),
            tail: (last * DAY_MS, to),
        }
    }
}

fn append(out: &mut StatsRows, rows: &StatsRows) {
    out.created.extend_from_slice(&rows.created);
    out.paid.extend_from_slice(&rows.paid);
    out.refunded.extend_from_slice(&rows.refunded);
    out.calls.extend_from_slice(&rows.calls);
}

/// Rows of the days `[lo, hi)` put into their UTC day.
fn split_by_day(rows: &StatsRows, lo: i64, hi: i64) -> HashMap<i64, StatsRows> {
    const PER_DAY: i64 = DAY_MS / BUCKET_MS;
    let mut out: HashMap<i64, StatsRows> = (lo..hi).map(|d| (d, StatsRows::default())).collect();
    for r in &rows.created {
        if let Some(d) = out.get_mut(&r.bucket.div_euclid(PER_DAY)) {
            d.created.push(r.clone());
        }
    }
    for r in &rows.paid {
        if let Some(d) = out.get_mut(&r.bucket.div_euclid(PER_DAY)) {
            d.paid.push(r.clone());
        }
    }
    for r in &rows.refunded {
        if let Some(d) = out.get_mut(&r.bucket.div_euclid(PER_DAY)) {
            d.refunded.push(r.clone());
        }
    }
    for r in &rows.calls {
        if let Some(d) = out.get_mut(&r.day) {
            d.calls.push(r.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn only_whole_days_over_for_a_day_go_through_the_cache() {
        let now = 100 * DAY_MS + 5 * H; // day 100, 05:00 UTC
                                        // Local days at UTC+8: start 16:00 UTC the day before.
        let from = 69 * DAY_MS + 16 * H;
        let to = 100 * DAY_MS + 16 * H;
        assert_eq!(
            Plan::new(from, to, now),
            Plan {
                head: (from, 70 * DAY_MS),
                days: (70, 99),
                tail: (99 * DAY_MS, to),
            },
            "day 99 ended 5 hours ago: read fresh"
        );
        // Today only: nothing cached.
        let p = Plan::new(99 * DAY_MS + 16 * H, to, now);
        assert_eq!(p.days, (0, 0));
        assert_eq!(p.head, (99 * DAY_MS + 16 * H, to));
        // UTC-aligned: no head.
        let p = Plan::new(90 * DAY_MS, 95 * DAY_MS, now);
        assert_eq!(
            (p.head.0 == p.head.1, p.days, p.tail.0 == p.tail.1),
            (true, (90, 95), true)
        );
        // A range in the future or inside one day.
        let p = Plan::new(200 * DAY_MS, 201 * DAY_MS, now);
        assert_eq!(p.days, (0, 0));
        assert_eq!(p.head, (200 * DAY_MS, 201 * DAY_MS));
    }

    #[test]
    fn rows_are_split_into_their_utc_day() {
        use kami_store::{CallRow, CreatedRow};
        let per_day = DAY_MS / BUCKET_MS;
        let rows = StatsRows {
            created: vec![
                CreatedRow {
                    bucket: 5 * per_day,
                    channel: "a".into(),
                    orders: 1,
                    paid_since: 0,
                },
                CreatedRow {
                    bucket: 6 * per_day - 1,
                    channel: "a".into(),
                    orders: 2,
                    paid_since: 1,
                },
                CreatedRow {
                    bucket: 6 * per_day,
                    channel: "a".into(),
                    orders: 3,
                    paid_since: 1,
                },
            ],
            calls: vec![CallRow {
                day: 6,
                channel: "a".into(),
                outcome: "ok".into(),
                duration_ms: 20,
                calls: 4,
            }],
            ..StatsRows::default()
        };
        let split = split_by_day(&rows, 5, 8);
        assert_eq!(split.len(), 3);
        assert_eq!(split[&5].created.iter().map(|r| r.orders).sum::<i64>(), 3);
        assert_eq!(split[&6].created.len(), 1);
        assert_eq!(split[&6].calls.len(), 1);
        assert!(split[&7].created.is_empty() && split[&7].calls.is_empty());
    }
}
