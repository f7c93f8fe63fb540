//! Reconciliation batches (对账): one row per (channel, bill day), its items, the carry-over
//! pool of trades a bill did not list yet, and the order change a wrong amount makes. The
//! server decides what each bill row means (`services/reconciliation.rs`); this module keeps
//! a day's result whole: a re-run replaces the items, the pool changes and the counts in the
//! one transaction that finishes it, so a day never shows half a result or two.

use std::collections::{BTreeMap, HashMap, HashSet};

use kami_core::{Millis, Money, OrderEvent, OrderNo, OrderStatus, PaymentStatus};

use crate::alert_signal::{self, AlertEvent, AlertSignal};
use crate::cards;
use crate::db::{Row, Tx};
use crate::error::{Result, StoreError};
use crate::model::{Actor, Delivery};
use crate::params;
use crate::transitions::{apply_order_event, Details, LockedOrder};
use crate::{audit, Store};

/// A reconciliation's view of the channel's payments (`payment_from_row`), filtered by `$where`.
macro_rules! recon_payments {
    ($where:literal) => {
        concat!(
            "SELECT p.trade_no, p.gateway_ref, p.gateway_trade_no, p.amount, p.currency, \
             p.status, p.paid_at, p.billed_day, o.order_no \
             FROM payments p JOIN orders o ON o.id = p.order_id ",
            $where
        )
    };
}

/// A reconciliation's view of refunds of the channel's payments, filtered by `$where`.
macro_rules! recon_refunds {
    ($where:literal) => {
        concat!(
            "SELECT f.refund_no, p.trade_no, f.amount, f.currency, o.order_no, f.status \
             FROM refunds f JOIN payments p ON p.id = f.payment_id \
             JOIN orders o ON o.id = f.order_id ",
            $where
        )
    };
}

/// What a reconciliation found about one trade or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKind {
    /// The bill (or a query) proves a payment kami had not seen: applied through the normal
    /// verified-payment path (delivered, or an exception when the stock is gone).
    Recovered,
    /// kami holds it paid and the bill of its day does not list it yet.
    CarriedOver,
    /// Still not listed `carry_over_days` after its day (or the channel's query denies it).
    MissingAtChannel,
    /// The bill's amount or currency differs from kami's: an exception, never fixed.
    AmountMismatch,
    /// The bill names another gateway trade number than the one kami recorded.
    GatewayTradeMismatch,
    /// A bill row for a trade kami never created.
    UnknownPayment,
    /// A refund at the channel kami did not make (the merchant portal).
    RefundUnknownLocally,
    /// A refund kami recorded as settled that the bill does not list.
    RefundMissingAtChannel,
    /// A refund whose amount differs between the bill and kami.
    RefundAmountMismatch,
    /// The channel could not be asked about a trade (query path); a re-run asks again.
    QueryFailed,
}

impl ItemKind {
    pub const ALL: [ItemKind; 10] = [
        ItemKind::Recovered,
        ItemKind::CarriedOver,
        ItemKind::MissingAtChannel,
        ItemKind::AmountMismatch,
        ItemKind::GatewayTradeMismatch,
        ItemKind::UnknownPayment,
        ItemKind::RefundUnknownLocally,
        ItemKind::RefundMissingAtChannel,
        ItemKind::RefundAmountMismatch,
        ItemKind::QueryFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Recovered => "recovered",
            ItemKind::CarriedOver => "carried_over",
            ItemKind::MissingAtChannel => "missing_at_channel",
            ItemKind::AmountMismatch => "amount_mismatch",
            ItemKind::GatewayTradeMismatch => "gateway_trade_mismatch",
            ItemKind::UnknownPayment => "unknown_payment",
            ItemKind::RefundUnknownLocally => "refund_unknown_locally",
            ItemKind::RefundMissingAtChannel => "refund_missing_at_channel",
            ItemKind::RefundAmountMismatch => "refund_amount_mismatch",
            ItemKind::QueryFailed => "query_failed",
        }
    }

    pub fn parse(s: &str) -> Option<ItemKind> {
        ItemKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A difference the seller must look at (alerted); recoveries and carried-over trades
    /// are the process working.
    pub fn is_mismatch(self) -> bool {
        !matches!(self, ItemKind::Recovered | ItemKind::CarriedOver)
    }
}

/// One finding, as the service decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub kind: ItemKind,
    pub trade_no: String,
    pub refund_no: String,
    pub gateway_trade_no: Option<String>,
    pub order_no: Option<String>,
    pub kami: Option<Money>,
    pub bill: Option<Money>,
    pub detail: String,
}

impl NewItem {
    pub fn new(kind: ItemKind, trade_no: &str) -> NewItem {
        NewItem {
            kind,
            trade_no: trade_no.to_owned(),
            refund_no: String::new(),
            gateway_trade_no: None,
            order_no: None,
            kami: None,
            bill: None,
            detail: String::new(),
        }
    }
}

/// A trade kami holds paid on the bill day that the bill did not list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarryIn {
    pub trade_no: String,
    pub order_no: String,
    pub amount: Money,
    pub gateway_trade_no: Option<String>,
}

/// The bill's own totals, as the batch keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchTotals {
    pub payments: i64,
    pub paid: i64,
    pub refunds: i64,
    pub refunded: i64,
}

/// How a run ended well: what to write in the finishing transaction.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// `bill` or `query`.
    pub source: &'static str,
    pub totals: Option<BatchTotals>,
    pub items: Vec<NewItem>,
    /// Paid in kami on the day, not in the bill: into the pool.
    pub carry: Vec<CarryIn>,
    /// Our trade numbers of the bill's payment rows (pooled trades they list are matched).
    pub listed: Vec<String>,
    /// Pooled trades first seen on or before this day (YYYY-MM-DD) become "missing at
    /// channel"; `None` leaves the pool alone (the query path has no bill to wait for).
    pub missing_from: Option<String>,
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationBatch {
    pub id: i64,
    pub channel_id: String,
    pub bill_day: String,
    /// `running`, `succeeded`, `failed`.
    pub status: String,
    /// `bill`, `query`, or empty before the first run ended.
    pub source: String,
    pub actor: String,
    pub runs: i64,
    pub totals: Option<BatchTotals>,
    pub counts: BTreeMap<String, i64>,
    pub mismatches: i64,
    pub error: Option<String>,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationItem {
    pub id: i64,
    pub batch_id: i64,
    pub kind: String,
    pub trade_no: String,
    pub refund_no: String,
    pub gateway_trade_no: Option<String>,
    pub order_no: Option<String>,
    pub kami_amount: Option<i64>,
    pub kami_currency: Option<String>,
    pub bill_amount: Option<i64>,
    pub bill_currency: Option<String>,
    pub detail: String,
    pub handled_at: Option<Millis>,
    pub handled_by: Option<String>,
    pub handled_note: Option<String>,
}

/// A payment of a channel as reconciliation compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconPayment {
    pub trade_no: String,
    /// The gateway's own id of the attempt, when its create call returned one.
    pub gateway_ref: Option<String>,
    pub gateway_trade_no: Option<String>,
    pub amount: Money,
    pub status: PaymentStatus,
    pub order_no: OrderNo,
    pub paid_at: Option<Millis>,
    /// The bill day whose bill first listed it.
    pub billed_day: Option<String>,
}

/// A refund kami made, as reconciliation compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconRefund {
    pub refund_no: String,
    pub trade_no: String,
    pub amount: Money,
    pub order_no: OrderNo,
    /// `pending`, `succeeded`, `failed`.
    pub status: String,
}

/// Which batches to list, newest bill day first.
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    pub channel_id: Option<String>,
    pub bill_day: Option<String>,
    pub limit: u32,
}

fn batch_from_row(r: &Row) -> Result<ReconciliationBatch> {
    let totals = match r.get::<Option<i64>>("bill_payments")? {
        Some(payments) => Some(BatchTotals {
            payments,
            paid: r.get::<Option<i64>>("bill_paid")?.unwrap_or(0),
            refunds: r.get::<Option<i64>>("bill_refunds")?.unwrap_or(0),
            refunded: r.get::<Option<i64>>("bill_refunded")?.unwrap_or(0),
        }),
        None => None,
    };
    let counts: String = r.get("counts")?;
    Ok(ReconciliationBatch {
        id: r.get("id")?,
        channel_id: r.get("channel_id")?,
        bill_day: r.get("bill_day")?,
        status: r.get("status")?,
        source: r.get("source")?,
        actor: r.get("actor")?,
        runs: r.get("runs")?,
        totals,
        counts: serde_json::from_str(&counts)
            .map_err(|e| StoreError::Corrupt(format!("reconciliation counts: {e}")))?,
        mismatches: r.get("mismatches")?,
        error: r.get("error")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
    })
}

fn item_from_row(r: &Row) -> Result<ReconciliationItem> {
    Ok(ReconciliationItem {
        id: r.get("id")?,
        batch_id: r.get("batch_id")?,
        kind: r.get("kind")?,
        trade_no: r.get("trade_no")?,
        refund_no: r.get("refund_no")?,
        gateway_trade_no: r.get("gateway_trade_no")?,
        order_no: r.get("order_no")?,
        kami_amount: r.get("kami_amount")?,
        kami_currency: r.get("kami_currency")?,
        bill_amount: r.get("bill_amount")?,
        bill_currency: r.get("bill_currency")?,
        detail: r.get("detail")?,
        handled_at: r.get("handled_at")?,
        handled_by: r.get("handled_by")?,
        handled_note: r.get("handled_note")?,
    })
}

fn batch(tx: &mut dyn Tx, id: i64) -> Result<Option<ReconciliationBatch>> {
    tx.query_opt(
        "SELECT id, channel_id, bill_day, status, source, actor, runs, bill_payments, bill_paid, \
         bill_refunds, bill_refunded, counts, mismatches, error, started_at, finished_at \
         FROM reconciliation_batches WHERE id = $1",
        params![id],
    )?
    .as_ref()
    .map(batch_from_row)
    .transpose()
}

/// Start (or restart) the run of (channel, day): `None` when a run of it is under way and
/// younger than `stale_before` (another process, or a crashed run not yet stale).
fn begin(
    tx: &mut dyn Tx,
    channel_id: &str,
    day: &str,
    actor: &str,
    now: Millis,
    stale_before: Millis,
) -> Result<Option<i64>> {
    let inserted = tx.query_opt(
        "INSERT INTO reconciliation_batches (channel_id, bill_day, status, actor, started_at) \
         VALUES ($1, $2, 'running', $3, $4) ON CONFLICT (channel_id, bill_day) DO NOTHING \
         RETURNING id",
        params![channel_id, day, actor, now],
    )?;
    if let Some(r) = inserted {
        return Ok(Some(r.get("id")?));
    }
    // Compare-and-set: only a batch that is not running (or whose run went stale) restarts.
    let restarted = tx.query_opt(
        "UPDATE reconciliation_batches SET status = 'running', actor = $3, started_at = $4, \
           finished_at = NULL, runs = runs + 1 \
         WHERE channel_id = $1 AND bill_day = $2 AND (status <> 'running' OR started_at < $5) \
         RETURNING id",
        params![channel_id, day, actor, now, stale_before],
    )?;
    restarted.map(|r| r.get("id")).transpose()
}

fn fail(tx: &mut dyn Tx, id: i64, error: &str, now: Millis) -> Result<()> {
    tx.exec(
        "UPDATE reconciliation_batches SET status = 'failed', error = $2, finished_at = $3 \
         WHERE id = $1 AND status = 'running'",
        params![id, error, now],
    )?;
    Ok(())
}

fn money_parts(m: &Option<Money>) -> (Option<i64>, Option<String>) {
    match m {
        Some(m) => (Some(m.minor()), Some(m.currency().code().to_owned())),
        None => (None, None),
    }
}

/// Pool changes of this run: undo what an earlier run of the same day did, pool the new
/// carried trades, then match or give up on older ones. Returns the items they make.
fn settle_pool(tx: &mut dyn Tx, channel: &str, day: &str, f: &Finish) -> Result<Vec<NewItem>> {
    let Some(missing_from) = &f.missing_from else {
        return Ok(Vec::new());
    };
    tx.exec(
        "UPDATE reconciliation_carry_over SET resolved_day = NULL, resolution = NULL \
         WHERE channel_id = $1 AND resolved_day = $2",
        params![channel, day],
    )?;
    tx.exec(
        "DELETE FROM reconciliation_carry_over WHERE channel_id = $1 AND first_day = $2",
        params![channel, day],
    )?;
    let mut items = Vec::new();
    for c in &f.carry {
        tx.exec(
            "INSERT INTO reconciliation_carry_over (channel_id, trade_no, first_day, order_no, \
               amount, currency, gateway_trade_no) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (channel_id, trade_no) DO NOTHING",
            params![
                channel,
                c.trade_no.as_str(),
                day,
                c.order_no.as_str(),
                c.amount.minor(),
                c.amount.currency().code(),
                c.gateway_trade_no.as_deref()
            ],
        )?;
        items.push(NewItem {
            order_no: Some(c.order_no.clone()),
            kami: Some(c.amount),
            gateway_trade_no: c.gateway_trade_no.clone(),
            detail: format!("paid in kami on {day}; not in that day's bill yet"),
            ..NewItem::new(ItemKind::CarriedOver, &c.trade_no)
        });
    }
    let listed: HashSet<&str> = f.listed.iter().map(String::as_str).collect();
    let open = tx.query(
        "SELECT c.trade_no, c.first_day, c.order_no, c.amount, c.currency, c.gateway_trade_no, \
           p.billed_day FROM reconciliation_carry_over c \
         LEFT JOIN payments p ON p.channel_id = c.channel_id AND p.trade_no = c.trade_no \
         WHERE c.channel_id = $1 AND c.resolved_day IS NULL AND c.first_day < $2 \
         ORDER BY c.first_day, c.trade_no",
        params![channel, day],
    )?;
    for r in open {
        let trade_no: String = r.get("trade_no")?;
        let first_day: String = r.get("first_day")?;
        let billed = r.get::<Option<String>>("billed_day")?.is_some();
        let resolution = if billed || listed.contains(trade_no.as_str()) {
            "matched"
        } else if first_day.as_str() <= missing_from.as_str() {
            items.push(NewItem {
                order_no: r.get("order_no")?,
                kami: Some(r.money("amount", "currency")?),
                gateway_trade_no: r.get("gateway_trade_no")?,
                detail: format!("paid in kami on {first_day}; in no bill since"),
                ..NewItem::new(ItemKind::MissingAtChannel, &trade_no)
            });
            "missing"
        } else {
            continue;
        };
        tx.exec(
            "UPDATE reconciliation_carry_over SET resolved_day = $3, resolution = $4 \
             WHERE channel_id = $1 AND trade_no = $2",
            params![channel, trade_no.as_str(), day, resolution],
        )?;
    }
    Ok(items)
}

fn finish(tx: &mut dyn Tx, id: i64, f: &Finish, now: Millis) -> Result<ReconciliationBatch> {
    let b = tx
        .query_opt(
            "SELECT channel_id, bill_day, status, mismatches FROM reconciliation_batches \
             WHERE id = $1 FOR UPDATE",
            params![id],
        )?
        .ok_or_else(|| StoreError::Corrupt(format!("reconciliation batch {id} vanished")))?;
    if b.get::<String>("status")? != "running" {
        return Err(StoreError::InvalidStatus(
            "this reconciliation run was taken over by another (it ran too long)".into(),
        ));
    }
    let (channel, day): (String, String) = (b.get("channel_id")?, b.get("bill_day")?);
    let had_mismatches = b.get::<i64>("mismatches")? > 0;
    // The bill listed these: remember the first day one did (see `billed_day`).
    for t in &f.listed {
        tx.exec(
            "UPDATE payments SET billed_day = $3 \
             WHERE channel_id = $1 AND trade_no = $2 AND billed_day IS NULL",
            params![channel.as_str(), t.as_str(), day.as_str()],
        )?;
    }
    let mut items = f.items.clone();
    items.extend(settle_pool(tx, &channel, &day, f)?);
    // A trade an earlier run recovered is paid now and matches the bill, so this run finds
    // nothing about it; the recovery stays part of the day's result. So does a second
    // payment of an order an earlier run applied (an unknown payment kami now holds paid):
    // the money is still to be refunded, and the finding stays until the seller handles it.
    for r in tx.query(
        "SELECT i.kind, i.trade_no, i.refund_no, i.gateway_trade_no, i.order_no, i.kami_amount, \
         i.kami_currency, i.bill_amount, i.bill_currency, i.detail FROM reconciliation_items i \
         WHERE i.batch_id = $1 AND (i.kind = 'recovered' OR (i.kind = 'unknown_payment' \
           AND EXISTS (SELECT 1 FROM payments p WHERE p.channel_id = $2 AND p.trade_no = i.trade_no \
             AND p.status IN ($3, $4, $5)))) ORDER BY i.id",
        params![
            id,
            channel.as_str(),
            PaymentStatus::Paid,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded
        ],
    )? {
        let trade_no: String = r.get("trade_no")?;
        let kind = ItemKind::parse(&r.get::<String>("kind")?).unwrap_or(ItemKind::Recovered);
        if items.iter().any(|i| i.trade_no == trade_no) {
            continue;
        }
        let money = |a: &str, c: &str| -> Result<Option<Money>> {
            match r.get::<Option<i64>>(a)? {
                Some(_) => r.money(a, c).map(Some),
                None => Ok(None),
            }
        };
        items.push(NewItem {
            gateway_trade_no: r.get("gateway_trade_no")?,
            order_no: r.get("order_no")?,
            kami: money("kami_amount", "kami_currency")?,
            bill: money("bill_amount", "bill_currency")?,
            detail: r.get("detail")?,
            ..NewItem::new(kind, &trade_no)
        });
    }

    // The seller's notes survive a re-run for the same finding.
    type Key = (String, String, String);
    let mut handled: HashMap<Key, (Millis, Option<String>, Option<String>)> = HashMap::new();
    for r in tx.query(
        "SELECT kind, trade_no, refund_no, handled_at, handled_by, handled_note \
         FROM reconciliation_items WHERE batch_id = $1 AND handled_at IS NOT NULL",
        params![id],
    )? {
        handled.insert(
            (r.get("kind")?, r.get("trade_no")?, r.get("refund_no")?),
            (
                r.get("handled_at")?,
                r.get("handled_by")?,
                r.get("handled_note")?,
            ),
        );
    }
    tx.exec(
        "DELETE FROM reconciliation_items WHERE batch_id = $1",
        params![id],
    )?;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut mismatches = 0i64;
    for it in &items {
        *counts.entry(it.kind.as_str().to_owned()).or_default() += 1;
        if it.kind.is_mismatch() {
            mismatches += 1;
        }
        let key = (
            it.kind.as_str().to_owned(),
            it.trade_no.clone(),
            it.refund_no.clone(),
        );
        let h = handled.get(&key).cloned();
        let (kami_amount, kami_currency) = money_parts(&it.kami);
        let (bill_amount, bill_currency) = money_parts(&it.bill);
        tx.exec(
            "INSERT INTO reconciliation_items (batch_id, kind, trade_no, refund_no, \
               gateway_trade_no, order_no, kami_amount, kami_currency, bill_amount, \
               bill_currency, detail, handled_at, handled_by, handled_note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            params![
                id,
                it.kind.as_str(),
                it.trade_no.as_str(),
                it.refund_no.as_str(),
                it.gateway_trade_no.as_deref(),
                it.order_no.as_deref(),
                kami_amount,
                kami_currency,
                bill_amount,
                bill_currency,
                it.detail.as_str(),
                h.as_ref().map(|h| h.0),
                h.as_ref().and_then(|h| h.1.clone()),
                h.and_then(|h| h.2)
            ],
        )?;
    }
    let counts_json = serde_json::to_string(&counts)
        .map_err(|e| StoreError::Corrupt(format!("reconciliation counts: {e}")))?;
    let t = f.totals;
    tx.exec(
        "UPDATE reconciliation_batches SET status = 'succeeded', source = $2, \
           bill_payments = $3, bill_paid = $4, bill_refunds = $5, bill_refunded = $6, \
           counts = $7, mismatches = $8, error = NULL, finished_at = $9 WHERE id = $1",
        params![
            id,
            f.source,
            t.map(|t| t.payments),
            t.map(|t| t.paid),
            t.map(|t| t.refunds),
            t.map(|t| t.refunded),
            counts_json,
            mismatches,
            now
        ],
    )?;
    // One condition per (channel, day): firing while differences remain, resolved by the
    // run that finds none.
    if mismatches > 0 || had_mismatches {
        let signal = AlertSignal {
            event: AlertEvent::ReconciliationMismatch,
            subject: format!("{channel}/{day}"),
            firing: mismatches > 0,
            details: serde_json::json!({
                "batch_id": id,
                "channel": channel,
                "date": day,
                "mismatches": mismatches,
                "counts": counts,
            }),
        };
        alert_signal::emit(tx, &signal, now)?;
    }
    batch(tx, id)?.ok_or_else(|| StoreError::Corrupt(format!("reconciliation batch {id} vanished")))
}

fn payment_from_row(r: &Row) -> Result<ReconPayment> {
    Ok(ReconPayment {
        trade_no: r.get("trade_no")?,
        gateway_ref: r.get("gateway_ref")?,
        gateway_trade_no: r.get("gateway_trade_no")?,
        amount: r.money("amount", "currency")?,
        status: r.get("status")?,
        order_no: r.get("order_no")?,
        paid_at: r.get("paid_at")?,
        billed_day: r.get("billed_day")?,
    })
}

/// A bill row's amount differs from the order's: an unpaid order becomes an exception (its
/// held stock goes back, its checks stop), a paid one keeps its status (the item reports it).
/// Returns the order's number and status afterwards; `None` when no payment has the number.
fn paid_wrong_amount(
    tx: &mut dyn Tx,
    channel: &str,
    trade_no: &str,
    note: &str,
    payload: serde_json::Value,
    now: Millis,
) -> Result<Option<(OrderNo, OrderStatus)>> {
    let Some(p) = tx.query_opt(
        "SELECT order_id FROM payments WHERE channel_id = $1 AND trade_no = $2",
        params![channel, trade_no],
    )?
    else {
        return Ok(None);
    };
    let o = tx.query_one(
        "SELECT o.id, o.order_no, o.status, o.product_id, o.quantity, p.delivery FROM orders o \
         JOIN products p ON p.id = o.product_id WHERE o.id = $1 FOR UPDATE OF o",
        params![p.get::<i64>("order_id")?],
    )?;
    let order = LockedOrder::from_row(&o)?;
    if order.status.on(OrderEvent::PaidWrongAmount).is_err() {
        return Ok(Some((order.order_no, order.status)));
    }
    if order.status == OrderStatus::Pending {
        // Its stock is still held: give it back (an expired order gave it back already).
        cards::release(tx, order.id)?;
        if o.get::<Delivery>("delivery")? == Delivery::Manual {
            tx.exec(
                "UPDATE products SET manual_stock = manual_stock + $2 WHERE id = $1 AND manual_stock IS NOT NULL",
                params![o.get::<i64>("product_id")?, o.get::<i64>("quantity")?],
            )?;
        }
    }
    let status = apply_order_event(
        tx,
        &order,
        OrderEvent::PaidWrongAmount,
        now,
        Details {
            note: Some(note),
            payload: Some(payload),
        },
    )?;
    // Nothing left to ask the channel: the bill has spoken, the seller decides.
    tx.exec(
        "UPDATE payments SET next_check_at = NULL, lease_until = NULL WHERE order_id = $1",
        params![order.id],
    )?;
    Ok(Some((order.order_no, status)))
}

/// The daily job's claim: one holder at a time (`lease_until`), and a key (the bill day)
/// run once. True when this caller holds it now.
fn claim_job(
    tx: &mut dyn Tx,
    name: &str,
    key: &str,
    holder: &str,
    now: Millis,
    lease_until: Millis,
) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE job_leases SET holder = $3, lease_until = $5 \
         WHERE name = $1 AND (done_key IS NULL OR done_key < $2) \
           AND (lease_until IS NULL OR lease_until < $4)",
        params![name, key, holder, now, lease_until],
    )? == 1)
}

impl Store {
    /// Start the run of (channel, day) for `actor`; `None` while another run of it is under
    /// way (one that started before `stale_before` is taken over).
    pub async fn begin_reconciliation(
        &self,
        channel_id: &str,
        day: &str,
        actor: &str,
        now: Millis,
        stale_before: Millis,
    ) -> Result<Option<i64>> {
        let (c, d, a) = (channel_id.to_owned(), day.to_owned(), actor.to_owned());
        self.write(move |tx| begin(tx, &c, &d, &a, now, stale_before))
            .await
    }

    /// The run could not read the channel's bill: the batch fails with `error`, its earlier
    /// result (items, counts) untouched.
    pub async fn fail_reconciliation(&self, id: i64, error: &str, now: Millis) -> Result<()> {
        let e = error.to_owned();
        self.write(move |tx| fail(tx, id, &e, now)).await
    }

    /// The run's result, in one commit: items replaced, pool updated, counts, alert signal.
    pub async fn finish_reconciliation(
        &self,
        id: i64,
        f: Finish,
        now: Millis,
    ) -> Result<ReconciliationBatch> {
        self.write(move |tx| finish(tx, id, &f, now)).await
    }

    pub async fn reconciliation(&self, id: i64) -> Result<Option<ReconciliationBatch>> {
        self.read(move |tx| batch(tx, id)).await
    }

    pub async fn reconciliation_items(&self, batch_id: i64) -> Result<Vec<ReconciliationItem>> {
        self.read(move |tx| {
            tx.query(
                "SELECT id, batch_id, kind, trade_no, refund_no, gateway_trade_no, order_no, \
                 kami_amount, kami_currency, bill_amount, bill_currency, detail, handled_at, \
                 handled_by, handled_note FROM reconciliation_items WHERE batch_id = $1 ORDER BY id",
                params![batch_id],
            )?
            .iter()
            .map(item_from_row)
            .collect()
        })
        .await
    }

    /// Batches, newest bill day first.
    pub async fn reconciliations(&self, f: BatchFilter) -> Result<Vec<ReconciliationBatch>> {
        self.read(move |tx| {
            tx.query(
                "SELECT id, channel_id, bill_day, status, source, actor, runs, bill_payments, \
                 bill_paid, bill_refunds, bill_refunded, counts, mismatches, error, started_at, \
                 finished_at FROM reconciliation_batches \
                 WHERE ($1 = '' OR channel_id = $1) AND ($2 = '' OR bill_day = $2) \
                 ORDER BY bill_day DESC, id DESC LIMIT $3",
                params![
                    f.channel_id.as_deref().unwrap_or(""),
                    f.bill_day.as_deref().unwrap_or(""),
                    i64::from(f.limit.clamp(1, 500))
                ],
            )?
            .iter()
            .map(batch_from_row)
            .collect()
        })
        .await
    }

    /// Mark an item handled with the seller's note, audited; `None`: no such item in that
    /// batch. Handling again replaces the note.
    pub async fn handle_reconciliation_item(
        &self,
        batch_id: i64,
        item_id: i64,
        note: &str,
        actor: &Actor,
        now: Millis,
    ) -> Result<Option<ReconciliationItem>> {
        let (note, actor) = (note.to_owned(), actor.clone());
        self.write(move |tx| {
            let changed = tx.exec(
                "UPDATE reconciliation_items SET handled_at = $3, handled_by = $4, handled_note = $5 \
                 WHERE id = $1 AND batch_id = $2",
                params![item_id, batch_id, now, actor.actor.as_str(), note.as_str()],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            let item = item_from_row(&tx.query_one(
                "SELECT id, batch_id, kind, trade_no, refund_no, gateway_trade_no, order_no, \
                 kami_amount, kami_currency, bill_amount, bill_currency, detail, handled_at, \
                 handled_by, handled_note FROM reconciliation_items WHERE id = $1",
                params![item_id],
            )?)?;
            let entry = actor.entry(
                "reconciliation.handle",
                format!("reconciliation:{batch_id}"),
                None,
                Some(serde_json::json!({
                    "item": item_id, "kind": item.kind, "trade_no": item.trade_no, "note": note,
                })),
            );
            audit::record(tx, &entry, now)?;
            Ok(Some(item))
        })
        .await
    }

    /// A channel's payments that kami holds paid, paid in `[from, to)`.
    pub async fn paid_payments_between(
        &self,
        channel_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<ReconPayment>> {
        let c = channel_id.to_owned();
        self.read(move |tx| {
            tx.query(
                recon_payments!(
                    "WHERE p.channel_id = $1 AND p.paid_at >= $2 AND p.paid_at < $3 ORDER BY p.id"
                ),
                params![c.as_str(), from, to],
            )?
            .iter()
            .map(payment_from_row)
            .collect()
        })
        .await
    }

    /// A channel's payments created or paid in `[from, to)` (the query path's day).
    pub async fn payments_of_day(
        &self,
        channel_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<ReconPayment>> {
        let c = channel_id.to_owned();
        self.read(move |tx| {
            tx.query(
                recon_payments!(
                    "WHERE p.channel_id = $1 AND ((p.created_at >= $2 AND p.created_at < $3) \
                   OR (p.paid_at >= $2 AND p.paid_at < $3)) ORDER BY p.id"
                ),
                params![c.as_str(), from, to],
            )?
            .iter()
            .map(payment_from_row)
            .collect()
        })
        .await
    }

    /// The channel's payments with these trade numbers (those that exist).
    pub async fn payments_by_trade(
        &self,
        channel_id: &str,
        trade_nos: Vec<String>,
    ) -> Result<Vec<ReconPayment>> {
        let c = channel_id.to_owned();
        self.read(move |tx| {
            let mut out = Vec::new();
            for t in &trade_nos {
                if let Some(r) = tx.query_opt(
                    recon_payments!("WHERE p.channel_id = $1 AND p.trade_no = $2"),
                    params![c.as_str(), t.as_str()],
                )? {
                    out.push(payment_from_row(&r)?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Refunds of the channel's payments: those settled in `[from, to)`, and those with one
    /// of `refund_nos` whatever their day.
    pub async fn refunds_for_reconciliation(
        &self,
        channel_id: &str,
        from: Millis,
        to: Millis,
        refund_nos: Vec<String>,
    ) -> Result<Vec<ReconRefund>> {
        let c = channel_id.to_owned();
        self.read(move |tx| {
            let from_row = |r: &Row| -> Result<ReconRefund> {
                Ok(ReconRefund {
                    refund_no: r.get("refund_no")?,
                    trade_no: r.get("trade_no")?,
                    amount: r.money("amount", "currency")?,
                    order_no: r.get("order_no")?,
                    status: r.get("status")?,
                })
            };
            let mut out = Vec::new();
            for r in tx.query(
                recon_refunds!(
                    "WHERE p.channel_id = $1 AND f.settled_at >= $2 AND f.settled_at < $3 \
                   AND f.status = 'succeeded' ORDER BY f.id"
                ),
                params![c.as_str(), from, to],
            )? {
                out.push(from_row(&r)?);
            }
            for no in &refund_nos {
                if out.iter().any(|r| &r.refund_no == no) {
                    continue;
                }
                if let Some(r) = tx.query_opt(
                    recon_refunds!("WHERE p.channel_id = $1 AND f.refund_no = $2"),
                    params![c.as_str(), no.as_str()],
                )? {
                    out.push(from_row(&r)?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// See [`paid_wrong_amount`]: the order of (channel, trade) was paid a different sum.
    pub async fn record_wrong_amount(
        &self,
        channel_id: &str,
        trade_no: &str,
        note: String,
        payload: serde_json::Value,
        now: Millis,
    ) -> Result<Option<(OrderNo, OrderStatus)>> {
        let (c, t) = (channel_id.to_owned(), trade_no.to_owned());
        self.write(move |tx| paid_wrong_amount(tx, &c, &t, &note, payload.clone(), now))
            .await
    }

    /// Claim the run of job `name` for `key` (see [`claim_job`]).
    pub async fn claim_job(
        &self,
        name: &str,
        key: &str,
        holder: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<bool> {
        let (n, k, h) = (name.to_owned(), key.to_owned(), holder.to_owned());
        self.write(move |tx| claim_job(tx, &n, &k, &h, now, lease_until))
            .await
    }

    /// The holder finished job `name`'s run for `key`: no one claims that key again.
    pub async fn finish_job(&self, name: &str, key: &str, holder: &str) -> Result<()> {
        let (n, k, h) = (name.to_owned(), key.to_owned(), holder.to_owned());
        self.write(move |tx| {
            tx.exec(
                "UPDATE job_leases SET lease_until = NULL, done_key = $2 \
                 WHERE name = $1 AND holder = $3",
                params![n.as_str(), k.as_str(), h.as_str()],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::ItemKind;

    #[test]
    fn kinds_round_trip() {
        for k in ItemKind::ALL {
            assert_eq!(ItemKind::parse(k.as_str()), Some(k));
        }
        assert!(!ItemKind::Recovered.is_mismatch());
        assert!(ItemKind::UnknownPayment.is_mismatch());
    }
}
