//! Exact latency percentiles over recorded samples (no histogram approximation).

use serde::Serialize;

/// Summary of one latency series, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentile of an ascending-sorted slice, `per_mille` in 0..=1000
/// (500 = p50, 990 = p99, 999 = p99.9): the smallest sample such that at least that
/// share of all samples is less than or equal to it. Integer arithmetic, so p99 of 100
/// samples is exactly the 99th sample.
pub fn percentile(sorted: &[u64], per_mille: u32) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let per_mille = u64::from(per_mille.min(1000));
    let rank = (per_mille * n as u64).div_ceil(1000); // 1-based
    let idx = (rank.max(1) - 1) as usize;
    sorted.get(idx.min(n - 1)).copied()
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Sorts `samples_us` (microseconds) in place and summarises them; `None` when empty.
pub fn summarize_us(samples_us: &mut [u64]) -> Option<LatencySummary> {
    if samples_us.is_empty() {
        return None;
    }
    samples_us.sort_unstable();
    let sum: u128 = samples_us.iter().map(|&v| u128::from(v)).sum();
    let mean = sum as f64 / samples_us.len() as f64 / 1000.0;
    let p = |pm| percentile(samples_us, pm).map_or(0.0, us_to_ms);
    Some(LatencySummary {
        count: samples_us.len(),
        min_ms: us_to_ms(samples_us[0]),
        mean_ms: mean,
        p50_ms: p(500),
        p90_ms: p(900),
        p99_ms: p(990),
        p999_ms: p(999),
        max_ms: us_to_ms(samples_us[samples_us.len() - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_empty_is_none() {
        assert_eq!(percentile(&[], 500), None);
        assert_eq!(summarize_us(&mut []), None);
    }

    #[test]
    fn percentile_single_sample() {
        for pm in [0, 1, 500, 990, 1000] {
            assert_eq!(percentile(&[7], pm), Some(7));
        }
    }

    #[test]
    fn percentile_nearest_rank_on_1_to_100() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&v, 10), Some(1));
        assert_eq!(percentile(&v, 500), Some(50));
        assert_eq!(percentile(&v, 900), Some(90));
        assert_eq!(percentile(&v, 990), Some(99));
        assert_eq!(percentile(&v, 999), Some(100));
        assert_eq!(percentile(&v, 1000), Some(100));
        assert_eq!(percentile(&v, 5000), Some(100));
    }

    #[test]
    fn percentile_small_odd_counts() {
        let v = [10, 20, 30];
        assert_eq!(percentile(&v, 500), Some(20));
        assert_eq!(percentile(&v, 900), Some(30));
        assert_eq!(percentile(&v, 333), Some(10));
        assert_eq!(percentile(&v, 334), Some(20));
    }

    #[test]
    fn percentile_1000_samples_p999() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 999), Some(999));
        assert_eq!(percentile(&v, 990), Some(990));
    }

    #[test]
    fn summarize_sorts_and_converts() {
        let mut v = vec![3000, 1000, 2000, 4000];
        let s = summarize_us(&mut v).expect("non-empty");
        assert_eq!(v, vec![1000, 2000, 3000, 4000]);
        assert_eq!(s.count, 4);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 4.0);
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p90_ms, 4.0);
        assert_eq!(s.p99_ms, 4.0);
    }
}
