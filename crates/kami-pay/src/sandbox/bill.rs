//! The sandbox bill: a day's payments and refunds as a small signed text file with its own
//! totals line, so reconciliation runs end to end on kami's own test protocol.
//!
//! `GET {gateway}/sim/sandbox/api/bill?date=YYYY-MM-DD&nonce=..&sign=..` (a signed form like
//! every sandbox API request) → `200 text/plain; charset=utf-8` with header
//! `X-Sandbox-Sign` = the sandbox signature of the one parameter `bill=<body>`. The body, lines
//! ending in `\n`:
//!
//! ```text
//! # kami sandbox bill,2026-12-06
//! type,trade_no,gateway_trade_no,refund_no,amount,currency,at
//! payment,K20261206...,SBX...,,12.30,CNY,1796550000000
//! refund,K20261206...,SBX...,R1,1.00,CNY,1796550100000
//! # totals,payments=1,paid_minor=1230,refunds=1,refunded_minor=100
//! ```
//!
//! The day is a Beijing date: payments by pay time, refunds by refund time. A refund made in
//! the merchant portal has an empty `refund_no`. Errors are the API's signed JSON errors
//! (`BILL_NOT_READY`, ...) with a non-200 status.

use kami_core::Money;

use super::wire::parse_money;
use crate::bill::{Bill, BillDay, BillEntry, BillRow, BillTotals};
use crate::common::form::clip;
use crate::PayError;

/// The header naming the bill's signature.
pub const SIGN_HEADER: &str = "x-sandbox-sign";
const TITLE: &str = "# kami sandbox bill,";
const COLUMNS: &str = "type,trade_no,gateway_trade_no,refund_no,amount,currency,at";
const TOTALS: &str = "# totals,";

fn malformed(what: impl std::fmt::Display) -> PayError {
    PayError::Malformed(format!("sandbox bill: {what}"))
}

/// A `YYYY-MM-DD` date.
pub fn format_day(day: BillDay) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The bill's text for `rows`, declaring `totals` (the gateway's own summary: equal to the
/// rows' unless a test tampers with it).
pub fn render(day: BillDay, rows: &[BillRow], totals: BillTotals) -> String {
    let mut out = format!("{TITLE}{}\n{COLUMNS}\n", format_day(day));
    for r in rows {
        let (kind, refund_no) = match &r.entry {
            BillEntry::Payment => ("payment", ""),
            BillEntry::Refund { refund_no } => ("refund", refund_no.as_str()),
        };
        out.push_str(&format!(
            "{kind},{},{},{refund_no},{},{},{}\n",
            r.trade_no,
            r.gateway_trade_no,
            r.amount.to_major_string(),
            r.amount.currency().code(),
            r.at_ms.map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "{TOTALS}payments={},paid_minor={},refunds={},refunded_minor={}\n",
        totals.payments, totals.paid_minor, totals.refunds, totals.refunded_minor
    ));
    out
}

/// A cell that must not be empty and may not hold what the format uses.
fn cell(v: &str, name: &str) -> Result<String, PayError> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(format!("bad {name} {:?}", clip(v))));
    }
    Ok(v.to_owned())
}

fn row(line: &str) -> Result<BillRow, PayError> {
    let f: Vec<&str> = line.split(',').collect();
    let [kind, trade_no, gateway_trade_no, refund_no, amount, currency, at] = f[..] else {
        return Err(malformed(format!("a row has {} cells, not 7", f.len())));
    };
    let amount: Money = parse_money(amount, currency)?;
    if amount.minor() <= 0 {
        return Err(malformed("an amount is not positive"));
    }
    let entry = match kind {
        "payment" if refund_no.is_empty() => BillEntry::Payment,
        "refund" => BillEntry::Refund {
            refund_no: if refund_no.is_empty() {
                String::new()
            } else {
                cell(refund_no, "refund_no")?
            },
        },
        other => return Err(malformed(format!("row type {:?}", clip(other)))),
    };
    let at_ms = match at {
        "" => None,
        t => Some(t.parse::<i64>().map_err(|_| malformed("bad time"))?),
    };
    Ok(BillRow {
        trade_no: cell(trade_no, "trade_no")?,
        gateway_trade_no: cell(gateway_trade_no, "gateway_trade_no")?,
        entry,
        amount,
        at_ms,
    })
}

fn count(part: Option<&str>, key: &str) -> Result<i64, PayError> {
    part.and_then(|p| p.strip_prefix(key))
        .and_then(|p| p.strip_prefix('='))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| malformed(format!("totals line lacks {key}")))
}

/// Parse and check a bill for `day`: its title names the day, its header is the one above,
/// and its rows add up to its totals line; anything else refuses the whole file.
pub fn parse(day: BillDay, body: &[u8]) -> Result<Bill, PayError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("not UTF-8"))?;
    let mut lines = text.lines();
    let title = lines.next().unwrap_or_default();
    if title != format!("{TITLE}{}", format_day(day)) {
        return Err(malformed(format!("title {:?}", clip(title))));
    }
    if lines.next() != Some(COLUMNS) {
        return Err(malformed("unexpected column header"));
    }
    let mut rows = Vec::new();
    let mut declared = None;
    for line in lines {
        if declared.is_some() {
            return Err(malformed("lines after the totals line"));
        }
        if let Some(t) = line.strip_prefix(TOTALS) {
            let mut parts = t.split(',');
            let totals = BillTotals {
                payments: count(parts.next(), "payments")? as u64,
                paid_minor: count(parts.next(), "paid_minor")?,
                refunds: count(parts.next(), "refunds")? as u64,
                refunded_minor: count(parts.next(), "refunded_minor")?,
            };
            if parts.next().is_some() {
                return Err(malformed("totals line has extra cells"));
            }
            declared = Some(totals);
        } else {
            rows.push(row(line)?);
        }
    }
    let declared = declared.ok_or_else(|| malformed("no totals line (cut short?)"))?;
    let actual = Bill::totals_of(&rows);
    if actual != declared {
        return Err(malformed(format!(
            "totals line says {declared:?}, its rows add up to {actual:?}"
        )));
    }
    Ok(Bill {
        day,
        rows,
        totals: declared,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kami_core::{Currency, Money};

    use super::*;

    fn day() -> BillDay {
        time::macros::date!(2026 - 12 - 06)
    }

    fn rows() -> Vec<BillRow> {
        vec![
            BillRow {
                trade_no: "T1".into(),
                gateway_trade_no: "SBX1".into(),
                entry: BillEntry::Payment,
                amount: Money::new(1230, Currency::Cny).unwrap(),
                at_ms: Some(1),
            },
            BillRow {
                trade_no: "T1".into(),
                gateway_trade_no: "SBX1".into(),
                entry: BillEntry::Refund {
                    refund_no: String::new(),
                },
                amount: Money::new(100, Currency::Cny).unwrap(),
                at_ms: None,
            },
        ]
    }

    #[test]
    fn a_rendered_bill_parses_back() {
        let text = render(day(), &rows(), Bill::totals_of(&rows()));
        assert!(
            text.ends_with("# totals,payments=1,paid_minor=1230,refunds=1,refunded_minor=100\n")
        );
        let bill = parse(day(), text.as_bytes()).unwrap();
        assert_eq!(bill.rows, rows());
        assert_eq!(bill.totals.paid_minor, 1230);
    }

    #[test]
    fn wrong_totals_another_day_or_a_cut_file_are_refused() {
        let mut t = Bill::totals_of(&rows());
        t.paid_minor += 1;
        let tampered = render(day(), &rows(), t);
        let e = parse(day(), tampered.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("totals line says"), "{e}");

        let good = render(day(), &rows(), Bill::totals_of(&rows()));
        let other_day = time::macros::date!(2026 - 12 - 05);
        assert!(parse(other_day, good.as_bytes()).is_err());
        let cut = &good[..good.find(TOTALS).unwrap()];
        let e = parse(day(), cut.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("no totals line"), "{e}");
        let bad_row = good.replace("12.30", "12.3x");
        assert!(parse(day(), bad_row.as_bytes()).is_err());
    }
}
