//! Reconciliation against the channels' bills (issue 11 part 4), through the admin API with
//! the real simulators, on a manual clock: a payment whose notification was dropped (and
//! whose queries fail) is recovered from the bill and delivered exactly once; a bill of
//! another amount makes an exception; a tampered or unavailable bill (for WeChat Pay also one
//! whose announced hash is wrong) fails the batch with nothing applied; a merchant-portal
//! refund and an unknown trade are reported (and alerted, then resolved); a trade missing
//! from the bill is carried over, then reported after three days; Epay is reconciled by
//! queries; re-runs are idempotent; refusals change nothing; the daily job runs once across
//! two instances.
//!
//! Scenarios are generic over [`Gateway`] (a channel and its simulator's controls) and, for
//! the bill scenarios, [`Billed`] (the bill's controls): the sandbox, Alipay and WeChat Pay
//! run every bill scenario, Epay (no bill) the recovery by queries. Every simulator, the
//! server and the simulators' channels share the manual clock, so the trades fall on [`DAY`].

use std::sync::Arc;

use kami_core::{Currency, ManualClock, Money};
use kami_testkit::kami_sim::alipay::{AlipaySim, Fault};
use kami_testkit::kami_sim::paypal::PaypalSim;
use kami_testkit::kami_sim::sandbox::SandboxSim;
use kami_testkit::kami_sim::stripe::StripeSim;
use kami_testkit::kami_sim::wechatpay::WechatSim;
use kami_testkit::{both_backends, cards, inspect, Backend, Sims, TestApp};
use serde_json::{json, Value};

/// 2026-12-01T04:00:00Z: noon of 1 December in Beijing.
const DEC_1_NOON_BEIJING: i64 = 1_796_097_600_000;
const DAY: &str = "2026-12-01";
const DAY_MS: i64 = 86_400_000;

/// A channel under test and its gateway simulator's controls.
trait Gateway {
    /// The kami channel's id.
    fn channel(&self) -> &'static str;
    /// The buyer method routed to it.
    fn method(&self) -> &'static str;
    /// Whether the channel has a bill (else reconciliation queries each trade).
    fn has_bill(&self) -> bool;
    /// Pay the order at the gateway; its notification is dropped. By default on the
    /// simulator's own page, with its `notify=drop` control.
    async fn pay_silently(&self, app: &TestApp, order: &Value) {
        pay_in_browser(app, order, "drop", None).await;
    }
    /// Pay the order at the gateway, notified as usual (returns once kami delivered).
    async fn pay_notified(&self, app: &TestApp, order: &Value) {
        pay_in_browser(app, order, "normal", None).await;
        assert_eq!(app.wait_settled(order).await["status"], "delivered");
    }
    /// Trade queries fail (so no payment check could find the payment).
    fn fail_queries(&self, on: bool);
}

/// A channel with a daily bill, and its simulator's bill controls.
trait Billed: Gateway {
    /// What a failed batch's error names while the bill API fails (the gateway's code).
    const BILL_API_ERROR: &str;
    /// What a failed batch's error says of a bill whose totals do not add up (the scenario's
    /// bill holds one payment of 10.00; tampering states its total one fen higher).
    const TOTALS_ERROR: &str;
    /// The buyer pays `amount` (not the order's) for the order; the notification is dropped.
    async fn pay_silently_another_amount(&self, app: &TestApp, order: &Value, amount: Money);
    /// The bill API fails.
    fn fail_bills(&self, on: bool);
    /// The next bill states totals its rows do not add up to.
    fn tamper_next_bill(&self);
    /// The next bill's announced hash is not the file's, for protocols that announce one:
    /// what the failed batch's error then says (`None`: the protocol has no hash).
    fn corrupt_next_bill_hash(&self) -> Option<&'static str> {
        None
    }
    /// A refund of the paid trade made in the merchant portal (no kami refund number).
    fn portal_refund(&self, trade_no: &str, amount: Money);
    /// A payment for a trade kami never created.
    fn unknown_payment(&self, trade_no: &str, amount: Money);
    /// The bills leave the trade out.
    fn hide_from_bill(&self, trade_no: &str, hidden: bool);
}

struct Sandbox(Arc<SandboxSim>);

impl Gateway for Sandbox {
    fn channel(&self) -> &'static str {
        "sandbox"
    }
    fn method(&self) -> &'static str {
        "sandbox"
    }
    fn has_bill(&self) -> bool {
        true
    }
    async fn pay_silently(&self, app: &TestApp, order: &Value) {
        let (s, body) = app.pay_with(order, "drop").await;
        assert_eq!(s, 200, "{body}");
    }
    async fn pay_notified(&self, app: &TestApp, order: &Value) {
        app.pay(order).await;
        assert_eq!(app.wait_settled(order).await["status"], "delivered");
    }
    fn fail_queries(&self, on: bool) {
        self.0.set_query_failure(on);
    }
}

impl Billed for Sandbox {
    const BILL_API_ERROR: &str = "SYSTEM_BUSY";
    const TOTALS_ERROR: &str = "totals line says";
    async fn pay_silently_another_amount(&self, app: &TestApp, order: &Value, amount: Money) {
        // The sandbox's pay page has no amount: the gateway's record is changed after.
        self.pay_silently(app, order).await;
        let no = order["order_no"].as_str().unwrap();
        self.0.alter_paid_amount(no, amount).unwrap();
    }
    fn fail_bills(&self, on: bool) {
        self.0.set_bill_failure(on);
    }
    fn tamper_next_bill(&self) {
        self.0.tamper_next_bill();
    }
    fn portal_refund(&self, trade_no: &str, amount: Money) {
        self.0.portal_refund(trade_no, amount).unwrap();
    }
    fn unknown_payment(&self, trade_no: &str, amount: Money) {
        self.0.unknown_payment(trade_no, amount);
    }
    fn hide_from_bill(&self, trade_no: &str, hidden: bool) {
        self.0.hide_from_bill(trade_no, hidden);
    }
}

/// Pay `order` through the simulator's own page like a buyer, with the page's `notify`
/// control and, when given, another `amount` (in the simulator's unit).
async fn pay_in_browser(app: &TestApp, order: &Value, notify: &str, amount: Option<&str>) {
    let mut fields = vec![("notify", notify)];
    fields.extend(amount.map(|a| ("amount", a)));
    let (s, body) = app.pay_in_browser_with(order, &fields).await;
    assert_eq!(s, 200, "{body}");
}

/// Alipay (`alipay-sim`), paid on the simulator's cashier page.
struct Alipay(Arc<AlipaySim>);

impl Gateway for Alipay {
    fn channel(&self) -> &'static str {
        "alipay-sim"
    }
    fn method(&self) -> &'static str {
        "alipay"
    }
    fn has_bill(&self) -> bool {
        true
    }
    fn fail_queries(&self, on: bool) {
        self.0
            .set_failing("alipay.trade.query", on.then(Fault::system_error));
    }
}

impl Billed for Alipay {
    const BILL_API_ERROR: &str = "isp.unknow-error";
    const TOTALS_ERROR: &str = "交易合计 商家实收 is 10.01 but the rows add up to 10.00";
    async fn pay_silently_another_amount(&self, app: &TestApp, order: &Value, amount: Money) {
        // The cashier's `amount` is in yuan.
        let yuan = amount.to_major_string();
        pay_in_browser(app, order, "drop", Some(&yuan)).await;
    }
    fn fail_bills(&self, on: bool) {
        self.0.fail_bill_api(on);
    }
    fn tamper_next_bill(&self) {
        self.0.tamper_next_bill();
    }
    fn portal_refund(&self, trade_no: &str, amount: Money) {
        self.0.refund_in_portal(trade_no, amount).unwrap();
    }
    fn unknown_payment(&self, trade_no: &str, amount: Money) {
        self.0.add_unknown_trade(trade_no, amount);
    }
    fn hide_from_bill(&self, trade_no: &str, hidden: bool) {
        self.0.hide_from_bill(trade_no, hidden);
    }
}

/// WeChat Pay (`wechat-sim`, Native), paid on the simulator's scan page.
struct WechatPay(Arc<WechatSim>);

impl Gateway for WechatPay {
    fn channel(&self) -> &'static str {
        "wechat-sim"
    }
    fn method(&self) -> &'static str {
        "wxpay"
    }
    fn has_bill(&self) -> bool {
        true
    }
    fn fail_queries(&self, on: bool) {
        self.0.fail_queries(on);
    }
}

impl Billed for WechatPay {
    const BILL_API_ERROR: &str = "SYSTEM_ERROR";
    const TOTALS_ERROR: &str = "应结订单总金额 is 10.01 but the rows add up to 10.00";
    async fn pay_silently_another_amount(&self, app: &TestApp, order: &Value, amount: Money) {
        // The scan page's `amount` is in fen.
        let fen = amount.minor().to_string();
        pay_in_browser(app, order, "drop", Some(&fen)).await;
    }
    fn fail_bills(&self, on: bool) {
        self.0.fail_bill_api(on);
    }
    fn tamper_next_bill(&self) {
        self.0.tamper_next_bill();
    }
    fn corrupt_next_bill_hash(&self) -> Option<&'static str> {
        self.0.corrupt_next_bill_hash();
        Some("SHA1")
    }
    fn portal_refund(&self, trade_no: &str, amount: Money) {
        self.0.refund_in_portal(trade_no, amount).unwrap();
    }
    fn unknown_payment(&self, trade_no: &str, amount: Money) {
        self.0.add_unknown_trade(trade_no, amount);
    }
    fn hide_from_bill(&self, trade_no: &str, hidden: bool) {
        self.0.hide_from_bill(trade_no, hidden);
    }
}

/// Stripe (`stripe-sim`), paid on the simulator's Checkout page; its "bill" is the day's
/// balance transactions.
struct Stripe(Arc<StripeSim>);

impl Gateway for Stripe {
    fn channel(&self) -> &'static str {
        "stripe-sim"
    }
    fn method(&self) -> &'static str {
        "card"
    }
    fn has_bill(&self) -> bool {
        true
    }
    // Delivery is only from the signed webhook (or the bill): the return page asks nothing.
    fn fail_queries(&self, _on: bool) {}
}

impl Billed for Stripe {
    const BILL_API_ERROR: &str = "api_error";
    const TOTALS_ERROR: &str = "no positive amount";
    async fn pay_silently_another_amount(&self, app: &TestApp, order: &Value, amount: Money) {
        self.pay_silently(app, order).await;
        let no = order["order_no"].as_str().unwrap();
        self.0.charge_another_amount(no, amount.minor()).unwrap();
    }
    fn fail_bills(&self, on: bool) {
        self.0.fail_balance_api(on);
    }
    fn tamper_next_bill(&self) {
        self.0.tamper_next_balance_page();
    }
    fn portal_refund(&self, trade_no: &str, amount: Money) {
        self.0.dashboard_refund(trade_no, amount.minor()).unwrap();
    }
    fn unknown_payment(&self, trade_no: &str, amount: Money) {
        self.0.unknown_payment(trade_no, amount);
    }
    fn hide_from_bill(&self, trade_no: &str, hidden: bool) {
        self.0.hide_from_balance(trade_no, hidden);
    }
}

/// PayPal (`paypal-sim`): kami captures an approved order itself, so a payment kami never
/// saw is a capture whose answer was lost; its bill is the transaction search. The shop's
/// rate table makes US$1 = ¥1 here, so the scenarios' amounts read the same in USD.
struct Paypal(Arc<PaypalSim>);

/// `[fx]` for the PayPal scenarios: a CNY product is charged the same number in USD.
const PAYPAL_AT_PAR: &str = "[fx]\n[fx.rates]\nUSD = \"1\"\n";

impl Gateway for Paypal {
    fn channel(&self) -> &'static str {
        "paypal-sim"
    }
    fn method(&self) -> &'static str {
        "paypal"
    }
    fn has_bill(&self) -> bool {
        true
    }
    async fn pay_silently(&self, _app: &TestApp, order: &Value) {
        let no = order["order_no"].as_str().unwrap();
        self.0.capture_unseen(no, None).unwrap();
    }
    // The clock never brings a payment check due; the return is never followed.
    fn fail_queries(&self, _on: bool) {}
}

impl Billed for Paypal {
    const BILL_API_ERROR: &str = "INTERNAL_SERVER_ERROR";
    const TOTALS_ERROR: &str = "total_items 2 but 1 listed";
    async fn pay_silently_another_amount(&self, _app: &TestApp, order: &Value, amount: Money) {
        let no = order["order_no"].as_str().unwrap();
        self.0.capture_unseen(no, Some(amount.minor())).unwrap();
    }
    fn fail_bills(&self, on: bool) {
        self.0.fail_search(on);
    }
    fn tamper_next_bill(&self) {
        self.0.tamper_next_search();
    }
    fn portal_refund(&self, trade_no: &str, amount: Money) {
        self.0.portal_refund(trade_no, amount.minor()).unwrap();
    }
    fn unknown_payment(&self, trade_no: &str, amount: Money) {
        let usd = Money::new(amount.minor(), Currency::Usd).unwrap();
        self.0.unknown_payment(trade_no, usd);
    }
    fn hide_from_bill(&self, trade_no: &str, hidden: bool) {
        self.0.hide_from_search(trade_no, hidden);
    }
}

/// A USDT gateway (`usdt-sim`: epusdt; `tokenpay-sim`) has no bill: reconciliation asks
/// the gateway about each trade of the day.
struct Usdt(&'static str);

impl Gateway for Usdt {
    fn channel(&self) -> &'static str {
        self.0
    }
    fn method(&self) -> &'static str {
        "usdt"
    }
    fn has_bill(&self) -> bool {
        false
    }
    fn fail_queries(&self, _on: bool) {}
}

/// Epay has no bill: reconciliation queries each trade, so its queries must work.
struct Epay;

impl Gateway for Epay {
    fn channel(&self) -> &'static str {
        "epay-sim"
    }
    fn method(&self) -> &'static str {
        "qqpay"
    }
    fn has_bill(&self) -> bool {
        false
    }
    fn fail_queries(&self, _on: bool) {}
}

fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::Cny).unwrap()
}

/// A server and every simulator on a manual clock at noon of [`DAY`] in Beijing (payment
/// checks never come due unless the test moves the clock).
async fn spawn(backend: Backend) -> (TestApp, Sims, Arc<ManualClock>) {
    spawn_gateway(backend, "", |sims| sims).await
}

/// As [`spawn`], with `config`, and the gateway `gw` makes of the simulators.
async fn spawn_gateway<G>(
    backend: Backend,
    config: &str,
    gw: impl FnOnce(Sims) -> G,
) -> (TestApp, G, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(DEC_1_NOON_BEIJING));
    let (app, sims) = TestApp::spawn_with_sims(backend, config, clock.clone()).await;
    (app, gw(sims), clock)
}

/// `POST /api/v1/admin/reconciliations`, which must answer 200: the report.
async fn reconcile(app: &TestApp, channel: &str, date: &str) -> Value {
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/reconciliations",
            json!({"channel": channel, "date": date}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The report's items of one kind.
fn items(report: &Value, kind: &str) -> Vec<Value> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == kind)
        .cloned()
        .collect()
}

/// What a re-run must reproduce: each item without its row id.
fn findings(report: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i.as_object_mut().unwrap().remove("id");
            i
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    inspect::scalar(&app.db_url, sql).await
}

/// Alert signals of the mismatch condition for `channel/day` (`firing`: true or false).
async fn signals(app: &TestApp, subject: &str, firing: bool) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'alert.signal' \
         AND payload LIKE '%\"event\":\"reconciliation_mismatch\"%' \
         AND payload LIKE '%\"subject\":\"{subject}\"%' AND payload LIKE '%\"firing\":{firing}%'"
    );
    count(app, &sql).await
}

async fn product(app: &TestApp, slug: &str) {
    app.create_product(slug, 1000, "auto").await;
    app.import_keys(slug, 2).await;
}

// -- scenarios, for any channel -----------------------------------------------------------

/// A paid trade whose notification was dropped and whose queries fail is recovered from the
/// bill (or, without one, by the reconciliation's query) and delivered exactly once; a
/// re-run reports the same and sells nothing more.
async fn recovered_exactly_once<G: Gateway>(app: &TestApp, gw: &G) {
    let slug = "rc-once";
    product(app, slug).await;
    let o = app.order_via(slug, gw.method(), "pc").await;
    let no = o["order_no"].as_str().unwrap();
    gw.fail_queries(true);
    gw.pay_silently(app, &o).await;
    assert_eq!(app.admin_order(no).await["status"], "pending");

    let r = reconcile(app, gw.channel(), DAY).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["source"], if gw.has_bill() { "bill" } else { "query" });
    let rec = items(&r, "recovered");
    assert_eq!(rec.len(), 1, "{r}");
    assert_eq!(
        (&rec[0]["trade_no"], &rec[0]["order_no"]),
        (&o["order_no"], &o["order_no"])
    );
    assert_eq!(rec[0]["bill_amount"], 1000);
    assert_eq!(r["mismatches"], 0, "{r}");
    let order = app.admin_order(no).await;
    assert_eq!(order["status"], "delivered", "{order}");
    let keys = cards(&order);
    assert_eq!(keys.len(), 1);
    assert_eq!(app.stock(slug).await, 1);

    let again = reconcile(app, gw.channel(), DAY).await;
    assert_eq!(again["id"], r["id"], "a day has one batch");
    assert_eq!(again["runs"], 2);
    assert_eq!(findings(&again), findings(&r));
    assert_eq!(
        cards(&app.admin_order(no).await),
        keys,
        "the same key, once"
    );
    assert_eq!(app.stock(slug).await, 1, "nothing more sold");
    let delivered = format!(
        "SELECT COUNT(*) FROM payment_events WHERE trade_no = '{no}' \
         AND outcome IN ('delivered', 'late_delivered')"
    );
    assert_eq!(count(app, &delivered).await, 1);
    let listed = app
        .admin_get(&format!(
            "/api/v1/admin/reconciliations?channel={}&date={DAY}",
            gw.channel()
        ))
        .await;
    assert_eq!(
        listed["reconciliations"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
}

/// The bill says the trade was paid another sum: the unpaid order becomes an exception (its
/// key goes back to stock), reported and alerted, never delivered or "fixed".
async fn other_amount_is_an_exception<G: Billed>(app: &TestApp, gw: &G) {
    let slug = "rc-amount";
    product(app, slug).await;
    let o = app.order_via(slug, gw.method(), "pc").await;
    let no = o["order_no"].as_str().unwrap();
    gw.fail_queries(true);
    gw.pay_silently_another_amount(app, &o, cny(999)).await;

    let r = reconcile(app, gw.channel(), DAY).await;
    let m = items(&r, "amount_mismatch");
    assert_eq!(m.len(), 1, "{r}");
    assert_eq!(
        (&m[0]["kami_amount"], &m[0]["bill_amount"]),
        (&json!(1000), &json!(999))
    );
    assert_eq!(r["mismatches"], 1);
    let order = app.admin_order(no).await;
    assert_eq!(order["status"], "exception", "{order}");
    assert!(
        order["cards"].as_array().is_none_or(Vec::is_empty),
        "{order}"
    );
    assert_eq!(app.stock(slug).await, 2, "the held key went back");
    let subject = format!("{}/{DAY}", gw.channel());
    assert_eq!(signals(app, &subject, true).await, 1);

    let again = reconcile(app, gw.channel(), DAY).await;
    assert_eq!(findings(&again), findings(&r));
    assert_eq!(app.admin_order(no).await["status"], "exception");
    assert_eq!(app.stock(slug).await, 2);
}

/// A bill whose totals do not add up, whose announced hash is not the file's (WeChat Pay), or
/// that cannot be downloaded, fails the batch with the reason and applies nothing; the re-run
/// after the fix recovers the payment.
async fn bad_bill_fails_the_batch<G: Billed>(app: &TestApp, gw: &G) {
    let slug = "rc-tamper";
    product(app, slug).await;
    let o = app.order_via(slug, gw.method(), "pc").await;
    let no = o["order_no"].as_str().unwrap();
    gw.fail_queries(true);
    gw.pay_silently(app, &o).await;

    let failed = |r: &Value, says: &str| {
        assert_eq!(r["status"], "failed", "{r}");
        assert!(r["error"].as_str().unwrap().contains(says), "{says}: {r}");
        assert_eq!(r["items"], json!([]), "{r}");
    };
    gw.tamper_next_bill();
    failed(&reconcile(app, gw.channel(), DAY).await, G::TOTALS_ERROR);
    let mut runs = 1;
    if let Some(says) = gw.corrupt_next_bill_hash() {
        failed(&reconcile(app, gw.channel(), DAY).await, says);
        runs += 1;
    }
    gw.fail_bills(true);
    failed(&reconcile(app, gw.channel(), DAY).await, G::BILL_API_ERROR);
    runs += 1;
    assert_eq!(
        app.admin_order(no).await["status"],
        "pending",
        "nothing applied"
    );
    let events = format!("SELECT COUNT(*) FROM payment_events WHERE trade_no = '{no}'");
    assert_eq!(count(app, &events).await, 0);
    assert_eq!(app.stock(slug).await, 1, "the key is still only held");

    gw.fail_bills(false);
    let r = reconcile(app, gw.channel(), DAY).await;
    assert_eq!(
        (r["status"].as_str(), r["runs"].as_i64()),
        (Some("succeeded"), Some(runs + 1)),
        "{r}"
    );
    assert_eq!(items(&r, "recovered").len(), 1, "{r}");
    assert_eq!(app.admin_order(no).await["status"], "delivered");
}

/// A refund made in the merchant portal and a payment for a trade kami never created are
/// reported and alerted; an item is marked handled (audited, kept over a re-run); once the
/// bill no longer shows differences the alert is resolved.
async fn portal_refund_and_unknown_trade<G: Billed>(app: &TestApp, gw: &G) {
    let slug = "rc-portal";
    product(app, slug).await;
    let o = app.order_via(slug, gw.method(), "pc").await;
    let no = o["order_no"].as_str().unwrap();
    gw.pay_notified(app, &o).await;
    gw.portal_refund(no, cny(300));
    gw.unknown_payment("STRANGER-1", cny(500));

    let r = reconcile(app, gw.channel(), DAY).await;
    let refunds = items(&r, "refund_unknown_locally");
    assert_eq!(refunds.len(), 1, "{r}");
    assert_eq!(
        (&refunds[0]["order_no"], &refunds[0]["bill_amount"]),
        (&o["order_no"], &json!(300))
    );
    let unknown = items(&r, "unknown_payment");
    assert_eq!(unknown.len(), 1, "{r}");
    assert_eq!(
        (&unknown[0]["trade_no"], &unknown[0]["bill_amount"]),
        (&json!("STRANGER-1"), &json!(500))
    );
    assert_eq!(r["mismatches"], 2);
    assert_eq!(
        r["counts"],
        json!({"refund_unknown_locally": 1, "unknown_payment": 1})
    );
    let subject = format!("{}/{DAY}", gw.channel());
    assert_eq!(signals(app, &subject, true).await, 1);

    let id = r["id"].as_i64().unwrap();
    let item = unknown[0]["id"].as_i64().unwrap();
    let (s, v) = app
        .admin_post(
            &format!("/api/v1/admin/reconciliations/{id}/items/{item}/handle"),
            json!({"note": "another shop on this merchant account"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["handled"].as_bool(), v["note"].as_str()),
        (Some(true), Some("another shop on this merchant account"))
    );
    let audited = "SELECT COUNT(*) FROM audit_log WHERE action = 'reconciliation.handle'";
    assert_eq!(count(app, audited).await, 1);
    let again = reconcile(app, gw.channel(), DAY).await;
    assert_eq!(
        findings(&again),
        findings(
            &app.admin_get(&format!("/api/v1/admin/reconciliations/{id}"))
                .await
        )
    );
    let kept = items(&again, "unknown_payment");
    assert_eq!(
        kept[0]["note"], "another shop on this merchant account",
        "{again}"
    );
    assert_eq!(signals(app, &subject, true).await, 2);
    assert_eq!(
        app.admin_order(no).await["status"],
        "delivered",
        "nothing changed in kami"
    );

    // The gateway corrects its bill: no differences left, the condition is resolved.
    gw.hide_from_bill("STRANGER-1", true);
    gw.hide_from_bill(no, true);
    let clean = reconcile(app, gw.channel(), DAY).await;
    assert_eq!(clean["mismatches"], 0, "{clean}");
    assert_eq!(signals(app, &subject, false).await, 1);
}

/// kami holds a trade paid that the bill does not list: carried over on its day, quiet the
/// next two days, reported "missing at channel" on the third (and only once over a re-run).
async fn missing_is_carried_then_reported<G: Billed>(app: &TestApp, gw: &G, clock: &ManualClock) {
    let slug = "rc-carry";
    product(app, slug).await;
    let o = app.order_via(slug, gw.method(), "pc").await;
    let no = o["order_no"].as_str().unwrap();
    gw.pay_notified(app, &o).await;
    gw.hide_from_bill(no, true);

    let r = reconcile(app, gw.channel(), DAY).await;
    let carried = items(&r, "carried_over");
    assert_eq!(carried.len(), 1, "{r}");
    assert_eq!(carried[0]["order_no"], o["order_no"]);
    assert_eq!(r["mismatches"], 0);
    assert_eq!(
        signals(app, &format!("{}/{DAY}", gw.channel()), true).await,
        0
    );

    clock.advance(3 * DAY_MS);
    for day in ["2026-12-02", "2026-12-03"] {
        let r = reconcile(app, gw.channel(), day).await;
        assert_eq!(r["items"], json!([]), "{day}: {r}");
    }
    let r = reconcile(app, gw.channel(), "2026-12-04").await;
    let missing = items(&r, "missing_at_channel");
    assert_eq!(missing.len(), 1, "{r}");
    assert_eq!(
        (&missing[0]["order_no"], &missing[0]["kami_amount"]),
        (&o["order_no"], &json!(1000))
    );
    let again = reconcile(app, gw.channel(), "2026-12-04").await;
    assert_eq!(findings(&again), findings(&r));
    assert_eq!(
        signals(app, &format!("{}/2026-12-04", gw.channel()), true).await,
        2
    );
}

// -- the variants --------------------------------------------------------------------------

/// The five bill scenarios of one billed gateway, as the tests of module `$gateway`, each on
/// both backends: a server with `$config` and the gateway `$make` builds from its simulators.
macro_rules! billed_scenarios {
    ($gateway:ident, $config:expr, $make:expr) => {
        mod $gateway {
            use super::*;

            async fn recovered_exactly_once(backend: Backend) {
                let (app, gw, _clock) = spawn_gateway(backend, $config, $make).await;
                super::recovered_exactly_once(&app, &gw).await;
            }
            both_backends!(recovered_exactly_once);

            async fn other_amount_is_an_exception(backend: Backend) {
                let (app, gw, _clock) = spawn_gateway(backend, $config, $make).await;
                super::other_amount_is_an_exception(&app, &gw).await;
            }
            both_backends!(other_amount_is_an_exception);

            async fn bad_bill_fails_the_batch(backend: Backend) {
                let (app, gw, _clock) = spawn_gateway(backend, $config, $make).await;
                super::bad_bill_fails_the_batch(&app, &gw).await;
            }
            both_backends!(bad_bill_fails_the_batch);

            async fn portal_refund_and_unknown_trade(backend: Backend) {
                let (app, gw, _clock) = spawn_gateway(backend, $config, $make).await;
                super::portal_refund_and_unknown_trade(&app, &gw).await;
            }
            both_backends!(portal_refund_and_unknown_trade);

            async fn missing_is_carried_then_reported(backend: Backend) {
                let (app, gw, clock) = spawn_gateway(backend, $config, $make).await;
                super::missing_is_carried_then_reported(&app, &gw, &clock).await;
            }
            both_backends!(missing_is_carried_then_reported);
        }
    };
}

billed_scenarios!(sandbox, "", |s: Sims| Sandbox(s.sandbox));
billed_scenarios!(alipay, "", |s: Sims| Alipay(s.gateways.alipay.clone()));
billed_scenarios!(wechat, "", |s: Sims| WechatPay(
    s.gateways.wechatpay.clone()
));
billed_scenarios!(stripe, "", |s: Sims| Stripe(s.gateways.stripe.clone()));
billed_scenarios!(paypal, PAYPAL_AT_PAR, |s: Sims| Paypal(
    s.gateways.paypal.clone()
));

/// TokenPay answers queries: a paid trade whose notification was dropped is recovered by the
/// day's run (a stored channel above `usdt-sim`, as the console adds it).
async fn tokenpay_recovered_by_queries(backend: Backend) {
    let (app, sims, _clock) = spawn(backend).await;
    crate::usdt::add_tokenpay(&app, &sims.gateways).await;
    recovered_exactly_once(&app, &Usdt("tokenpay-db")).await;
}
both_backends!(tokenpay_recovered_by_queries);

/// epusdt has no order query: a day with a silent payment cannot be settled by asking, and
/// the run says so for that trade (never "matched", never delivered on a guess).
async fn epusdt_without_a_query_says_so(backend: Backend) {
    let (app, _sims, _clock) = spawn(backend).await;
    product(&app, "rc-epusdt").await;
    let o = app.order_via("rc-epusdt", "usdt", "pc").await;
    assert_eq!(o["payment"]["channel"], "usdt-sim", "{o}");
    Usdt("usdt-sim").pay_silently(&app, &o).await;
    let r = reconcile(&app, "usdt-sim", DAY).await;
    assert_eq!(
        (r["status"].as_str(), r["source"].as_str()),
        (Some("succeeded"), Some("query")),
        "{r}"
    );
    let failed = items(&r, "query_failed");
    assert_eq!(failed.len(), 1, "{r}");
    assert_eq!(failed[0]["trade_no"], o["order_no"]);
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("epusdt has no order query"),
        "{r}"
    );
    assert_eq!(r["mismatches"], 1, "{r}");
    let no = o["order_no"].as_str().unwrap();
    assert_eq!(app.admin_order(no).await["status"], "pending");
}
both_backends!(epusdt_without_a_query_says_so);

async fn epay_recovered_by_queries(backend: Backend) {
    let (app, _sims, _clock) = spawn(backend).await;
    recovered_exactly_once(&app, &Epay).await;
}
both_backends!(epay_recovered_by_queries);

// -- refusals, the job ---------------------------------------------------------------------

async fn get_status(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Unknown channel, bad or future day, missing channel, unknown batch or item: a precise
/// 4xx, and no batch is written.
async fn refusals_change_nothing(backend: Backend) {
    let (app, _sims, _clock) = spawn(backend).await;
    for (body, status, code) in [
        (
            json!({"channel": "nope", "date": DAY}),
            404,
            "unknown_channel",
        ),
        (
            json!({"channel": "sandbox", "date": "2026-02-30"}),
            422,
            "invalid_date",
        ),
        (
            json!({"channel": "sandbox", "date": "1 Dec"}),
            422,
            "invalid_date",
        ),
        (
            json!({"channel": "sandbox", "date": "2026-12-02"}),
            422,
            "future_date",
        ),
        (json!({"date": DAY}), 422, "invalid_request"),
    ] {
        let (s, v) = app
            .admin_post("/api/v1/admin/reconciliations", body.clone())
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
    }
    let (s, v) = get_status(&app, "/api/v1/admin/reconciliations?date=yesterday").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_date")),
        "{v}"
    );
    let (s, v) = get_status(&app, "/api/v1/admin/reconciliations/4242").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("reconciliation_not_found")),
        "{v}"
    );
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/reconciliations/4242/items/1/handle",
            json!({"note": "x"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("item_not_found")),
        "{v}"
    );
    let listed = app.admin_get("/api/v1/admin/reconciliations").await;
    assert_eq!(listed["reconciliations"], json!([]));
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM reconciliation_batches").await,
        0
    );
    // Without a token, nothing.
    let r = app
        .http
        .post(app.url("/api/v1/admin/reconciliations"))
        .json(&json!({"channel": "sandbox", "date": DAY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
both_backends!(refusals_change_nothing);

/// Two kami processes' jobs tick at once, twice each: yesterday is reconciled once.
async fn daily_job_runs_once_across_instances(backend: Backend) {
    let extra = "[reconciliation]\nenabled = false\nrun_at = \"00:00\"\n";
    let app = TestApp::spawn_with(backend, extra).await;
    let other = app.another_instance(extra).await;
    let states = [
        app.state.clone(),
        other.state.clone(),
        app.state.clone(),
        other.state.clone(),
    ];
    let ticks: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            tokio::spawn(async move {
                kami_server::services::reconciliation::daily_tick(&s, &format!("holder-{}", i % 2))
                    .await
                    .unwrap()
                    .len()
            })
        })
        .collect();
    let mut ran = 0;
    for t in ticks {
        ran += t.await.unwrap();
    }
    assert_eq!(ran, 1, "one channel (sandbox), reconciled once");
    let day = kami_server::services::reconciliation::format_day(
        kami_server::services::reconciliation::default_day(kami_core::clock::now_ms()),
    );
    let listed = app
        .admin_get(&format!("/api/v1/admin/reconciliations?date={day}"))
        .await;
    let batches = listed["reconciliations"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "{listed}");
    assert_eq!(
        (batches[0]["runs"].as_i64(), batches[0]["actor"].as_str()),
        (Some(1), Some("job"))
    );
    for s in [&app.state, &other.state] {
        let later = kami_server::services::reconciliation::daily_tick(s, "late")
            .await
            .unwrap();
        assert!(later.is_empty(), "the day is done");
    }
}
both_backends!(daily_job_runs_once_across_instances);

/// Runs of one day started at once: each is either the run or refused as running (409);
/// the payment is delivered once and the day has one batch with one finding.
async fn concurrent_runs_of_a_day(backend: Backend) {
    let (app, sims, _clock) = spawn(backend).await;
    let gw = Sandbox(sims.sandbox);
    product(&app, "rc-race").await;
    let o = app.order_via("rc-race", "sandbox", "pc").await;
    let no = o["order_no"].as_str().unwrap().to_owned();
    gw.fail_queries(true);
    gw.pay_silently(&app, &o).await;
    let app = Arc::new(app);
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.admin_post(
                    "/api/v1/admin/reconciliations",
                    json!({"channel": "sandbox", "date": DAY}),
                )
                .await
            })
        })
        .collect();
    let mut ran = 0;
    for r in runs {
        let (s, v) = r.await.unwrap();
        match s {
            200 => ran += 1,
            409 => assert_eq!(v["error"]["code"], "reconciliation_running", "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    assert!(ran >= 1);
    let delivered = format!(
        "SELECT COUNT(*) FROM payment_events WHERE trade_no = '{no}' AND outcome = 'delivered'"
    );
    assert_eq!(count(&app, &delivered).await, 1);
    let listed = app
        .admin_get(&format!("/api/v1/admin/reconciliations?date={DAY}"))
        .await;
    let batches = listed["reconciliations"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "{listed}");
    assert_eq!(batches[0]["runs"].as_i64(), Some(ran));
    let one = app
        .admin_get(&format!(
            "/api/v1/admin/reconciliations/{}",
            batches[0]["id"]
        ))
        .await;
    assert_eq!(items(&one, "recovered").len(), 1, "{one}");
    assert_eq!(one["items"].as_array().unwrap().len(), 1, "{one}");
}
both_backends!(concurrent_runs_of_a_day);
