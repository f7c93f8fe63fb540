//! The Alipay trade bill file (protocols.md A.5 `alipay.data.dataservice.bill.downloadurl.query`,
//! channel-ops.md 2.2), read strictly. The download is a ZIP (entry names GBK, no UTF-8 flag)
//! holding two GBK CSV files, told apart by their first line:
//!
//! * the detail file, `#支付宝业务明细查询`: `#账号：[<pid>0156]`, `#起始日期：[yyyy年MM月dd日 …]`,
//!   a table between `#---…业务明细列表---` and `#---…业务明细列表结束---` (a header, then one
//!   row per payment (业务类型 `交易`) or refund (`退款`, negative amounts, 退款批次号/请求号 = our
//!   out_request_no); text cells carry a trailing TAB), then the footer
//!   `#交易合计：N笔，商家实收共X元，…` and `#退款合计：M笔，商家实收退款共-Y元，…`;
//! * the summary file, `#支付宝业务汇总查询`: a table with one row per store and a last row
//!   whose first cell is `合计`.
//!
//! Columns are found by header name. Amounts must have exactly two decimals (as Alipay prints
//! them). The rows must add up to the detail footer (counts and 商家实收 of payments and
//! refunds) and to the summary's counts (交易订单总笔数, 退款订单总笔数); the start date must be
//! the day asked for and, when the channel knows its PID, the account must be it. Anything
//! else — a missing file, line, column, a cell that does not parse, a file that is not GBK,
//! an archive over [`ZipLimits`] — refuses the whole file with [`PayError::Malformed`]
//! (a foreign account: [`PayError::WrongMerchant`]).

use std::io::{Cursor, Read};

use crate::common::bill_text::{beijing_ms, check_total, malformed, row, signed_fen, Columns};
use crate::common::text::clip;
use crate::{Bill, BillDay, BillEntry, BillRow, PayError};

/// First line of the detail file.
pub const DETAIL_TITLE: &str = "#支付宝业务明细查询";
/// First line of the summary file.
pub const SUMMARY_TITLE: &str = "#支付宝业务汇总查询";
/// The detail table starts after the line holding this (and not [`DETAIL_END`]).
pub const DETAIL_BEGIN: &str = "业务明细列表";
/// … and ends at the line holding this.
pub const DETAIL_END: &str = "业务明细列表结束";
/// Footer line of the payments' totals.
pub const PAYMENTS_FOOTER: &str = "#交易合计：";
/// Footer line of the refunds' totals.
pub const REFUNDS_FOOTER: &str = "#退款合计：";

/// Bounds on what a bill archive may unpack to (zip bombs are refused, not inflated).
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    pub max_entries: usize,
    /// Uncompressed bytes of one entry.
    pub max_entry_bytes: u64,
    /// Uncompressed bytes of all entries together.
    pub max_total_bytes: u64,
}

/// A day of a busy shop is a few MiB of CSV; a real archive holds two files.
pub const ZIP_LIMITS: ZipLimits = ZipLimits {
    max_entries: 8,
    max_entry_bytes: 64 * 1024 * 1024,
    max_total_bytes: 128 * 1024 * 1024,
};

/// One archive entry, decoded.
struct Entry {
    name: String,
    text: String,
}

/// Parse and check the bill archive of `day`; `pid` is the merchant's `2088…` id when known.
pub fn parse_trade_bill_zip(
    day: BillDay,
    archive: &[u8],
    pid: Option<&str>,
    limits: &ZipLimits,
) -> Result<Bill, PayError> {
    let entries = unzip(archive, limits)?;
    let mut detail = None;
    let mut summary = None;
    for e in &entries {
        let slot = match first_line(&e.text) {
            DETAIL_TITLE => &mut detail,
            SUMMARY_TITLE => &mut summary,
            _ => {
                return Err(malformed(format!(
                    "bill archive entry {} is neither the detail nor the summary file",
                    clip(&e.name, 64)
                )))
            }
        };
        if slot.replace(e).is_some() {
            return Err(malformed("bill archive holds two files of one kind"));
        }
    }
    let detail = detail.ok_or_else(|| malformed("bill archive has no detail file"))?;
    let summary = summary.ok_or_else(|| malformed("bill archive has no summary file"))?;
    let rows = parse_detail(day, &detail.text, pid)?;
    check_summary(day, &summary.text, &rows)?;
    Ok(Bill {
        day,
        totals: Bill::totals_of(&rows),
        rows,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end()
}

/// Every file entry, inflated within `limits` and decoded from GBK.
fn unzip(bytes: &[u8], limits: &ZipLimits) -> Result<Vec<Entry>, PayError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        malformed(format!(
            "bill is not a zip archive: {}",
            clip(&e.to_string(), 80)
        ))
    })?;
    if archive.len() > limits.max_entries {
        return Err(malformed(format!(
            "bill archive has {} entries, more than {}",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut total: u64 = 0;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| {
            malformed(format!(
                "bill archive entry unreadable: {}",
                clip(&e.to_string(), 80)
            ))
        })?;
        let name = encoding_rs::GBK.decode(file.name_raw()).0.into_owned();
        if file.is_dir() {
            continue;
        }
        let too_big = || {
            malformed(format!(
                "bill archive entry {} inflates beyond {} bytes",
                clip(&name, 64),
                limits.max_entry_bytes
            ))
        };
        if file.size() > limits.max_entry_bytes {
            return Err(too_big());
        }
        // The declared size is the archive's word; the bytes read are the truth.
        let mut data = Vec::new();
        (&mut file)
            .take(limits.max_entry_bytes + 1)
            .read_to_end(&mut data)
            .map_err(|e| {
                malformed(format!(
                    "bill archive entry {} does not inflate: {}",
                    clip(&name, 64),
                    clip(&e.to_string(), 80)
                ))
            })?;
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if len > limits.max_entry_bytes {
            return Err(too_big());
        }
        total = total.saturating_add(len);
        if total > limits.max_total_bytes {
            return Err(malformed(format!(
                "bill archive inflates beyond {} bytes",
                limits.max_total_bytes
            )));
        }
        let text = encoding_rs::GBK
            .decode_without_bom_handling_and_without_replacement(&data)
            .ok_or_else(|| malformed(format!("bill file {} is not GBK text", clip(&name, 64))))?
            .into_owned();
        out.push(Entry { name, text });
    }
    Ok(out)
}

/// A cell without the TAB (and padding) Alipay adds to stop spreadsheets reformatting it.
fn cell(s: &str) -> &str {
    s.trim_matches(|c| c == '\t' || c == ' ')
}

/// The bracketed value after `label` on the line starting with it: `#账号：[2088…]`.
fn bracketed<'a>(lines: &[&'a str], label: &str) -> Option<&'a str> {
    let line: &'a str = lines.iter().copied().find(|l| l.starts_with(label))?;
    let rest = line.get(label.len()..)?.strip_prefix('[')?;
    rest.split_once(']').map(|(v, _)| v)
}

/// `2019年09月16日 00:00:00` → the date.
fn chinese_date(s: &str) -> Option<BillDay> {
    let (y, rest) = s.split_once('年')?;
    let (m, rest) = rest.split_once('月')?;
    let (d, _) = rest.split_once('日')?;
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// The file must be for `day` (its `#起始日期：[…]`).
fn check_day(lines: &[&str], day: BillDay, what: &str) -> Result<(), PayError> {
    let start = bracketed(lines, "#起始日期：")
        .ok_or_else(|| malformed(format!("{what} has no line #起始日期")))?;
    match chinese_date(start) {
        Some(d) if d == day => Ok(()),
        Some(d) => Err(malformed(format!("{what} is for {d}, not {day}"))),
        None => Err(malformed(format!(
            "{what}: start date {} does not parse",
            clip(start, 32)
        ))),
    }
}

/// A table's rows: each with its 1-based line number (for errors) and its cells.
type Records = Vec<(usize, Vec<String>)>;

/// The CSV table in `lines`: header names and rows (1-based line numbers for errors).
fn table(lines: &[(usize, &str)], what: &'static str) -> Result<(Columns, Records), PayError> {
    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(text.as_bytes());
    let mut records = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = lines.get(i).map_or(0, |(n, _)| *n);
        let rec = rec
            .map_err(|e| malformed(format!("{what} line {line}: {}", clip(&e.to_string(), 120))))?;
        records.push((line, rec.iter().map(|c| cell(c).to_owned()).collect()));
    }
    let mut it = records.into_iter();
    let header = it
        .next()
        .ok_or_else(|| malformed(format!("{what} has no header line")))?;
    Ok((Columns::new(what, header.1)?, it.collect()))
}

/// Count and amount of a footer line: `#交易合计：6笔，商家实收共0.06元，…`.
fn footer(lines: &[&str], label: &str, amount_label: &str) -> Result<(u64, i64), PayError> {
    let bad = || malformed(format!("bill detail footer {label} does not parse"));
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(label))
        .ok_or_else(|| malformed(format!("bill detail has no footer line {label}")))?;
    let (count, rest) = line.split_once("笔，").ok_or_else(bad)?;
    let rest = rest.strip_prefix(amount_label).ok_or_else(bad)?;
    let (amount, _) = rest.split_once('元').ok_or_else(bad)?;
    let count = count
        .parse::<u64>()
        .ok()
        .filter(|_| count.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    Ok((count, signed_fen(amount, label)?))
}

fn parse_detail(day: BillDay, text: &str, pid: Option<&str>) -> Result<Vec<BillRow>, PayError> {
    const WHAT: &str = "bill detail";
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    check_day(&lines, day, WHAT)?;
    let account =
        bracketed(&lines, "#账号：").ok_or_else(|| malformed("bill detail has no line #账号"))?;
    if pid.is_some_and(|p| !account.starts_with(p)) {
        return Err(PayError::WrongMerchant);
    }
    let begin = lines
        .iter()
        .position(|l| l.starts_with("#-") && l.contains(DETAIL_BEGIN) && !l.contains(DETAIL_END))
        .ok_or_else(|| malformed("bill detail has no table start line"))?;
    let end = lines
        .iter()
        .position(|l| l.starts_with("#-") && l.contains(DETAIL_END))
        .filter(|e| *e > begin)
        .ok_or_else(|| malformed("bill detail has no table end line"))?;
    let numbered: Vec<(usize, &str)> = (begin + 1..end).map(|i| (i + 1, lines[i])).collect();
    let (cols, records) = table(&numbered, WHAT)?;
    let c_gateway = cols.index("支付宝交易号")?;
    let c_trade = cols.index("商户订单号")?;
    let c_kind = cols.index("业务类型")?;
    let c_done = cols.index("完成时间")?;
    let c_amount = cols.index("订单金额（元）")?;
    let c_received = cols.index("商家实收（元）")?;
    let c_refund_no = cols.index("退款批次号/请求号")?;
    let mut rows = Vec::with_capacity(records.len());
    let (mut paid_received, mut refund_received) = (0i64, 0i64);
    for (line, rec) in records {
        let at = |what: &str| format!("bill detail line {line}: {what}");
        let get = |i: usize| rec.get(i).map_or("", String::as_str);
        let amount = signed_fen(get(c_amount), &at("订单金额（元）"))?;
        let received = signed_fen(get(c_received), &at("商家实收（元）"))?;
        let at_ms = match get(c_done) {
            "" => None,
            t => Some(beijing_ms(t, &at("完成时间"))?),
        };
        let (entry, fen) = match get(c_kind) {
            "交易" => {
                paid_received += received;
                (BillEntry::Payment, amount)
            }
            "退款" => {
                refund_received += received;
                let refund_no = get(c_refund_no).to_owned();
                (BillEntry::Refund { refund_no }, -amount)
            }
            other => {
                return Err(malformed(at(&format!(
                    "业务类型 {} is neither 交易 nor 退款",
                    clip(other, 16)
                ))))
            }
        };
        rows.push(
            row(get(c_trade), get(c_gateway), entry, fen, at_ms)
                .map_err(|e| malformed(at(&e.to_string())))?,
        );
    }
    let tail = &lines[end..];
    let (pay_count, pay_sum) = footer(tail, PAYMENTS_FOOTER, "商家实收共")?;
    let (ref_count, ref_sum) = footer(tail, REFUNDS_FOOTER, "商家实收退款共")?;
    let t = Bill::totals_of(&rows);
    check_total("交易合计 (笔)", count(pay_count), count(t.payments), "")?;
    check_total("交易合计 商家实收", pay_sum, paid_received, "fen")?;
    check_total("退款合计 (笔)", count(ref_count), count(t.refunds), "")?;
    check_total("退款合计 商家实收退款", ref_sum, refund_received, "fen")?;
    Ok(rows)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The summary file's `合计` row must count the detail's payments and refunds.
fn check_summary(day: BillDay, text: &str, rows: &[BillRow]) -> Result<(), PayError> {
    const WHAT: &str = "bill summary";
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    if lines.iter().any(|l| l.starts_with("#起始日期")) {
        check_day(&lines, day, WHAT)?;
    }
    let numbered: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.is_empty())
        .map(|(i, l)| (i + 1, *l))
        .collect();
    let (cols, records) = table(&numbered, WHAT)?;
    let c_trades = cols.index("交易订单总笔数")?;
    let c_refunds = cols.index("退款订单总笔数")?;
    let total = records
        .iter()
        .find(|(_, r)| r.first().is_some_and(|c| c == "合计"))
        .ok_or_else(|| malformed("bill summary has no 合计 row"))?;
    let number = |i: usize, name: &str| -> Result<i64, PayError> {
        let v = total.1.get(i).map_or("", String::as_str);
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                malformed(format!(
                    "bill summary {name} {} is not a count",
                    clip(v, 16)
                ))
            })
    };
    let t = Bill::totals_of(rows);
    check_total(
        "汇总 交易订单总笔数",
        number(c_trades, "交易订单总笔数")?,
        count(t.payments),
        "",
    )?;
    check_total(
        "汇总 退款订单总笔数",
        number(c_refunds, "退款订单总笔数")?,
        count(t.refunds),
        "",
    )
}
