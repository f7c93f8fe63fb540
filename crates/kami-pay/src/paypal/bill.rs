//! The day's bill from PayPal's transaction search (`GET /v1/reporting/transactions`,
//! `fields=transaction_info`, 500 a page): successful (`S`) checkout payments (`T00xx`,
//! positive) and refunds (`T1107`, negative), by `custom_field` (our trade number; kami sets
//! `custom_id` on captures and refunds) and, for refunds, `invoice_id` (our refund number).
//! The search has no totals of its own; its `total_items` must equal the rows read over all
//! pages, or the bill is refused. PayPal makes transactions searchable up to three hours
//! late: reconciliation's carry-over covers a day read early.

use kami_core::Money;
use serde::Deserialize;

use super::wire::{clip, json, parse_amount, parse_rfc3339, Amount};
use super::PaypalChannel;
use crate::bill::BILL_OFFSET;
use crate::{Bill, BillDay, BillEntry, BillRow, PayError};

const PAGE_SIZE: u32 = 500;
/// More pages than this for one day is refused rather than read for minutes.
const MAX_PAGES: u32 = 200;

#[derive(Debug, Deserialize)]
pub struct SearchPage {
    #[serde(default)]
    pub transaction_details: Vec<Detail>,
    pub total_items: u64,
    pub total_pages: u32,
}

#[derive(Debug, Deserialize)]
pub struct Detail {
    pub transaction_info: Info,
}

#[derive(Debug, Deserialize)]
pub struct Info {
    pub transaction_id: String,
    pub paypal_reference_id: Option<String>,
    pub transaction_event_code: String,
    pub transaction_initiation_date: Option<String>,
    pub transaction_amount: Amount,
    pub transaction_status: String,
    pub invoice_id: Option<String>,
    pub custom_field: Option<String>,
}

/// `2026-11-22T10:00:00+0000` (PayPal's reporting form, no colon in the offset) or RFC 3339.
fn parse_report_time(s: &str) -> Option<i64> {
    parse_rfc3339(s).or_else(|| {
        let (head, off) = s.split_at(s.len().checked_sub(5)?);
        if !(off.starts_with('+') || off.starts_with('-')) {
            return None;
        }
        parse_rfc3339(&format!("{head}{}:{}", &off[..3], &off[3..]))
    })
}

/// The query string of one page for `day` (00:00:00 to 23:59:59 Beijing time).
pub fn search_query(day: BillDay, page: u32) -> String {
    let d = format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    );
    let (h, m, _) = BILL_OFFSET.as_hms();
    let off = format!("%2B{h:02}:{:02}", m.unsigned_abs());
    format!(
        "start_date={d}T00:00:00{off}&end_date={d}T23:59:59{off}&fields=transaction_info&page_size={PAGE_SIZE}&page={page}"
    )
}

/// The bill rows of one page's details (rows of other kinds are left out).
pub fn rows_of(details: &[Detail]) -> Result<Vec<BillRow>, PayError> {
    let mut rows = Vec::new();
    for d in details {
        let i = &d.transaction_info;
        if i.transaction_status != "S" {
            continue;
        }
        let value = i.transaction_amount.value.trim();
        let (negative, magnitude) = match value.strip_prefix('-') {
            Some(v) => (true, v),
            None => (false, value),
        };
        let amount: Money = parse_amount(&Amount {
            currency_code: i.transaction_amount.currency_code.clone(),
            value: magnitude.to_owned(),
        })?;
        let code = i.transaction_event_code.as_str();
        let at_ms = i
            .transaction_initiation_date
            .as_deref()
            .and_then(parse_report_time);
        let trade_no = i
            .custom_field
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| i.invoice_id.clone().filter(|_| !negative))
            .unwrap_or_default();
        let row = if code.starts_with("T00") && !negative {
            BillRow {
                trade_no,
                gateway_trade_no: i.transaction_id.clone(),
                entry: BillEntry::Payment,
                amount,
                at_ms,
            }
        } else if code == "T1107" && negative {
            BillRow {
                trade_no,
                gateway_trade_no: i
                    .paypal_reference_id
                    .clone()
                    .unwrap_or_else(|| i.transaction_id.clone()),
                entry: BillEntry::Refund {
                    refund_no: i.invoice_id.clone().unwrap_or_default(),
                },
                amount,
                at_ms,
            }
        } else {
            continue;
        };
        rows.push(row);
    }
    Ok(rows)
}

impl PaypalChannel {
    pub(super) async fn fetch_bill(&self, day: BillDay) -> Result<Bill, PayError> {
        let mut rows = Vec::new();
        let mut listed: u64 = 0;
        let mut page = 1;
        let total_items = loop {
            let path = format!("/v1/reporting/transactions?{}", search_query(day, page));
            let a = self.call(reqwest::Method::GET, &path, None, None).await?;
            let p: SearchPage = json(&a.body, "transaction search")?;
            listed += p.transaction_details.len() as u64;
            rows.extend(rows_of(&p.transaction_details)?);
            if p.total_pages > MAX_PAGES {
                return Err(PayError::Malformed(format!(
                    "transaction search has {} pages",
                    p.total_pages
                )));
            }
            if page >= p.total_pages {
                break p.total_items;
            }
            page += 1;
        };
        if listed != total_items {
            return Err(PayError::Malformed(format!(
                "transaction search total_items {total_items} but {listed} listed"
            )));
        }
        let totals = Bill::totals_of(&rows);
        for r in &rows {
            if r.trade_no.is_empty() {
                tracing::info!(
                    gateway_trade_no = %clip(&r.gateway_trade_no),
                    "PayPal transaction without our trade number (made outside kami)"
                );
            }
        }
        Ok(Bill { day, rows, totals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_times_and_queries() {
        assert_eq!(
            parse_report_time("2026-11-22T02:00:00+0000"),
            Some(1_795_312_800_000)
        );
        assert_eq!(
            parse_report_time("2026-11-22T10:00:00+08:00"),
            Some(1_795_312_800_000)
        );
        assert_eq!(parse_report_time("yesterday"), None);
        let day = time::macros::date!(2026 - 11 - 22);
        assert_eq!(
            search_query(day, 2),
            "start_date=2026-11-22T00:00:00%2B08:00&end_date=2026-11-22T23:59:59%2B08:00\
             &fields=transaction_info&page_size=500&page=2"
        );
    }

    #[test]
    fn payments_and_refunds_become_rows() {
        let page: SearchPage = serde_json::from_str(
            r#"{"transaction_details":[
              {"transaction_info":{"transaction_id":"3C679366HH908993F","transaction_event_code":"T0006",
                "transaction_initiation_date":"2026-11-22T02:00:00+0000","transaction_amount":{"currency_code":"USD","value":"12.30"},
                "transaction_status":"S","invoice_id":"K1","custom_field":"K1"}},
              {"transaction_info":{"transaction_id":"1JU08902781691411","paypal_reference_id":"3C679366HH908993F",
                "transaction_event_code":"T1107","transaction_amount":{"currency_code":"USD","value":"-2.30"},
                "transaction_status":"S","invoice_id":"R1","custom_field":"K1"}},
              {"transaction_info":{"transaction_id":"X","transaction_event_code":"T0006",
                "transaction_amount":{"currency_code":"USD","value":"1.00"},"transaction_status":"P"}},
              {"transaction_info":{"transaction_id":"F","transaction_event_code":"T0400",
                "transaction_amount":{"currency_code":"USD","value":"-5.00"},"transaction_status":"S"}}
            ],"total_items":4,"total_pages":1}"#,
        )
        .unwrap();
        let rows = rows_of(&page.transaction_details).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].entry, BillEntry::Payment);
        assert_eq!(
            (rows[0].trade_no.as_str(), rows[0].amount.minor()),
            ("K1", 1230)
        );
        assert_eq!(rows[0].at_ms, Some(1_795_312_800_000));
        assert_eq!(
            rows[1].entry,
            BillEntry::Refund {
                refund_no: "R1".into()
            }
        );
        assert_eq!(rows[1].gateway_trade_no, "3C679366HH908993F");
        assert_eq!(rows[1].amount.minor(), 230);
    }
}
