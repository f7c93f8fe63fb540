//! The simulated WeChat Pay trade bill (protocols.md B.4, channel-ops.md 2.2), layout `ALL`:
//! `GET /v3/bill/tradebill?bill_date=yyyy-MM-dd[&bill_type=ALL]` (signed answer
//! `{hash_type: SHA1, hash_value, download_url}`; a day with nothing, or still to come,
//! answers `400 NO_STATEMENT_EXIST`), then, within 30 s, `GET /v3/billdownload/file?token=` (authenticated
//! like every call; the answer is the file itself, unsigned). The file is UTF-8 with a BOM,
//! CRLF line ends, the 27-column header, one backtick-prefixed row per payment (by its
//! success time) and per successful refund (by its success time), then the summary header
//! and its values; fees are 0.60% rounded to the fen, printed with five decimals.
//! `bill_type` `SUCCESS`/`REFUND` and `tar_type=GZIP` are not simulated (`400 PARAM_ERROR`).
//!
//! Test controls: [`WechatSim::refund_in_portal`], [`WechatSim::add_unknown_trade`],
//! [`WechatSim::tamper_next_bill`], [`WechatSim::corrupt_next_bill_hash`],
//! [`WechatSim::serve_next_bill`], [`WechatSim::fail_bill_api`],
//! [`WechatSim::hide_from_bill`].

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kami_core::{Currency, Money};
use kami_pay::alipay::wire::beijing_time;
use kami_pay::bill::BillDay;
use kami_pay::wechatpay::{sha1_hex, NO_BILL};
use serde_json::json;

use super::api::{flatten, ApiCall, ApiResult};
use super::{random_alnum, random_digits, Inner, Kind, Paid, PayRefusal, Refund, Trade, WechatSim};
use crate::common::bill::{bill_day_of, day_range_ms, parse_bill_date, yuan};

/// The `ALL` layout's header, in WeChat's order.
pub const ALL_HEADER: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// How long a `download_url` works.
const URL_TTL_MS: i64 = 30_000;

const SUMMARY_HEADER: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// A fee in 10^-5 yuan with five decimals: `0.06000`, `-0.02000`.
fn yuan5(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let a = units.unsigned_abs();
    format!("{sign}{}.{:05}", a / 100_000, a % 100_000)
}

/// 0.60% of `fen`, rounded half up to the fen, in 10^-5 yuan.
fn fee_units(fen: i64) -> i64 {
    (fen * 6 + 500) / 1000 * 1000
}

fn bj_secs(secs: i64) -> String {
    beijing_time(secs.saturating_mul(1000)).unwrap_or_default()
}

/// One row of the bill and what it adds to the summary.
struct Row {
    at: i64,
    key: String,
    cells: Vec<String>,
    settle: i64,
    refund: i64,
    fee: i64,
    total: i64,
    apply: i64,
}

impl WechatSim {
    /// The columns a payment's row and its refunds' rows share, 交易时间 to 货币种类 (`at`:
    /// the row's time, `state`: its 交易状态).
    fn row_start(&self, at: i64, t: &Trade, p: &Paid, state: &str) -> Vec<String> {
        vec![
            bj_secs(at),
            self.cfg.appid.clone(),
            self.cfg.mchid.clone(),
            "0".into(),
            String::new(),
            p.transaction_id.clone(),
            t.out_trade_no.clone(),
            p.openid.clone(),
            t.kind.trade_type().into(),
            state.into(),
            "OTHERS".into(),
            "CNY".into(),
        ]
    }

    fn payment_row(&self, t: &Trade, p: &Paid) -> Row {
        let fee = fee_units(p.total);
        let mut cells = self.row_start(p.success_time, t, p, "SUCCESS");
        cells.extend([
            yuan(p.total),
            "0.00".into(),
            "0".into(),
            "0".into(),
            "0.00".into(),
            "0.00".into(),
            String::new(),
            String::new(),
            t.description.clone(),
            String::new(),
            yuan5(fee),
            "0.60%".into(),
            yuan(p.total),
            "0.00".into(),
            String::new(),
        ]);
        Row {
            at: p.success_time,
            key: t.out_trade_no.clone(),
            cells,
            settle: p.total,
            refund: 0,
            fee,
            total: p.total,
            apply: 0,
        }
    }

    fn refund_row(&self, t: &Trade, p: &Paid, r: &Refund, at: i64) -> Row {
        let fee = -fee_units(r.amount);
        let mut cells = self.row_start(at, t, p, "REFUND");
        cells.extend([
            "0.00".into(),
            "0.00".into(),
            r.refund_id.clone(),
            r.out_refund_no.clone(),
            yuan(r.amount),
            "0.00".into(),
            "ORIGINAL".into(),
            "SUCCESS".into(),
            t.description.clone(),
            String::new(),
            yuan5(fee),
            "0.60%".into(),
            "0.00".into(),
            yuan(r.amount),
            String::new(),
        ]);
        Row {
            at,
            key: format!("{}~{}", t.out_trade_no, r.refund_id),
            cells,
            settle: 0,
            refund: r.amount,
            fee,
            total: 0,
            apply: r.amount,
        }
    }

    /// The day's rows, by time; the trades in `hidden` left out.
    fn day_rows(&self, inner: &Inner, day: BillDay, hidden: &BTreeSet<String>) -> Vec<Row> {
        let (start, end) = day_range_ms(day);
        let within = |secs: i64| (start..end).contains(&secs.saturating_mul(1000));
        let mut rows = Vec::new();
        for t in inner.trades.values() {
            if hidden.contains(&t.out_trade_no) {
                continue;
            }
            if let Some(p) = t.paid.as_ref().filter(|p| within(p.success_time)) {
                rows.push(self.payment_row(t, p));
            }
        }
        for r in inner.refunds.values().chain(&inner.portal_refunds) {
            let (Some(at), "SUCCESS") = (r.success_time, r.status) else {
                continue;
            };
            if hidden.contains(&r.out_trade_no) {
                continue;
            }
            let trade = inner.trades.get(&r.out_trade_no);
            if let (true, Some(t), Some(p)) =
                (within(at), trade, trade.and_then(|t| t.paid.as_ref()))
            {
                rows.push(self.refund_row(t, p, r, at));
            }
        }
        rows.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
        rows
    }

    /// The file's bytes; `tamper` states a 应结订单总金额 one fen off.
    fn bill_bytes(rows: &[Row], tamper: bool) -> std::io::Result<Vec<u8>> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer(Vec::new());
        w.write_record(ALL_HEADER).map_err(std::io::Error::other)?;
        let tick = |c: &String| format!("`{c}");
        for r in rows {
            w.write_record(r.cells.iter().map(tick))
                .map_err(std::io::Error::other)?;
        }
        let sum = |f: fn(&Row) -> i64| rows.iter().map(f).sum::<i64>();
        let settle = sum(|r| r.settle) + i64::from(tamper);
        w.write_record(SUMMARY_HEADER)
            .map_err(std::io::Error::other)?;
        let values = [
            rows.len().to_string(),
            yuan(settle),
            yuan(sum(|r| r.refund)),
            "0.00".into(),
            yuan5(sum(|r| r.fee)),
            yuan(sum(|r| r.total)),
            yuan(sum(|r| r.apply)),
        ];
        w.write_record(values.iter().map(tick))
            .map_err(std::io::Error::other)?;
        let body = w
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut file = "\u{feff}".as_bytes().to_vec();
        file.extend_from_slice(&body);
        Ok(file)
    }

    async fn tradebill(&self, call: ApiCall) -> ApiResult {
        self.authenticate(&call.method, &call.uri, &call.headers, b"")?;
        let param = |m: &str| self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
        if self.controls().bill.fail {
            return Err(self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误 (simulated)",
            ));
        }
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(call.uri.query().unwrap_or(""))
                .map_err(|_| param("bad query string"))?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let day = get("bill_date")
            .and_then(parse_bill_date)
            .ok_or_else(|| param("bill_date must be yyyy-MM-dd"))?;
        if !matches!(get("bill_type"), None | Some("ALL")) {
            return Err(param("only bill_type ALL is simulated"));
        }
        if get("tar_type").is_some() {
            return Err(param("tar_type is not simulated"));
        }
        let no_bill = || self.error(StatusCode::BAD_REQUEST, NO_BILL, "账单不存在");
        let now_ms = self.clock.now_ms();
        if bill_day_of(now_ms).is_none_or(|today| day > today) {
            return Err(no_bill());
        }
        let replaced = self.controls().bill.replace_next.take();
        let file = match replaced {
            Some(bytes) => bytes,
            None => {
                let hidden = self.controls().bill.hidden.clone();
                let rows = self.day_rows(&self.lock(), day, &hidden);
                if rows.is_empty() {
                    return Err(no_bill());
                }
                let tamper = self.controls().bill.take_tamper();
                Self::bill_bytes(&rows, tamper).map_err(|e| {
                    self.error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "SYSTEM_ERROR",
                        &e.to_string(),
                    )
                })?
            }
        };
        let wrong_hash = self.controls().bill.take_wrong_hash();
        let hash = if wrong_hash {
            sha1_hex(b"another file")
        } else {
            sha1_hex(&file)
        };
        let token = random_alnum(40);
        {
            let mut inner = self.lock();
            inner.bill_files.retain(|_, (_, expires)| *expires > now_ms);
            inner
                .bill_files
                .insert(token.clone(), (file, now_ms + URL_TTL_MS));
        }
        let prefix = call
            .uri
            .path()
            .strip_suffix("/v3/bill/tradebill")
            .unwrap_or("");
        let url = format!(
            "{}{prefix}/v3/billdownload/file?token={token}",
            self.public_base(&call.headers)
        );
        let body = json!({ "hash_type": "SHA1", "hash_value": hash, "download_url": url });
        Ok(self.answer(StatusCode::OK, Some(&body)))
    }

    async fn bill_download(&self, call: ApiCall) -> ApiResult {
        self.authenticate(&call.method, &call.uri, &call.headers, b"")?;
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(call.uri.query().unwrap_or("")).unwrap_or_default();
        let token = params
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let now_ms = self.clock.now_ms();
        let file = self
            .lock()
            .bill_files
            .get(token)
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(f, _)| f.clone());
        match file {
            // The file itself: WeChat does not sign it (the announced SHA1 vouches for it).
            Some(f) => Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                f,
            )
                .into_response()),
            None => Err(self.error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "账单文件不存在",
            )),
        }
    }

    /// A refund made in the merchant portal: no `out_refund_no` (the bill's 商户退款单号 is
    /// empty), successful at once, no notification. Returns WeChat's `refund_id`.
    pub fn refund_in_portal(
        &self,
        out_trade_no: &str,
        amount: Money,
    ) -> Result<String, PayRefusal> {
        let now = self.clock.now_secs();
        let mut inner = self.lock();
        let t = inner
            .trades
            .get_mut(out_trade_no)
            .ok_or(PayRefusal::UnknownTrade)?;
        let paid = t
            .paid
            .as_ref()
            .map(|p| p.total)
            .ok_or(PayRefusal::UnknownTrade)?;
        let fen = amount.minor();
        if amount.currency() != Currency::Cny || fen < 1 || t.refund_reserved + fen > paid {
            return Err(PayRefusal::BadAmount);
        }
        t.refund_reserved += fen;
        t.state = "REFUND";
        let refund_id = format!("50{}", random_digits(27));
        inner.portal_refunds.push(Refund {
            refund_id: refund_id.clone(),
            out_refund_no: String::new(),
            out_trade_no: out_trade_no.to_owned(),
            amount: fen,
            status: "SUCCESS",
            countdown: 0,
            create_time: now,
            success_time: Some(now),
        });
        Ok(refund_id)
    }

    /// A Native trade kami never created, paid now (in the bill, and answering queries).
    /// Returns its `transaction_id`.
    pub fn add_unknown_trade(&self, out_trade_no: &str, amount: Money) -> String {
        let paid = Paid {
            transaction_id: format!("4200{}", random_digits(24)),
            total: amount.minor(),
            success_time: self.clock.now_secs(),
            openid: format!("o{}", random_alnum(27)),
        };
        let id = paid.transaction_id.clone();
        let t = Trade {
            out_trade_no: out_trade_no.to_owned(),
            kind: Kind::Native,
            description: "unknown".into(),
            notify_url: String::new(),
            total: amount.minor(),
            time_expire: None,
            url: String::new(),
            state: "SUCCESS",
            paid: Some(paid),
            refund_reserved: 0,
            stats: Default::default(),
            payer_openid: None,
        };
        self.lock().trades.insert(out_trade_no.to_owned(), t);
        id
    }

    /// The next bill served states a 应结订单总金额 one fen off its rows.
    pub fn tamper_next_bill(&self) {
        self.controls().bill.tamper_next = true;
    }

    /// The next bill answer announces a `hash_value` the file does not have.
    pub fn corrupt_next_bill_hash(&self) {
        self.controls().bill.wrong_hash_next = true;
    }

    /// The next bill download serves `bytes` (its SHA1 announced) instead of the day's file.
    pub fn serve_next_bill(&self, bytes: Vec<u8>) {
        self.controls().bill.replace_next = Some(bytes);
    }

    /// While `on`, the bill API answers `500 SYSTEM_ERROR`.
    pub fn fail_bill_api(&self, on: bool) {
        self.controls().bill.fail = on;
    }

    /// While `hidden`, every bill leaves the trade out (its payment and refunds); a day left
    /// with nothing answers `NO_STATEMENT_EXIST`.
    pub fn hide_from_bill(&self, out_trade_no: &str, hidden: bool) {
        self.controls().bill.hide(out_trade_no, hidden);
    }

    /// While `on`, queries (`GET …/out-trade-no/{no}`, `…/id/{id}`) answer `500 SYSTEM_ERROR`.
    pub fn fail_queries(&self, on: bool) {
        self.controls().fail_queries = on;
    }
}

pub(super) async fn api_tradebill(State(sim): State<Arc<WechatSim>>, call: ApiCall) -> Response {
    flatten(sim.tradebill(call).await)
}

pub(super) async fn api_bill_download(
    State(sim): State<Arc<WechatSim>>,
    call: ApiCall,
) -> Response {
    flatten(sim.bill_download(call).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bytes_are_wechats() {
        let cells: Vec<String> = [
            "2019-07-25 08:35:41",
            "wxd678efh567hg6787",
            "1230000109",
            "0",
            "",
            "4200001",
            "K1",
            "oUpF8",
            "NATIVE",
            "SUCCESS",
            "OTHERS",
            "CNY",
            "6.00",
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            "月卡, \"gift\"",
            "",
            "0.04000",
            "0.60%",
            "6.00",
            "0.00",
            "",
        ]
        .map(String::from)
        .to_vec();
        let row = Row {
            at: 0,
            key: String::new(),
            cells,
            settle: 600,
            refund: 0,
            fee: 4000,
            total: 600,
            apply: 0,
        };
        let bytes = WechatSim::bill_bytes(&[row], false).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_default();
        let want = [
            format!("\u{feff}{}", ALL_HEADER.join(",")),
            "`2019-07-25 08:35:41,`wxd678efh567hg6787,`1230000109,`0,`,`4200001,`K1,`oUpF8,`NATIVE,`SUCCESS,`OTHERS,`CNY,`6.00,`0.00,`0,`0,`0.00,`0.00,`,`,\"`月卡, \"\"gift\"\"\",`,`0.04000,`0.60%,`6.00,`0.00,`".into(),
            SUMMARY_HEADER.join(","),
            "`1,`6.00,`0.00,`0.00,`0.04000,`6.00,`0.00".into(),
            String::new(),
        ];
        assert_eq!(text, want.join("\r\n"));
    }

    #[test]
    fn amounts_print_like_wechat() {
        assert_eq!(yuan(1230), "12.30");
        assert_eq!(yuan(-4), "-0.04");
        assert_eq!(yuan5(6000), "0.06000");
        assert_eq!(yuan5(-2000), "-0.02000");
        // 0.6% of 12.30 = 0.0738 → 0.07; of 0.01 → 0.00; of 0.84 = 0.00504 → 0.01.
        assert_eq!(fee_units(1230), 7000);
        assert_eq!(fee_units(1), 0);
        assert_eq!(fee_units(84), 1000);
    }
}
