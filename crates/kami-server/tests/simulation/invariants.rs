//! DESIGN.md section 3, checked from outside after every step: kami's database (raw SQL)
//! against the gateways' ledgers. Each violation names its invariant: I1–I6 are the
//! section's; A1–A4 what payment attempts (failover) add to them, R1 and R4 what
//! reconciliation does (R2 and R3 are checked by the reconcile step itself).

use std::collections::{BTreeMap, BTreeSet};

use kami_core::OrderNo;

use kami_pay::PaymentChannel;

use crate::fake_gateway::TradeStatus;
use crate::inspect::{int, opt_int, text};
use crate::world::{DbOrder, World};

/// Statuses in which kami holds verified money for the order (kept or refunded).
const PAID: [&str; 7] = [
    "paid",
    "delivered",
    "awaiting_fulfilment",
    "fulfilled",
    "exception",
    "refunded",
    "partially_refunded",
];
/// Payment attempts kami recorded as paid (then perhaps refunded).
const PAYMENT_PAID: [&str; 3] = ["paid", "refunded", "partially_refunded"];

struct Order {
    id: i64,
    method: String,
    channel: String,
    status: String,
    quantity: i64,
    product: usize,
    loop_card: Option<i64>,
    amount: i64,
    currency: String,
    delivered_at: Option<i64>,
}

struct Payment {
    id: i64,
    order_id: i64,
    paid_at: Option<i64>,
    channel: String,
    trade_no: String,
    status: String,
    amount: i64,
    currency: String,
    gateway_trade_no: String,
}

/// Read the orders into `w.orders` (what the next step picks from) and check every invariant.
/// `settled`: the scenario is over and the world has gone quiet, so no payment may be
/// unaccounted for (invariant 5).
pub fn check(w: &mut World, settled: bool) -> Result<(), String> {
    let mut v = Vec::new();
    let slugs: BTreeMap<String, usize> = w
        .products
        .iter()
        .enumerate()
        .map(|(i, p)| (p.slug.to_owned(), i))
        .collect();
    let orders: Vec<(Order, String)> = w
        .inspect
        .rows(
            "SELECT o.id, o.order_no, o.status, o.quantity, p.slug, o.loop_card_id, o.amount, \
               o.currency, o.delivered_at, o.method, o.channel_id \
             FROM orders o JOIN products p ON p.id = o.product_id ORDER BY o.id",
        )
        .into_iter()
        .map(|r| {
            (
                Order {
                    id: int(&r, 0),
                    method: text(&r, 9),
                    channel: text(&r, 10),
                    status: text(&r, 2),
                    quantity: int(&r, 3),
                    product: slugs[&text(&r, 4)],
                    loop_card: opt_int(&r, 5),
                    amount: int(&r, 6),
                    currency: text(&r, 7),
                    delivered_at: opt_int(&r, 8),
                },
                text(&r, 1),
            )
        })
        .collect();
    w.orders = orders
        .iter()
        .map(|(o, no)| DbOrder {
            id: o.id,
            no: OrderNo::parse(no).unwrap_or_else(|_| panic!("order number {no}")),
            status: o.status.clone(),
            amount: o.amount,
        })
        .collect();
    let by_id: BTreeMap<i64, &Order> = orders.iter().map(|(o, _)| (o.id, o)).collect();
    for (o, _) in &orders {
        if matches!(o.status.as_str(), "awaiting_fulfilment" | "fulfilled") {
            w.held_manual.insert(o.id);
        }
    }

    // 1. No oversell: every key held by exactly one order, in a status that may hold it.
    let mut reserved: BTreeMap<i64, i64> = BTreeMap::new();
    let mut sold: BTreeMap<i64, i64> = BTreeMap::new();
    let mut per_product = vec![0i64; w.products.len()];
    for r in w.inspect.rows(
        "SELECT c.id, p.slug, c.is_loop, c.status, c.order_id FROM cards c \
         JOIN products p ON p.id = c.product_id ORDER BY c.id",
    ) {
        let (id, product, is_loop, status) =
            (int(&r, 0), slugs[&text(&r, 1)], int(&r, 2), text(&r, 3));
        per_product[product] += 1;
        if is_loop == 1 {
            if status != "available" {
                v.push(format!("I1: loop key {id} is {status}"));
            }
            continue;
        }
        let Some(order_id) = opt_int(&r, 4) else {
            if status != "available" {
                v.push(format!("I1: key {id} is {status} without an order"));
            }
            continue;
        };
        let Some(o) = by_id.get(&order_id) else {
            v.push(format!("I1: key {id} held by missing order {order_id}"));
            continue;
        };
        if o.product != product {
            v.push(format!(
                "I1: key {id} of another product held by order {order_id}"
            ));
        }
        match status.as_str() {
            "reserved" => {
                *reserved.entry(order_id).or_default() += 1;
                if o.status != "pending" {
                    v.push(format!(
                        "I1: key {id} reserved by order {order_id}, which is {}",
                        o.status
                    ));
                }
            }
            "sold" => {
                *sold.entry(order_id).or_default() += 1;
                if o.delivered_at.is_none() {
                    v.push(format!(
                        "I1: key {id} sold to order {order_id}, never delivered ({})",
                        o.status
                    ));
                }
            }
            other => v.push(format!(
                "I1: key {id} is {other} but held by order {order_id}"
            )),
        }
    }
    for (i, p) in w.products.iter().enumerate() {
        if per_product[i] != p.stock && p.delivery == kami_store::Delivery::Auto {
            v.push(format!(
                "I1: {} has {} keys, {} were imported",
                p.slug, per_product[i], p.stock
            ));
        }
    }
    for (o, _) in &orders {
        let p = &w.products[o.product];
        if p.delivery != kami_store::Delivery::Auto || o.loop_card.is_some() {
            continue;
        }
        let (r, s) = (
            reserved.get(&o.id).copied().unwrap_or(0),
            sold.get(&o.id).copied().unwrap_or(0),
        );
        let want = if o.status == "pending" {
            (o.quantity, 0)
        } else if o.delivered_at.is_some() {
            (0, o.quantity)
        } else {
            (0, 0)
        };
        if (r, s) != want {
            v.push(format!(
                "I1: order {} ({}, qty {}) holds {r} reserved and {s} sold keys, expected {want:?}",
                o.id, o.status, o.quantity
            ));
        }
    }
    // Manual stock: what is left plus what orders hold is what there was.
    for r in w
        .inspect
        .rows("SELECT slug, manual_stock FROM products WHERE delivery = 'manual'")
    {
        let i = slugs[&text(&r, 0)];
        let left = opt_int(&r, 1).unwrap_or(-1);
        let held: i64 = orders
            .iter()
            .filter(|(o, _)| o.product == i)
            .filter(|(o, _)| {
                matches!(
                    o.status.as_str(),
                    "pending" | "awaiting_fulfilment" | "fulfilled"
                ) || (matches!(o.status.as_str(), "refunded" | "partially_refunded")
                    && w.held_manual.contains(&o.id))
            })
            .map(|(o, _)| o.quantity)
            .sum();
        if left < 0 || left + held != w.products[i].stock {
            v.push(format!(
                "I1: manual stock {left} + held {held} != {}",
                w.products[i].stock
            ));
        }
    }

    // 2. Exactly-once delivery: one `order.delivered` row per delivered order, none otherwise.
    let mut outbox: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for r in w.inspect.rows(
        "SELECT order_id, kind, CAST(COUNT(*) AS BIGINT) FROM outbox \
         WHERE kind IN ('order.delivered', 'order.fulfilled') AND order_id IS NOT NULL \
         GROUP BY order_id, kind",
    ) {
        outbox.insert((int(&r, 0), text(&r, 1)), int(&r, 2));
    }
    for (o, _) in &orders {
        let delivered = outbox
            .get(&(o.id, "order.delivered".into()))
            .copied()
            .unwrap_or(0);
        let want = i64::from(o.delivered_at.is_some());
        if delivered != want {
            v.push(format!(
                "I2: order {} ({}) has {delivered} order.delivered rows, expected {want}",
                o.id, o.status
            ));
        }
        if outbox
            .get(&(o.id, "order.fulfilled".into()))
            .copied()
            .unwrap_or(0)
            > 1
        {
            v.push(format!("I2: order {} fulfilled twice", o.id));
        }
        if o.status == "paid" {
            v.push(format!(
                "I2: order {} left in the transient status paid",
                o.id
            ));
        }
        if o.delivered_at.is_some()
            && !matches!(
                o.status.as_str(),
                "delivered" | "refunded" | "partially_refunded"
            )
        {
            v.push(format!("I2: order {} delivered but now {}", o.id, o.status));
        }
    }

    // 3. Verified money only: every payment kami holds as paid is a payment the gateway
    // received, of exactly the order's amount and currency.
    let payments: Vec<Payment> = w
        .inspect
        .rows(
            "SELECT order_id, channel_id, trade_no, status, amount, currency, gateway_trade_no, \
               id, paid_at FROM payments ORDER BY id",
        )
        .into_iter()
        .map(|r| Payment {
            id: int(&r, 7),
            paid_at: opt_int(&r, 8),
            order_id: int(&r, 0),
            channel: text(&r, 1),
            trade_no: text(&r, 2),
            status: text(&r, 3),
            amount: int(&r, 4),
            currency: text(&r, 5),
            gateway_trade_no: text(&r, 6),
        })
        .collect();
    let mut paid_orders: BTreeSet<i64> = BTreeSet::new();
    let mut payment_status: BTreeMap<(String, String), String> = BTreeMap::new();
    for p in &payments {
        payment_status.insert((p.channel.clone(), p.trade_no.clone()), p.status.clone());
        let Some(o) = by_id.get(&p.order_id) else {
            v.push(format!("I3: payment of missing order {}", p.order_id));
            continue;
        };
        if p.amount != o.amount || p.currency != o.currency {
            v.push(format!(
                "I3: payment of order {} is for another amount",
                o.id
            ));
        }
        if !PAYMENT_PAID.contains(&p.status.as_str()) {
            continue;
        }
        paid_orders.insert(o.id);
        let Some(fake) = w.fakes.iter().find(|f| f.name() == p.channel) else {
            v.push(format!(
                "I3: order {} paid through unknown channel {}",
                o.id, p.channel
            ));
            continue;
        };
        let l = fake.ledger();
        match l.by_no(&p.trade_no) {
            Some(t) if t.status == TradeStatus::Paid => {
                let got = t.paid.map(|m| (m.minor(), m.currency().code().to_owned()));
                if got != Some((p.amount, p.currency.clone())) {
                    v.push(format!(
                        "I3: order {} paid {} {} in kami, {got:?} at the gateway",
                        o.id, p.amount, p.currency
                    ));
                }
            }
            Some(t) => v.push(format!(
                "I3: order {} paid in kami, trade {} is {:?} at the gateway",
                o.id, t.seq, t.status
            )),
            None => v.push(format!(
                "I3: order {} paid in kami, unknown at the gateway",
                o.id
            )),
        }
    }
    for (o, _) in &orders {
        // A reversal (money came and went back at the channel), or a payment of another
        // amount that reconciliation found, is an exception without a kept payment; anything
        // else paid must have its verified payment.
        if PAID.contains(&o.status.as_str()) && !paid_orders.contains(&o.id) {
            let reversed = payments
                .iter()
                .any(|p| p.order_id == o.id && p.status == "partially_refunded");
            let paid_wrong = payments.iter().filter(|p| p.order_id == o.id).any(|p| {
                w.fakes.iter().any(|f| {
                    f.name() == p.channel
                        && f.ledger()
                            .by_no(&p.trade_no)
                            .is_some_and(|t| t.paid.is_some_and(|m| m != t.amount))
                })
            });
            if !(o.status == "exception" && (reversed || paid_wrong)) {
                v.push(format!(
                    "I3: order {} is {} without a verified payment",
                    o.id, o.status
                ));
            }
        }
    }

    // Payment attempts (failover): each order's attempts are its own trade numbers on
    // channels of its method, the order names its newest; one paid attempt at most is not
    // flagged as a second payment; no gateway holds a trade kami has no row for.
    let order_nos: BTreeMap<i64, &str> = orders.iter().map(|(o, no)| (o.id, no.as_str())).collect();
    let mut flagged: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for r in w
        .inspect
        .rows("SELECT order_id, payload FROM outbox WHERE kind = 'payment.conflict' ORDER BY id")
    {
        let payload: serde_json::Value =
            serde_json::from_str(&text(&r, 1)).unwrap_or(serde_json::Value::Null);
        let gateway = payload["gateway_trade_no"].as_str().unwrap_or_default();
        flagged
            .entry(int(&r, 0))
            .or_default()
            .insert(gateway.to_owned());
    }
    let mut newest: BTreeMap<i64, &str> = BTreeMap::new();
    let mut unflagged: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for p in &payments {
        let Some(o) = by_id.get(&p.order_id) else {
            continue;
        };
        newest.insert(o.id, p.channel.as_str());
        let no = order_nos[&o.id];
        let attempt = p.trade_no.strip_prefix(no).and_then(|rest| match rest {
            "" => Some(1),
            _ => rest
                .strip_prefix('A')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (2..=99).contains(n)),
        });
        if attempt.is_none() {
            v.push(format!(
                "A1: order {} has a payment with trade number {}",
                o.id, p.trade_no
            ));
        }
        let serves = w.fakes.iter().any(|f| {
            f.name() == p.channel && f.methods().iter().any(|m| m.as_str() == o.method.as_str())
        });
        if !serves {
            v.push(format!(
                "A1: order {} ({}) has an attempt on {}, which does not serve it",
                o.id, o.method, p.channel
            ));
        }
        if PAYMENT_PAID.contains(&p.status.as_str())
            && !flagged
                .get(&o.id)
                .is_some_and(|f| f.contains(&p.gateway_trade_no))
        {
            unflagged.entry(o.id).or_default().push(&p.trade_no);
        }
    }
    for (o, _) in &orders {
        if let Some(c) = newest.get(&o.id) {
            if *c != o.channel {
                v.push(format!(
                    "A2: order {} names channel {}, its newest attempt is on {c}",
                    o.id, o.channel
                ));
            }
        }
        if let Some(u) = unflagged.get(&o.id).filter(|u| u.len() > 1) {
            v.push(format!(
                "A3: order {} has {} paid attempts and no payment.conflict for all but one: {u:?}",
                o.id,
                u.len()
            ));
        }
    }
    for f in &w.fakes {
        for t in f.ledger().trades.values() {
            if !payment_status.contains_key(&(f.name().to_owned(), t.trade_no.clone())) {
                v.push(format!(
                    "A4: {} holds trade {} that kami has no payment row for",
                    f.name(),
                    t.seq
                ));
            }
        }
    }

    // Reconciliation: what a bill proved paid is kami's from then on (R1), and no finding
    // names a trade kami never created (R4: kami records every attempt before its create).
    for (channel, trade_no) in &w.billed {
        let st = payment_status.get(&(channel.clone(), trade_no.clone()));
        if !st.is_some_and(|s| PAYMENT_PAID.contains(&s.as_str())) {
            v.push(format!(
                "R1: {channel} billed a payment of {trade_no} (the right amount) that kami holds as {st:?}"
            ));
        }
    }
    for r in w.inspect.rows(
        "SELECT b.channel_id, i.trade_no, b.bill_day FROM reconciliation_items i \
         JOIN reconciliation_batches b ON b.id = i.batch_id WHERE i.kind = 'unknown_payment'",
    ) {
        if !payment_status.contains_key(&(text(&r, 0), text(&r, 1))) {
            v.push(format!(
                "R4: the reconciliation of {} {} found a payment of a trade kami never created",
                text(&r, 0),
                text(&r, 2)
            ));
        }
    }
    v.append(&mut w.step_violations);

    // 4. Acknowledge after commit: every payment the gateway heard "success" for is committed.
    for f in &w.fakes {
        let l = f.ledger();
        for t in l.trades.values().filter(|t| t.acked) {
            let st = payment_status.get(&(f.name().to_owned(), t.trade_no.clone()));
            if !st.is_some_and(|s| PAYMENT_PAID.contains(&s.as_str())) {
                v.push(format!(
                    "I4: {} trade {} acknowledged, kami's payment is {st:?}",
                    f.name(),
                    t.seq
                ));
            }
        }
        for x in &l.violations {
            v.push(format!("gateway: {x}"));
        }
    }

    // Refunds: never beyond the payment; each one kami settled is one the gateway made, and
    // each one the gateway made is in kami, never marked failed. An order is refunded when
    // the money it kept went back: every paid attempt (a second payment too) that was paid
    // before the order became refunded.
    let mut kami_refunds: BTreeMap<String, (i64, String, String, bool)> = BTreeMap::new();
    let mut succeeded: BTreeMap<i64, i64> = BTreeMap::new();
    // By payment: refunded, and refunded or pending.
    let mut returned: BTreeMap<i64, i64> = BTreeMap::new();
    let mut holding: BTreeMap<i64, i64> = BTreeMap::new();
    for r in w.inspect.rows(
        "SELECT f.refund_no, f.amount, f.status, COALESCE(f.error, ''), p.channel_id, p.trade_no, \
           f.order_id, f.payment_id FROM refunds f JOIN payments p ON p.id = f.payment_id ORDER BY f.id",
    ) {
        let (no, amount, status, order) = (text(&r, 0), int(&r, 1), text(&r, 2), int(&r, 6));
        let payment = int(&r, 7);
        if status == "succeeded" {
            *succeeded.entry(order).or_default() += amount;
            *returned.entry(payment).or_default() += amount;
        }
        if status != "failed" {
            *holding.entry(payment).or_default() += amount;
        }
        let channel = text(&r, 4);
        if status == "succeeded" {
            let ok = w.fakes.iter().find(|f| f.name() == channel).is_some_and(|f| {
                f.ledger()
                    .by_no(&text(&r, 5))
                    .and_then(|t| t.refunds.get(&no).map(|x| x.amount.minor() == amount))
                    .unwrap_or(false)
            });
            if !ok {
                v.push(format!("I6: refund of order {order} succeeded in kami, not at the gateway"));
            }
        }
        // An error on a pending refund: kami stopped asking, its outcome unknown, for the
        // seller to check at the gateway (the amount stays held).
        let flagged = !text(&r, 3).is_empty();
        kami_refunds.insert(no, (amount, status, channel, flagged));
    }
    for p in &payments {
        let h = holding.get(&p.id).copied().unwrap_or(0);
        if h > p.amount {
            v.push(format!(
                "I6: a payment of order {} has {h} refunded or pending of {}",
                p.order_id, p.amount
            ));
        }
    }
    let mut refunded_at: BTreeMap<i64, i64> = BTreeMap::new();
    for r in w.inspect.rows(
        "SELECT order_id, MIN(created_at) FROM outbox WHERE kind = 'order.refunded' \
           AND payload LIKE '%\"full\":true%' GROUP BY order_id",
    ) {
        refunded_at.insert(int(&r, 0), int(&r, 1));
    }
    for (o, _) in &orders {
        let s = succeeded.get(&o.id).copied().unwrap_or(0);
        // What the order's paid attempts keep (before `until`, when given).
        let kept = |until: Option<i64>| -> i64 {
            payments
                .iter()
                .filter(|p| p.order_id == o.id && PAYMENT_PAID.contains(&p.status.as_str()))
                .filter(|p| until.is_none_or(|t| p.paid_at.is_some_and(|at| at < t)))
                .map(|p| p.amount - returned.get(&p.id).copied().unwrap_or(0))
                .sum()
        };
        let ok = match o.status.as_str() {
            "refunded" => {
                s >= o.amount && refunded_at.get(&o.id).is_some_and(|t| kept(Some(*t)) == 0)
            }
            "partially_refunded" => s > 0 && kept(None) > 0,
            _ => s == 0,
        };
        if !ok {
            v.push(format!(
                "I6: order {} is {} with {s} refunded of {}; its payments keep {}",
                o.id,
                o.status,
                o.amount,
                kept(None)
            ));
        }
    }
    for f in &w.fakes {
        for t in f.ledger().trades.values() {
            for (no, r) in &t.refunds {
                match kami_refunds.get(no) {
                    Some((amount, status, _, flagged))
                        if *amount == r.amount.minor() && status != "failed" =>
                    {
                        // Where the gateway de-duplicates, kami keeps asking until it knows,
                        // unless it gave up and flagged the refund for the seller.
                        if settled && f.spec.idempotent_refunds && status != "succeeded" && !flagged
                        {
                            v.push(format!(
                                "I6: {} refunded trade {}, kami's refund still {status}",
                                f.name(),
                                t.seq
                            ));
                        }
                    }
                    other => v.push(format!(
                        "I6: {} refunded trade {}; kami has {:?}",
                        f.name(),
                        t.seq,
                        other.map(|x| (x.0, x.1.clone()))
                    )),
                }
            }
        }
    }

    // 5. No lost orders, once the world is quiet: every payment the gateway took at the
    // order's amount is paid in kami; one of another amount was seen and refused.
    if settled {
        let mismatched: BTreeSet<(String, String)> = w
            .inspect
            .rows(
                "SELECT channel_id, trade_no FROM payment_events WHERE outcome = 'amount_mismatch'",
            )
            .into_iter()
            .map(|r| (text(&r, 0), text(&r, 1)))
            .collect();
        for f in &w.fakes {
            for t in f.ledger().trades.values() {
                let key = (f.name().to_owned(), t.trade_no.clone());
                match (t.status, t.paid) {
                    (TradeStatus::Paid, Some(p))
                        if p == t.amount
                            && !payment_status
                                .get(&key)
                                .is_some_and(|s| PAYMENT_PAID.contains(&s.as_str())) =>
                    {
                        v.push(format!(
                            "I5: {} trade {} was paid; kami's payment is {:?}",
                            f.name(),
                            t.seq,
                            payment_status.get(&key)
                        ));
                    }
                    (TradeStatus::Paid, Some(p)) if p != t.amount && !mismatched.contains(&key) => {
                        v.push(format!(
                            "I5: {} trade {} paid a different amount, never refused",
                            f.name(),
                            t.seq
                        ));
                    }
                    _ => {}
                }
            }
        }
        for (o, _) in &orders {
            if o.status == "pending" {
                v.push(format!("I5: order {} still pending after settling", o.id));
            }
        }
        w.stats.mismatches_refused += mismatched.len() as u64;
        w.stats.failovers += w
            .inspect
            .rows("SELECT DISTINCT order_id FROM payments WHERE trade_no LIKE '%A%'")
            .len() as u64;
        w.stats.conflicts += flagged.values().map(|f| f.len() as u64).sum::<u64>();
        w.stats.found_by_bill += w
            .inspect
            .rows("SELECT id FROM payments WHERE found_by = 'bill'")
            .len() as u64;
        w.stats.orders += orders.len() as u64;
        w.stats.paid += paid_orders.len() as u64;
        w.stats.refunds += kami_refunds.len() as u64;
    }

    if v.is_empty() {
        Ok(())
    } else {
        v.truncate(8);
        Err(v.join("\n"))
    }
}
