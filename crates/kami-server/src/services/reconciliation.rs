//! Reconciliation (对账, DESIGN 3.5, channel-ops 2): one channel's bill day at a time, from
//! `kami reconcile`, `POST /api/v1/admin/reconciliations`, the console and the daily job.
//!
//! A run claims the (channel, day) batch (a compare-and-set: one run at a time), downloads
//! the channel's checked bill (`PaymentChannel::bill`; a file whose totals do not add up is
//! refused by the channel, and the batch fails with nothing applied), matches it
//! (`reconciliation_match.rs`), and writes the day's result whole in one commit, replacing an
//! earlier run's: the same items, no second delivery (recoveries go through the exactly-once
//! payment path), the carry-over pool and the alert signal in the same transaction.

use kami_core::Millis;
use kami_pay::{BillDay, PayError};
use kami_store::{Actor, BatchFilter, ItemKind, ReconciliationBatch, ReconciliationItem};
use serde_json::{json, Value};

use super::reconciliation_match::{match_bill, match_by_queries};
use super::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::rfc3339;

/// A run older than this is taken to have died (a crashed process) and may be taken over.
const STALE_RUN_MS: Millis = 30 * 60_000;
/// The daily job's lease: longer than any day's run.
const JOB_LEASE_MS: Millis = 60 * 60_000;
const JOB: &str = "reconciliation";

/// Who started a run, as the batch records it: `job`, `cli`, `api:<token>`, `console:<user>`.
pub fn actor_name(actor: &Actor) -> String {
    match actor.actor.split_once(':') {
        Some(("user", name)) => format!("console:{name}"),
        Some(("token", name)) => format!("api:{name}"),
        _ => actor.actor.clone(),
    }
}

/// A batch and its items: what a run reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub batch: ReconciliationBatch,
    pub items: Vec<ReconciliationItem>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.batch.status == "failed"
    }

    /// The JSON report (API, CLI).
    pub fn to_json(&self) -> Value {
        let mut v = batch_json(&self.batch);
        v["items"] = Value::Array(self.items.iter().map(item_json).collect());
        v
    }

    /// One line for a person: channel, day, status and the counts.
    pub fn summary(&self) -> String {
        let b = &self.batch;
        let counts = if b.counts.is_empty() {
            "nothing to report".to_owned()
        } else {
            b.counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &b.error {
            Some(e) if self.failed() => format!("{} {}: failed: {e}", b.channel_id, b.bill_day),
            _ => format!(
                "{} {}: {} ({}), {} mismatch(es): {counts}",
                b.channel_id, b.bill_day, b.status, b.source, b.mismatches
            ),
        }
    }
}

/// Several runs of one day: `{"date", "reconciliations": [report, ...]}` (the CLI's report).
pub fn reports_json(day: BillDay, reports: &[Report]) -> Value {
    json!({
        "date": format_day(day),
        "reconciliations": reports.iter().map(Report::to_json).collect::<Vec<_>>(),
    })
}

pub fn batch_json(b: &ReconciliationBatch) -> Value {
    json!({
        "id": b.id,
        "channel": b.channel_id,
        "date": b.bill_day,
        "status": b.status,
        "source": b.source,
        "actor": b.actor,
        "runs": b.runs,
        "bill_totals": b.totals.map(|t| json!({
            "payments": t.payments, "paid": t.paid, "refunds": t.refunds, "refunded": t.refunded,
        })),
        "counts": b.counts,
        "mismatches": b.mismatches,
        "error": b.error,
        "started_at": rfc3339(b.started_at),
        "finished_at": b.finished_at.map(rfc3339),
    })
}

pub fn item_json(i: &ReconciliationItem) -> Value {
    json!({
        "id": i.id,
        "kind": i.kind,
        "trade_no": i.trade_no,
        "refund_no": (!i.refund_no.is_empty()).then_some(&i.refund_no),
        "gateway_trade_no": i.gateway_trade_no,
        "order_no": i.order_no,
        "kami_amount": i.kami_amount,
        "kami_currency": i.kami_currency,
        "bill_amount": i.bill_amount,
        "bill_currency": i.bill_currency,
        "detail": i.detail,
        "handled": i.handled_at.is_some(),
        "handled_at": i.handled_at.map(rfc3339),
        "handled_by": i.handled_by,
        "note": i.handled_note,
    })
}

/// `YYYY-MM-DD` → a date, or a precise refusal.
pub fn parse_day(s: &str) -> ServiceResult<BillDay> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    BillDay::parse(s.trim(), &format).map_err(|_| {
        ServiceError::invalid(
            "invalid_date",
            format!("date must be a calendar date YYYY-MM-DD, got {:?}", clip(s)),
        )
    })
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `YYYY-MM-DD` of a date.
pub fn format_day(day: BillDay) -> String {
    super::reconciliation_match::format_day(day)
}

/// Today in Beijing time at `now_ms`.
pub fn beijing_today(now_ms: Millis) -> BillDay {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(kami_pay::bill::BILL_OFFSET)
        .date()
}

/// Yesterday in Beijing time: what `kami reconcile` and the daily job take by default.
pub fn default_day(now_ms: Millis) -> BillDay {
    let today = beijing_today(now_ms);
    today.previous_day().unwrap_or(today)
}

/// Reconcile `channel_id`'s bill `day`, started by `actor` (see [`actor_name`]). A bill that
/// cannot be had (download, signature, totals) fails the batch — the report says why — and
/// applies nothing; re-running it later is safe.
#[tracing::instrument(level = "info", skip(state))]
pub async fn run(
    state: &AppState,
    channel_id: &str,
    day: BillDay,
    actor: &str,
) -> ServiceResult<Report> {
    let Some(channel) = state.channels.get(channel_id) else {
        return Err(ServiceError::not_found(
            "unknown_channel",
            format!("no channel {:?}", clip(channel_id)),
        ));
    };
    let now = state.now_ms();
    if day > beijing_today(now) {
        return Err(ServiceError::invalid(
            "future_date",
            format!(
                "{} is still to come in Beijing time: it has no bill yet",
                format_day(day)
            ),
        ));
    }
    let day_s = format_day(day);
    let Some(id) = state
        .store
        .begin_reconciliation(channel_id, &day_s, actor, now, now - STALE_RUN_MS)
        .await?
    else {
        return Err(ServiceError::Conflict {
            code: "reconciliation_running",
            message: format!("{channel_id} {day_s} is being reconciled right now"),
        });
    };
    let carry_days = i64::from(state.config.reconciliation.carry_over_days);
    let missing_from = day
        .checked_sub(time::Duration::days(carry_days))
        .map(format_day)
        .unwrap_or_default();
    let matched = match channel.bill(day).await {
        Ok(bill) => match_bill(state, channel_id, &bill, missing_from).await,
        Err(PayError::Unsupported(_)) => {
            match_by_queries(state, channel_id, channel.as_ref(), day).await
        }
        Err(e) => {
            tracing::warn!(channel = channel_id, day = %day_s, "bill download failed: {e}");
            state
                .store
                .fail_reconciliation(id, &format!("bill: {e}"), state.now_ms())
                .await?;
            return report(state, id).await;
        }
    };
    let finish = match matched {
        Ok(f) => f,
        Err(e) => {
            state
                .store
                .fail_reconciliation(id, &format!("matching: {e}"), state.now_ms())
                .await?;
            return Err(e);
        }
    };
    let batch = match state
        .store
        .finish_reconciliation(id, finish, state.now_ms())
        .await
    {
        Ok(b) => b,
        Err(e) => {
            state
                .store
                .fail_reconciliation(id, &format!("store: {e}"), state.now_ms())
                .await?;
            return Err(e.into());
        }
    };
    // Counted per run (a re-run that still finds a difference counts it again).
    for (kind, n) in &batch.counts {
        if let Some(k) = ItemKind::parse(kind).filter(|k| k.is_mismatch()) {
            let n = u64::try_from(*n).unwrap_or(0);
            state
                .metrics
                .reconciliation_mismatch(channel_id, k.as_str(), n);
        }
    }
    if batch.mismatches > 0 {
        tracing::warn!(channel = channel_id, day = %day_s, mismatches = batch.mismatches, "reconciliation found differences");
    }
    let items = state.store.reconciliation_items(id).await?;
    Ok(Report { batch, items })
}

async fn report(state: &AppState, id: i64) -> ServiceResult<Report> {
    let batch = state
        .store
        .reconciliation(id)
        .await?
        .ok_or_else(|| ServiceError::internal(format!("reconciliation {id} vanished")))?;
    let items = state.store.reconciliation_items(id).await?;
    Ok(Report { batch, items })
}

/// One batch with its items; `not_found` when there is none.
pub async fn get(state: &AppState, id: i64) -> ServiceResult<Report> {
    match state.store.reconciliation(id).await? {
        Some(batch) => Ok(Report {
            items: state.store.reconciliation_items(id).await?,
            batch,
        }),
        None => Err(ServiceError::not_found(
            "reconciliation_not_found",
            "no such reconciliation",
        )),
    }
}

/// Batches, newest bill day first; `channel` and `date` filter (a bad date is refused).
pub async fn list(
    state: &AppState,
    channel: Option<&str>,
    date: Option<&str>,
    limit: u32,
) -> ServiceResult<Vec<ReconciliationBatch>> {
    let day = match date.filter(|d| !d.is_empty()) {
        Some(d) => Some(format_day(parse_day(d)?)),
        None => None,
    };
    Ok(state
        .store
        .reconciliations(BatchFilter {
            channel_id: channel.filter(|c| !c.is_empty()).map(str::to_owned),
            bill_day: day,
            limit,
        })
        .await?)
}

/// Most characters a handling note keeps.
pub const MAX_NOTE: usize = 500;

/// The seller has looked at an item: mark it handled with a note (audited).
pub async fn handle_item(
    state: &AppState,
    batch_id: i64,
    item_id: i64,
    note: &str,
    actor: &Actor,
) -> ServiceResult<ReconciliationItem> {
    let note = note.trim();
    if note.chars().count() > MAX_NOTE {
        return Err(ServiceError::invalid(
            "invalid_note",
            format!("the note may have at most {MAX_NOTE} characters"),
        ));
    }
    state
        .store
        .handle_reconciliation_item(batch_id, item_id, note, actor, state.now_ms())
        .await?
        .ok_or_else(|| {
            ServiceError::not_found("item_not_found", "this reconciliation has no such item")
        })
}

/// The channels a day is reconciled for: every enabled one, and the others (disabled,
/// archived) that had payments that day.
pub async fn channels_for(state: &AppState, day: BillDay) -> ServiceResult<Vec<String>> {
    let (from, to) = super::reconciliation_match::day_window(day);
    let mut out = Vec::new();
    for e in state.channels.entries() {
        let id = e.id().as_str().to_owned();
        if e.enabled || !state.store.payments_of_day(&id, from, to).await?.is_empty() {
            out.push(id);
        }
    }
    Ok(out)
}

/// Reconcile `day` for every channel of [`channels_for`] (or just `channel`).
pub async fn run_all(
    state: &AppState,
    channel: Option<&str>,
    day: BillDay,
    actor: &str,
) -> ServiceResult<Vec<Report>> {
    let ids = match channel {
        Some(c) => vec![c.to_owned()],
        None => channels_for(state, day).await?,
    };
    let mut reports = Vec::with_capacity(ids.len());
    for id in ids {
        reports.push(run(state, &id, day, actor).await?);
    }
    Ok(reports)
}

/// The daily job's step: once it is `run_at` in Beijing, the first process to claim the
/// lease reconciles yesterday for every channel not already reconciled well (a failed batch
/// is tried again); the others find the day done. Returns the reports of the runs it made.
pub async fn daily_tick(state: &AppState, holder: &str) -> ServiceResult<Vec<Report>> {
    let now = state.now_ms();
    let local = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(kami_pay::bill::BILL_OFFSET);
    let minutes = u32::from(local.hour()) * 60 + u32::from(local.minute());
    if minutes < state.config.reconciliation.run_at_minutes() {
        return Ok(Vec::new());
    }
    let day = default_day(now);
    let day_s = format_day(day);
    if !state
        .store
        .claim_job(JOB, &day_s, holder, now, now + JOB_LEASE_MS)
        .await?
    {
        return Ok(Vec::new());
    }
    let mut reports = Vec::new();
    let mut all_done = true;
    for id in channels_for(state, day).await? {
        let done = state
            .store
            .reconciliations(BatchFilter {
                channel_id: Some(id.clone()),
                bill_day: Some(day_s.clone()),
                limit: 1,
            })
            .await?
            .iter()
            .any(|b| b.status == "succeeded");
        if done {
            continue;
        }
        match run(state, &id, day, "job").await {
            Ok(r) => {
                all_done &= !r.failed();
                reports.push(r);
            }
            Err(e) => {
                all_done = false;
                tracing::warn!(channel = %id, day = %day_s, "daily reconciliation: {e}");
            }
        }
    }
    // The day is done once every channel succeeded. Otherwise (a bill not published yet, a
    // gateway down) the lease is left to run out: the next claim, an hour on, tries again
    // the channels still without a good batch.
    if all_done {
        state.store.finish_job(JOB, &day_s, holder).await?;
    }
    Ok(reports)
}
