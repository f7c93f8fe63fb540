//! `bill` for Stripe: the day's balance transactions (`GET /v1/balance_transactions` with
//! `created[gte]` / `created[lt]` at the Beijing day's bounds, 100 a page, following
//! `has_more` with `starting_after`, `expand[]=data.source.payment_intent`).
//!
//! Stripe has no bill file with its own totals: the day's bill is the complete list, and the
//! totals are the rows' own. A `charge` / `payment` transaction is a payment, a `refund` /
//! `payment_refund` one a refund; fees, payouts and adjustments are not trades. Amounts are
//! read from the expanded source (the charge or refund, in the currency the buyer was
//! charged in) because the transaction's own `amount` is in the settlement currency. kami's
//! trade is the payment intent's `metadata[trade_no]` (set at create); transactions of
//! payments some other integration made on the same account carry none and are left out. A
//! refund's number is its `metadata[refund_no]`, empty for a refund made in the dashboard.

use serde::Deserialize;
use serde_json::Value;

use super::wire::{json, money, List, REFUND_NO_KEY, TRADE_NO_KEY};
use super::{StripeChannel, Verb};
use crate::bill::{Bill, BillDay, BillEntry, BillRow, BILL_OFFSET};
use crate::common::form::clip;
use crate::PayError;

/// Most pages read for one day (100 transactions each).
const MAX_PAGES: usize = 500;

#[derive(Debug, Deserialize)]
pub(super) struct BalanceTransaction {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    #[serde(default)]
    source: Option<Value>,
}

fn malformed(what: impl std::fmt::Display) -> PayError {
    PayError::Malformed(format!("stripe balance transactions: {what}"))
}

/// The day's bounds in unix seconds: Beijing midnight to the next.
pub fn day_bounds(day: BillDay) -> (i64, i64) {
    let start = day.midnight().assume_offset(BILL_OFFSET).unix_timestamp();
    (start, start + 86_400)
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k)?.as_str()
}

/// One transaction as a bill row; `Ok(None)` for what is not a kami trade.
pub(super) fn row(t: &BalanceTransaction) -> Result<Option<BillRow>, PayError> {
    let refund = match t.kind.as_str() {
        "charge" | "payment" => false,
        "refund" | "payment_refund" => true,
        _ => return Ok(None),
    };
    let src = t
        .source
        .as_ref()
        .filter(|s| s.is_object())
        .ok_or_else(|| malformed(format!("{} has no expanded source", clip(&t.id))))?;
    let pi = src
        .get("payment_intent")
        .filter(|p| p.is_object())
        .ok_or_else(|| malformed(format!("{}: payment_intent not expanded", clip(&t.id))))?;
    let Some(trade_no) = pi
        .get("metadata")
        .and_then(|m| str_field(m, TRADE_NO_KEY))
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let pi_id = str_field(pi, "id").ok_or_else(|| malformed("payment intent without id"))?;
    let minor = src
        .get("amount")
        .and_then(Value::as_i64)
        .filter(|a| *a > 0)
        .ok_or_else(|| malformed(format!("{}: no positive amount", clip(&t.id))))?;
    let currency = str_field(src, "currency")
        .ok_or_else(|| malformed(format!("{}: no currency", clip(&t.id))))?;
    let entry = if refund {
        BillEntry::Refund {
            refund_no: src
                .get("metadata")
                .and_then(|m| str_field(m, REFUND_NO_KEY))
                .unwrap_or("")
                .to_owned(),
        }
    } else {
        BillEntry::Payment
    };
    Ok(Some(BillRow {
        trade_no: trade_no.to_owned(),
        gateway_trade_no: pi_id.to_owned(),
        entry,
        amount: money(minor, currency)?,
        at_ms: t.created.checked_mul(1000),
    }))
}

impl StripeChannel {
    pub(super) async fn fetch_bill(&self, day: BillDay) -> Result<Bill, PayError> {
        let (start, end) = day_bounds(day);
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!(
                "/v1/balance_transactions?created[gte]={start}&created[lt]={end}&limit=100\
                 &expand[]=data.source.payment_intent"
            );
            if let Some(a) = &after {
                path.push_str(&format!("&starting_after={a}"));
            }
            let path = path.replace('[', "%5B").replace(']', "%5D");
            let body = self.call(Verb::Get, &path, &[], None).await?;
            let page: List<BalanceTransaction> = json(&body, "balance transaction list")?;
            for t in &page.data {
                if !(start..end).contains(&t.created) {
                    return Err(malformed(format!("{} is not of the day", clip(&t.id))));
                }
                if let Some(r) = row(t)? {
                    rows.push(r);
                }
            }
            if !page.has_more {
                let totals = Bill::totals_of(&rows);
                return Ok(Bill { day, rows, totals });
            }
            let last = page
                .data
                .last()
                .ok_or_else(|| malformed("has_more with an empty page"))?;
            if !super::valid_object_id(&last.id, "txn_") {
                return Err(malformed(format!(
                    "odd transaction id {:?}",
                    clip(&last.id)
                )));
            }
            after = Some(last.id.clone());
        }
        Err(malformed("more than 50,000 transactions in a day"))
    }
}
