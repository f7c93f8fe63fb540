//! What both bill simulators share: the Beijing-time day a moment falls in, the `bill_date`
//! parameter, and the test controls of the bill APIs ([`BillFaults`]).

use std::collections::BTreeSet;

use kami_pay::bill::{BillDay, BILL_OFFSET};

/// Test controls of a simulator's bill API.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BillFaults {
    /// The next bill served states totals its rows do not add up to (its payments' total
    /// one fen higher); the rows themselves are true.
    pub tamper_next: bool,
    /// WeChat Pay: the next bill answer announces a `hash_value` the file does not have.
    pub wrong_hash_next: bool,
    /// The bill API answers a system error while set.
    pub fail: bool,
    /// The next bill served is these bytes instead of the day's file (any day, even one
    /// without trades): zip bombs, wrong encodings, files of another day.
    pub replace_next: Option<Vec<u8>>,
    /// Merchant trade numbers (`out_trade_no`) every bill leaves out, their payment and
    /// refunds alike: a gateway whose bill misses trades, until it corrects it.
    pub hidden: BTreeSet<String>,
}

impl BillFaults {
    /// Whether the bill now being served is tampered (consuming the one-shot control).
    pub fn take_tamper(&mut self) -> bool {
        std::mem::take(&mut self.tamper_next)
    }

    /// Whether the hash now being announced is wrong (consuming the one-shot control).
    pub fn take_wrong_hash(&mut self) -> bool {
        std::mem::take(&mut self.wrong_hash_next)
    }

    /// Leave `out_trade_no` out of every bill while `hidden`.
    pub fn hide(&mut self, out_trade_no: &str, hidden: bool) {
        if hidden {
            self.hidden.insert(out_trade_no.to_owned());
        } else {
            self.hidden.remove(out_trade_no);
        }
    }
}

/// Signed fen as bills print yuan: `12.30`, `-0.04`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// The Beijing day of unix milliseconds `ms`.
pub fn bill_day_of(ms: i64) -> Option<BillDay> {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    Some(t.to_offset(BILL_OFFSET).date())
}

/// `[start, end)` of a Beijing day in unix milliseconds.
pub fn day_range_ms(day: BillDay) -> (i64, i64) {
    let start = day.midnight().assume_offset(BILL_OFFSET).unix_timestamp() * 1000;
    (start, start + 86_400_000)
}

/// `yyyy-MM-dd` (the `bill_date` parameter), strictly.
pub fn parse_bill_date(s: &str) -> Option<BillDay> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    (s.len() == 10)
        .then(|| time::Date::parse(s, fmt).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_days() {
        let d = parse_bill_date("2024-01-01").unwrap();
        let (start, end) = day_range_ms(d);
        // 2024-01-01 00:00 +08:00 = 2023-12-31 16:00 UTC.
        assert_eq!(start, 1_704_038_400_000);
        assert_eq!(bill_day_of(start), Some(d));
        assert_eq!(bill_day_of(start - 1), d.previous_day());
        assert_eq!(bill_day_of(end - 1), Some(d));
        assert_eq!(parse_bill_date("2024-1-01"), None);
        assert_eq!(parse_bill_date("2024-13-01"), None);
    }

    #[test]
    fn one_shot_controls() {
        let mut f = BillFaults {
            tamper_next: true,
            ..BillFaults::default()
        };
        assert!(f.take_tamper());
        assert!(!f.take_tamper());
        assert!(!f.take_wrong_hash());
        f.hide("K1", true);
        f.hide("K2", true);
        f.hide("K1", false);
        assert_eq!(f.hidden, BTreeSet::from(["K2".to_owned()]));
    }
}
