//! The simulated Alipay bill: `alipay.data.dataservice.bill.downloadurl.query` answers a
//! `bill_download_url` (valid 30 s) under `/sim/alipay/downloadBillFile.resource`, whose plain
//! GET returns the day's archive ([`super::bill_file`]) built from what the simulator
//! processed: payments by their pay time, refunds by their refund time, in Beijing days.
//! A day without either answers `40004 isp.bill_not_exist`, as does a day still to come.
//!
//! Test controls: [`AlipaySim::refund_in_portal`], [`AlipaySim::add_unknown_trade`],
//! [`AlipaySim::tamper_next_bill`], [`AlipaySim::serve_next_bill`], [`AlipaySim::fail_bill_api`],
//! [`AlipaySim::hide_from_bill`].

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kami_core::{Currency, Money};
use kami_pay::alipay::NO_BILL;
use serde_json::Value;

use super::api::{biz_str, invalid, ApiErr};
use super::bill_file::{bill_zip, Line};
use super::{random_digits, random_token, AlipaySim, Refund, SimError, SimState, Status, Trade};
use crate::common::bill::{bill_day_of, day_range_ms, parse_bill_date};

/// How long a `bill_download_url` works.
const URL_TTL_MS: i64 = 30_000;

fn no_bill() -> ApiErr {
    ApiErr {
        code: "40004".into(),
        msg: "Business Failed".into(),
        sub_code: NO_BILL.into(),
        sub_msg: "账单不存在".into(),
    }
}

impl AlipaySim {
    /// The merchant's account number in bills: its PID and `0156`.
    fn account(&self) -> String {
        format!("{}0156", self.cfg.seller_id)
    }

    /// Answer the bill query (under the state lock): the download URL, or an error.
    pub(super) fn bill_locked(
        &self,
        st: &mut SimState,
        biz: &serde_json::Map<String, Value>,
        base: &str,
    ) -> Result<Vec<(&'static str, Value)>, ApiErr> {
        if st.bill_faults.fail {
            return Err(ApiErr {
                code: "20000".into(),
                msg: "Service Currently Unavailable".into(),
                sub_code: "isp.unknow-error".into(),
                sub_msg: "系统繁忙".into(),
            });
        }
        if biz_str(biz, "bill_type") != Some("trade") {
            return Err(invalid("bill_type"));
        }
        let day = biz_str(biz, "bill_date")
            .and_then(parse_bill_date)
            .ok_or_else(|| invalid("bill_date"))?;
        let now = self.now_ms();
        if bill_day_of(now).is_none_or(|today| day > today) {
            return Err(no_bill());
        }
        let zip = match st.bill_faults.replace_next.take() {
            Some(bytes) => bytes,
            None => {
                let lines = day_lines(st, day);
                if lines.is_empty() {
                    return Err(no_bill());
                }
                let tamper = st.bill_faults.take_tamper();
                bill_zip(&self.account(), day, &lines, now, tamper)
                    .map_err(|_| invalid("bill_date"))?
            }
        };
        st.bill_files.retain(|_, (_, expires)| *expires > now);
        let token = random_token();
        st.bill_files.insert(token.clone(), (zip, now + URL_TTL_MS));
        let stamp: String = biz_str(biz, "bill_date")
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let url = format!(
            "{base}/sim/alipay/downloadBillFile.resource?bizType=trade&fileType=csv.zip&bizDates={stamp}&token={token}"
        );
        Ok(vec![("bill_download_url", Value::String(url))])
    }

    /// A refund made in the merchant portal: no `out_request_no` (the bill's 退款批次号/请求号
    /// is empty), no notification. Returns the trade's refunded total.
    pub fn refund_in_portal(&self, out_trade_no: &str, amount: Money) -> Result<Money, SimError> {
        let now = self.now_ms();
        let mut st = self.lock();
        let t = st
            .trades
            .get_mut(out_trade_no)
            .ok_or(SimError::UnknownTrade)?;
        let paid = match (t.status, t.paid) {
            (Status::Success, Some(p)) => p,
            (Status::Closed, _) => return Err(SimError::Closed),
            _ => return Err(SimError::UnknownTrade),
        };
        if amount.currency() != Currency::Cny
            || amount.minor() <= 0
            || t.refunded_minor() + amount.minor() > paid.minor()
        {
            return Err(SimError::BadAmount);
        }
        t.refunds.push(Refund {
            out_request_no: String::new(),
            amount,
            at_ms: now,
        });
        if t.refunded_minor() == paid.minor() {
            t.status = Status::Closed;
        }
        Money::new(t.refunded_minor(), Currency::Cny).map_err(|_| SimError::UnknownTrade)
    }

    /// A trade kami never created, paid now (it appears in the bill and answers queries).
    /// Returns Alipay's `trade_no`.
    pub fn add_unknown_trade(&self, out_trade_no: &str, amount: Money) -> String {
        let now = self.now_ms();
        let date: String = super::bj(now)
            .chars()
            .filter(char::is_ascii_digit)
            .take(8)
            .collect();
        let trade_no = format!("{date}22001{}", random_digits(15));
        let token = random_token();
        let t = Trade {
            out_trade_no: out_trade_no.to_owned(),
            trade_no: trade_no.clone(),
            method: "alipay.trade.precreate".into(),
            subject: "unknown".into(),
            total: amount,
            notify_url: None,
            return_url: None,
            expire_ms: None,
            sign_type: kami_pay::alipay::AlipaySignType::Rsa2,
            token: token.clone(),
            visible: true,
            status: Status::Success,
            created_ms: now,
            paid_ms: Some(now),
            paid: Some(amount),
            refunds: Vec::new(),
            notifications: Vec::new(),
        };
        let mut st = self.lock();
        st.tokens.insert(token, out_trade_no.to_owned());
        st.trades.insert(out_trade_no.to_owned(), t);
        trade_no
    }

    /// The next bill served states a payments' total one fen off its rows.
    pub fn tamper_next_bill(&self) {
        self.lock().bill_faults.tamper_next = true;
    }

    /// The next bill download serves `bytes` instead of the day's archive.
    pub fn serve_next_bill(&self, bytes: Vec<u8>) {
        self.lock().bill_faults.replace_next = Some(bytes);
    }

    /// While `on`, the bill query answers `20000 isp.unknow-error`.
    pub fn fail_bill_api(&self, on: bool) {
        self.lock().bill_faults.fail = on;
    }

    /// While `hidden`, every bill leaves the trade out (its payment and refunds); a day left
    /// with nothing answers `isp.bill_not_exist`.
    pub fn hide_from_bill(&self, out_trade_no: &str, hidden: bool) {
        self.lock().bill_faults.hide(out_trade_no, hidden);
    }
}

/// The day's payments and refunds, by completion time (hidden trades left out).
fn day_lines(st: &SimState, day: kami_pay::BillDay) -> Vec<Line> {
    let (start, end) = day_range_ms(day);
    let within = |ms: i64| (start..end).contains(&ms);
    let mut lines = Vec::new();
    let shown = st
        .trades
        .values()
        .filter(|t| !st.bill_faults.hidden.contains(&t.out_trade_no));
    for t in shown {
        let line = |refund_no: Option<String>, done_ms: i64, fen: i64| Line {
            trade_no: t.trade_no.clone(),
            out_trade_no: t.out_trade_no.clone(),
            refund_no,
            subject: t.subject.clone(),
            created_ms: t.created_ms,
            done_ms,
            fen,
        };
        if let (Some(at), Some(paid)) = (t.paid_ms, t.paid) {
            if within(at) {
                lines.push(line(None, at, paid.minor()));
            }
        }
        for r in t.refunds.iter().filter(|r| within(r.at_ms)) {
            lines.push(line(
                Some(r.out_request_no.clone()),
                r.at_ms,
                r.amount.minor(),
            ));
        }
    }
    lines.sort_by(|a, b| {
        (a.done_ms, &a.out_trade_no, a.refund_no.is_some()).cmp(&(
            b.done_ms,
            &b.out_trade_no,
            b.refund_no.is_some(),
        ))
    });
    lines
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct DownloadQuery {
    token: String,
}

/// `GET /sim/alipay/downloadBillFile.resource?…&token=` — the archive, while the URL lives.
pub(super) async fn download(
    State(sim): State<Arc<AlipaySim>>,
    Query(q): Query<DownloadQuery>,
) -> Response {
    let now = sim.now_ms();
    let file = sim
        .lock()
        .bill_files
        .get(&q.token)
        .filter(|(_, expires)| *expires > now)
        .map(|(zip, _)| zip.clone());
    match file {
        Some(zip) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/zip"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"bill.csv.zip\"",
                ),
            ],
            zip,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "bill file not found or expired").into_response(),
    }
}
