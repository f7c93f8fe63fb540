//! The bill scenarios both bill simulators run (`alipay_bill.rs`, `wechatpay_bill.rs`): kami's
//! channel reads the simulator's bill of the trades it created and paid (notifications
//! dropped: these tests read the bill), through the simulator's bill controls ([`Billed`]).

use kami_pay::TradeRef;
use std::sync::Arc;

use kami_core::{Method, OrderNo, TradeNo};
use kami_pay::{
    BillDay, BillEntry, CreatePayment, Device, PayError, PaymentAction, PaymentChannel, TradeState,
};
use kami_sim::common::bill::bill_day_of;

use super::{cny, new_trade_no, now_ms, settled_refund};

/// `#[tokio::test]`s of the calling test binary running the named scenarios of this module,
/// each on a fresh `$start().await` ([`BillEnv`]).
#[macro_export]
macro_rules! bill_scenarios {
    ($start:ident: $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                $crate::support::bill::$scenario(&$start().await).await;
            }
        )+
    };
}

/// A gateway simulator with a bill, and its test controls.
pub trait Billed {
    /// What kami says of a bill whose totals are one fen above its rows' 12.30.
    const TAMPERED: &'static str;
    /// The gateway's error code while the bill API fails.
    const BILL_API_ERROR: &'static str;
    /// The gateway's error code while trade queries fail.
    const QUERY_ERROR: &'static str;
    /// Pay the trade as the buyer would, its notification dropped; the gateway's trade number.
    fn pay_silently(self: &Arc<Self>, trade: &str) -> String;
    /// Notification requests sent for the trade so far.
    fn notifications_sent(&self, trade: &str) -> usize;
    fn fail_queries(&self, on: bool);
    fn fail_bill_api(&self, on: bool);
    fn tamper_next_bill(&self);
    /// A refund made in the merchant portal (no refund number of kami's).
    fn refund_in_portal(&self, trade: &str, amount: kami_core::Money);
    /// A payment for a trade kami never created; the gateway's trade number.
    fn add_unknown_trade(&self, trade: &str, amount: kami_core::Money) -> String;
    fn hide_from_bill(&self, trade: &str, hidden: bool);
}

/// A simulator on port 0 and kami's channel to it.
pub struct BillEnv<S, C> {
    pub sim: Arc<S>,
    pub channel: C,
    /// The simulator's `http://` base URL.
    pub base: String,
    /// The method the channel creates trades for.
    pub method: Method,
}

impl<S: Billed, C: PaymentChannel> BillEnv<S, C> {
    /// Create a QR trade of `fen` (notifications go nowhere).
    pub async fn create(&self, fen: i64) -> OrderNo {
        let trade = new_trade_no();
        let req = CreatePayment {
            trade_no: TradeNo::first(&trade),
            amount: cny(fen),
            subject: "Steam 月卡, \"gift\"".into(),
            method: self.method,
            device: Device::Pc,
            notify_url: format!("{}/nowhere", self.base),
            return_url: format!("{}/nowhere", self.base),
            expires_at_ms: now_ms() + 15 * 60_000,
            user_agent: None,
            client_ip: None,
            payer_openid: None,
        };
        assert!(matches!(
            self.channel.create(&req).await.unwrap().action,
            PaymentAction::Qr { .. }
        ));
        trade
    }

    /// Pay a created trade, its notification dropped; the gateway's trade number.
    pub fn pay(&self, trade: &OrderNo) -> String {
        self.sim.pay_silently(trade.as_str())
    }

    /// Today's bill, which must read.
    pub async fn bill_rows(&self) -> usize {
        self.channel.bill(today()).await.unwrap().rows.len()
    }
}

/// The Beijing day now falls in.
pub fn today() -> BillDay {
    bill_day_of(now_ms()).unwrap()
}

/// `r` is refused as malformed, saying one of `needles`.
pub fn malformed<T: std::fmt::Debug>(r: Result<T, PayError>, needles: &[&str]) {
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

fn gateway_error<T: std::fmt::Debug>(r: Result<T, PayError>, expected: &str) {
    match r {
        Err(PayError::Gateway { code, .. }) => assert_eq!(code, expected),
        other => panic!("expected the gateway error {expected}, got {other:?}"),
    }
}

/// Two payments (one refunded through kami, one in the portal), an unpaid trade and an
/// unknown payment: the bill lists exactly the payments and refunds, with their totals.
pub async fn bill_lists_payments_and_refunds_exactly<S: Billed, C: PaymentChannel>(
    env: &BillEnv<S, C>,
) {
    let a = env.create(1230).await;
    let a_no = env.pay(&a);
    let b = env.create(1).await;
    let b_no = env.pay(&b);
    let _unpaid = env.create(999).await;
    let refunded = settled_refund(&env.channel, a.as_str(), "R1", cny(200), cny(1230))
        .await
        .unwrap();
    assert_eq!(refunded, cny(200));
    env.sim.refund_in_portal(b.as_str(), cny(1));
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
    let pb = find(b.as_str(), false);
    assert_eq!(
        (pb.gateway_trade_no.as_str(), pb.amount),
        (b_no.as_str(), cny(1))
    );
    let ra = find(a.as_str(), true);
    assert_eq!(
        ra.entry,
        BillEntry::Refund {
            refund_no: "R1".into()
        }
    );
    assert_eq!(
        (ra.gateway_trade_no.as_str(), ra.amount),
        (a_no.as_str(), cny(200))
    );
    let rb = find(b.as_str(), true);
    assert_eq!(
        rb.entry,
        BillEntry::Refund {
            refund_no: String::new()
        }
    );
    assert_eq!(rb.amount, cny(1));
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

/// No trades: an empty bill; other days: empty; a tampered bill is refused once; a failing
/// bill API is the gateway's error until it clears. Leaves one paid trade of 12.30 behind.
pub async fn tampered_failing_and_empty_bills<S: Billed, C: PaymentChannel>(env: &BillEnv<S, C>) {
    // No trades at all: the gateway has no bill; kami reads an empty one.
    assert_eq!(env.bill_rows().await, 0);
    let a = env.create(1230).await;
    env.pay(&a);
    // Yesterday and tomorrow hold nothing.
    for day in [today().previous_day().unwrap(), today().next_day().unwrap()] {
        let b = env.channel.bill(day).await.unwrap();
        assert_eq!((b.day, b.rows.len()), (day, 0));
    }

    env.sim.tamper_next_bill();
    malformed(env.channel.bill(today()).await, &[S::TAMPERED]);
    // One-shot: the next bill is true again.
    assert_eq!(env.bill_rows().await, 1);

    env.sim.fail_bill_api(true);
    gateway_error(env.channel.bill(today()).await, S::BILL_API_ERROR);
    env.sim.fail_bill_api(false);
    assert_eq!(env.bill_rows().await, 1);
}

/// A hidden trade leaves every bill, its payment and refunds alike, until shown again; a day
/// left with nothing reads as an empty bill.
pub async fn hidden_trades_leave_the_bill_until_shown<S: Billed, C: PaymentChannel>(
    env: &BillEnv<S, C>,
) {
    let a = env.create(1230).await;
    env.pay(&a);
    let b = env.create(100).await;
    env.pay(&b);
    env.sim.refund_in_portal(b.as_str(), cny(40));
    env.sim.hide_from_bill(b.as_str(), true);
    let bill = env.channel.bill(today()).await.unwrap();
    let trades: Vec<&str> = bill.rows.iter().map(|r| r.trade_no.as_str()).collect();
    assert_eq!(trades, [a.as_str()], "{bill:?}");
    assert_eq!((bill.totals.payments, bill.totals.refunds), (1, 0));
    env.sim.hide_from_bill(a.as_str(), true);
    assert_eq!(env.bill_rows().await, 0);
    env.sim.hide_from_bill(a.as_str(), false);
    env.sim.hide_from_bill(b.as_str(), false);
    let bill = env.channel.bill(today()).await.unwrap();
    assert_eq!(bill.rows.len(), 3, "{bill:?}");
    assert_eq!(bill.totals.refunded_minor, 40);
}

/// A dropped notification is never sent; failing queries answer the gateway's error until
/// cleared, then the query finds the payment.
pub async fn queries_fail_until_cleared_and_notifications_can_be_dropped<
    S: Billed,
    C: PaymentChannel,
>(
    env: &BillEnv<S, C>,
) {
    let a = env.create(100).await;
    let no = env.pay(&a);
    assert_eq!(env.sim.notifications_sent(a.as_str()), 0, "dropped");
    env.sim.fail_queries(true);
    for _ in 0..3 {
        gateway_error(
            env.channel.query(&TradeRef::from(a.as_str())).await,
            S::QUERY_ERROR,
        );
    }
    env.sim.fail_queries(false);
    match env
        .channel
        .query(&TradeRef::from(a.as_str()))
        .await
        .unwrap()
    {
        TradeState::Paid(c) => assert_eq!((c.gateway_trade_no, c.amount), (no, cny(100))),
        other => panic!("expected Paid, got {other:?}"),
    }
}
