//! `[reconciliation]`: the daily reconciliation against the channels' bills.

use serde::Deserialize;

use super::{check_range, invalid, ConfigError, Origins};

/// `[reconciliation]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ReconciliationConfig {
    /// Reconcile yesterday for every channel once a day (default true). `kami reconcile` and
    /// the API work either way.
    pub enabled: bool,
    /// When the daily run may start, `HH:MM` Beijing time (default `10:00`, after the
    /// gateways publish the day's bills).
    pub run_at: String,
    /// Days a trade kami holds paid may be missing from the bills before it is reported
    /// "missing at channel", 1..=30 (default 3).
    pub carry_over_days: u32,
}

impl Default for ReconciliationConfig {
    fn default() -> ReconciliationConfig {
        ReconciliationConfig {
            enabled: true,
            run_at: "10:00".into(),
            carry_over_days: 3,
        }
    }
}

impl ReconciliationConfig {
    /// `run_at` as minutes after midnight (checked at load).
    pub fn run_at_minutes(&self) -> u32 {
        parse_hh_mm(&self.run_at).unwrap_or(600)
    }
}

fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

pub(super) fn check_reconciliation(
    r: &ReconciliationConfig,
    origins: &Origins,
) -> Result<(), ConfigError> {
    if parse_hh_mm(&r.run_at).is_none() {
        return Err(invalid(
            origins,
            "reconciliation.run_at",
            format!("must be HH:MM (24-hour, Beijing time), got {:?}", r.run_at),
        ));
    }
    check_range(
        origins,
        "reconciliation.carry_over_days",
        r.carry_over_days,
        (1, 30),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_hh_mm;

    #[test]
    fn run_at_is_hh_mm() {
        assert_eq!(parse_hh_mm("10:00"), Some(600));
        assert_eq!(parse_hh_mm("00:05"), Some(5));
        for bad in ["24:00", "9:00", "10:60", "10-00", ""] {
            assert_eq!(parse_hh_mm(bad), None, "{bad}");
        }
    }
}
