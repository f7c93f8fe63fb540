//! Matching one bill day of one channel against kami (channel-ops 2.3), as roncoo-pay's two
//! passes: kami's paid payments of the day against the bill (pass 1: differences, and the
//! trades the bill does not list yet go to the carry-over pool), then the bill's rows against
//! kami (pass 2: a payment kami had not seen is applied through the normal verified-payment
//! path, exactly once; a row for no trade of kami's is an unknown payment), then refunds
//! both ways. Without a bill (Epay), each of the day's trades is queried instead.
//!
//! Nothing here changes an order except through `payments::apply_confirmation` (a bill
//! downloaded with the channel's authentication counts as an authenticated query result,
//! DESIGN 3.3) and the store's `record_wrong_amount` (an unpaid order paid another sum becomes
//! an exception, never "fixed").

use std::collections::{HashMap, HashSet};

use kami_core::{Millis, Money};
use kami_pay::{
    Bill, BillDay, BillEntry, BillRow, PaymentChannel, PaymentConfirmation, TradeRef, TradeState,
};
use kami_store::{
    BatchTotals, CarryIn, Finish, FoundBy, ItemKind, NewItem, NotifyOutcome, ReconPayment,
};

use super::payments::apply_confirmation;
use super::ServiceResult;
use crate::state::AppState;

/// The `[from, to)` unix-ms window of a Beijing bill day.
pub fn day_window(day: BillDay) -> (Millis, Millis) {
    let from = day
        .midnight()
        .assume_offset(kami_pay::bill::BILL_OFFSET)
        .unix_timestamp()
        * 1000;
    (from, from + 86_400_000)
}

/// `YYYY-MM-DD` of a bill day.
pub fn format_day(day: BillDay) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn item_for(kind: ItemKind, p: &ReconPayment) -> NewItem {
    NewItem {
        order_no: Some(p.order_no.as_str().to_owned()),
        kami: Some(p.amount),
        gateway_trade_no: p.gateway_trade_no.clone(),
        ..NewItem::new(kind, &p.trade_no)
    }
}

/// A payment both sides hold paid: the amount (and currency) and the gateway's number must
/// agree. A difference is reported; a paid order is never changed by it.
fn compare(p: &ReconPayment, amount: Money, gateway_trade_no: &str, items: &mut Vec<NewItem>) {
    if p.amount != amount {
        items.push(NewItem {
            bill: Some(amount),
            detail: format!(
                "kami holds {} {} paid, the channel {} {}; never corrected automatically",
                p.amount.to_major_string(),
                p.amount.currency(),
                amount.to_major_string(),
                amount.currency()
            ),
            ..item_for(ItemKind::AmountMismatch, p)
        });
    } else if p
        .gateway_trade_no
        .as_deref()
        .is_some_and(|g| g != gateway_trade_no)
    {
        items.push(NewItem {
            bill: Some(amount),
            detail: format!("the channel names gateway trade {gateway_trade_no}"),
            ..item_for(ItemKind::GatewayTradeMismatch, p)
        });
    }
}

/// The channel proves a payment kami does not hold paid: apply it like any verified payment
/// (found by the bill, or by the query of a channel without one); a different sum makes the
/// unpaid order an exception.
async fn recover(
    state: &AppState,
    channel_id: &str,
    how: FoundBy,
    p: &ReconPayment,
    conf: PaymentConfirmation,
) -> ServiceResult<NewItem> {
    let amount = conf.amount;
    let gateway = conf.gateway_trade_no.clone();
    let outcome = apply_confirmation(state, channel_id, how, conf).await?;
    let mut item = NewItem {
        bill: Some(amount),
        gateway_trade_no: Some(gateway),
        ..item_for(ItemKind::Recovered, p)
    };
    match outcome {
        NotifyOutcome::Delivered { .. }
        | NotifyOutcome::AwaitingFulfilment { .. }
        | NotifyOutcome::Exception { .. }
        | NotifyOutcome::Duplicate { .. } => {
            item.detail = format!("applied as a verified payment: {}", outcome.code());
        }
        NotifyOutcome::AmountMismatch { expected, got } => {
            let note = format!(
                "reconciliation: the channel says this trade was paid {} {}, the order is {}; \
                 not delivered, never corrected automatically",
                amount.to_major_string(),
                amount.currency(),
                p.amount.to_major_string()
            );
            let payload = serde_json::json!({
                "order_no": p.order_no.as_str(),
                "reason": "paid_wrong_amount",
                "expected": expected,
                "got": got,
            });
            let changed = state
                .store
                .record_wrong_amount(channel_id, &p.trade_no, note, payload, state.now_ms())
                .await?;
            if let Some((no, status)) = &changed {
                state.watch.changed(no.as_str());
                item.detail = format!("expected {expected}, paid {got}; the order is {status}");
            }
            item.kind = ItemKind::AmountMismatch;
        }
        other => {
            // A second payment for an order already paid, or the trade is gone: money kami
            // cannot attribute to a deliverable order.
            item.kind = ItemKind::UnknownPayment;
            item.detail = format!("the payment could not be applied: {}", other.code());
        }
    }
    Ok(item)
}

fn confirmation(r: &BillRow) -> PaymentConfirmation {
    PaymentConfirmation {
        trade_no: r.trade_no.clone(),
        gateway_trade_no: r.gateway_trade_no.clone(),
        amount: r.amount,
        paid_at: r.at_ms,
    }
}

/// Both passes and the refunds over a checked bill.
pub async fn match_bill(
    state: &AppState,
    channel_id: &str,
    bill: &Bill,
    missing_from: String,
) -> ServiceResult<Finish> {
    let (from, to) = day_window(bill.day);
    let store = &state.store;
    let mut items = Vec::new();
    let mut carry = Vec::new();
    // The bill's payment rows by our trade number (a repeated row is reported, not used).
    let mut paid_rows: HashMap<&str, &BillRow> = HashMap::new();
    for r in bill.rows.iter().filter(|r| r.entry == BillEntry::Payment) {
        if paid_rows.insert(r.trade_no.as_str(), r).is_some() {
            items.push(NewItem {
                bill: Some(r.amount),
                gateway_trade_no: Some(r.gateway_trade_no.clone()),
                detail: "the bill lists this trade's payment twice".into(),
                ..NewItem::new(ItemKind::UnknownPayment, &r.trade_no)
            });
        }
    }

    // Pass 1: kami as the base.
    let ours = store.paid_payments_between(channel_id, from, to).await?;
    let seen: HashSet<&str> = ours.iter().map(|p| p.trade_no.as_str()).collect();
    let day = format_day(bill.day);
    for p in &ours {
        match paid_rows.get(p.trade_no.as_str()) {
            Some(r) => compare(p, r.amount, &r.gateway_trade_no, &mut items),
            // Listed on an earlier day's bill (kami heard of it after midnight): not missing.
            None if p.billed_day.as_deref().is_some_and(|d| d != day) => {}
            None => carry.push(CarryIn {
                trade_no: p.trade_no.clone(),
                order_no: p.order_no.as_str().to_owned(),
                amount: p.amount,
                gateway_trade_no: p.gateway_trade_no.clone(),
            }),
        }
    }

    // Pass 2: the bill as the base, for the rows pass 1 did not meet (and the refunds' trades).
    let mut wanted: Vec<String> = paid_rows
        .keys()
        .filter(|t| !seen.contains(*t))
        .map(|t| (*t).to_owned())
        .collect();
    for r in &bill.rows {
        if matches!(r.entry, BillEntry::Refund { .. }) && !wanted.contains(&r.trade_no) {
            wanted.push(r.trade_no.clone());
        }
    }
    wanted.sort();
    let known: HashMap<String, ReconPayment> = store
        .payments_by_trade(channel_id, wanted)
        .await?
        .into_iter()
        .map(|p| (p.trade_no.clone(), p))
        .collect();
    let mut rows: Vec<&&BillRow> = paid_rows
        .iter()
        .filter(|(t, _)| !seen.contains(*t))
        .map(|(_, r)| r)
        .collect();
    rows.sort_by(|a, b| a.trade_no.cmp(&b.trade_no));
    for r in rows {
        match known.get(&r.trade_no) {
            None => items.push(NewItem {
                bill: Some(r.amount),
                gateway_trade_no: Some(r.gateway_trade_no.clone()),
                detail: "paid at the channel for a trade kami never created".into(),
                ..NewItem::new(ItemKind::UnknownPayment, &r.trade_no)
            }),
            // Paid in kami on another day (late notification across midnight, or the pool).
            Some(p) if p.status.is_paid() => {
                compare(p, r.amount, &r.gateway_trade_no, &mut items);
            }
            Some(p) => {
                items.push(recover(state, channel_id, FoundBy::Bill, p, confirmation(r)).await?)
            }
        }
    }

    refunds(state, channel_id, bill, &known, (from, to), &mut items).await?;
    Ok(Finish {
        source: "bill",
        totals: Some(BatchTotals {
            payments: bill.totals.payments as i64,
            paid: bill.totals.paid_minor,
            refunds: bill.totals.refunds as i64,
            refunded: bill.totals.refunded_minor,
        }),
        items,
        carry,
        listed: paid_rows.keys().map(|t| (*t).to_owned()).collect(),
        missing_from: Some(missing_from),
    })
}

/// Refunds both ways: a bill refund kami did not make (the merchant portal) or of another
/// amount, and a refund kami settled that day the bill does not list.
async fn refunds(
    state: &AppState,
    channel_id: &str,
    bill: &Bill,
    known: &HashMap<String, ReconPayment>,
    (from, to): (Millis, Millis),
    items: &mut Vec<NewItem>,
) -> ServiceResult<()> {
    let bill_refunds: Vec<(&BillRow, &str)> = bill
        .rows
        .iter()
        .filter_map(|r| match &r.entry {
            BillEntry::Refund { refund_no } => Some((r, refund_no.as_str())),
            BillEntry::Payment => None,
        })
        .collect();
    let numbers: Vec<String> = bill_refunds
        .iter()
        .filter(|(_, n)| !n.is_empty())
        .map(|(_, n)| (*n).to_owned())
        .collect();
    let by_number = state
        .store
        .refunds_for_reconciliation(channel_id, 0, 0, numbers)
        .await?;
    for (r, number) in &bill_refunds {
        let order_no = known
            .get(&r.trade_no)
            .map(|p| p.order_no.as_str().to_owned());
        let base = NewItem {
            refund_no: (*number).to_owned(),
            gateway_trade_no: Some(r.gateway_trade_no.clone()),
            order_no,
            bill: Some(r.amount),
            ..NewItem::new(ItemKind::RefundUnknownLocally, &r.trade_no)
        };
        match by_number
            .iter()
            .find(|l| !number.is_empty() && l.refund_no == *number)
        {
            None => items.push(NewItem {
                detail: if number.is_empty() {
                    "refunded at the channel without kami (merchant portal?)".into()
                } else {
                    "a refund number kami never issued".into()
                },
                ..base
            }),
            Some(l) if l.amount != r.amount => items.push(NewItem {
                kind: ItemKind::RefundAmountMismatch,
                kami: Some(l.amount),
                detail: format!("kami's refund is {}", l.amount.to_major_string()),
                ..base
            }),
            Some(_) => {}
        }
    }
    let listed: HashSet<&str> = bill_refunds
        .iter()
        .map(|(_, n)| *n)
        .filter(|n| !n.is_empty())
        .collect();
    for l in state
        .store
        .refunds_for_reconciliation(channel_id, from, to, Vec::new())
        .await?
    {
        if !listed.contains(l.refund_no.as_str()) {
            items.push(NewItem {
                refund_no: l.refund_no.clone(),
                order_no: Some(l.order_no.as_str().to_owned()),
                kami: Some(l.amount),
                detail: "kami settled this refund that day; the bill does not list it".into(),
                ..NewItem::new(ItemKind::RefundMissingAtChannel, &l.trade_no)
            });
        }
    }
    Ok(())
}

/// No bill (Epay): ask the channel about each of the day's open and paid trades and apply
/// what it proves, like any payment check.
pub async fn match_by_queries(
    state: &AppState,
    channel_id: &str,
    channel: &dyn PaymentChannel,
    day: BillDay,
) -> ServiceResult<Finish> {
    let (from, to) = day_window(day);
    let mut items = Vec::new();
    for p in state.store.payments_of_day(channel_id, from, to).await? {
        match channel
            .query(&TradeRef::with_ref(
                p.trade_no.as_str(),
                p.gateway_ref.clone(),
            ))
            .await
        {
            Err(e) => items.push(NewItem {
                detail: e.to_string(),
                ..item_for(ItemKind::QueryFailed, &p)
            }),
            Ok(TradeState::Paid(conf)) if p.status.is_paid() => {
                compare(&p, conf.amount, &conf.gateway_trade_no, &mut items);
            }
            Ok(TradeState::Paid(conf)) => {
                items.push(recover(state, channel_id, FoundBy::Query, &p, conf).await?);
            }
            Ok(TradeState::Refunded) if p.status == kami_core::PaymentStatus::Paid => {
                items.push(NewItem {
                    detail: "the channel reports the trade refunded; kami made no refund".into(),
                    ..item_for(ItemKind::RefundUnknownLocally, &p)
                });
            }
            Ok(TradeState::NotFound | TradeState::Waiting | TradeState::Closed)
                if p.status.is_paid() =>
            {
                items.push(NewItem {
                    detail: "kami holds it paid; the channel does not".into(),
                    ..item_for(ItemKind::MissingAtChannel, &p)
                });
            }
            Ok(_) => {}
        }
    }
    Ok(Finish {
        source: "query",
        totals: None,
        items,
        carry: Vec::new(),
        listed: Vec::new(),
        missing_from: None,
    })
}
