//! The WeChat Pay bill reader against sample files built here in the `ALL` layout of
//! protocols.md B.4 and channel-ops.md 2.2 (header strings, backtick cells, summary lines).

use super::bill::check_hash;
use super::bill_file::parse_trade_bill;
use crate::{BillEntry, PayError};

const MCHID: &str = "1230000109";

const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

fn day() -> time::Date {
    time::Date::from_calendar_date(2019, time::Month::July, 25).unwrap()
}

fn payment(time: &str, tx: &str, out: &str, amount: &str, fee: &str) -> Vec<String> {
    [
        time,
        "wxd678efh567hg6787",
        MCHID,
        "0",
        "",
        tx,
        out,
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "NATIVE",
        "SUCCESS",
        "PSBC_DEBIT",
        "CNY",
        amount,
        "0.00",
        "0",
        "0",
        "0.00",
        "0.00",
        "",
        "",
        "Steam 月卡",
        "",
        fee,
        "0.60%",
        amount,
        "0.00",
        "",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn refund(
    time: &str,
    tx: &str,
    out: &str,
    refund_no: &str,
    amount: &str,
    fee: &str,
) -> Vec<String> {
    [
        time,
        "wxd678efh567hg6787",
        MCHID,
        "0",
        "",
        tx,
        out,
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "NATIVE",
        "REFUND",
        "PSBC_DEBIT",
        "CNY",
        "0.00",
        "0.00",
        "50000000382019052709732678859",
        refund_no,
        amount,
        "0.00",
        "ORIGINAL",
        "SUCCESS",
        "Steam 月卡",
        "",
        fee,
        "0.60%",
        "0.00",
        amount,
        "",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn rows() -> Vec<Vec<String>> {
    vec![
        payment(
            "2019-07-25 08:35:41",
            "4200000000201907250000000001",
            "K20190725000001",
            "6.00",
            "0.04000",
        ),
        payment(
            "2019-07-25 09:00:00",
            "4200000000201907250000000002",
            "K20190725000002",
            "12.30",
            "0.07000",
        ),
        refund(
            "2019-07-25 10:00:00",
            "4200000000201907250000000001",
            "K20190725000001",
            "R1",
            "1.50",
            "-0.01000",
        ),
        refund(
            "2019-07-25 11:00:00",
            "4200000000201907250000000002",
            "K20190725000002",
            "",
            "2.00",
            "-0.01000",
        ),
    ]
}

const VALUES: [&str; 7] = ["4", "18.30", "3.50", "0.00", "0.09000", "18.30", "3.50"];

/// The file: `perm` orders the columns, `bom`/`crlf` as real downloads have them.
fn file(rows: &[Vec<String>], perm: &[usize], values: &[&str], bom: bool, crlf: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let header: Vec<&str> = HEADER.split(',').collect();
    let pick = |cells: &[String]| perm.iter().map(|&i| cells[i].clone()).collect::<Vec<_>>();
    let mut s = String::new();
    if bom {
        s.push('\u{feff}');
    }
    s.push_str(&pick(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()).join(","));
    s.push_str(nl);
    for r in rows {
        let ticked: Vec<String> = pick(r).iter().map(|c| format!("`{c}")).collect();
        s.push_str(&ticked.join(","));
        s.push_str(nl);
    }
    s.push_str(SUMMARY);
    s.push_str(nl);
    let v: Vec<String> = values.iter().map(|v| format!("`{v}")).collect();
    s.push_str(&v.join(","));
    s.push_str(nl);
    s.into_bytes()
}

fn identity() -> Vec<usize> {
    (0..27).collect()
}

fn sample() -> Vec<u8> {
    file(&rows(), &identity(), &VALUES, true, true)
}

fn refused(bytes: &[u8], needle: &str) {
    match parse_trade_bill(day(), bytes, MCHID) {
        Err(PayError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Malformed({needle}), got {other:?}"),
    }
}

#[test]
fn sample_bill_reads_rows_exactly() {
    let bill = parse_trade_bill(day(), &sample(), MCHID).unwrap();
    assert_eq!(bill.rows.len(), 4);
    let r = &bill.rows[0];
    assert_eq!(r.trade_no, "K20190725000001");
    assert_eq!(r.gateway_trade_no, "4200000000201907250000000001");
    assert_eq!(r.entry, BillEntry::Payment);
    assert_eq!(r.amount.minor(), 600);
    // 2019-07-25 08:35:41 +08:00.
    assert_eq!(r.at_ms, Some(1_564_014_941_000));
    assert_eq!(bill.rows[1].amount.minor(), 1230);
    assert_eq!(
        bill.rows[2].entry,
        BillEntry::Refund {
            refund_no: "R1".into()
        }
    );
    assert_eq!(bill.rows[2].amount.minor(), 150);
    assert_eq!(
        bill.rows[3].entry,
        BillEntry::Refund {
            refund_no: String::new()
        }
    );
    assert_eq!(bill.totals.payments, 2);
    assert_eq!(bill.totals.paid_minor, 1830);
    assert_eq!(bill.totals.refunds, 2);
    assert_eq!(bill.totals.refunded_minor, 350);
}

#[test]
fn bom_and_line_ends_are_optional_columns_any_order() {
    let want = parse_trade_bill(day(), &sample(), MCHID).unwrap();
    let plain = file(&rows(), &identity(), &VALUES, false, false);
    assert_eq!(parse_trade_bill(day(), &plain, MCHID).unwrap(), want);
    let mut perm = identity();
    perm.reverse();
    perm.swap(0, 13);
    let shuffled = file(&rows(), &perm, &VALUES, true, true);
    assert_eq!(parse_trade_bill(day(), &shuffled, MCHID).unwrap(), want);
}

#[test]
fn totals_that_do_not_add_up_refuse_the_file() {
    let mut v = VALUES;
    v[1] = "18.31";
    refused(
        &file(&rows(), &identity(), &v, true, true),
        "应结订单总金额 is 18.31 but the rows add up to 18.30",
    );
    let mut v = VALUES;
    v[0] = "5";
    refused(
        &file(&rows(), &identity(), &v, true, true),
        "总交易单数 is 5",
    );
    let mut v = VALUES;
    v[4] = "0.08000";
    refused(&file(&rows(), &identity(), &v, true, true), "手续费总金额");
    let mut v = VALUES;
    v[2] = "3.60";
    refused(&file(&rows(), &identity(), &v, true, true), "退款总金额");
}

#[test]
fn missing_summary_or_columns_refuse_the_file() {
    let text = String::from_utf8(sample()).unwrap();
    let cut: String = text.split_inclusive("\r\n").take(5).collect();
    refused(cut.as_bytes(), "no summary line 总交易单数");
    let without: Vec<usize> = (0..27).filter(|&i| i != 6).collect();
    refused(
        &file(&rows(), &without, &VALUES, true, true),
        "no column 商户订单号",
    );
    let blank = text.replacen("\r\n`2019-07-25 09:00", "\r\n\r\n`2019-07-25 09:00", 1);
    refused(blank.as_bytes(), "line 3 is empty");
    refused(b"", "bill file is empty");
}

#[test]
fn cells_and_amounts_are_strict() {
    let mut r = rows();
    r[1][24] = "12.3".into();
    refused(
        &file(&r, &identity(), &VALUES, true, true),
        "bill line 3: 订单金额 12.3 is not an amount with two decimals",
    );
    let text = String::from_utf8(sample()).unwrap();
    let unticked = text.replacen("`SUCCESS", "SUCCESS", 1);
    refused(unticked.as_bytes(), "has no leading backtick");
    let mut r = rows();
    r[0][9] = "REVOKED".into();
    refused(
        &file(&r, &identity(), &VALUES, true, true),
        "交易状态 REVOKED",
    );
    let mut r = rows();
    r[0][22] = "0.04".into();
    refused(&file(&r, &identity(), &VALUES, true, true), "手续费");
    let gbk = encoding_rs::GBK.encode(&text).0.into_owned();
    refused(&gbk, "not UTF-8");
    let mut r = rows();
    r[0][2] = "1900000001".into();
    assert!(matches!(
        parse_trade_bill(day(), &file(&r, &identity(), &VALUES, true, true), MCHID),
        Err(PayError::WrongMerchant)
    ));
}

#[test]
fn the_file_must_hash_to_the_announced_sha1() {
    // FIPS 180 test vector: SHA1("abc").
    let abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
    assert!(check_hash("SHA1", abc, b"abc").is_ok());
    assert!(check_hash("sha1", &abc.to_uppercase(), b"abc").is_ok());
    let e = check_hash("SHA1", abc, b"abd").unwrap_err();
    assert!(e.to_string().contains("does not match the SHA1"), "{e}");
    assert!(check_hash("MD5", abc, b"abc").is_err());
}
