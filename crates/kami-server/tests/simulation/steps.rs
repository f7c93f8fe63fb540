//! The scenario steps: what the seed makes buyers, gateways, the seller, kami's jobs, the clock
//! and the machine do, one step at a time. [`Step::pick`] draws the next step from the seeded
//! mix; [`World::run`] performs it against the real services.
//!
//! Extending the simulation (e.g. checkout failover, reconciliation) is one variant of [`Step`],
//! its weight in [`Step::pick`], and one arm in [`World::run`]; an operation that must
//! also run concurrently with others is a variant of [`Op`] and an arm in [`op_future`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use kami_core::OrderNo;
use kami_pay::Device;
use kami_server::i18n::Locale;
use kami_server::services::{checkout, checks, fulfilment, order_actions, refunds};
use kami_server::AppState;
use kami_store::Actor;
use rand::Rng;
use tower::ServiceExt;

use crate::fake_gateway::{CreateFault, FakeGateway, TradeStatus};
use crate::sched::{self, Batch, Gates, OpFuture};
use crate::world::{fresh_keys, Sabotage, World};

/// What happens to one delivery of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered, committed, acknowledged.
    Acked,
    /// Lost on the way (or kami died before committing): the gateway will try again.
    Dropped,
    /// Committed, then kami died before its "success" reached the gateway.
    AckLost,
}

/// An operation that can run concurrently with others (a future of the scheduler).
#[derive(Debug, Clone)]
pub enum Op {
    Buy {
        product: usize,
        channel: usize,
        qty: i64,
    },
    /// Deliver the notification of a trade (channel, trade sequence number).
    Notify {
        channel: usize,
        seq: u64,
    },
    Cancel {
        order: usize,
    },
    Refund {
        order: usize,
        amount: Option<i64>,
    },
    SellerCheck {
        order: usize,
    },
}

/// One step of a scenario. `order` and `trade` fields are indexes into the candidates of the
/// moment (orders read from the database, trades from the gateways' ledgers), drawn by
/// [`Step::pick`] from the state it sees.
#[derive(Debug, Clone)]
pub enum Step {
    /// A buyer places an order.
    Buy {
        product: usize,
        channel: usize,
        qty: i64,
    },
    /// Several buyers (and others) at once, interleaved at gateway calls by the seed; the
    /// engine may crash at the `crash_at`-th switch.
    Concurrent {
        ops: Vec<Op>,
        crash_at: Option<usize>,
    },
    /// The buyer pays a trade they were shown (`wrong`: a different amount).
    Pay {
        channel: usize,
        seq: u64,
        wrong: bool,
    },
    /// The gateway sends a trade's notification `copies` times.
    Notify {
        channel: usize,
        seq: u64,
        copies: u32,
        fate: Fate,
    },
    /// Someone posts a payment notification with a bad signature.
    Forge { channel: usize, seq: u64 },
    /// The payment-check job runs once (queries, closes at the deadline).
    Checks,
    /// The expiry job runs once.
    Expiry,
    /// The refund-retry job runs once.
    RefundRetries,
    /// Time passes.
    Clock { ms: i64 },
    /// A gateway is unreachable for a while.
    Outage { channel: usize, ms: i64 },
    /// A gateway's next create fails.
    CreateFails { channel: usize, fault: CreateFault },
    /// The seller refunds (part of) a paid order.
    Refund { order: usize, amount: Option<i64> },
    /// The seller cancels a pending order (closed at the gateway first).
    Cancel { order: usize },
    /// The seller asks the gateway about an order's payment (补单).
    SellerCheck { order: usize },
    /// The seller fulfils a manual order.
    Fulfil { order: usize },
    /// The seller imports keys for a product.
    Restock { product: usize, n: i64 },
    /// The seller delivers an exception order from stock.
    DeliverException { order: usize },
    /// The machine dies; kami starts again on the same database.
    Crash,
    /// Test-only: break an invariant behind kami's back.
    Sabotage(Sabotage),
}

/// Weighted choice.
fn weighted(rng: &mut impl Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut t = rng.gen_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if t < *w {
            return i;
        }
        t -= w;
    }
    0
}

fn clock_jump(rng: &mut impl Rng) -> i64 {
    match weighted(rng, &[70, 20, 7, 3]) {
        0 => rng.gen_range(5..=120) * 1_000,
        1 => rng.gen_range(1..=20) * 60_000,
        2 => rng.gen_range(1..=6) * 3_600_000,
        _ => rng.gen_range(1..=3) * 86_400_000,
    }
}

/// Orders in one of `statuses`, as indexes into `w.orders`.
fn orders_in(w: &World, statuses: &[&str]) -> Vec<usize> {
    (0..w.orders.len())
        .filter(|&i| statuses.contains(&w.orders[i].status.as_str()))
        .collect()
}

/// Trades of every gateway, in a stable order, that `keep` accepts.
fn trades_where(
    w: &World,
    keep: impl Fn(&crate::fake_gateway::Trade) -> bool,
) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (c, f) in w.fakes.iter().enumerate() {
        for t in f.ledger().trades.values() {
            if keep(t) {
                out.push((c, t.seq));
            }
        }
    }
    out
}

fn one<T: Copy>(rng: &mut impl Rng, v: &[T]) -> Option<T> {
    (!v.is_empty()).then(|| v[rng.gen_range(0..v.len())])
}

const PAID: [&str; 5] = [
    "delivered",
    "awaiting_fulfilment",
    "fulfilled",
    "exception",
    "partially_refunded",
];

impl Step {
    /// Draw the next step from the seeded mix, given what exists now.
    pub fn pick(w: &World) -> Step {
        let mut rng = w.rng.borrow_mut();
        let rng = &mut *rng;
        let nprod = w.products.len();
        let nch = w.fakes.len();
        let buy = |rng: &mut rand::rngs::StdRng| {
            let product = rng.gen_range(0..nprod);
            let max = w.products[product].max_quantity;
            Op::Buy {
                product,
                channel: rng.gen_range(0..nch),
                qty: if rng.gen_bool(0.8) {
                    1
                } else {
                    rng.gen_range(1..=max)
                },
            }
        };
        loop {
            let kinds = [
                16,                        // 0 buy
                4,                         // 1 rush for the scarce product
                5,                         // 2 concurrent mix
                14,                        // 3 pay
                14,                        // 4 notify
                1,                         // 5 forge
                8,                         // 6 checks
                3,                         // 7 expiry
                2,                         // 8 refund retries
                8,                         // 9 clock
                2,                         // 10 outage
                3,                         // 11 create fails
                4,                         // 12 refund
                3,                         // 13 cancel
                2,                         // 14 seller check
                2,                         // 15 fulfil
                1,                         // 16 restock
                2,                         // 17 deliver exception
                3,                         // 18 crash
                w.cfg.wrong_amount_weight, // 19 pay a different amount
            ];
            let created = trades_where(w, |t| t.shown && t.status == TradeStatus::Created);
            let step = match weighted(rng, &kinds) {
                0 => match buy(rng) {
                    Op::Buy {
                        product,
                        channel,
                        qty,
                    } => Some(Step::Buy {
                        product,
                        channel,
                        qty,
                    }),
                    _ => None,
                },
                1 => {
                    let n = rng.gen_range(2..=4);
                    let ops = (0..n)
                        .map(|_| Op::Buy {
                            product: 0,
                            channel: rng.gen_range(0..nch),
                            qty: 1,
                        })
                        .collect();
                    let crash_at = rng.gen_bool(0.15).then(|| rng.gen_range(0..6));
                    Some(Step::Concurrent { ops, crash_at })
                }
                2 => {
                    let n = rng.gen_range(2..=4);
                    let mut ops = Vec::new();
                    for _ in 0..n {
                        let op = match rng.gen_range(0..5) {
                            0 => Some(buy(rng)),
                            1 => one(rng, &trades_where(w, |t| t.status == TradeStatus::Paid))
                                .map(|(channel, seq)| Op::Notify { channel, seq }),
                            2 => one(rng, &orders_in(w, &["pending"]))
                                .map(|order| Op::Cancel { order }),
                            3 => one(rng, &orders_in(w, &PAID)).map(|order| Op::Refund {
                                order,
                                amount: None,
                            }),
                            _ => one(rng, &orders_in(w, &["pending", "expired"]))
                                .map(|order| Op::SellerCheck { order }),
                        };
                        ops.extend(op);
                    }
                    let crash_at = rng.gen_bool(0.15).then(|| rng.gen_range(0..8));
                    (!ops.is_empty()).then_some(Step::Concurrent { ops, crash_at })
                }
                3 => one(rng, &created).map(|(channel, seq)| Step::Pay {
                    channel,
                    seq,
                    wrong: false,
                }),
                19 => one(rng, &created).map(|(channel, seq)| Step::Pay {
                    channel,
                    seq,
                    wrong: true,
                }),
                4 => {
                    let unacked = trades_where(w, |t| t.status == TradeStatus::Paid && !t.acked);
                    let any = trades_where(w, |t| t.status != TradeStatus::Created);
                    let pool = if rng.gen_bool(0.8) && !unacked.is_empty() {
                        unacked
                    } else {
                        any
                    };
                    one(rng, &pool).map(|(channel, seq)| Step::Notify {
                        channel,
                        seq,
                        copies: if rng.gen_bool(0.75) {
                            1
                        } else {
                            rng.gen_range(2..=3)
                        },
                        fate: match weighted(rng, &[80, 10, 10]) {
                            0 => Fate::Acked,
                            1 => Fate::Dropped,
                            _ => Fate::AckLost,
                        },
                    })
                }
                5 => one(rng, &created).map(|(channel, seq)| Step::Forge { channel, seq }),
                6 => Some(Step::Checks),
                7 => Some(Step::Expiry),
                8 => Some(Step::RefundRetries),
                9 => Some(Step::Clock {
                    ms: clock_jump(rng),
                }),
                10 => Some(Step::Outage {
                    channel: rng.gen_range(0..nch),
                    ms: rng.gen_range(10..=900) * 1_000,
                }),
                11 => Some(Step::CreateFails {
                    channel: rng.gen_range(0..nch),
                    fault: match rng.gen_range(0..3) {
                        0 => CreateFault::Refuse,
                        1 => CreateFault::TimeoutBefore,
                        _ => CreateFault::TimeoutAfter,
                    },
                }),
                12 => one(rng, &orders_in(w, &PAID)).map(|order| Step::Refund {
                    order,
                    amount: rng
                        .gen_bool(0.5)
                        .then(|| rng.gen_range(1..=w.orders[order].amount.max(1))),
                }),
                13 => one(rng, &orders_in(w, &["pending"])).map(|order| Step::Cancel { order }),
                14 => one(rng, &orders_in(w, &["pending", "expired"]))
                    .map(|order| Step::SellerCheck { order }),
                15 => one(rng, &orders_in(w, &["awaiting_fulfilment"]))
                    .map(|order| Step::Fulfil { order }),
                16 => Some(Step::Restock {
                    product: rng.gen_range(0..2),
                    n: rng.gen_range(1..=3),
                }),
                17 => one(rng, &orders_in(w, &["exception"]))
                    .map(|order| Step::DeliverException { order }),
                18 => Some(Step::Crash),
                _ => None,
            };
            if let Some(s) = step {
                return s;
            }
        }
    }
}

fn actor() -> Actor {
    Actor::new("simulation", None)
}

/// A finished operation: a line for the trace, and the order a buyer was shown (payable).
pub struct OpOut {
    pub line: String,
    pub shown: Option<OrderNo>,
}

fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    // Error texts carry the random order numbers: keep the trace seed-stable.
    let mut out = String::with_capacity(s.len());
    for word in s.split(' ') {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.len() >= 20 && word.chars().filter(char::is_ascii_digit).count() >= 14 {
            out.push_str("<no>");
        } else {
            out.push_str(word);
        }
    }
    out
}

/// The buyer's order, through the service the API and the product page call.
async fn buy(
    state: Arc<AppState>,
    slug: &'static str,
    method: &'static str,
    qty: i64,
    buyer: u64,
) -> OpOut {
    let input = checkout::OrderInput {
        product: slug.into(),
        quantity: qty,
        email: format!("buyer{buyer}@sim.test"),
        method: method.into(),
        query_password: None,
        device: Device::Pc,
        user_agent: None,
        locale: Locale::ZhCn,
        client_ip: None,
        fields: BTreeMap::new(),
        coupon: None,
    };
    match checkout::place_order(&state, input).await {
        Ok(p) => OpOut {
            line: format!("placed {slug}x{qty} via {method}: {}", p.amount.minor()),
            shown: Some(p.order_no),
        },
        Err(e) => OpOut {
            line: format!("refused {slug}x{qty} via {method}: {}", short(e)),
            shown: None,
        },
    }
}

/// A notification over kami's real HTTP handler (no socket): returns kami's answer.
async fn post_notification(router: axum::Router, fake: &FakeGateway, body: Vec<u8>) -> String {
    let req = Request::post(format!("/pay/notify/{}", fake.name()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body));
    let Ok(req) = req else {
        return "bad request".into();
    };
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status == 200 {
        text
    } else {
        format!("http {status}")
    }
}

/// One delivery of a trade's notification inside a concurrent batch: the gateway's send and
/// its receipt of the answer are both switch points, so a crash can fall between kami's
/// commit and the gateway hearing "success".
async fn notify_op(
    router: axum::Router,
    gates: Arc<Gates>,
    fake: Arc<FakeGateway>,
    seq: u64,
) -> OpOut {
    gates
        .pass(format!("{} sends notification of trade {seq}", fake.name()))
        .await;
    let Some(body) = fake.notification(seq, false) else {
        return OpOut {
            line: "nothing to notify".into(),
            shown: None,
        };
    };
    let answer = post_notification(router, &fake, body).await;
    gates
        .pass(format!(
            "{} receives the answer for trade {seq}",
            fake.name()
        ))
        .await;
    fake.answered(seq, &answer);
    OpOut {
        line: format!("{} trade {seq} notified: {answer}", fake.name()),
        shown: None,
    }
}

fn op_future(w: &World, op: &Op) -> OpFuture<'static, OpOut> {
    let state = w.state();
    match op.clone() {
        Op::Buy {
            product,
            channel,
            qty,
        } => {
            let slug = w.products[product].slug;
            let method = crate::world::channel_specs()[channel].1.as_str();
            let buyer = w.buyers_next();
            Box::pin(buy(state, slug, method, qty, buyer))
        }
        Op::Notify { channel, seq } => Box::pin(notify_op(
            w.engine().router.clone(),
            w.gates.clone(),
            w.fakes[channel].clone(),
            seq,
        )),
        Op::Cancel { order } => {
            let no = w.orders[order].no.clone();
            let id = w.orders[order].id;
            Box::pin(async move {
                let r = order_actions::cancel(&state, &no, &actor()).await;
                OpOut {
                    line: format!(
                        "cancel order {id}: {}",
                        r.map(|o| o.status.to_string()).unwrap_or_else(short)
                    ),
                    shown: None,
                }
            })
        }
        Op::Refund { order, amount } => {
            let no = w.orders[order].no.clone();
            let id = w.orders[order].id;
            Box::pin(async move {
                let input = refunds::RefundInput {
                    amount,
                    reason: Some("simulated".into()),
                    refund_no: None,
                };
                let r = refunds::refund(&state, &no, input, &actor()).await;
                OpOut {
                    line: format!(
                        "refund order {id} {amount:?}: {}",
                        r.map(|o| format!(
                            "{} / {}",
                            o.call.refund.status.as_str(),
                            o.order_status
                        ))
                        .unwrap_or_else(short)
                    ),
                    shown: None,
                }
            })
        }
        Op::SellerCheck { order } => {
            let no = w.orders[order].no.clone();
            let id = w.orders[order].id;
            Box::pin(async move {
                let r = order_actions::check_payment(&state, &no, &actor()).await;
                OpOut {
                    line: format!(
                        "check order {id}: {}",
                        r.map(|(o, a)| format!(
                            "{} {:?}",
                            o.status,
                            a.iter().map(|x| x.answer).collect::<Vec<_>>()
                        ))
                        .unwrap_or_else(short)
                    ),
                    shown: None,
                }
            })
        }
    }
}

impl World {
    /// A new buyer (distinct emails: the pending-order caps are per email).
    fn buyers_next(&self) -> u64 {
        let n = self.buyers.get() + 1;
        self.buyers.set(n);
        n
    }

    /// Mark a trade the buyer was shown as payable (the create's answer reached the buyer).
    fn shown(&self, no: &OrderNo) {
        for f in &self.fakes {
            let mut l = f.ledger();
            let seq = l.by_no(no.as_str()).map(|t| t.seq);
            if let Some(seq) = seq {
                if let Some(t) = l.trades.get_mut(&seq) {
                    t.shown = true;
                }
            }
        }
    }

    /// Deliver one notification of trade `seq` of gateway `c` (sequentially).
    pub async fn deliver(&mut self, c: usize, seq: u64, fate: Fate) -> String {
        let fake = self.fakes[c].clone();
        let Some(body) = fake.notification(seq, false) else {
            return "nothing to notify".into();
        };
        self.stats.notifications += 1;
        if fate == Fate::Dropped {
            return "dropped".into();
        }
        let answer = post_notification(self.engine().router.clone(), &fake, body).await;
        if fate == Fate::AckLost {
            self.crash_and_restart().await;
            return format!("{answer}, lost in the crash");
        }
        fake.answered(seq, &answer);
        answer
    }

    /// Perform one step; returns what happened, for the trace.
    pub async fn run(&mut self, step: &Step) -> String {
        let state = self.state();
        match step {
            Step::Buy {
                product,
                channel,
                qty,
            } => {
                let op = Op::Buy {
                    product: *product,
                    channel: *channel,
                    qty: *qty,
                };
                let out = op_future(self, &op).await;
                if let Some(no) = &out.shown {
                    self.shown(no);
                }
                out.line
            }
            Step::Concurrent { ops, crash_at } => {
                let futs: Vec<_> = ops.iter().map(|op| op_future(self, op)).collect();
                let log = std::cell::RefCell::new(Vec::new());
                let batch = sched::run(&self.gates.clone(), &self.rng, futs, *crash_at, &log).await;
                for l in log.into_inner() {
                    self.log(l);
                }
                let (outs, crashed) = match batch {
                    Batch::Done(o) => (o.into_iter().map(Some).collect::<Vec<_>>(), false),
                    Batch::Crashed(o) => (o, true),
                };
                let mut lines = Vec::new();
                for (i, o) in outs.into_iter().enumerate() {
                    match o {
                        Some(o) => {
                            if let Some(no) = &o.shown {
                                self.shown(no);
                            }
                            lines.push(format!("op{i}: {}", o.line));
                        }
                        None => lines.push(format!("op{i}: dropped in the crash")),
                    }
                }
                if crashed {
                    self.crash_and_restart().await;
                    lines.push("CRASH".into());
                }
                lines.join("; ")
            }
            Step::Pay {
                channel,
                seq,
                wrong,
            } => {
                let what = self.fakes[*channel].pay(*seq, *wrong);
                if what == "paid late" {
                    self.stats.late_payments += 1;
                }
                format!("{} trade {seq}: {what}", self.fakes[*channel].name())
            }
            Step::Notify {
                channel,
                seq,
                copies,
                fate,
            } => {
                let mut answers = Vec::new();
                for i in 0..*copies {
                    // A crash or a drop is the last copy's fate; the earlier ones arrive.
                    let f = if i + 1 == *copies { *fate } else { Fate::Acked };
                    answers.push(self.deliver(*channel, *seq, f).await);
                }
                format!(
                    "{} trade {seq}: {}",
                    self.fakes[*channel].name(),
                    answers.join(", ")
                )
            }
            Step::Forge { channel, seq } => {
                let fake = self.fakes[*channel].clone();
                match fake.notification(*seq, true) {
                    Some(body) => {
                        let answer =
                            post_notification(self.engine().router.clone(), &fake, body).await;
                        format!("forged for trade {seq}: {answer}")
                    }
                    None => "nothing to forge".into(),
                }
            }
            Step::Checks => match checks::check_payments_once(&state).await {
                Ok(n) => format!("{n} checked"),
                Err(e) => short(e),
            },
            Step::Expiry => match checks::expire_once(&state).await {
                Ok(n) => format!("{n} expired"),
                Err(e) => short(e),
            },
            Step::RefundRetries => match refunds::retry_due(&state).await {
                Ok(n) => format!("{n} retried"),
                Err(e) => short(e),
            },
            Step::Clock { ms } => {
                self.clock.advance(*ms);
                format!("now +{}s", (self.now() - crate::world::EPOCH_MS) / 1000)
            }
            Step::Outage { channel, ms } => {
                let until = self.now() + ms;
                self.fakes[*channel].ledger().down_until = until;
                "down".into()
            }
            Step::CreateFails { channel, fault } => {
                self.fakes[*channel]
                    .ledger()
                    .create_faults
                    .push_back(*fault);
                "armed".into()
            }
            Step::Refund { order, amount } => {
                let op = Op::Refund {
                    order: *order,
                    amount: *amount,
                };
                op_future(self, &op).await.line
            }
            Step::Cancel { order } => op_future(self, &Op::Cancel { order: *order }).await.line,
            Step::SellerCheck { order } => {
                op_future(self, &Op::SellerCheck { order: *order })
                    .await
                    .line
            }
            Step::Fulfil { order } => {
                let no = self.orders[*order].no.clone();
                match fulfilment::fulfil(&state, &no, "account: sim / password: sim", &actor())
                    .await
                {
                    Ok(o) => o.status.to_string(),
                    Err(e) => short(e),
                }
            }
            Step::Restock { product, n } => {
                let slug = self.products[*product].slug;
                let now = self.now();
                match state
                    .store
                    .import_cards(slug, fresh_keys(slug, *n), false, now, &|_: u64| {})
                    .await
                {
                    Ok(r) => {
                        self.products[*product].stock += r.imported as i64;
                        format!("{} keys", r.imported)
                    }
                    Err(e) => short(e),
                }
            }
            Step::DeliverException { order } => {
                let no = self.orders[*order].no.clone();
                match fulfilment::deliver_exception(&state, &no, &actor()).await {
                    Ok(o) => o.status.to_string(),
                    Err(e) => short(e),
                }
            }
            Step::Crash => {
                self.crash_and_restart().await;
                "restarted".into()
            }
            Step::Sabotage(s) => self.sabotage(*s),
        }
    }

    /// Test-only: write what a double delivery would leave behind.
    fn sabotage(&mut self, s: Sabotage) -> String {
        match s {
            Sabotage::DoubleDeliver => {
                let Some(o) = self.orders.iter().find(|o| o.status == "delivered") else {
                    return "nothing to sabotage yet".into();
                };
                self.inspect.write(&format!(
                    "INSERT INTO outbox (kind, order_id, payload, created_at, available_at) \
                     VALUES ('order.delivered', {}, '{{}}', 0, 0)",
                    o.id
                ));
                self.sabotaged = true;
                format!("SABOTAGE: second order.delivered row for order {}", o.id)
            }
        }
    }
}
