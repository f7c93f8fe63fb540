//! The WeChat Pay bill end to end: kami's `WechatPayChannel::bill` against the simulator's
//! `GET /v3/bill/tradebill` and the signed download of the file (SHA1 checked), for the trades
//! the simulator processed; and the test controls the reconciliation tests rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use kami_core::{ChannelId, Method, Money};
use kami_pay::wechatpay::{WechatMode, WechatPayChannel};
use kami_pay::PaymentChannel;
use kami_sim::wechatpay::{demo_pair, NotifyMode, PayOptions, WechatSim};
use support::bill::{self, malformed, today, BillEnv, Billed};
use support::{cny, listen, serve};

type Env = BillEnv<WechatSim, WechatPayChannel>;

impl Billed for WechatSim {
    const TAMPERED: &'static str = "应结订单总金额 is 12.31 but the rows add up to 12.30";
    const BILL_API_ERROR: &'static str = "SYSTEM_ERROR";
    const QUERY_ERROR: &'static str = "SYSTEM_ERROR";
    fn pay_silently(self: &Arc<Self>, trade: &str) -> String {
        let opts = PayOptions {
            notify: NotifyMode::Drop,
            ..Default::default()
        };
        self.pay(trade, opts).unwrap()
    }
    fn notifications_sent(&self, trade: &str) -> usize {
        self.notify_stats(trade).map_or(0, |s| s.attempts as usize)
    }
    fn fail_queries(&self, on: bool) {
        WechatSim::fail_queries(self, on);
    }
    fn fail_bill_api(&self, on: bool) {
        WechatSim::fail_bill_api(self, on);
    }
    fn tamper_next_bill(&self) {
        WechatSim::tamper_next_bill(self);
    }
    fn refund_in_portal(&self, trade: &str, amount: Money) {
        WechatSim::refund_in_portal(self, trade, amount).unwrap();
    }
    fn add_unknown_trade(&self, trade: &str, amount: Money) -> String {
        WechatSim::add_unknown_trade(self, trade, amount)
    }
    fn hide_from_bill(&self, trade: &str, hidden: bool) {
        WechatSim::hide_from_bill(self, trade, hidden);
    }
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
    BillEnv {
        sim,
        channel,
        base,
        method: Method::Wxpay,
    }
}

bill_scenarios!(start:
    bill_lists_payments_and_refunds_exactly,
    hidden_trades_leave_the_bill_until_shown,
    queries_fail_until_cleared_and_notifications_can_be_dropped,
);

/// The shared scenario, then a bill whose announced hash is wrong (once).
#[tokio::test]
async fn tampered_wrong_hash_failing_and_empty_bills() {
    let env = start().await;
    bill::tampered_failing_and_empty_bills(&env).await;
    env.sim.corrupt_next_bill_hash();
    malformed(
        env.channel.bill(today()).await,
        &["does not match the SHA1"],
    );
    assert_eq!(env.bill_rows().await, 1, "one-shot");
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
async fn wrong_files_are_refused_whole() {
    let env = start().await;
    let header = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n";
    env.sim.serve_next_bill(header.as_bytes().to_vec());
    malformed(
        env.channel.bill(today()).await,
        &["no summary line 总交易单数"],
    );
    env.sim
        .serve_next_bill(encoding_rs::GBK.encode(header).0.into_owned());
    malformed(env.channel.bill(today()).await, &["not UTF-8"]);
}
