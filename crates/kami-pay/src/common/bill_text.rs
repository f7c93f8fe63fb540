//! What the bill parsers of Alipay and WeChat Pay share: columns found by header name (the
//! order is not contractual), amounts read exactly as the gateways print them (no floats),
//! the bounded download of a bill file, and the `yyyy-MM-dd` bill date.

use kami_core::{Currency, Money};

use crate::common::text::clip;
use crate::{BillDay, BillEntry, BillRow, PayError};

/// Largest bill file downloaded (compressed, for Alipay's zip); a shop's day is far smaller.
pub const MAX_BILL_DOWNLOAD_BYTES: usize = 32 * 1024 * 1024;

pub(crate) fn malformed(msg: impl Into<String>) -> PayError {
    PayError::Malformed(msg.into())
}

/// `2024-01-31`, the `bill_date` both gateways take.
pub fn bill_date(day: BillDay) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time (both gateways' bill times) as unix ms.
pub(crate) fn beijing_ms(s: &str, what: &str) -> Result<i64, PayError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, fmt)
        .map(|t| t.assume_offset(crate::bill::BILL_OFFSET).unix_timestamp() * 1000)
        .map_err(|_| malformed(format!("{what} {} is not a Beijing time", clip(s, 24))))
}

/// The header of a CSV table: column positions by name, names unique.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    what: &'static str,
    names: Vec<String>,
}

impl Columns {
    /// `names` as read (already cleaned by the caller). A repeated name is refused: reading
    /// by name must be unambiguous.
    pub(crate) fn new(what: &'static str, names: Vec<String>) -> Result<Columns, PayError> {
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(malformed(format!(
                    "{what}: column {} appears twice",
                    clip(n, 32)
                )));
            }
        }
        Ok(Columns { what, names })
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The position of column `name`, or Malformed naming it.
    pub(crate) fn index(&self, name: &str) -> Result<usize, PayError> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| malformed(format!("{}: no column {name}", self.what)))
    }
}

/// A signed decimal with exactly `places` decimals (`-0.04`, `12.30`, `0.06000`) as an
/// integer of 10^-places units. `12.3`, `12`, `+1.00`, `1,000.00` are refused: the gateways
/// always print every decimal.
pub(crate) fn exact_decimal(s: &str, places: usize) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac) = digits.split_once('.')?;
    if int_part.is_empty()
        || int_part.len() > 13
        || frac.len() != places
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut v: i64 = 0;
    for b in int_part.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if negative { -v } else { v })
}

/// A yuan amount with exactly two decimals, as signed fen; `what` names the cell in errors.
pub(crate) fn signed_fen(s: &str, what: &str) -> Result<i64, PayError> {
    let bad = || {
        malformed(format!(
            "{what} {} is not an amount with two decimals",
            clip(s, 24)
        ))
    };
    // The format is the gateways' (every decimal printed); the value is Money's exact parse.
    exact_decimal(s, 2).ok_or_else(bad)?;
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let fen = Money::from_major_str(digits, Currency::Cny)
        .map_err(|_| bad())?
        .minor();
    Ok(if negative { -fen } else { fen })
}

/// A positive amount of fen as [`Money`] (CNY).
pub(crate) fn cny(fen: i64, what: &str) -> Result<Money, PayError> {
    if fen <= 0 {
        return Err(malformed(format!("{what} must be positive")));
    }
    Money::new(fen, Currency::Cny).map_err(|e| malformed(format!("{what}: {e}")))
}

/// A row of the bill, amounts positive.
pub(crate) fn row(
    trade_no: &str,
    gateway_trade_no: &str,
    entry: BillEntry,
    fen: i64,
    at_ms: Option<i64>,
) -> Result<BillRow, PayError> {
    if trade_no.is_empty() {
        return Err(malformed("bill row without a merchant trade number"));
    }
    let what = match entry {
        BillEntry::Payment => "payment amount",
        BillEntry::Refund { .. } => "refund amount",
    };
    Ok(BillRow {
        trade_no: trade_no.to_owned(),
        gateway_trade_no: gateway_trade_no.to_owned(),
        entry,
        amount: cny(fen, what)?,
        at_ms,
    })
}

/// Compare one of the file's own totals with the rows' sum: Malformed naming the total.
pub(crate) fn check_total(name: &str, file: i64, rows: i64, unit: &str) -> Result<(), PayError> {
    if file == rows {
        return Ok(());
    }
    Err(malformed(format!(
        "bill total {name} is {} but the rows add up to {}",
        show(file, unit),
        show(rows, unit)
    )))
}

fn show(v: i64, unit: &str) -> String {
    match unit {
        "fen" => {
            let sign = if v < 0 { "-" } else { "" };
            let a = v.unsigned_abs();
            format!("{sign}{}.{:02}", a / 100, a % 100)
        }
        _ => v.to_string(),
    }
}

/// Download a bill file: bounded by [`MAX_BILL_DOWNLOAD_BYTES`] (the announced length and the
/// bytes actually read), any status but 200 refused.
pub(crate) async fn download(req: reqwest::RequestBuilder) -> Result<Vec<u8>, PayError> {
    let reply = crate::http::send_capped(req, MAX_BILL_DOWNLOAD_BYTES).await?;
    if reply.status != 200 {
        return Err(PayError::Gateway {
            code: format!("HTTP_{}", reply.status),
            message: "bill download refused".into(),
        });
    }
    Ok(reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_strict() {
        assert_eq!(exact_decimal("12.30", 2), Some(1230));
        assert_eq!(exact_decimal("-0.04", 2), Some(-4));
        assert_eq!(exact_decimal("0.06000", 5), Some(6000));
        assert_eq!(exact_decimal("-0.02000", 5), Some(-2000));
        for bad in [
            "12.3", "12", "12.300", "+1.00", "1,000.00", "", ".50", "1.5a", "--1.00",
        ] {
            assert_eq!(exact_decimal(bad, 2), None, "{bad}");
        }
        assert_eq!(exact_decimal("99999999999999.00", 2), None);
        assert!(signed_fen("12.3", "订单金额").is_err());
    }

    #[test]
    fn columns_by_name() {
        let c = Columns::new("t", vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(c.index("b").unwrap(), 1);
        let e = c.index("c").unwrap_err().to_string();
        assert!(e.contains("no column c"), "{e}");
        assert!(Columns::new("t", vec!["a".into(), "a".into()]).is_err());
    }

    #[test]
    fn a_total_mismatch_names_the_total() {
        let e = check_total("商家实收", 7, 6, "fen")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("商家实收 is 0.07 but the rows add up to 0.06"),
            "{e}"
        );
        let e = check_total("-", -4, -5, "fen").unwrap_err().to_string();
        assert!(e.contains("-0.04"), "{e}");
    }

    #[test]
    fn beijing_times() {
        assert_eq!(
            beijing_ms("2024-01-01 08:00:00", "t").unwrap(),
            1_704_067_200_000
        );
        assert!(beijing_ms("2024-01-01T08:00:00", "t").is_err());
    }

    #[test]
    fn bill_dates() {
        let d = time::Date::from_calendar_date(2024, time::Month::January, 5).unwrap();
        assert_eq!(bill_date(d), "2024-01-05");
    }
}
