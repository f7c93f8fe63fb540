//! A deterministic in-memory payment gateway behind kami's `PaymentChannel` trait. It keeps
//! its own ledger (trades created, paid, closed, refunded; notifications acknowledged), which
//! the invariants compare with kami's database, and it misbehaves on command: refused or
//! timed-out creates, outages for a while, queries that honestly do not see a trade yet,
//! refunds settled later, payments whose notifications are all lost and which its query
//! service cannot see, bills whose totals do not add up. Its notifications are HMAC-signed
//! forms that only it verifies; its bill (`PaymentChannel::bill`, when its spec has one)
//! lists what it processed that Beijing day: payments by pay time, refunds by settle time.
//!
//! Everything it decides by itself is a function of the seed, the trade's sequence number and
//! how often it was asked, never of call order or the (random) order numbers, so a seed plays
//! the same however kami's jobs interleave their calls.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use kami_core::{ChannelId, Clock, Currency, ManualClock, Method, Millis, Money};
use kami_pay::{
    Ack, AckResponse, Bill, BillDay, BillEntry, BillRow, BillTotals, CreatePayment, Created,
    NotifyVerdict, PayError, PaymentAction, PaymentChannel, PaymentConfirmation, RawNotification,
    RefundOutcome, RefundRequest, TradeRef, TradeState,
};

use crate::sched::Gates;

/// How a channel behaves by design (not a fault).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Alipay/WeChat can close a trade; Epay cannot (close answers "waiting").
    pub closable: bool,
    /// The gateway de-duplicates refunds on the refund number.
    pub idempotent_refunds: bool,
    /// The gateway refuses payment after the order's deadline (Alipay `time_expire`).
    pub honours_expiry: bool,
    /// Its routing priority (the higher first; equal ones share by weight, drawn by kami's
    /// seeded routing).
    pub priority: i32,
    /// It publishes a daily bill (Alipay, WeChat Pay); without one (Epay) reconciliation
    /// queries each trade instead.
    pub bill: bool,
}

/// What the next create call does instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateFault {
    /// The gateway's own system error: no trade (kami fails over, counts it against the
    /// channel).
    Refuse,
    /// A refusal of this payment's parameters: no trade (the buyer's, not the channel's: no
    /// failover).
    RefuseThisPayment,
    /// No answer, and nothing happened at the gateway.
    TimeoutBefore,
    /// No answer, but the trade was created (the buyer never saw it).
    TimeoutAfter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    Created,
    Paid,
    Closed,
}

#[derive(Debug, Clone)]
pub struct FakeRefund {
    pub amount: Money,
    pub settled: bool,
    /// When it settled (its bill day).
    pub settled_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct Trade {
    /// Creation order at this gateway: the stable name the seed's decisions use.
    pub seq: u64,
    pub trade_no: String,
    pub amount: Money,
    pub expires_at: Millis,
    pub status: TradeStatus,
    /// What the buyer actually paid (differs from `amount` only in wrong-amount payments).
    pub paid: Option<Money>,
    pub paid_at: Option<Millis>,
    /// kami answered "success" to a notification of this payment.
    pub acked: bool,
    /// Notifications sent so far (any outcome).
    pub notified: u32,
    pub queries: u32,
    /// kami got the create's answer (the buyer saw the QR code).
    pub shown: bool,
    /// Every notification of this payment is lost (the gateway gives up on it).
    pub notify_lost: bool,
    /// The query service does not see this trade: queries and closes fail (until the world
    /// settles). With `notify_lost`, only the bill tells kami.
    pub query_blind: bool,
    pub refunds: BTreeMap<String, FakeRefund>,
}

impl Trade {
    pub fn gateway_no(&self, channel: &str) -> String {
        format!("{channel}-G{}", self.seq)
    }
    pub fn refunded(&self) -> i64 {
        self.refunds.values().map(|r| r.amount.minor()).sum()
    }
    fn fully_refunded(&self) -> bool {
        self.paid
            .is_some_and(|p| self.refunded() >= p.minor() && self.refunded() > 0)
    }
}

#[derive(Default)]
pub struct Ledger {
    /// By sequence number.
    pub trades: BTreeMap<u64, Trade>,
    by_no: HashMap<String, u64>,
    /// Every call fails as unreachable until then.
    pub down_until: Millis,
    pub create_faults: VecDeque<CreateFault>,
    /// The next refund call is carried out, but its answer is lost (a timeout).
    pub lose_next_refund_answer: bool,
    /// The next bill's declared totals do not add up to its rows.
    pub tamper_next_bill: bool,
    /// The last bill served (what the invariants expect kami to have applied).
    pub last_bill: Option<Bill>,
    /// Things kami asked that it must never ask (refund beyond the payment, of an unpaid trade).
    pub violations: Vec<String>,
}

impl Ledger {
    pub fn by_no(&self, trade_no: &str) -> Option<&Trade> {
        self.by_no.get(trade_no).and_then(|s| self.trades.get(s))
    }
    fn by_no_mut(&mut self, trade_no: &str) -> Option<&mut Trade> {
        let seq = *self.by_no.get(trade_no)?;
        self.trades.get_mut(&seq)
    }
}

pub struct FakeGateway {
    id: ChannelId,
    methods: Vec<Method>,
    pub spec: Spec,
    clock: Arc<ManualClock>,
    salt: u64,
    key: hmac::Key,
    gates: Arc<Gates>,
    ledger: Mutex<Ledger>,
}

/// How long a payment may stay invisible to the query service.
pub const QUERY_LAG_MS: Millis = 5 * 60_000;

fn roll(salt: u64, what: &str, seq: u64, n: u32) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (salt, what, seq, n).hash(&mut h);
    h.finish() % 100
}

impl FakeGateway {
    pub fn new(
        id: &str,
        method: Method,
        spec: Spec,
        clock: Arc<ManualClock>,
        seed: u64,
        gates: Arc<Gates>,
    ) -> FakeGateway {
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = (seed.rotate_left(i as u32) as u8) ^ (i as u8) ^ id.len() as u8;
        }
        FakeGateway {
            id: ChannelId::parse(id).unwrap_or_else(|_| panic!("channel id {id}")),
            methods: vec![method],
            spec,
            clock,
            salt: seed ^ id.bytes().map(u64::from).sum::<u64>(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            gates,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    pub fn name(&self) -> &str {
        self.id.as_str()
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    fn down(&self) -> Result<(), PayError> {
        if self.now() < self.ledger().down_until {
            return Err(PayError::Transport(
                "gateway down (simulated outage)".into(),
            ));
        }
        Ok(())
    }

    fn confirmation(&self, t: &Trade) -> Option<PaymentConfirmation> {
        Some(PaymentConfirmation {
            trade_no: t.trade_no.clone(),
            gateway_trade_no: t.gateway_no(self.name()),
            amount: t.paid?,
            paid_at: t.paid_at,
        })
    }

    /// The buyer pays trade `seq` (`wrong`: a different amount than asked). Returns what
    /// happened, for the trace.
    pub fn pay(&self, seq: u64, wrong: bool) -> &'static str {
        self.pay_trade(seq, wrong, false)
    }

    /// The buyer pays a trade whose create kami gave up on (it timed out and kami failed over):
    /// the gateway's cashier reached the buyer anyway.
    pub fn pay_abandoned(&self, seq: u64) -> &'static str {
        self.pay_trade(seq, false, true)
    }

    /// The buyer pays trade `seq`, and the gateway loses every notification of it while its
    /// query service cannot see it: only the bill tells kami.
    pub fn pay_silently(&self, seq: u64) -> &'static str {
        let what = self.pay_trade(seq, false, false);
        if matches!(what, "paid" | "paid late") {
            if let Some(t) = self.ledger().trades.get_mut(&seq) {
                t.notify_lost = true;
                t.query_blind = true;
            }
        }
        what
    }

    fn pay_trade(&self, seq: u64, wrong: bool, abandoned: bool) -> &'static str {
        let now = self.now();
        let mut l = self.ledger();
        let Some(t) = l.trades.get_mut(&seq) else {
            return "no such trade";
        };
        if t.shown == abandoned {
            return if abandoned {
                "not abandoned"
            } else {
                "never shown to the buyer"
            };
        }
        match t.status {
            TradeStatus::Paid => return "already paid",
            TradeStatus::Closed => return "refused: trade closed",
            TradeStatus::Created => {}
        }
        if self.spec.honours_expiry && now > t.expires_at {
            return "refused: past the deadline";
        }
        let amount = if wrong {
            match Money::new(t.amount.minor() + 1, t.amount.currency()) {
                Ok(m) => m,
                Err(_) => return "no such amount",
            }
        } else {
            t.amount
        };
        t.status = TradeStatus::Paid;
        t.paid = Some(amount);
        t.paid_at = Some(now);
        t.shown = true;
        if wrong {
            "paid a different amount"
        } else if now > t.expires_at {
            "paid late"
        } else {
            "paid"
        }
    }

    /// The notification the gateway sends now for trade `seq` (a payment, or a closed trade),
    /// or `None` when there is nothing to tell. `forged`: same fields, bad signature.
    pub fn notification(&self, seq: u64, forged: bool) -> Option<Vec<u8>> {
        let mut l = self.ledger();
        let t = l.trades.get_mut(&seq)?;
        if t.notify_lost && !forged {
            return None;
        }
        let (status, amount) = match (t.status, t.paid) {
            (TradeStatus::Paid, Some(p)) => ("PAID", p),
            (TradeStatus::Closed, _) => ("CLOSED", t.amount),
            _ if forged => ("PAID", t.amount),
            _ => return None,
        };
        t.notified += 1;
        let fields = format!(
            "trade_no={}&gateway_trade_no={}&amount={}&currency={}&status={status}&paid_at={}",
            t.trade_no,
            t.gateway_no(self.name()),
            amount.minor(),
            amount.currency().code(),
            t.paid_at.unwrap_or(0)
        );
        let mut sig = hex::encode(hmac::sign(&self.key, fields.as_bytes()).as_ref());
        if forged {
            sig = sig.chars().rev().collect();
        }
        Some(format!("{fields}&sig={sig}").into_bytes())
    }

    /// kami answered a notification of trade `seq` with `body`.
    pub fn answered(&self, seq: u64, body: &str) {
        if body == "success" {
            if let Some(t) = self.ledger().trades.get_mut(&seq) {
                if t.status == TradeStatus::Paid {
                    t.acked = true;
                }
            }
        }
    }

    async fn gate(&self, what: &str, trade: &str) {
        let seq = self.ledger().by_no.get(trade).copied();
        let who = seq.map_or_else(|| "new trade".to_owned(), |s| format!("trade {s}"));
        self.gates
            .pass(format!("{} {what} {who}", self.name()))
            .await;
    }
}

fn blind() -> PayError {
    PayError::Transport("simulated: the query service does not see this trade".into())
}

/// The `[from, to)` unix-ms window of a Beijing bill day.
pub fn day_window(day: BillDay) -> (Millis, Millis) {
    let from = day
        .midnight()
        .assume_offset(kami_pay::bill::BILL_OFFSET)
        .unix_timestamp()
        * 1000;
    (from, from + 86_400_000)
}

fn field<'a>(form: &'a str, name: &str) -> Result<&'a str, PayError> {
    form.split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .ok_or_else(|| PayError::Malformed(format!("no {name}")))
}

#[async_trait]
impl PaymentChannel for FakeGateway {
    fn id(&self) -> &ChannelId {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn methods(&self) -> &[Method] {
        &self.methods
    }
    fn priority(&self) -> i32 {
        self.spec.priority
    }

    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        self.gate("create", req.trade_no.as_str()).await;
        self.down()?;
        let mut l = self.ledger();
        let fault = l.create_faults.pop_front();
        match fault {
            Some(CreateFault::Refuse) => {
                return Err(PayError::Gateway {
                    code: "SYSTEM_ERROR".into(),
                    message: "simulated system error".into(),
                })
            }
            Some(CreateFault::RefuseThisPayment) => {
                return Err(PayError::Gateway {
                    code: "INVALID_REQUEST".into(),
                    message: "simulated refusal of this payment".into(),
                })
            }
            Some(CreateFault::TimeoutBefore) => {
                return Err(PayError::Transport("simulated timeout".into()))
            }
            _ => {}
        }
        let no = req.trade_no.as_str().to_owned();
        if l.by_no.contains_key(&no) {
            l.violations
                .push(format!("{}: trade {no} created twice", self.name()));
            return Err(PayError::Gateway {
                code: "DUPLICATE".into(),
                message: "trade exists".into(),
            });
        }
        let seq = l.trades.len() as u64;
        l.by_no.insert(no.clone(), seq);
        l.trades.insert(
            seq,
            Trade {
                seq,
                trade_no: no.clone(),
                amount: req.amount,
                expires_at: req.expires_at_ms,
                status: TradeStatus::Created,
                paid: None,
                paid_at: None,
                acked: false,
                notified: 0,
                queries: 0,
                shown: fault.is_none(),
                notify_lost: false,
                query_blind: false,
                refunds: BTreeMap::new(),
            },
        );
        if fault == Some(CreateFault::TimeoutAfter) {
            return Err(PayError::Transport(
                "simulated timeout after the trade was created".into(),
            ));
        }
        Ok(PaymentAction::Qr {
            qr_code: format!("fake://{}/{seq}", self.name()),
        }
        .into())
    }

    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        let body =
            std::str::from_utf8(&raw.body).map_err(|_| PayError::Malformed("utf-8".into()))?;
        let (fields, sig) = body
            .rsplit_once("&sig=")
            .ok_or_else(|| PayError::Malformed("no sig".into()))?;
        let sig = hex::decode(sig).map_err(|_| PayError::BadSignature)?;
        hmac::verify(&self.key, fields.as_bytes(), &sig).map_err(|_| PayError::BadSignature)?;
        let trade_no = field(fields, "trade_no")?.to_owned();
        let currency = Currency::parse(field(fields, "currency")?)
            .map_err(|e| PayError::Malformed(e.to_string()))?;
        let minor: i64 = field(fields, "amount")?
            .parse()
            .map_err(|_| PayError::Malformed("amount".into()))?;
        let amount = Money::new(minor, currency).map_err(|e| PayError::Malformed(e.to_string()))?;
        match field(fields, "status")? {
            "PAID" => Ok(NotifyVerdict::Paid(PaymentConfirmation {
                trade_no,
                gateway_trade_no: field(fields, "gateway_trade_no")?.to_owned(),
                amount,
                paid_at: field(fields, "paid_at").ok().and_then(|v| v.parse().ok()),
            })),
            other => Ok(NotifyVerdict::NotPaid {
                trade_no,
                status: other.to_owned(),
            }),
        }
    }

    fn ack(&self, ack: Ack) -> AckResponse {
        AckResponse {
            status: 200,
            content_type: "text/plain",
            body: match ack {
                Ack::Success => "success".into(),
                Ack::Failure => "fail".into(),
            },
        }
    }

    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        self.gate("query", trade_no).await;
        self.down()?;
        let now = self.now();
        let mut l = self.ledger();
        let Some(t) = l.by_no_mut(trade_no) else {
            return Ok(TradeState::NotFound);
        };
        t.queries += 1;
        if t.query_blind {
            return Err(blind());
        }
        // Honest but behind: a trade nobody scanned yet is unknown to Alipay (TRADE_NOT_EXIST),
        // and a fresh payment (of the last few minutes) may not be visible to the query
        // service yet.
        let lagging = roll(self.salt, "lag", t.seq, t.queries) < 25;
        let fresh = t.paid_at.is_some_and(|at| now - at < QUERY_LAG_MS);
        let state = match t.status {
            TradeStatus::Created if lagging => TradeState::NotFound,
            TradeStatus::Created => TradeState::Waiting,
            TradeStatus::Paid if t.fully_refunded() => TradeState::Refunded,
            TradeStatus::Paid if lagging && fresh => TradeState::Waiting,
            TradeStatus::Paid => TradeState::Paid(match self.confirmation(t) {
                Some(c) => c,
                None => return Ok(TradeState::Waiting),
            }),
            TradeStatus::Closed => TradeState::Closed,
        };
        Ok(state)
    }

    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let trade_no = trade.trade_no.as_str();
        self.gate("close", trade_no).await;
        self.down()?;
        let mut l = self.ledger();
        let closable = self.spec.closable;
        let Some(t) = l.by_no_mut(trade_no) else {
            return Ok(TradeState::NotFound);
        };
        if t.query_blind {
            return Err(blind());
        }
        Ok(match t.status {
            TradeStatus::Paid if t.fully_refunded() => TradeState::Refunded,
            TradeStatus::Paid => match self.confirmation(t) {
                Some(c) => TradeState::Paid(c),
                None => TradeState::Waiting,
            },
            TradeStatus::Created if closable => {
                t.status = TradeStatus::Closed;
                TradeState::Closed
            }
            TradeStatus::Created => TradeState::Waiting,
            TradeStatus::Closed => TradeState::Closed,
        })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        self.gate("refund", &req.trade_no).await;
        self.down()?;
        let name = self.name().to_owned();
        let salt = self.salt;
        let idempotent = self.spec.idempotent_refunds;
        let now = self.now();
        let result = {
            let mut l = self.ledger();
            let lose_answer = std::mem::take(&mut l.lose_next_refund_answer);
            let mut violation = None;
            let result = match l.by_no_mut(&req.trade_no) {
                None => {
                    violation = Some(format!("{name}: refund of unknown trade {}", req.trade_no));
                    Err(PayError::Gateway {
                        code: "TRADE_NOT_EXIST".into(),
                        message: "no such trade".into(),
                    })
                }
                Some(t) => {
                    let n = t.refunds.len() as u32;
                    if let Some(r) = t.refunds.get_mut(&req.refund_no) {
                        if r.amount != req.amount {
                            violation = Some(format!(
                                "{name}: refund number {} reused for another amount",
                                req.refund_no
                            ));
                        } else if !idempotent {
                            // This gateway does not de-duplicate: a real one would pay again.
                            violation = Some(format!(
                                "{name}: refund {} of trade {} asked again of a gateway that \
                             does not de-duplicate refunds (the buyer would be paid twice)",
                                req.refund_no, t.seq
                            ));
                        }
                        // Asked again with the same number: it has settled by now.
                        if !r.settled {
                            r.settled = true;
                            r.settled_at = Some(now);
                        }
                        Ok(RefundOutcome {
                            refund_no: req.refund_no.clone(),
                            amount: r.amount,
                            settled: true,
                        })
                    } else if t.status != TradeStatus::Paid {
                        violation = Some(format!("{name}: refund of unpaid trade {}", t.seq));
                        Err(PayError::Gateway {
                            code: "TRADE_NOT_PAID".into(),
                            message: "not paid".into(),
                        })
                    } else if t.refunded() + req.amount.minor() > t.paid.map_or(0, Money::minor)
                        || Some(req.amount.currency()) != t.paid.map(Money::currency)
                    {
                        violation = Some(format!(
                            "{name}: refund of {} on trade {} beyond what was paid",
                            req.amount.minor(),
                            t.seq
                        ));
                        Err(PayError::Gateway {
                            code: "REFUND_AMT_EXCEEDED".into(),
                            message: "refund exceeds payment".into(),
                        })
                    } else {
                        let r = roll(salt, "refund", t.seq, n);
                        let settled = r >= 20;
                        t.refunds.insert(
                            req.refund_no.clone(),
                            FakeRefund {
                                amount: req.amount,
                                settled,
                                settled_at: settled.then_some(now),
                            },
                        );
                        if r < 8 || lose_answer {
                            // Done at the gateway, but the answer is lost.
                            Err(PayError::Transport("simulated timeout after refund".into()))
                        } else {
                            Ok(RefundOutcome {
                                refund_no: req.refund_no.clone(),
                                amount: req.amount,
                                settled,
                            })
                        }
                    }
                }
            };
            if let Some(v) = violation {
                l.violations.push(v);
            }
            result
        };
        // The money has moved (or not); kami may die before the answer reaches it.
        self.gate("answers the refund of", &req.trade_no).await;
        result
    }

    async fn bill(&self, day: BillDay) -> Result<Bill, PayError> {
        if !self.spec.bill {
            return Err(PayError::Unsupported("bill download"));
        }
        self.gates
            .pass(format!("{} serves its bill", self.name()))
            .await;
        self.down()?;
        let (from, to) = day_window(day);
        let within = |at: Option<Millis>| at.is_some_and(|at| (from..to).contains(&at));
        let mut l = self.ledger();
        let mut rows = Vec::new();
        for t in l.trades.values() {
            let gateway_trade_no = t.gateway_no(self.name());
            if let (TradeStatus::Paid, Some(paid)) = (t.status, t.paid) {
                if within(t.paid_at) {
                    rows.push(BillRow {
                        trade_no: t.trade_no.clone(),
                        gateway_trade_no: gateway_trade_no.clone(),
                        entry: BillEntry::Payment,
                        amount: paid,
                        at_ms: t.paid_at,
                    });
                }
            }
            for (no, r) in &t.refunds {
                if within(r.settled_at) {
                    rows.push(BillRow {
                        trade_no: t.trade_no.clone(),
                        gateway_trade_no: gateway_trade_no.clone(),
                        entry: BillEntry::Refund {
                            refund_no: no.clone(),
                        },
                        amount: r.amount,
                        at_ms: r.settled_at,
                    });
                }
            }
        }
        // The file's own totals line, checked against its rows as every bill parser does.
        let totals = Bill::totals_of(&rows);
        let declared = if std::mem::take(&mut l.tamper_next_bill) {
            BillTotals {
                paid_minor: totals.paid_minor + 1,
                ..totals
            }
        } else {
            totals
        };
        if declared != totals {
            l.last_bill = None;
            return Err(PayError::Malformed(format!(
                "{} bill: the rows add up to {} paid, the totals line says {}",
                self.name(),
                totals.paid_minor,
                declared.paid_minor
            )));
        }
        let bill = Bill { day, rows, totals };
        l.last_bill = Some(bill.clone());
        Ok(bill)
    }

    fn refund_is_idempotent(&self) -> bool {
        self.spec.idempotent_refunds
    }
}
