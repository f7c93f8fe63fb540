//! The sandbox gateway's bill (`GET api/bill`, see `kami_pay::sandbox::bill`) and the test
//! controls reconciliation needs: a refund made in the merchant portal, a payment kami never
//! created, a buyer paying another sum, the next bill's totals tampered with, the bill and
//! query APIs failing.

use std::sync::{Arc, MutexGuard};

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kami_core::Money;
use kami_pay::bill::{Bill, BillDay, BillEntry, BillRow, BILL_OFFSET};
use kami_pay::sandbox::bill::{render, SIGN_HEADER};
use kami_pay::sandbox::{field, sign};

use super::api::unsigned_error;
use super::{gateway_trade_no, Payment, RefundEntry, SandboxSim, Status, Trade};

/// Faults of the merchant API a test turns on.
#[derive(Debug, Default)]
pub(super) struct ApiFaults {
    /// The next bill declares totals that its rows do not add up to (then served right).
    tamper_next_bill: bool,
    /// Bill downloads answer 503.
    fail_bills: bool,
    /// Trade queries answer 503.
    pub(super) fail_queries: bool,
    /// Trades the bills leave out (a gateway's bill that lost them, or corrected them away).
    hidden: std::collections::HashSet<String>,
}

/// The Beijing date of a unix-ms instant.
fn beijing_day(ms: i64) -> Option<BillDay> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| t.to_offset(BILL_OFFSET).date())
}

impl SandboxSim {
    pub(super) fn faults(&self) -> MutexGuard<'_, ApiFaults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next bill served declares wrong totals (its payments' sum plus one fen).
    pub fn tamper_next_bill(&self) {
        self.faults().tamper_next_bill = true;
    }

    /// Bill downloads fail (HTTP 503) while set.
    pub fn set_bill_failure(&self, fail: bool) {
        self.faults().fail_bills = fail;
    }

    /// Trade queries fail (HTTP 503, unsigned) while set.
    pub fn set_query_failure(&self, fail: bool) {
        self.faults().fail_queries = fail;
    }

    /// Leave `trade_no` out of every bill (its payment and refunds) while `hidden`.
    pub fn hide_from_bill(&self, trade_no: &str, hidden: bool) {
        let mut f = self.faults();
        if hidden {
            f.hidden.insert(trade_no.to_owned());
        } else {
            f.hidden.remove(trade_no);
        }
    }

    /// A refund made in the merchant portal (no refund number of the merchant's): the money
    /// goes back now, and the bill lists it. Refused unless the trade is paid and the amount
    /// fits what is left.
    pub fn portal_refund(&self, trade_no: &str, amount: Money) -> Result<(), String> {
        let now = self.now_ms();
        let mut trades = self.lock();
        let t = trades
            .get_mut(trade_no)
            .ok_or_else(|| format!("no trade {trade_no}"))?;
        let total = t
            .payment
            .as_ref()
            .map(|p| p.amount)
            .ok_or("the trade is not paid")?;
        if total.currency() != amount.currency()
            || amount.minor() <= 0
            || t.refunded_minor + amount.minor() > total.minor()
        {
            return Err("the refund does not fit the payment".into());
        }
        t.refunded_minor += amount.minor();
        t.refund_log.push(RefundEntry {
            refund_no: String::new(),
            amount,
            at: now,
        });
        if t.refunded_minor == total.minor() {
            t.status = Status::Refunded;
        }
        Ok(())
    }

    /// A payment for a trade the merchant never created (another system on the same
    /// account, a misconfiguration): paid now, never notified. Returns its gateway number.
    pub fn unknown_payment(&self, trade_no: &str, amount: Money) -> String {
        let g = gateway_trade_no();
        let mut t = Trade::new(Status::Paid, None);
        t.payment = Some(Payment {
            gateway_trade_no: g.clone(),
            amount,
            paid_at: self.now_ms(),
        });
        self.lock().insert(trade_no.to_owned(), t);
        g
    }

    /// The buyer of a paid trade actually paid `amount` (what the query and the bill say
    /// from now on). Refused for a trade that is not paid.
    pub fn alter_paid_amount(&self, trade_no: &str, amount: Money) -> Result<(), String> {
        let mut trades = self.lock();
        let p = trades
            .get_mut(trade_no)
            .and_then(|t| t.payment.as_mut())
            .ok_or_else(|| format!("trade {trade_no} is not paid"))?;
        p.amount = amount;
        Ok(())
    }

    /// The bill's rows for `day`: payments by pay time, refunds by refund time, in trade
    /// number order (what the gateway recorded; kami's view plays no part).
    fn bill_rows(&self, day: BillDay) -> Vec<BillRow> {
        let hidden = self.faults().hidden.clone();
        let trades = self.lock();
        let mut names: Vec<&String> = trades.keys().collect();
        names.sort();
        let mut rows = Vec::new();
        for name in names.into_iter().filter(|n| !hidden.contains(*n)) {
            let Some(t) = trades.get(name) else { continue };
            let Some(p) = &t.payment else { continue };
            if beijing_day(p.paid_at) == Some(day) {
                rows.push(BillRow {
                    trade_no: name.clone(),
                    gateway_trade_no: p.gateway_trade_no.clone(),
                    entry: BillEntry::Payment,
                    amount: p.amount,
                    at_ms: Some(p.paid_at),
                });
            }
            for r in t
                .refund_log
                .iter()
                .filter(|r| beijing_day(r.at) == Some(day))
            {
                rows.push(BillRow {
                    trade_no: name.clone(),
                    gateway_trade_no: p.gateway_trade_no.clone(),
                    entry: BillEntry::Refund {
                        refund_no: r.refund_no.clone(),
                    },
                    amount: r.amount,
                    at_ms: Some(r.at),
                });
            }
        }
        rows
    }
}

/// `GET api/bill?date=YYYY-MM-DD&nonce&sign` → the day's signed bill.
pub(super) async fn bill(
    State(sim): State<Arc<SandboxSim>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let params = match sim.api_request(query.as_bytes(), &["date", "nonce"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if sim.faults().fail_bills {
        return unsigned_error(StatusCode::SERVICE_UNAVAILABLE, "SYSTEM_BUSY", None);
    }
    let date = field(&params, "date").unwrap_or_default();
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let Ok(day) = time::Date::parse(date, &format) else {
        return sim.signed_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "bad date");
    };
    if beijing_day(sim.now_ms()).is_some_and(|today| day > today) {
        return sim.signed_error(
            StatusCode::CONFLICT,
            "BILL_NOT_READY",
            "no bill for a day still to come",
        );
    }
    let rows = sim.bill_rows(day);
    let mut totals = Bill::totals_of(&rows);
    if std::mem::take(&mut sim.faults().tamper_next_bill) {
        totals.paid_minor += 1;
    }
    let body = render(day, &rows, totals);
    let signature = sign(&sim.secret, &[("bill", body.as_str())]);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::HeaderName::from_static(SIGN_HEADER), signature),
        ],
        body,
    )
        .into_response()
}
