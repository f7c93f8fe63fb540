//! A channel's bill (对账单) for one day: every payment and refund the gateway recorded for
//! this merchant, as the gateway's own file says, with the file's own totals already checked
//! against its rows (a file whose totals do not add up is refused as a whole, never used in
//! part). Reconciliation (in the server) matches these rows against kami's payments.
//!
//! The bill day is a calendar day in Beijing time (UTC+8), as Alipay and WeChat Pay cut them.

use kami_core::Money;

/// A bill day: a calendar date in Beijing time.
pub type BillDay = time::Date;

/// Beijing time, the zone every Chinese gateway cuts its bill days in.
pub const BILL_OFFSET: time::UtcOffset = time::macros::offset!(+8);

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    /// Our trade number (商户订单号, out_trade_no): one per payment attempt.
    pub trade_no: String,
    /// The gateway's trade number (支付宝交易号 / 微信订单号).
    pub gateway_trade_no: String,
    pub entry: BillEntry,
    /// A payment's amount paid, or a refund's amount refunded (always positive).
    pub amount: Money,
    /// When the gateway recorded it (pay or refund time), unix ms, when the file says.
    pub at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillEntry {
    /// The buyer paid.
    Payment,
    /// Money went back; `refund_no` is our refund number (out_request_no / 商户退款单号)
    /// when the refund was asked through the API, empty when made in the merchant portal.
    Refund { refund_no: String },
}

/// The file's own summary, after checking that its rows add up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BillTotals {
    pub payments: u64,
    /// Sum of payment amounts, minor units.
    pub paid_minor: i64,
    pub refunds: u64,
    /// Sum of refund amounts, minor units.
    pub refunded_minor: i64,
}

/// A day's bill, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub day: BillDay,
    pub rows: Vec<BillRow>,
    pub totals: BillTotals,
}

impl Bill {
    /// An empty bill (the gateway says nothing happened that day).
    pub fn empty(day: BillDay) -> Bill {
        Bill {
            day,
            rows: Vec::new(),
            totals: BillTotals::default(),
        }
    }

    /// Recompute the totals from the rows: a parser calls this and refuses the file
    /// (`PayError::Malformed`) unless they equal the file's own summary.
    pub fn totals_of(rows: &[BillRow]) -> BillTotals {
        let mut t = BillTotals::default();
        for r in rows {
            match r.entry {
                BillEntry::Payment => {
                    t.payments += 1;
                    t.paid_minor += r.amount.minor();
                }
                BillEntry::Refund { .. } => {
                    t.refunds += 1;
                    t.refunded_minor += r.amount.minor();
                }
            }
        }
        t
    }
}
