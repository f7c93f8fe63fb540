//! The scenario steps: what the seed makes buyers, gateways, the seller, kami's jobs, the clock
//! and the machine do, one step at a time. [`Step::pick`] draws the next step from the seeded
//! mix; [`World::run`] performs it against the real services.
//!
//! Checkout failover: every method has two channels, so a primary whose creates fail or time
//! out ([`Step::Failover`], [`Step::CreateFails`], outages) sends the checkout to the other
//! within the same request, each attempt its own trade number; a buyer who pays the abandoned
//! attempt's trade anyway ([`Step::PayAbandoned`]) is delivered once, and a second paid
//! attempt is flagged. Reconciliation ([`Step::Reconcile`], [`Op::Reconcile`]) runs the real
//! service against the fake gateways' bills (or their queries, for those without one), finds
//! the payments nothing else could ([`Step::PaySilently`]), is re-run and fed tampered bills.
//!
//! Extending the simulation is one variant of [`Step`], its weight in [`Step::pick`], and one
//! arm in [`World::run`]; an operation that must also run concurrently with others is a
//! variant of [`Op`] and an arm in [`op_future`]. A check that only the step itself can make
//! (a re-run changed nothing, say) goes to `World::step_violations`, reported with the
//! invariants after the step.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use kami_core::OrderNo;
use kami_pay::Device;
use kami_server::i18n::Locale;
use kami_server::services::reconciliation;
use kami_server::services::{checkout, checks, fulfilment, order_actions, refunds};
use kami_server::AppState;
use kami_store::Actor;
use rand::Rng;
use tower::ServiceExt;

use crate::fake_gateway::{CreateFault, FakeGateway, TradeStatus};
use crate::reconcile::{beijing_day, bill_day, findings};
use crate::sched::{self, Batch, Gates, OpFuture};
use crate::world::{fresh_keys, primary, Sabotage, World, METHODS};

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
    /// A buyer orders `qty` of `product`, paying by `METHODS[method]`.
    Buy {
        product: usize,
        method: usize,
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
    /// Reconcile a channel's bill day (today less `days_back`, in Beijing).
    Reconcile {
        channel: usize,
        days_back: u32,
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
        method: usize,
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
    /// A gateway's next `times` creates fail (once, or for a while).
    CreateFails {
        channel: usize,
        fault: CreateFault,
        times: u32,
    },
    /// A method's primary fails its next `times` creates, then a buyer orders by that
    /// method: the checkout fails over to the other channel.
    Failover {
        method: usize,
        fault: CreateFault,
        times: u32,
        product: usize,
    },
    /// The buyer pays the trade of an attempt kami gave up on (its create timed out after the
    /// gateway made it); with `also_current`, the order's other trades too.
    PayAbandoned {
        channel: usize,
        seq: u64,
        also_current: bool,
    },
    /// The buyer pays; every notification of it is lost and the gateway's query service
    /// does not see it (until the world settles): only the bill can tell kami.
    PaySilently { channel: usize, seq: u64 },
    /// The seller (or the daily job) reconciles a channel's bill day; `twice`: run again at
    /// once (nothing may change); `tamper`: the bill's totals do not add up.
    Reconcile {
        channel: usize,
        days_back: u32,
        twice: bool,
        tamper: bool,
    },
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
                method: rng.gen_range(0..METHODS.len()),
                qty: if rng.gen_bool(0.8) {
                    1
                } else {
                    rng.gen_range(1..=max)
                },
            }
        };
        let fault = |rng: &mut rand::rngs::StdRng| match rng.gen_range(0..7) {
            0 | 1 => CreateFault::Refuse,
            2 | 3 => CreateFault::TimeoutBefore,
            4 | 5 => CreateFault::TimeoutAfter,
            _ => CreateFault::RefuseThisPayment,
        };
        // Once, mostly; sometimes for a while (long enough to take the channel down).
        let times = |rng: &mut rand::rngs::StdRng| {
            if rng.gen_bool(0.7) {
                1
            } else {
                rng.gen_range(2..=8)
            }
        };
        let reconcile = |rng: &mut rand::rngs::StdRng| {
            // Mostly where a payment only the bill knows of waits, on its pay day.
            let lost = trades_where(w, |t| t.notify_lost);
            let now = w.now();
            match one(rng, &lost).filter(|_| rng.gen_bool(0.7)) {
                Some((channel, seq)) => {
                    let paid_at = w.fakes[channel]
                        .ledger()
                        .trades
                        .get(&seq)
                        .and_then(|t| t.paid_at)
                        .unwrap_or(now);
                    let days = (beijing_day(now) - beijing_day(paid_at)).whole_days();
                    (channel, u32::try_from(days).unwrap_or(0))
                }
                None => (
                    rng.gen_range(0..nch),
                    match weighted(rng, &[70, 25, 5]) {
                        0 => 0,
                        1 => 1,
                        _ => 2,
                    },
                ),
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
                4,                         // 20 failover
                3,                         // 21 pay an abandoned attempt
                2,                         // 22 pay silently
                3,                         // 23 reconcile
            ];
            let created = trades_where(w, |t| t.shown && t.status == TradeStatus::Created);
            let step = match weighted(rng, &kinds) {
                0 => match buy(rng) {
                    Op::Buy {
                        product,
                        method,
                        qty,
                    } => Some(Step::Buy {
                        product,
                        method,
                        qty,
                    }),
                    _ => None,
                },
                1 => {
                    let n = rng.gen_range(2..=4);
                    let ops = (0..n)
                        .map(|_| Op::Buy {
                            product: 0,
                            method: rng.gen_range(0..METHODS.len()),
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
                        let op = match rng.gen_range(0..6) {
                            0 => Some(buy(rng)),
                            1 => one(rng, &trades_where(w, |t| t.status == TradeStatus::Paid))
                                .map(|(channel, seq)| Op::Notify { channel, seq }),
                            2 => one(rng, &orders_in(w, &["pending"]))
                                .map(|order| Op::Cancel { order }),
                            3 => one(rng, &orders_in(w, &PAID)).map(|order| Op::Refund {
                                order,
                                amount: None,
                            }),
                            4 => one(rng, &orders_in(w, &["pending", "expired"]))
                                .map(|order| Op::SellerCheck { order }),
                            _ => rng.gen_bool(0.3).then(|| {
                                let (channel, days_back) = reconcile(rng);
                                Op::Reconcile { channel, days_back }
                            }),
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
                    let unacked = trades_where(w, |t| {
                        t.status == TradeStatus::Paid && !t.acked && !t.notify_lost
                    });
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
                    fault: fault(rng),
                    times: times(rng),
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
                20 => Some(Step::Failover {
                    method: rng.gen_range(0..METHODS.len()),
                    fault: fault(rng),
                    times: times(rng),
                    product: rng.gen_range(0..nprod),
                }),
                21 => one(
                    rng,
                    &trades_where(w, |t| t.status == TradeStatus::Created && !t.shown),
                )
                .map(|(channel, seq)| Step::PayAbandoned {
                    channel,
                    seq,
                    also_current: rng.gen_bool(0.4),
                }),
                // On a channel with a bill: without one, a payment nothing tells kami of is
                // found only by the query reconciliation of the day kami made the trade (or
                // paid it), which a payment days later misses.
                22 => {
                    let billed: Vec<(usize, u64)> = created
                        .iter()
                        .copied()
                        .filter(|(c, _)| w.fakes[*c].spec.bill)
                        .collect();
                    one(rng, &billed).map(|(channel, seq)| Step::PaySilently { channel, seq })
                }
                23 => {
                    let (channel, days_back) = reconcile(rng);
                    Some(Step::Reconcile {
                        channel,
                        days_back,
                        twice: rng.gen_bool(0.3),
                        tamper: w.fakes[channel].spec.bill && rng.gen_bool(0.1),
                    })
                }
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

/// A finished operation: a line for the trace.
pub struct OpOut {
    pub line: String,
}

pub fn short(e: impl std::fmt::Display) -> String {
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
        },
        Err(e) => OpOut {
            line: format!("refused {slug}x{qty} via {method}: {}", short(e)),
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
    }
}

fn op_future(w: &World, op: &Op) -> OpFuture<'static, OpOut> {
    let state = w.state();
    match op.clone() {
        Op::Buy {
            product,
            method,
            qty,
        } => {
            let slug = w.products[product].slug;
            let method = METHODS[method].as_str();
            let buyer = w.buyers_next();
            Box::pin(buy(state, slug, method, qty, buyer))
        }
        Op::Reconcile { channel, days_back } => {
            let id = w.fakes[channel].name().to_owned();
            let day = bill_day(w.now(), days_back);
            Box::pin(async move {
                let r = reconciliation::run(&state, &id, day, "simulation").await;
                OpOut {
                    line: format!(
                        "reconcile {id} {}: {}",
                        reconciliation::format_day(day),
                        r.map(|r| findings(&r)).unwrap_or_else(short)
                    ),
                }
            })
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
                method,
                qty,
            } => {
                let op = Op::Buy {
                    product: *product,
                    method: *method,
                    qty: *qty,
                };
                op_future(self, &op).await.line
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
                        Some(o) => lines.push(format!("op{i}: {}", o.line)),
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
            Step::CreateFails {
                channel,
                fault,
                times,
            } => {
                let mut l = self.fakes[*channel].ledger();
                for _ in 0..*times {
                    l.create_faults.push_back(*fault);
                }
                "armed".into()
            }
            Step::Failover {
                method,
                fault,
                times,
                product,
            } => {
                {
                    let mut l = self.fakes[primary(*method)].ledger();
                    for _ in 0..*times {
                        l.create_faults.push_back(*fault);
                    }
                }
                let op = Op::Buy {
                    product: *product,
                    method: *method,
                    qty: 1,
                };
                let out = op_future(self, &op).await;
                format!(
                    "{} armed; {}",
                    self.fakes[primary(*method)].name(),
                    out.line
                )
            }
            Step::PayAbandoned {
                channel,
                seq,
                also_current,
            } => {
                let fake = &self.fakes[*channel];
                let what = fake.pay_abandoned(*seq);
                let mut line = format!("{} trade {seq}: {what}", fake.name());
                let order = fake
                    .ledger()
                    .trades
                    .get(seq)
                    .map(|t| t.trade_no[..OrderNo::LEN].to_owned());
                if let (true, Some(order)) = (*also_current, order) {
                    // The buyer pays the attempt they were shown as well.
                    let others = trades_where(self, |t| {
                        t.shown
                            && t.status == TradeStatus::Created
                            && t.trade_no.starts_with(&order)
                    });
                    for (c, s) in others {
                        let what = self.fakes[c].pay(s, false);
                        line.push_str(&format!("; {} trade {s}: {what}", self.fakes[c].name()));
                    }
                }
                line
            }
            Step::PaySilently { channel, seq } => {
                let what = self.fakes[*channel].pay_silently(*seq);
                format!(
                    "{} trade {seq}: {what}, unheard",
                    self.fakes[*channel].name()
                )
            }
            Step::Reconcile {
                channel,
                days_back,
                twice,
                tamper,
            } => self.reconcile(*channel, *days_back, *twice, *tamper).await,
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
