//! The WeChat Pay bill end to end: kami's `WechatPayChannel::bill` against the simulator's
//! `GET /v3/bill/tradebill` and the signed download of the file (SHA1 checked), for the trades
//! the simulator processed; and the test controls the reconciliation tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use kami_core::{ChannelId, Method, OrderNo, TradeNo};
use kami_pay::wechatpay::{WechatMode, WechatPayChannel};
use kami_pay::{
    BillEntry, CreatePayment, Device, PayError, PaymentAction, PaymentChannel, TradeState,
};
use kami_sim::common::bill::bill_day_of;
use kami_sim::wechatpay::{demo_pair, NotifyMode, PayOptions, WechatSim};
use support::{cny, listen, new_trade_no, now_ms, serve, settled_refund};

struct Env {
    sim: Arc<WechatSim>,
    channel: WechatPayChannel,
    base: String,
}

async fn start() -> Env {
    let (listener, base) = listen().await;
    let pair = demo_pair(
        ChannelId::parse("wx").unwrap(),
        vec![Method::Wxpay],
        &format!("{base}/sim/wechatpay"),
        WechatMode::Native,
    )
    .unwrap();
    let sim = WechatSim::new(pair.sim);
    serve(listener, sim.router());
    let channel = WechatPayChannel::new(pair.channel, reqwest::Client::new());
    Env { sim, channel, base }
}

impl Env {
    async fn create(&self, fen: i64) -> OrderNo {
        let trade = new_trade_no();
        let req = CreatePayment {
            trade_no: TradeNo::first(&trade),
            amount: cny(fen),
            subject: "Steam 月卡, \"gift\"".into(),
            method: Method::Wxpay,
            device: Device::Pc,
            notify_url: format!("{}/nowhere", self.base),
            return_url: format!("{}/nowhere", self.base),
            expires_at_ms: now_ms() + 15 * 60_000,
            user_agent: None,
            client_ip: None,
        };
        assert!(matches!(
            self.channel.create(&req).await.unwrap(),
            PaymentAction::Qr { .. }
        ));
        trade
    }

    fn pay(&self, trade: &OrderNo) -> String {
        let opts = PayOptions {
            notify: NotifyMode::Drop,
            ..Default::default()
        };
        self.sim.pay(trade.as_str(), opts).unwrap()
    }
}

fn today() -> kami_pay::BillDay {
    bill_day_of(now_ms()).unwrap()
}

fn malformed<T: std::fmt::Debug>(r: Result<T, PayError>, needle: &str) {
    match r {
        Err(PayError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Malformed({needle}), got {other:?}"),
    }
}

#[tokio::test]
async fn bill_lists_payments_and_refunds_exactly() {
    let env = start().await;
    let a = env.create(1230).await;
    let a_tx = env.pay(&a);
    let b = env.create(1).await;
    let b_tx = env.pay(&b);
    let _unpaid = env.create(999).await;
    let refunded = settled_refund(&env.channel, a.as_str(), "R1", cny(200), cny(1230))
        .await
        .unwrap();
    assert_eq!(refunded, cny(200));
    env.sim.refund_in_portal(b.as_str(), cny(1)).unwrap();
    let u_tx = env.sim.add_unknown_trade("UNKNOWN0001", cny(500));

    let bill = env.channel.bill(today()).await.unwrap();
    assert_eq!(bill.day, today());
    let find = |trade: &str, refund: bool| {
        bill.rows
            .iter()
            .find(|r| r.trade_no == trade && matches!(r.entry, BillEntry::Refund { .. }) == refund)
            .unwrap_or_else(|| panic!("no row for {trade} in {bill:?}"))
    };
    let pa = find(a.as_str(), false);
    assert_eq!(
        (pa.gateway_trade_no.as_str(), pa.amount),
        (a_tx.as_str(), cny(1230))
    );
    assert!(pa.at_ms.unwrap().abs_diff(now_ms()) < 60_000);
    assert_eq!(find(b.as_str(), false).gateway_trade_no, b_tx);
    let ra = find(a.as_str(), true);
    assert_eq!(
        ra.entry,
        BillEntry::Refund {
            refund_no: "R1".into()
        }
    );
    assert_eq!(
        (ra.gateway_trade_no.as_str(), ra.amount),
        (a_tx.as_str(), cny(200))
    );
    let rb = find(b.as_str(), true);
    assert_eq!(
        rb.entry,
        BillEntry::Refund {
            refund_no: String::new()
        }
    );
    assert_eq!(rb.amount, cny(1));
    assert_eq!(find("UNKNOWN0001", false).gateway_trade_no, u_tx);
    assert_eq!(
        bill.rows.len(),
        5,
        "the unpaid trade is not billed: {bill:?}"
    );
    assert_eq!(bill.totals.payments, 3);
    assert_eq!(bill.totals.paid_minor, 1731);
    assert_eq!(bill.totals.refunds, 2);
    assert_eq!(bill.totals.refunded_minor, 201);
}

#[tokio::test]
async fn tampered_wrong_hash_failing_and_empty_bills() {
    let env = start().await;
    assert!(env.channel.bill(today()).await.unwrap().rows.is_empty());
    let a = env.create(1230).await;
    env.pay(&a);
    for day in [today().previous_day().unwrap(), today().next_day().unwrap()] {
        let b = env.channel.bill(day).await.unwrap();
        assert_eq!((b.day, b.rows.len()), (day, 0));
    }

    env.sim.tamper_next_bill();
    malformed(
        env.channel.bill(today()).await,
        "应结订单总金额 is 12.31 but the rows add up to 12.30",
    );
    env.sim.corrupt_next_bill_hash();
    malformed(env.channel.bill(today()).await, "does not match the SHA1");
    assert_eq!(env.channel.bill(today()).await.unwrap().rows.len(), 1);

    env.sim.fail_bill_api(true);
    match env.channel.bill(today()).await {
        Err(PayError::Gateway { code, .. }) => assert_eq!(code, "SYSTEM_ERROR"),
        other => panic!("expected a gateway error, got {other:?}"),
    }
    env.sim.fail_bill_api(false);
    assert_eq!(env.channel.bill(today()).await.unwrap().rows.len(), 1);
}

/// A hidden trade leaves every bill, its payment and refunds alike, until shown again; a day
/// left with nothing reads as an empty bill.
#[tokio::test]
async fn hidden_trades_leave_the_bill_until_shown() {
    let env = start().await;
    let a = env.create(1230).await;
    env.pay(&a);
    let b = env.create(100).await;
    env.pay(&b);
    env.sim.refund_in_portal(b.as_str(), cny(40)).unwrap();
    env.sim.hide_from_bill(b.as_str(), true);
    let bill = env.channel.bill(today()).await.unwrap();
    let trades: Vec<&str> = bill.rows.iter().map(|r| r.trade_no.as_str()).collect();
    assert_eq!(trades, [a.as_str()], "{bill:?}");
    assert_eq!((bill.totals.payments, bill.totals.refunds), (1, 0));
    env.sim.hide_from_bill(a.as_str(), true);
    assert!(env.channel.bill(today()).await.unwrap().rows.is_empty());
    env.sim.hide_from_bill(a.as_str(), false);
    env.sim.hide_from_bill(b.as_str(), false);
    let bill = env.channel.bill(today()).await.unwrap();
    assert_eq!(bill.rows.len(), 3, "{bill:?}");
    assert_eq!(bill.totals.refunded_minor, 40);
}

#[tokio::test]
async fn the_download_needs_the_merchants_signature() {
    let env = start().await;
    let a = env.create(84).await;
    env.pay(&a);
    let r = reqwest::Client::new()
        .get(format!(
            "{}/sim/wechatpay/v3/billdownload/file?token=x",
            env.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        env.channel.bill(today()).await.unwrap().rows[0].amount,
        cny(84)
    );
}

#[tokio::test]
async fn queries_fail_until_cleared_and_notifications_can_be_dropped() {
    let env = start().await;
    let a = env.create(100).await;
    let tx = env.pay(&a);
    assert_eq!(env.sim.notify_stats(a.as_str()).unwrap().attempts, 0);
    env.sim.fail_queries(true);
    match env.channel.query(a.as_str()).await {
        Err(PayError::Gateway { code, .. }) => assert_eq!(code, "SYSTEM_ERROR"),
        other => panic!("expected the query to fail, got {other:?}"),
    }
    env.sim.fail_queries(false);
    match env.channel.query(a.as_str()).await.unwrap() {
        TradeState::Paid(c) => assert_eq!((c.gateway_trade_no, c.amount), (tx, cny(100))),
        other => panic!("expected Paid, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_files_are_refused_whole() {
    let env = start().await;
    let header = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n";
    env.sim.serve_next_bill(header.as_bytes().to_vec());
    malformed(
        env.channel.bill(today()).await,
        "no summary line 总交易单数",
    );
    env.sim
        .serve_next_bill(encoding_rs::GBK.encode(header).0.into_owned());
    malformed(env.channel.bill(today()).await, "not UTF-8");
}
