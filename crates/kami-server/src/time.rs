//! Time formats: kami stores unix milliseconds and shows RFC 3339.

use kami_core::Millis;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Wall-clock milliseconds, for the CLI and other edges without an injected clock.
pub use kami_core::clock::now_ms;

pub fn rfc3339(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// `yyyymmddHHMMSS` in UTC, for order numbers.
pub fn stamp(ms: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::stamp(86_400_000 + 3_661_000), "19700102010101");
    }
}

/// The unix milliseconds at which the UTC day `YYYY-MM-DD` begins; `None` for anything else.
pub fn utc_day_start(day: &str) -> Option<Millis> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format).ok()?;
    let ms = date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000;
    Millis::try_from(ms).ok()
}

#[cfg(test)]
mod day_tests {
    #[test]
    fn utc_days_parse_exactly() {
        assert_eq!(super::utc_day_start("1970-01-02"), Some(86_400_000));
        assert_eq!(super::utc_day_start("2026-12-06"), Some(1_796_515_200_000));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-12-06",
            "2026-12-06T00:00",
            "",
            "x",
        ] {
            assert_eq!(super::utc_day_start(bad), None, "{bad}");
        }
    }
}
