//! The WeChat Pay trade bill file (protocols.md B.4 "Trade bill CSV", channel-ops.md 2.2),
//! layout `ALL`, read strictly. UTF-8 (a BOM at the start is allowed, as real downloads carry
//! one), lines ending `\n` or `\r\n`:
//!
//! ```text
//! 交易时间,公众账号ID,商户号,…,商户订单号,…,交易状态,…,应结订单金额,…,商户退款单号,退款金额,…,手续费,费率,订单金额,申请退款金额,费率备注
//! `2019-02-19 05:01:46,`wxab8acd895ab1638a,…        one row per payment (SUCCESS) or refund (REFUND)
//! 总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
//! `3,`1299.02,`0.00,`0.00,`7.79000,`1299.02,`0.00
//! ```
//!
//! Every data cell starts with a backtick (a cell without one is refused). Columns are found
//! by header name. Amounts in yuan with exactly two decimals, fees with five. A payment row
//! (交易状态 `SUCCESS`) is worth its 订单金额; a refund row (`REFUND`) its 退款金额, with
//! 商户退款单号 as the refund number. The rows must add up to the summary: 总交易单数 (all
//! rows), 应结订单总金额, 退款总金额, 手续费总金额 and, when present, 订单总金额 and
//! 申请退款总金额. 商户号 must be ours ([`PayError::WrongMerchant`]); anything else that does not
//! read refuses the whole file ([`PayError::Malformed`]).

use crate::common::bill_text::{
    beijing_ms, check_total, exact_decimal, malformed, row, signed_fen, Columns,
};
use crate::common::text::clip;
use crate::{Bill, BillDay, BillEntry, PayError};

/// First column of the summary's header line.
pub const SUMMARY_FIRST: &str = "总交易单数";

/// One CSV line split into cells (the csv crate, so quoted cells work).
fn cells(line: &str, what: &str) -> Result<Vec<String>, PayError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let mut out = None;
    for rec in reader.records() {
        let rec = rec.map_err(|e| malformed(format!("{what}: {}", clip(&e.to_string(), 120))))?;
        if out.is_some() {
            return Err(malformed(format!("{what} holds more than one line")));
        }
        out = Some(rec.iter().map(str::to_owned).collect());
    }
    out.ok_or_else(|| malformed(format!("{what} is empty")))
}

/// A data line's cells without their leading backtick.
fn data_cells(line: &str, what: &str) -> Result<Vec<String>, PayError> {
    cells(line, what)?
        .into_iter()
        .map(|c| {
            c.strip_prefix('`').map(str::to_owned).ok_or_else(|| {
                malformed(format!(
                    "{what}: cell {} has no leading backtick",
                    clip(&c, 24)
                ))
            })
        })
        .collect()
}

/// Parse and check the `ALL` trade bill of `day` for merchant `mchid`.
pub fn parse_trade_bill(day: BillDay, file: &[u8], mchid: &str) -> Result<Bill, PayError> {
    let text = std::str::from_utf8(file).map_err(|_| malformed("bill file is not UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if let Some(n) = lines.iter().position(|l| l.is_empty()) {
        return Err(malformed(format!("bill line {} is empty", n + 1)));
    }
    let header = lines
        .first()
        .ok_or_else(|| malformed("bill file is empty"))?;
    let cols = Columns::new("bill", cells(header, "bill header")?)?;
    let summary_at = lines
        .iter()
        .position(|l| l.starts_with(SUMMARY_FIRST))
        .ok_or_else(|| malformed(format!("bill has no summary line {SUMMARY_FIRST}")))?;
    if summary_at + 2 != lines.len() {
        return Err(malformed("bill summary must be its last two lines"));
    }
    let c_time = cols.index("交易时间")?;
    let c_mch = cols.index("商户号")?;
    let c_tx = cols.index("微信订单号")?;
    let c_trade = cols.index("商户订单号")?;
    let c_state = cols.index("交易状态")?;
    let c_currency = cols.index("货币种类")?;
    let c_settle = cols.index("应结订单金额")?;
    let c_refund_no = cols.index("商户退款单号")?;
    let c_refund = cols.index("退款金额")?;
    let c_fee = cols.index("手续费")?;
    let c_total = cols.index("订单金额")?;
    let c_apply = cols.index("申请退款金额")?;

    let mut rows = Vec::new();
    let (mut settle, mut refund, mut fee, mut total, mut apply) = (0i64, 0i64, 0i64, 0i64, 0i64);
    for (i, line) in lines.iter().enumerate().take(summary_at).skip(1) {
        let at = |what: &str| format!("bill line {}: {what}", i + 1);
        let rec = data_cells(line, &at("row"))?;
        if rec.len() != cols.len() {
            return Err(malformed(at(&format!(
                "{} cells under {} columns",
                rec.len(),
                cols.len()
            ))));
        }
        let get = |c: usize| rec.get(c).map_or("", String::as_str);
        if get(c_mch) != mchid {
            return Err(PayError::WrongMerchant);
        }
        if get(c_currency) != "CNY" {
            return Err(malformed(at(&format!(
                "货币种类 {} is not CNY",
                clip(get(c_currency), 8)
            ))));
        }
        let fen = |c: usize, name: &str| signed_fen(get(c), &at(name));
        let row_settle = fen(c_settle, "应结订单金额")?;
        let row_refund = fen(c_refund, "退款金额")?;
        let row_total = fen(c_total, "订单金额")?;
        let row_apply = fen(c_apply, "申请退款金额")?;
        let row_fee = exact_decimal(get(c_fee), 5)
            .ok_or_else(|| malformed(at("手续费 is not an amount with five decimals")))?;
        settle += row_settle;
        refund += row_refund;
        total += row_total;
        apply += row_apply;
        fee += row_fee;
        let at_ms = Some(beijing_ms(get(c_time), &at("交易时间"))?);
        let (entry, fen) = match get(c_state) {
            "SUCCESS" => (BillEntry::Payment, row_total),
            "REFUND" => (
                BillEntry::Refund {
                    refund_no: get(c_refund_no).to_owned(),
                },
                row_refund,
            ),
            other => {
                return Err(malformed(at(&format!(
                    "交易状态 {} is neither SUCCESS nor REFUND",
                    clip(other, 16)
                ))))
            }
        };
        rows.push(
            row(get(c_trade), get(c_tx), entry, fen, at_ms)
                .map_err(|e| malformed(at(&e.to_string())))?,
        );
    }

    let names = Columns::new(
        "bill summary",
        cells(lines[summary_at], "bill summary header")?,
    )?;
    let values = data_cells(lines[summary_at + 1], "bill summary")?;
    if values.len() != names.len() {
        return Err(malformed("bill summary values do not match its header"));
    }
    let value = |name: &str| -> Result<&str, PayError> {
        Ok(values.get(names.index(name)?).map_or("", String::as_str))
    };
    let sum = |name: &str| -> Result<i64, PayError> { signed_fen(value(name)?, name) };
    let n_rows = value(SUMMARY_FIRST)?;
    let n_rows = n_rows
        .parse::<i64>()
        .ok()
        .filter(|_| n_rows.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            malformed(format!(
                "{SUMMARY_FIRST} {} is not a count",
                clip(n_rows, 16)
            ))
        })?;
    check_total(
        SUMMARY_FIRST,
        n_rows,
        i64::try_from(rows.len()).unwrap_or(i64::MAX),
        "",
    )?;
    check_total("应结订单总金额", sum("应结订单总金额")?, settle, "fen")?;
    check_total("退款总金额", sum("退款总金额")?, refund, "fen")?;
    let fee_total = value("手续费总金额")?;
    let fee_total = exact_decimal(fee_total, 5).ok_or_else(|| {
        malformed(format!(
            "手续费总金额 {} is not an amount with five decimals",
            clip(fee_total, 24)
        ))
    })?;
    check_total("手续费总金额 (10^-5 yuan)", fee_total, fee, "")?;
    if names.index("订单总金额").is_ok() {
        check_total("订单总金额", sum("订单总金额")?, total, "fen")?;
    }
    if names.index("申请退款总金额").is_ok() {
        check_total("申请退款总金额", sum("申请退款总金额")?, apply, "fen")?;
    }
    Ok(Bill {
        day,
        totals: Bill::totals_of(&rows),
        rows,
    })
}
