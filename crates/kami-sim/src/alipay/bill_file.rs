//! The bytes of an Alipay trade bill archive (protocols.md A.5, channel-ops.md 2.2), as the
//! real gateway's: a ZIP whose entry names are GBK without the UTF-8 flag, holding
//! `<account>_<yyyymmdd>_业务明细.csv` (comment header, the 25-column table with TAB-suffixed
//! text cells, `#交易合计` / `#退款合计` footer) and `<account>_<yyyymmdd>_业务明细(汇总).csv`
//! (one row for the merchant without stores, then `合计`), both GBK, CRLF line ends.

use kami_pay::alipay::bill_file::{DETAIL_TITLE, PAYMENTS_FOOTER, REFUNDS_FOOTER, SUMMARY_TITLE};
use kami_pay::bill::{BillDay, BILL_OFFSET};

use super::bj;
use crate::common::bill::yuan;
use crate::common::zip::{write_zip, ZipEntry};

/// The detail table's header, in Alipay's order.
pub const DETAIL_HEADER: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

/// Columns whose cells Alipay suffixes with a TAB (as in its sample file).
const TABBED: [usize; 10] = [0, 1, 2, 6, 7, 8, 9, 10, 19, 21];

const SUMMARY_HEADER: [&str; 12] = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
];

/// The dashes around the table's start and end lines, counted from Alipay's sample.
fn rule(n: usize) -> String {
    "-".repeat(n)
}

/// One line of the detail table.
#[derive(Debug, Clone)]
pub struct Line {
    pub trade_no: String,
    pub out_trade_no: String,
    /// `None` for a payment; the refund's `out_request_no` (empty: made in the portal).
    pub refund_no: Option<String>,
    pub subject: String,
    pub created_ms: i64,
    pub done_ms: i64,
    /// Fen, positive (refund lines are printed negative).
    pub fen: i64,
}

fn chinese_date(day: BillDay) -> String {
    format!(
        "{}年{:02}月{:02}日 00:00:00",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn chinese_time(ms: i64) -> String {
    // `yyyy-MM-dd HH:mm:ss` → `yyyy年MM月dd日 HH:mm:ss`.
    let t = bj(ms);
    match (t.get(0..4), t.get(5..7), t.get(8..10), t.get(11..)) {
        (Some(y), Some(m), Some(d), Some(rest)) => format!("{y}年{m}月{d}日 {rest}"),
        _ => t,
    }
}

fn head(title: &str, account: &str, day: BillDay) -> String {
    let next = day.next_day().unwrap_or(day);
    format!(
        "{title}\r\n#账号：[{account}]\r\n#起始日期：[{}]   终止日期：[{}]\r\n",
        chinese_date(day),
        chinese_date(next)
    )
}

fn csv_rows(header: &[&str], rows: &[Vec<String>]) -> std::io::Result<String> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(header).map_err(std::io::Error::other)?;
    for r in rows {
        w.write_record(r).map_err(std::io::Error::other)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    String::from_utf8(bytes).map_err(std::io::Error::other)
}

fn detail_row(l: &Line) -> Vec<String> {
    let refund = l.refund_no.is_some();
    let amount = yuan(if refund { -l.fen } else { l.fen });
    let subject: String = l.subject.chars().filter(|c| !c.is_control()).collect();
    let mut cells: Vec<String> = vec![
        l.trade_no.clone(),
        l.out_trade_no.clone(),
        if refund { "退款" } else { "交易" }.to_owned(),
        subject.clone(),
        bj(l.created_ms),
        bj(l.done_ms),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        "158****1234".to_owned(),
        amount.clone(),
        amount,
        "0.00".into(),
        "0.00".into(),
        "0.00".into(),
        "0.00".into(),
        "0.00".into(),
        String::new(),
        "0.00".into(),
        "0.00".into(),
        l.refund_no.clone().unwrap_or_default(),
        "0.00".into(),
        "0.00".into(),
        subject,
    ];
    for i in TABBED {
        if let Some(c) = cells.get_mut(i) {
            c.push('\t');
        }
    }
    cells
}

/// The detail file's text; `tamper` states a payments' total one fen off.
pub fn detail_text(
    account: &str,
    day: BillDay,
    lines: &[Line],
    exported_ms: i64,
    tamper: bool,
) -> std::io::Result<String> {
    let rows: Vec<Vec<String>> = lines.iter().map(detail_row).collect();
    let (mut paid, mut refunded, mut n_paid, mut n_refunded) = (0i64, 0i64, 0usize, 0usize);
    for l in lines {
        if l.refund_no.is_some() {
            refunded -= l.fen;
            n_refunded += 1;
        } else {
            paid += l.fen;
            n_paid += 1;
        }
    }
    if tamper {
        paid += 1;
    }
    let mut s = head(DETAIL_TITLE, account, day);
    s.push_str(&format!("#{}业务明细列表{}\r\n", rule(41), rule(40)));
    s.push_str(&csv_rows(&DETAIL_HEADER, &rows)?);
    s.push_str(&format!("#{}业务明细列表结束{}\r\n", rule(41), rule(36)));
    s.push_str(&format!(
        "{PAYMENTS_FOOTER}{n_paid}笔，商家实收共{}元，商家优惠共0.00元\r\n",
        yuan(paid)
    ));
    s.push_str(&format!(
        "{REFUNDS_FOOTER}{n_refunded}笔，商家实收退款共{}元，商家优惠退款共0.00元\r\n",
        yuan(refunded)
    ));
    s.push_str(&format!("#导出时间：[{}]\r\n", chinese_time(exported_ms)));
    Ok(s)
}

/// The summary file's text.
pub fn summary_text(
    account: &str,
    day: BillDay,
    lines: &[Line],
    exported_ms: i64,
) -> std::io::Result<String> {
    let n_paid = lines.iter().filter(|l| l.refund_no.is_none()).count();
    let n_refunded = lines.len() - n_paid;
    let net: i64 = lines
        .iter()
        .map(|l| if l.refund_no.is_some() { -l.fen } else { l.fen })
        .sum();
    let row = |store: &str| -> Vec<String> {
        let mut r = vec![
            store.to_owned(),
            String::new(),
            n_paid.to_string(),
            n_refunded.to_string(),
            yuan(net),
            yuan(net),
        ];
        r.extend(["0.00", "0.00", "0.00", "0.00", "0.00"].map(String::from));
        r.push(yuan(net));
        r
    };
    let mut s = head(SUMMARY_TITLE, account, day);
    s.push_str(&format!("#{}业务汇总列表{}\r\n", rule(41), rule(40)));
    s.push_str(&csv_rows(&SUMMARY_HEADER, &[row(""), row("合计")])?);
    s.push_str(&format!("#{}业务汇总列表结束{}\r\n", rule(41), rule(36)));
    s.push_str(&format!("#导出时间：[{}]\r\n", chinese_time(exported_ms)));
    Ok(s)
}

fn gbk(s: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(s).0.into_owned()
}

/// The archive Alipay serves for `day`.
pub fn bill_zip(
    account: &str,
    day: BillDay,
    lines: &[Line],
    exported_ms: i64,
    tamper: bool,
) -> std::io::Result<Vec<u8>> {
    let stamp = format!("{}{:02}{:02}", day.year(), u8::from(day.month()), day.day());
    let detail = detail_text(account, day, lines, exported_ms, tamper)?;
    let summary = summary_text(account, day, lines, exported_ms)?;
    let modified = time::OffsetDateTime::from_unix_timestamp(exported_ms.div_euclid(1000))
        .map_err(std::io::Error::other)?
        .to_offset(BILL_OFFSET);
    write_zip(
        &[
            ZipEntry {
                name: gbk(&format!("{account}_{stamp}_业务明细.csv")),
                data: gbk(&detail),
            },
            ZipEntry {
                name: gbk(&format!("{account}_{stamp}_业务明细(汇总).csv")),
                data: gbk(&summary),
            },
        ],
        time::PrimitiveDateTime::new(modified.date(), modified.time()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> BillDay {
        time::Date::from_calendar_date(2019, time::Month::September, 16).unwrap_or(time::Date::MIN)
    }

    fn lines() -> Vec<Line> {
        let base = |refund_no: Option<&str>, done_ms: i64, fen: i64| Line {
            trade_no: "2019091622001458860515315453".into(),
            out_trade_no: "T1".into(),
            refund_no: refund_no.map(str::to_owned),
            subject: "月卡".into(),
            created_ms: 1_568_602_516_000,
            done_ms,
            fen,
        };
        vec![
            base(None, 1_568_602_523_000, 1),
            base(Some("R1"), 1_568_602_600_000, 1),
        ]
    }

    #[test]
    fn detail_lines_are_alipays() {
        let text = detail_text(
            "20880211096256330156",
            day(),
            &lines(),
            1_568_670_409_000,
            false,
        )
        .unwrap_or_default();
        let want: [&str; 12] = [
            "#支付宝业务明细查询",
            "#账号：[20880211096256330156]",
            "#起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]",
            &format!("#{}业务明细列表{}", rule(41), rule(40)),
            "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注",
            "2019091622001458860515315453\t,T1\t,交易\t,月卡,2019-09-16 10:55:16,2019-09-16 10:55:23,\t,\t,\t,\t,158****1234\t,0.01,0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,0.00,0.00,月卡",
            "2019091622001458860515315453\t,T1\t,退款\t,月卡,2019-09-16 10:55:16,2019-09-16 10:56:40,\t,\t,\t,\t,158****1234\t,-0.01,-0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,R1\t,0.00,0.00,月卡",
            &format!("#{}业务明细列表结束{}", rule(41), rule(36)),
            "#交易合计：1笔，商家实收共0.01元，商家优惠共0.00元",
            "#退款合计：1笔，商家实收退款共-0.01元，商家优惠退款共0.00元",
            "#导出时间：[2019年09月17日 05:46:49]",
            "",
        ];
        assert_eq!(text, want.join("\r\n"));
        let tampered = detail_text("2088", day(), &lines(), 0, true).unwrap_or_default();
        assert!(
            tampered.contains("#交易合计：1笔，商家实收共0.02元"),
            "{tampered}"
        );
    }

    #[test]
    fn the_archive_names_its_files_in_gbk() {
        let zip = bill_zip(
            "20880211096256330156",
            day(),
            &lines(),
            1_568_670_409_000,
            false,
        )
        .unwrap_or_default();
        let name = gbk("20880211096256330156_20190916_业务明细(汇总).csv");
        assert!(zip.windows(name.len()).any(|w| w == name.as_slice()));
        assert_eq!(yuan(-201), "-2.01");
    }
}
