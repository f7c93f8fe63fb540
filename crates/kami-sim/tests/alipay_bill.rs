//! The Alipay bill end to end: kami's `AlipayChannel::bill` against the simulator's
//! `alipay.data.dataservice.bill.downloadurl.query` and its zip of GBK CSVs, for the trades
//! the simulator processed; and the test controls the reconciliation tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kami_core::{ChannelId, Method, OrderNo, TradeNo};
use kami_pay::alipay::{AlipayChannel, AlipayConfig, AlipayMode, AlipaySignType};
use kami_pay::crypto::RsaSigner;
use kami_pay::{
    BillEntry, CreatePayment, Device, PayError, PaymentAction, PaymentChannel, TradeState,
};
use kami_sim::alipay::{AlipaySim, AlipaySimConfig, Fault, NotifyMode, PayOptions};
use kami_sim::common::bill::bill_day_of;
use kami_sim::common::zip::{write_zip, ZipEntry};
use support::{cny, fast_schedule, listen, new_trade_no, now_ms, serve, settled_refund};

const APP_ID: &str = "2021000000000002";
const SELLER_ID: &str = "2088000000000002";

fn keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let m = RsaSigner::generate().unwrap().private_key_pem().unwrap();
        let g = RsaSigner::generate().unwrap().private_key_pem().unwrap();
        (m, g)
    })
}

struct Env {
    sim: Arc<AlipaySim>,
    channel: AlipayChannel,
    base: String,
}

async fn start() -> Env {
    let (listener, base) = listen().await;
    let merchant = RsaSigner::from_text(&keys().0).unwrap();
    let gateway = RsaSigner::from_text(&keys().1).unwrap();
    let sim = AlipaySim::new(AlipaySimConfig {
        app_id: APP_ID.into(),
        merchant_public_key: merchant.verifier().unwrap(),
        gateway_key: RsaSigner::from_text(&keys().1).unwrap(),
        seller_id: SELLER_ID.into(),
        retry_schedule: fast_schedule(1),
        notify_timeout: Duration::from_secs(1),
    });
    serve(listener, sim.router());
    let channel = AlipayChannel::new(
        AlipayConfig {
            id: ChannelId::parse("ali").unwrap(),
            methods: vec![Method::Alipay],
            priority: 0,
            gateway: format!("{base}/sim/alipay/gateway.do"),
            app_id: APP_ID.into(),
            app_private_key: merchant,
            alipay_public_key: gateway.verifier().unwrap(),
            sign_type: AlipaySignType::Rsa2,
            mode: AlipayMode::Qr,
            seller_id: Some(SELLER_ID.into()),
            app_auth_token: None,
            sys_service_provider_id: None,
        },
        reqwest::Client::new(),
    );
    Env { sim, channel, base }
}

impl Env {
    /// Precreate a trade of `fen` (notifications go nowhere: these tests read the bill).
    async fn create(&self, fen: i64) -> OrderNo {
        let trade = new_trade_no();
        let req = CreatePayment {
            trade_no: TradeNo::first(&trade),
            amount: cny(fen),
            subject: "Steam 月卡, \"gift\"".into(),
            method: Method::Alipay,
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
            amount: None,
            notify: NotifyMode::Drop,
        };
        self.sim.pay(trade.as_str(), opts).unwrap()
    }
}

fn today() -> kami_pay::BillDay {
    bill_day_of(now_ms()).unwrap()
}

#[tokio::test]
async fn bill_lists_payments_and_refunds_exactly() {
    let env = start().await;
    let a = env.create(1230).await;
    let a_no = env.pay(&a);
    let b = env.create(1).await;
    let b_no = env.pay(&b);
    let _unpaid = env.create(999).await;
    let refunded = settled_refund(&env.channel, a.as_str(), "R1", cny(200), cny(1230))
        .await
        .unwrap();
    assert_eq!(refunded, cny(200));
    env.sim.refund_in_portal(b.as_str(), cny(1)).unwrap();
    let u_no = env.sim.add_unknown_trade("UNKNOWN0001", cny(500));

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
        (a_no.as_str(), cny(1230))
    );
    assert!(pa.at_ms.unwrap().abs_diff(now_ms()) < 60_000);
    assert_eq!(find(b.as_str(), false).gateway_trade_no, b_no);
    assert_eq!(find(b.as_str(), false).amount, cny(1));
    let ra = find(a.as_str(), true);
    assert_eq!(
        ra.entry,
        BillEntry::Refund {
            refund_no: "R1".into()
        }
    );
    assert_eq!(ra.amount, cny(200));
    let rb = find(b.as_str(), true);
    assert_eq!(
        rb.entry,
        BillEntry::Refund {
            refund_no: String::new()
        }
    );
    assert_eq!(find("UNKNOWN0001", false).gateway_trade_no, u_no);
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
async fn tampered_failing_and_empty_bills() {
    let env = start().await;
    // No trades at all: the gateway has no bill; kami reads an empty one.
    let empty = env.channel.bill(today()).await.unwrap();
    assert!(empty.rows.is_empty());
    let a = env.create(1230).await;
    env.pay(&a);
    // Yesterday and tomorrow hold nothing.
    for day in [today().previous_day().unwrap(), today().next_day().unwrap()] {
        let b = env.channel.bill(day).await.unwrap();
        assert_eq!((b.day, b.rows.len()), (day, 0));
    }

    env.sim.tamper_next_bill();
    match env.channel.bill(today()).await {
        Err(PayError::Malformed(m)) => {
            assert!(
                m.contains("交易合计 商家实收 is 12.31 but the rows add up to 12.30"),
                "{m}"
            )
        }
        other => panic!("expected the tampered bill refused, got {other:?}"),
    }
    // One-shot: the next bill is true again.
    assert_eq!(env.channel.bill(today()).await.unwrap().rows.len(), 1);

    env.sim.fail_bill_api(true);
    match env.channel.bill(today()).await {
        Err(PayError::Gateway { code, .. }) => assert_eq!(code, "isp.unknow-error"),
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
async fn queries_fail_until_cleared_and_notifications_can_be_dropped() {
    let env = start().await;
    let a = env.create(100).await;
    let no = env.pay(&a);
    // Dropped: nothing was sent.
    assert!(env.sim.notifications(a.as_str()).is_empty());
    env.sim
        .set_failing("alipay.trade.query", Some(Fault::system_error()));
    for _ in 0..3 {
        match env.channel.query(a.as_str()).await {
            Err(PayError::Gateway { code, .. }) => assert_eq!(code, "ACQ.SYSTEM_ERROR"),
            other => panic!("expected the query to fail, got {other:?}"),
        }
    }
    env.sim.set_failing("alipay.trade.query", None);
    match env.channel.query(a.as_str()).await.unwrap() {
        TradeState::Paid(c) => assert_eq!((c.gateway_trade_no, c.amount), (no, cny(100))),
        other => panic!("expected Paid, got {other:?}"),
    }
}

fn malformed<T: std::fmt::Debug>(r: Result<T, PayError>, needles: &[&str]) {
    match r {
        Err(PayError::Malformed(m)) => {
            assert!(
                needles.iter().any(|n| m.contains(n)),
                "{m:?} lacks {needles:?}"
            )
        }
        other => panic!("expected Malformed({needles:?}), got {other:?}"),
    }
}

fn archive(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<ZipEntry> = entries
        .iter()
        .map(|(n, d)| ZipEntry {
            name: n.as_bytes().to_vec(),
            data: d.clone(),
        })
        .collect();
    write_zip(&entries, time::macros::datetime!(2024-01-01 00:00:00)).unwrap()
}

#[tokio::test]
async fn hostile_and_wrong_archives_are_refused_whole() {
    let env = start().await;
    // An entry declaring 1 GiB: refused before anything is inflated.
    let mut bomb = archive(&[("a.csv", vec![b'#'; 10])]);
    let cd = bomb.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    bomb[cd + 24..cd + 28].copy_from_slice(&(1u32 << 30).to_le_bytes());
    env.sim.serve_next_bill(bomb);
    malformed(
        env.channel.bill(today()).await,
        &["inflates beyond 67108864 bytes"],
    );
    // More entries than a bill has.
    let many: Vec<(String, Vec<u8>)> = (0..9).map(|i| (format!("{i}.csv"), vec![b'#'])).collect();
    let many: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    env.sim.serve_next_bill(archive(&many));
    malformed(env.channel.bill(today()).await, &["9 entries, more than 8"]);
    // The files in UTF-8 instead of GBK.
    let utf8 = "#支付宝业务明细查询\r\n#账号：[20880000000000020156]\r\n"
        .as_bytes()
        .to_vec();
    env.sim.serve_next_bill(archive(&[("d.csv", utf8)]));
    malformed(
        env.channel.bill(today()).await,
        &["is not GBK text", "neither the detail nor the summary"],
    );
    env.sim.serve_next_bill(b"not a zip".to_vec());
    malformed(env.channel.bill(today()).await, &["not a zip archive"]);
}
