//! The Alipay bill end to end: kami's `AlipayChannel::bill` against the simulator's
//! `alipay.data.dataservice.bill.downloadurl.query` and its zip of GBK CSVs, for the trades
//! the simulator processed; and the test controls the reconciliation tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kami_core::{ChannelId, Method, Money};
use kami_pay::alipay::{AlipayChannel, AlipayConfig, AlipayMode, AlipaySignType};
use kami_pay::crypto::RsaSigner;
use kami_pay::PaymentChannel;
use kami_sim::alipay::{AlipaySim, AlipaySimConfig, Fault, NotifyMode, PayOptions};
use kami_sim::common::zip::{write_zip, ZipEntry};
use support::bill::{malformed, today, BillEnv, Billed};
use support::{fast_schedule, listen, rsa_key_pems, serve};

const APP_ID: &str = "2021000000000002";
const SELLER_ID: &str = "2088000000000002";

type Env = BillEnv<AlipaySim, AlipayChannel>;

impl Billed for AlipaySim {
    const TAMPERED: &'static str = "交易合计 商家实收 is 12.31 but the rows add up to 12.30";
    const BILL_API_ERROR: &'static str = "isp.unknow-error";
    const QUERY_ERROR: &'static str = "ACQ.SYSTEM_ERROR";
    fn pay_silently(self: &Arc<Self>, trade: &str) -> String {
        let opts = PayOptions {
            amount: None,
            notify: NotifyMode::Drop,
        };
        self.pay(trade, opts).unwrap()
    }
    fn notifications_sent(&self, trade: &str) -> usize {
        self.notifications(trade).len()
    }
    fn fail_queries(&self, on: bool) {
        self.set_failing("alipay.trade.query", on.then(Fault::system_error));
    }
    fn fail_bill_api(&self, on: bool) {
        AlipaySim::fail_bill_api(self, on);
    }
    fn tamper_next_bill(&self) {
        AlipaySim::tamper_next_bill(self);
    }
    fn refund_in_portal(&self, trade: &str, amount: Money) {
        AlipaySim::refund_in_portal(self, trade, amount).unwrap();
    }
    fn add_unknown_trade(&self, trade: &str, amount: Money) -> String {
        AlipaySim::add_unknown_trade(self, trade, amount)
    }
    fn hide_from_bill(&self, trade: &str, hidden: bool) {
        AlipaySim::hide_from_bill(self, trade, hidden);
    }
}

async fn start() -> Env {
    let (listener, base) = listen().await;
    let (merchant_pem, gateway_pem) = rsa_key_pems();
    let merchant = RsaSigner::from_text(merchant_pem).unwrap();
    let gateway = RsaSigner::from_text(gateway_pem).unwrap();
    let sim = AlipaySim::new(AlipaySimConfig {
        app_id: APP_ID.into(),
        merchant_public_key: merchant.verifier().unwrap(),
        gateway_key: RsaSigner::from_text(gateway_pem).unwrap(),
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
    BillEnv {
        sim,
        channel,
        base,
        method: Method::Alipay,
    }
}

bill_scenarios!(start:
    bill_lists_payments_and_refunds_exactly,
    tampered_failing_and_empty_bills,
    hidden_trades_leave_the_bill_until_shown,
    queries_fail_until_cleared_and_notifications_can_be_dropped,
);

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
