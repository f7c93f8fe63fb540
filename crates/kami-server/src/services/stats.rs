//! The shop's numbers per local day (`[shop] timezone`) and per channel, for
//! `GET /api/v1/admin/stats` and the dashboard. Definitions (the API documents them too):
//! - `created`: orders placed that day; `paid`: orders paid that day, whenever placed;
//! - `conversion`: of the orders placed that day, the share paid by now (0..=1; null with none);
//! - `revenue`: what the orders paid that day came to, per currency, in minor units (gross);
//! - `refunded`: refunds that succeeded that day, per currency; `net` = revenue − refunded;
//! - per channel: orders created and paid through it, and its create calls: `success_rate` =
//!   calls that returned a payment ÷ calls, `p95_ms` = the nearest-rank 95th percentile of
//!   the calls' durations.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use kami_store::{StatsRows, BUCKET_MS};

use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// The longest range asked for at once, in days.
pub const MAX_DAYS: i64 = 366;

/// A range of whole local days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: Date,
    pub to: Date,
}

impl DayRange {
    /// `from` and `to` as `YYYY-MM-DD`: `from` ≤ `to`, at most [`MAX_DAYS`] days.
    pub fn parse(from: &str, to: &str) -> ServiceResult<DayRange> {
        let date = |name: &str, s: &str| -> ServiceResult<Date> {
            let bad = || {
                ServiceError::invalid(
                    "invalid_date",
                    format!("`{name}` must be a date as YYYY-MM-DD, got {s:?}"),
                )
            };
            if s.len() != 10 {
                return Err(bad());
            }
            s.parse::<Date>().map_err(|_| bad())
        };
        let range = DayRange {
            from: date("from", from)?,
            to: date("to", to)?,
        };
        if range.to < range.from {
            return Err(ServiceError::invalid(
                "invalid_range",
                format!("`to` ({}) is before `from` ({})", range.to, range.from),
            ));
        }
        if range.days() > MAX_DAYS {
            return Err(ServiceError::invalid(
                "invalid_range",
                format!(
                    "at most {MAX_DAYS} days at once, asked for {}",
                    range.days()
                ),
            ));
        }
        Ok(range)
    }

    /// The last `days` days up to and including `today`.
    pub fn last(today: Date, days: i64) -> DayRange {
        let from = today.checked_sub((days - 1).days()).unwrap_or(today);
        DayRange { from, to: today }
    }

    pub fn days(&self) -> i64 {
        self.from
            .until(self.to)
            .map_or(0, |span| i64::from(span.get_days()))
            + 1
    }

    /// Each day of the range, in order.
    pub fn dates(&self) -> Vec<Date> {
        self.from
            .series(1.day())
            .take_while(|d| *d <= self.to)
            .collect()
    }
}

/// One local day's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayStats {
    pub date: Option<Date>,
    pub created: i64,
    pub paid: i64,
    /// Of `created`, how many are paid by now.
    pub created_then_paid: i64,
    /// Currency code → minor units.
    pub revenue: BTreeMap<String, i64>,
    pub refunded: BTreeMap<String, i64>,
}

impl DayStats {
    pub fn conversion(&self) -> Option<f64> {
        ratio(self.created_then_paid, self.created)
    }
    /// Revenue less refunds, per currency (every currency of either).
    pub fn net(&self) -> BTreeMap<String, i64> {
        let mut net = self.revenue.clone();
        for (c, r) in &self.refunded {
            *net.entry(c.clone()).or_default() -= r;
        }
        net
    }
    fn add(&mut self, other: &DayStats) {
        self.created += other.created;
        self.paid += other.paid;
        self.created_then_paid += other.created_then_paid;
        for (c, v) in &other.revenue {
            *self.revenue.entry(c.clone()).or_default() += v;
        }
        for (c, v) in &other.refunded {
            *self.refunded.entry(c.clone()).or_default() += v;
        }
    }
}

/// One channel's numbers over the range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelStats {
    pub channel: String,
    pub created: i64,
    pub paid: i64,
    pub calls: i64,
    pub calls_ok: i64,
    pub calls_error: i64,
    pub calls_timeout: i64,
    pub p95_ms: Option<i64>,
}

impl ChannelStats {
    pub fn success_rate(&self) -> Option<f64> {
        ratio(self.calls_ok, self.calls)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub timezone: String,
    pub range: DayRange,
    pub days: Vec<DayStats>,
    pub total: DayStats,
    pub channels: Vec<ChannelStats>,
}

/// `n ÷ d` to four decimals; `None` when `d` is 0.
fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| ((n as f64 / d as f64) * 10_000.0).round() / 10_000.0)
}

/// The instant a local day starts, in unix ms.
pub fn day_start(date: Date, tz: &TimeZone) -> ServiceResult<i64> {
    let z = date
        .to_zoned_datetime(tz.clone())
        .and_then(|z| z.start_of_day())
        .map_err(|e| ServiceError::invalid("invalid_date", format!("{date}: {e}")))?;
    Ok(z.timestamp().as_millisecond())
}

/// Today's date in the shop's time zone.
pub fn today(state: &AppState) -> Date {
    Timestamp::from_millisecond(state.now_ms())
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(state.config.shop.time_zone())
        .date()
}

/// Read the dashboard's longest period (30 days) through the stats cache, so closed days
/// are fresh there before a seller asks (the housekeeping job, every minute).
pub async fn warm(state: &AppState) -> ServiceResult<()> {
    read(state, DayRange::last(today(state), 30), true)
        .await
        .map(|_| ())
}

/// The numbers of `range` in the shop's time zone.
pub async fn stats(state: &AppState, range: DayRange) -> ServiceResult<Stats> {
    read(state, range, false).await
}

async fn read(state: &AppState, range: DayRange, warm: bool) -> ServiceResult<Stats> {
    let tz = state.config.shop.time_zone();
    let dates = range.dates();
    let mut starts = Vec::with_capacity(dates.len() + 1);
    for d in &dates {
        starts.push(day_start(*d, &tz)?);
    }
    let end_date = range
        .to
        .checked_add(1.day())
        .map_err(|e| ServiceError::invalid("invalid_date", e.to_string()))?;
    starts.push(day_start(end_date, &tz)?);
    let (Some(&from), Some(&to)) = (starts.first(), starts.last()) else {
        return Err(ServiceError::internal("empty day range"));
    };
    super::channel_calls::flush(state).await;
    let cache = &state.stats_cache;
    let rows = if warm {
        cache.warm(&state.store, from, to, state.now_ms()).await?
    } else {
        cache.rows(&state.store, from, to, state.now_ms()).await?
    };
    Ok(assemble(
        state.config.shop.timezone.clone(),
        range,
        &dates,
        &starts,
        &rows,
    ))
}

/// Put the rows into days (by the start of their bucket) and channels.
fn assemble(
    timezone: String,
    range: DayRange,
    dates: &[Date],
    starts: &[i64],
    rows: &StatsRows,
) -> Stats {
    let mut days: Vec<DayStats> = dates
        .iter()
        .map(|d| DayStats {
            date: Some(*d),
            ..DayStats::default()
        })
        .collect();
    // The day holding the bucket `q` (rows come from `[first start, last start)`).
    let day_of = |q: i64| -> Option<usize> {
        let at = q * BUCKET_MS;
        starts[..starts.len() - 1]
            .partition_point(|s| *s <= at)
            .checked_sub(1)
    };
    let mut channels: BTreeMap<String, ChannelStats> = BTreeMap::new();
    fn channel<'a>(
        channels: &'a mut BTreeMap<String, ChannelStats>,
        id: &str,
    ) -> &'a mut ChannelStats {
        channels
            .entry(id.to_owned())
            .or_insert_with(|| ChannelStats {
                channel: id.to_owned(),
                ..ChannelStats::default()
            })
    }
    for r in &rows.created {
        if let Some(d) = day_of(r.bucket).and_then(|i| days.get_mut(i)) {
            d.created += r.orders;
            d.created_then_paid += r.paid_since;
        }
        channel(&mut channels, &r.channel).created += r.orders;
    }
    for r in &rows.paid {
        if let Some(d) = day_of(r.bucket).and_then(|i| days.get_mut(i)) {
            d.paid += r.orders;
            *d.revenue.entry(r.currency.clone()).or_default() += r.amount;
        }
        channel(&mut channels, &r.channel).paid += r.orders;
    }
    for r in &rows.refunded {
        if let Some(d) = day_of(r.bucket).and_then(|i| days.get_mut(i)) {
            *d.refunded.entry(r.currency.clone()).or_default() += r.amount;
        }
    }
    // Durations per channel, for the percentile.
    let mut durations: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    for r in &rows.calls {
        let c = channel(&mut channels, &r.channel);
        c.calls += r.calls;
        match r.outcome.as_str() {
            "ok" => c.calls_ok += r.calls,
            "timeout" => c.calls_timeout += r.calls,
            _ => c.calls_error += r.calls,
        }
        *durations
            .entry(r.channel.clone())
            .or_default()
            .entry(r.duration_ms)
            .or_default() += r.calls;
    }
    for (id, histogram) in &durations {
        if let Some(c) = channels.get_mut(id) {
            c.p95_ms = percentile(histogram, 95);
        }
    }
    let mut total = DayStats::default();
    for d in &days {
        total.add(d);
    }
    Stats {
        timezone,
        range,
        days,
        total,
        channels: channels.into_values().collect(),
    }
}

/// The nearest-rank `p`th percentile of a histogram (value → count).
pub(crate) fn percentile(histogram: &BTreeMap<i64, i64>, p: i64) -> Option<i64> {
    let n: i64 = histogram.values().sum();
    if n == 0 {
        return None;
    }
    // rank = ceil(p/100 × n), at least 1
    let rank = ((p * n) + 99) / 100;
    let mut seen = 0;
    for (value, count) in histogram {
        seen += count;
        if seen >= rank.max(1) {
            return Some(*value);
        }
    }
    histogram.keys().next_back().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(DayRange::parse("2025-01-01", "2025-01-01").is_ok());
        assert_eq!(
            DayRange::parse("2024-01-01", "2024-12-31")
                .map(|r| r.days())
                .ok(),
            Some(366)
        );
        for (from, to) in [
            ("2025-01-02", "2025-01-01"),
            ("2024-01-01", "2025-01-01"),
            ("2025-13-01", "2025-12-01"),
            ("2025-02-30", "2025-03-01"),
            ("2025-1-1", "2025-01-02"),
            ("", "2025-01-02"),
            ("yesterday", "2025-01-02"),
        ] {
            let e = DayRange::parse(from, to).expect_err(from);
            assert!(matches!(e, ServiceError::Invalid { .. }), "{from}..{to}");
        }
    }

    #[test]
    fn nearest_rank_p95() {
        let h: BTreeMap<i64, i64> = (1..=100).map(|v| (v, 1)).collect();
        assert_eq!(percentile(&h, 95), Some(95));
        let h: BTreeMap<i64, i64> = [(10, 19), (500, 1)].into_iter().collect();
        assert_eq!(percentile(&h, 95), Some(10), "19 of 20 at 10 ms");
        let h: BTreeMap<i64, i64> = [(10, 18), (500, 2)].into_iter().collect();
        assert_eq!(percentile(&h, 95), Some(500));
        assert_eq!(percentile(&BTreeMap::new(), 95), None);
    }

    #[test]
    fn shanghai_days_start_at_16_utc() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap_or(TimeZone::UTC);
        let d: Date = "2025-03-10".parse().unwrap_or_default();
        // 2025-03-09T16:00:00Z
        assert_eq!(day_start(d, &tz).ok(), Some(1_741_536_000_000));
    }
}
