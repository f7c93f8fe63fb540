//! The Alipay bill reader against sample files built here, in the layout of protocols.md A.5
//! (the detail sample's header and row shape) and channel-ops.md 2.2 (the summary file).

use std::io::Write;

use super::bill_file::{parse_trade_bill_zip, ZipLimits, ZIP_LIMITS};
use crate::{BillEntry, PayError};

const PID: &str = "2088021109625633";

const HEADER: [&str; 25] = [
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

fn day() -> time::Date {
    time::Date::from_calendar_date(2019, time::Month::September, 16).unwrap()
}

/// One detail row shaped like the protocols.md sample (TAB-suffixed text cells).
fn sample_row(
    trade: &str,
    out: &str,
    kind: &str,
    done: &str,
    amount: &str,
    refund_no: &str,
) -> Vec<String> {
    let (trade, out, kind, refund_no) = (
        format!("{trade}\t"),
        format!("{out}\t"),
        format!("{kind}\t"),
        format!("{refund_no}\t"),
    );
    let cells: [&str; 25] = [
        &trade,
        &out,
        &kind,
        "下单测试",
        "2019-09-16 10:55:16",
        done,
        "alipay_store\t",
        "alipay_store\t",
        "alipay\t",
        "\t",
        "*津水(602***@qq.com)\t",
        amount,
        amount,
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "",
        "0.00\t",
        "0.00",
        &refund_no,
        "0.00",
        "0.00",
        "下单测试",
    ];
    cells.iter().map(|s| (*s).to_owned()).collect()
}

/// The sample's table: two payments, a refund by API, a refund from the portal.
fn rows() -> Vec<Vec<String>> {
    vec![
        sample_row(
            "2019091622001458860515315453",
            "service_1568601259302",
            "交易",
            "2019-09-16 10:55:23",
            "0.01",
            "",
        ),
        sample_row(
            "2019091622001458860515315454",
            "K20190916000002",
            "交易",
            "2019-09-16 11:00:00",
            "12.30",
            "",
        ),
        sample_row(
            "2019091622001458860515315453",
            "service_1568601259302",
            "退款",
            "2019-09-16 12:00:00",
            "-0.01",
            "re_test_1568602607356",
        ),
        sample_row(
            "2019091622001458860515315454",
            "K20190916000002",
            "退款",
            "2019-09-16 13:00:00",
            "-2.00",
            "",
        ),
    ]
}

/// The detail file: `perm` orders the columns (identity = Alipay's order).
fn detail(header: &[&str], rows: &[Vec<String>], perm: &[usize], footer: &[&str]) -> String {
    let line = |cells: Vec<String>| {
        perm.iter()
            .map(|&i| cells[i].clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut s = String::from(
        "#支付宝业务明细查询\r\n#账号：[20880211096256330156]\r\n\
         #起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]\r\n\
         #-----------------------------------------业务明细列表----------------------------------------\r\n",
    );
    s.push_str(&line(header.iter().map(|h| (*h).to_owned()).collect()));
    s.push_str("\r\n");
    for r in rows {
        s.push_str(&line(r.clone()));
        s.push_str("\r\n");
    }
    s.push_str("#-----------------------------------------业务明细列表结束------------------------------------\r\n");
    for f in footer {
        s.push_str(f);
        s.push_str("\r\n");
    }
    s.push_str("#导出时间：[2019年09月17日 05:46:49]\r\n");
    s
}

const FOOTER: [&str; 2] = [
    "#交易合计：2笔，商家实收共12.31元，商家优惠共0.00元",
    "#退款合计：2笔，商家实收退款共-2.01元，商家优惠退款共0.00元",
];

fn summary(trades: u32, refunds: u32) -> String {
    format!(
        "#支付宝业务汇总查询\r\n#账号：[20880211096256330156]\r\n\
         #起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]\r\n\
         #-----------------------------------------业务汇总列表----------------------------------------\r\n\
         门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）\r\n\
         alipay_store\t,alipay_store\t,{trades},{refunds},10.30,10.30,0.00,0.00,0.00,0.00,0.00,10.30\r\n\
         合计,,{trades},{refunds},10.30,10.30,0.00,0.00,0.00,0.00,0.00,10.30\r\n\
         #-----------------------------------------业务汇总列表结束------------------------------------\r\n\
         #导出时间：[2019年09月17日 05:46:49]\r\n"
    )
}

fn gbk(s: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(s);
    assert!(!unmappable);
    bytes.into_owned()
}

fn zip_of(entries: &[(&str, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn identity() -> Vec<usize> {
    (0..HEADER.len()).collect()
}

fn archive(detail_text: &str, summary_text: &str) -> Vec<u8> {
    zip_of(
        &[
            (
                "20880211096256330156_20190916_业务明细.csv",
                gbk(detail_text),
            ),
            (
                "20880211096256330156_20190916_业务明细(汇总).csv",
                gbk(summary_text),
            ),
        ],
        zip::CompressionMethod::Deflated,
    )
}

fn parse(zip: &[u8]) -> Result<crate::Bill, PayError> {
    parse_trade_bill_zip(day(), zip, Some(PID), &ZIP_LIMITS)
}

fn refused(zip: &[u8], needle: &str) {
    match parse(zip) {
        Err(PayError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Malformed({needle}), got {other:?}"),
    }
}

fn sample() -> Vec<u8> {
    archive(
        &detail(&HEADER, &rows(), &identity(), &FOOTER),
        &summary(2, 2),
    )
}

#[test]
fn sample_bill_reads_rows_exactly() {
    let bill = parse(&sample()).unwrap();
    assert_eq!(bill.day, day());
    assert_eq!(bill.rows.len(), 4);
    let r = &bill.rows[0];
    assert_eq!(r.trade_no, "service_1568601259302");
    assert_eq!(r.gateway_trade_no, "2019091622001458860515315453");
    assert_eq!(r.entry, BillEntry::Payment);
    assert_eq!(r.amount.minor(), 1);
    // 2019-09-16 10:55:23 +08:00.
    assert_eq!(r.at_ms, Some(1_568_602_523_000));
    assert_eq!(bill.rows[1].amount.minor(), 1230);
    assert_eq!(
        bill.rows[2].entry,
        BillEntry::Refund {
            refund_no: "re_test_1568602607356".into()
        }
    );
    assert_eq!(bill.rows[2].amount.minor(), 1);
    // Made in the merchant portal: no refund number.
    assert_eq!(
        bill.rows[3].entry,
        BillEntry::Refund {
            refund_no: String::new()
        }
    );
    assert_eq!(bill.rows[3].amount.minor(), 200);
    assert_eq!(bill.totals.payments, 2);
    assert_eq!(bill.totals.paid_minor, 1231);
    assert_eq!(bill.totals.refunds, 2);
    assert_eq!(bill.totals.refunded_minor, 201);
}

#[test]
fn columns_are_read_by_name_in_any_order() {
    let mut perm = identity();
    perm.reverse();
    perm.swap(3, 20);
    let shuffled = archive(&detail(&HEADER, &rows(), &perm, &FOOTER), &summary(2, 2));
    assert_eq!(parse(&shuffled).unwrap(), parse(&sample()).unwrap());
    // Stored (not deflated) entries read the same.
    let stored = zip_of(
        &[
            (
                "a.csv",
                gbk(&detail(&HEADER, &rows(), &identity(), &FOOTER)),
            ),
            ("b.csv", gbk(&summary(2, 2))),
        ],
        zip::CompressionMethod::Stored,
    );
    assert_eq!(parse(&stored).unwrap().rows.len(), 4);
}

#[test]
fn totals_that_do_not_add_up_refuse_the_file() {
    let tampered = [
        "#交易合计：2笔，商家实收共12.32元，商家优惠共0.00元",
        FOOTER[1],
    ];
    refused(
        &archive(
            &detail(&HEADER, &rows(), &identity(), &tampered),
            &summary(2, 2),
        ),
        "交易合计 商家实收 is 12.32 but the rows add up to 12.31",
    );
    let count = [
        FOOTER[0],
        "#退款合计：3笔，商家实收退款共-2.01元，商家优惠退款共0.00元",
    ];
    refused(
        &archive(
            &detail(&HEADER, &rows(), &identity(), &count),
            &summary(2, 2),
        ),
        "退款合计 (笔) is 3",
    );
    refused(
        &archive(
            &detail(&HEADER, &rows(), &identity(), &FOOTER),
            &summary(3, 2),
        ),
        "交易订单总笔数 is 3",
    );
}

#[test]
fn missing_lines_columns_and_files_refuse_the_file() {
    refused(
        &archive(
            &detail(&HEADER, &rows(), &identity(), &FOOTER[..1]),
            &summary(2, 2),
        ),
        "no footer line #退款合计",
    );
    let without: Vec<usize> = (0..HEADER.len()).filter(|&i| i != 1).collect();
    refused(
        &archive(&detail(&HEADER, &rows(), &without, &FOOTER), &summary(2, 2)),
        "no column 商户订单号",
    );
    let only_detail = zip_of(
        &[(
            "d.csv",
            gbk(&detail(&HEADER, &rows(), &identity(), &FOOTER)),
        )],
        zip::CompressionMethod::Deflated,
    );
    refused(&only_detail, "no summary file");
    let extra = zip_of(
        &[
            (
                "d.csv",
                gbk(&detail(&HEADER, &rows(), &identity(), &FOOTER)),
            ),
            ("s.csv", gbk(&summary(2, 2))),
            ("readme.txt", gbk("hello")),
        ],
        zip::CompressionMethod::Deflated,
    );
    refused(&extra, "readme.txt is neither");
    refused(b"PK not really a zip", "not a zip archive");
}

#[test]
fn amounts_and_cells_are_strict() {
    let mut r = rows();
    r[1][11] = "12.3".into();
    refused(
        &archive(&detail(&HEADER, &r, &identity(), &FOOTER), &summary(2, 2)),
        "line 7: 订单金额（元） 12.3 is not an amount with two decimals",
    );
    let mut r = rows();
    r[0][2] = "冻结\t".into();
    refused(
        &archive(&detail(&HEADER, &r, &identity(), &FOOTER), &summary(2, 2)),
        "业务类型 冻结 is neither 交易 nor 退款",
    );
    let mut r = rows();
    r[0][5] = "2019/09/16 10:55:23".into();
    refused(
        &archive(&detail(&HEADER, &r, &identity(), &FOOTER), &summary(2, 2)),
        "完成时间",
    );
    let short = detail(&HEADER, &rows(), &identity(), &FOOTER).replacen(
        ",0.00,0.00,下单测试\r\n",
        ",0.00,下单测试\r\n",
        1,
    );
    refused(&archive(&short, &summary(2, 2)), "bill detail line 6");
}

#[test]
fn encoding_day_and_account_are_checked() {
    // The same text in UTF-8: its title does not read as the GBK title.
    let utf8 = zip_of(
        &[
            (
                "d.csv",
                detail(&HEADER, &rows(), &identity(), &FOOTER).into_bytes(),
            ),
            ("s.csv", summary(2, 2).into_bytes()),
        ],
        zip::CompressionMethod::Deflated,
    );
    match parse(&utf8) {
        Err(PayError::Malformed(m)) => assert!(
            m.contains("is neither the detail nor the summary file")
                || m.contains("is not GBK text"),
            "{m}"
        ),
        other => panic!("expected Malformed, got {other:?}"),
    }
    let mut bad = gbk(&detail(&HEADER, &rows(), &identity(), &FOOTER));
    bad.extend_from_slice(&[0x81, 0x20]);
    refused(
        &zip_of(
            &[("d.csv", bad), ("s.csv", gbk(&summary(2, 2)))],
            zip::CompressionMethod::Stored,
        ),
        "d.csv is not GBK text",
    );
    let other_day = detail(&HEADER, &rows(), &identity(), &FOOTER)
        .replace("09月16日 00:00:00]   ", "09月15日 00:00:00]   ");
    refused(
        &archive(&other_day, &summary(2, 2)),
        "is for 2019-09-15, not 2019-09-16",
    );
    match parse_trade_bill_zip(day(), &sample(), Some("2088999999999999"), &ZIP_LIMITS) {
        Err(PayError::WrongMerchant) => {}
        other => panic!("expected WrongMerchant, got {other:?}"),
    }
    assert!(parse_trade_bill_zip(day(), &sample(), None, &ZIP_LIMITS).is_ok());
}

#[test]
fn zip_bombs_are_refused_not_inflated() {
    let limits = ZipLimits {
        max_entries: 3,
        max_entry_bytes: 64 * 1024,
        max_total_bytes: 100 * 1024,
    };
    let zeros = vec![0u8; 1024 * 1024];
    let bomb = zip_of(
        &[("d.csv", zeros.clone())],
        zip::CompressionMethod::Deflated,
    );
    assert!(bomb.len() < 16 * 1024, "a real bomb: small outside");
    let e = parse_trade_bill_zip(day(), &bomb, None, &limits).unwrap_err();
    assert!(e.to_string().contains("inflates beyond 65536 bytes"), "{e}");
    // An entry that says it is small but inflates to 1 MiB: the bytes read decide.
    let mut liar = zip_of(&[("d.csv", zeros)], zip::CompressionMethod::Deflated);
    let patch = |z: &mut Vec<u8>, sig: &[u8; 4], at: usize| {
        let p = z.windows(4).position(|w| w == sig).unwrap();
        z[p + at..p + at + 4].copy_from_slice(&100u32.to_le_bytes());
    };
    patch(&mut liar, b"PK\x03\x04", 22);
    patch(&mut liar, b"PK\x01\x02", 24);
    assert!(
        matches!(
            parse_trade_bill_zip(day(), &liar, None, &limits),
            Err(PayError::Malformed(_))
        ),
        "a lying entry is refused"
    );
    let half = vec![b'#'; 60 * 1024];
    let two = zip_of(
        &[("a", half.clone()), ("b", half)],
        zip::CompressionMethod::Deflated,
    );
    let e = parse_trade_bill_zip(day(), &two, None, &limits).unwrap_err();
    assert!(
        e.to_string()
            .contains("archive inflates beyond 102400 bytes"),
        "{e}"
    );
    let many: Vec<(String, Vec<u8>)> = (0..4).map(|i| (format!("{i}"), vec![b'#'])).collect();
    let many: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let e = parse_trade_bill_zip(
        day(),
        &zip_of(&many, zip::CompressionMethod::Stored),
        None,
        &limits,
    )
    .unwrap_err();
    assert!(e.to_string().contains("4 entries, more than 3"), "{e}");
}
