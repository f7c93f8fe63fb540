//! The gateway's own pay time, read from a notification or a query answer for the notify-lag
//! measure. It is a measurement, never a reason to refuse: a malformed time in an otherwise
//! valid message is logged and read as unknown (`None`), so the payment is not lost.

/// `value` (absent or empty: `None`) parsed by `parse` into unix milliseconds; a value that
/// does not parse is logged with the protocol and field names (never the message) and gives
/// `None`.
pub fn pay_time(
    protocol: &'static str,
    field: &'static str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Option<i64>,
) -> Option<i64> {
    let v = value.map(str::trim).filter(|v| !v.is_empty())?;
    let parsed = parse(v);
    if parsed.is_none() {
        tracing::warn!(
            protocol,
            field,
            len = v.len(),
            "gateway pay time does not parse; payment kept, its notify lag is unknown"
        );
    }
    parsed
}

/// `yyyy-MM-dd HH:mm:ss` in China time (UTC+8, no offset written: Alipay, Epay hosts) as
/// unix milliseconds.
pub fn parse_china_time(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(s, format).ok()?;
    Some(t.assume_offset(time::macros::offset!(+8)).unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_empty_and_malformed_are_none() {
        let parse = |s: &str| s.parse::<i64>().ok();
        assert_eq!(pay_time("p", "f", None, parse), None);
        assert_eq!(pay_time("p", "f", Some("  "), parse), None);
        assert_eq!(pay_time("p", "f", Some("12x"), parse), None);
        assert_eq!(pay_time("p", "f", Some("1200"), parse), Some(1200));
    }

    #[test]
    fn china_time() {
        // 2024-01-01 12:00:09 +08:00 = 04:00:09 UTC
        assert_eq!(
            parse_china_time("2024-01-01 12:00:09"),
            Some(1_704_081_609_000)
        );
        assert_eq!(parse_china_time("2024-01-01T12:00:09"), None);
        assert_eq!(parse_china_time("2024-02-30 12:00:09"), None);
    }
}
