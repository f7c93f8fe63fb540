//! The reconciliation step: a run of the real service for one channel's bill day (the fake
//! gateway serves its bill, or answers its queries when it has none), checked by the step
//! itself where only it can tell: a failed bill (a tampered one) applies nothing (R3); the
//! bill's payments of the right amount are kami's from then on (`World::billed`, R1 in
//! `invariants.rs`); run twice, the second run applies nothing and finds what the first
//! found (R2).

use std::collections::BTreeMap;

use kami_pay::{BillDay, BillEntry};
use kami_server::services::reconciliation::{self, Report};
use kami_store::ItemKind;

use crate::inspect::{int, text};
use crate::steps::short;
use crate::world::World;

/// The Beijing date of a unix-ms instant (bill days are cut there).
pub fn beijing_day(ms: i64) -> BillDay {
    reconciliation::beijing_today(ms)
}

/// The bill day `days_back` before today (Beijing) at `now`.
pub fn bill_day(now: i64, days_back: u32) -> BillDay {
    let today = beijing_day(now);
    today
        .checked_sub(time::Duration::days(i64::from(days_back)))
        .unwrap_or(today)
}

/// A run's outcome for the trace, seed-stable (no order numbers).
pub fn findings(r: &Report) -> String {
    let b = &r.batch;
    if r.failed() {
        return format!("failed ({})", short(b.error.as_deref().unwrap_or("")));
    }
    let mut counts: Vec<String> = b.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if counts.is_empty() {
        counts.push("nothing to report".into());
    }
    format!("{} by {}: {}", b.status, b.source, counts.join(", "))
}

/// A run's differences (kind, trade, refund), sorted.
fn mismatches(r: &Report) -> Vec<String> {
    let mut v: Vec<String> = r
        .items
        .iter()
        .filter(|i| ItemKind::parse(&i.kind).is_some_and(|k| k.is_mismatch()))
        .map(|i| format!("{} {} {}", i.kind, i.trade_no, i.refund_no))
        .collect();
    v.sort();
    v
}

/// The keys whose values differ between two [`World::money_rows`].
fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl World {
    /// What money has done so far, as kami's rows say: each order's status, each payment's
    /// (by channel and trade number), and the delivery and flag rows. A run that must change
    /// nothing leaves it as it was.
    fn money_rows(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for r in self.inspect.rows("SELECT id, status FROM orders") {
            out.insert(format!("order {}", int(&r, 0)), text(&r, 1));
        }
        for r in self
            .inspect
            .rows("SELECT channel_id, trade_no, status FROM payments")
        {
            out.insert(
                format!("payment {} {}", text(&r, 0), text(&r, 1)),
                text(&r, 2),
            );
        }
        for r in self.inspect.rows(
            "SELECT kind, CAST(COUNT(*) AS BIGINT) FROM outbox \
             WHERE kind IN ('order.delivered', 'order.fulfilled', 'payment.conflict') GROUP BY kind",
        ) {
            out.insert(format!("outbox {}", text(&r, 0)), text(&r, 1));
        }
        out
    }

    /// A reconciliation run through the real service, checked: a bill that fails applies
    /// nothing; a bill's payments of the right amount are kami's from then on (`billed`, an
    /// invariant); run `twice`, the second run applies nothing and finds what the first found
    /// (less what the first applied).
    pub async fn reconcile(
        &mut self,
        c: usize,
        days_back: u32,
        twice: bool,
        tamper: bool,
    ) -> String {
        let state = self.state();
        let fake = self.fakes[c].clone();
        let day = bill_day(self.now(), days_back);
        {
            let mut l = fake.ledger();
            l.tamper_next_bill = tamper;
            l.last_bill = None;
        }
        let before = self.money_rows();
        let first = reconciliation::run(&state, fake.name(), day, "simulation").await;
        self.stats.reconciliations += 1;
        let served = {
            let mut l = fake.ledger();
            l.tamper_next_bill = false;
            l.last_bill.take()
        };
        let head = format!("{} {}", fake.name(), reconciliation::format_day(day));
        let report = match first {
            Ok(r) => r,
            Err(e) => return format!("{head}: refused: {}", short(e)),
        };
        let mut line = format!("{head}: {}", findings(&report));
        let after = self.money_rows();
        if report.failed() {
            if after != before {
                self.step_violations.push(format!(
                    "R3: the failed reconciliation of {head} changed kami: {:?}",
                    changed(&before, &after)
                ));
            }
            return line;
        }
        if tamper && served.is_none() && report.batch.source == "bill" {
            self.step_violations.push(format!(
                "R3: {head} succeeded on a bill whose totals do not add up"
            ));
        }
        if let Some(bill) = served {
            let l = fake.ledger();
            for r in bill.rows.iter().filter(|r| r.entry == BillEntry::Payment) {
                if l.by_no(&r.trade_no).is_some_and(|t| t.amount == r.amount) {
                    self.billed
                        .insert((fake.name().to_owned(), r.trade_no.clone()));
                }
            }
        }
        if !twice {
            return line;
        }
        let second = reconciliation::run(&state, fake.name(), day, "simulation").await;
        self.stats.reconciliations += 1;
        let again = self.money_rows();
        match second {
            Ok(r) if !r.failed() => {
                line.push_str(&format!("; again: {}", findings(&r)));
                // Bills only: a channel without one is queried, and a query may honestly lag
                // (the re-run may find what the first run's query did not see yet).
                if report.batch.source == "bill" {
                    if again != after {
                        self.step_violations.push(format!(
                            "R2: a re-run of {head} changed kami: {:?}",
                            changed(&after, &again)
                        ));
                    }
                    // The same findings: what the first run found (a second payment it
                    // applied included) is still the day's result.
                    let want = mismatches(&report);
                    let got = mismatches(&r);
                    // The first run's recoveries stay part of the day's result; the re-run
                    // recovers nothing more.
                    let recovered = |r: &Report| -> Vec<String> {
                        r.items
                            .iter()
                            .filter(|i| i.kind == ItemKind::Recovered.as_str())
                            .map(|i| i.trade_no.clone())
                            .collect()
                    };
                    if got != want || recovered(&r) != recovered(&report) {
                        let items: Vec<String> = r
                            .items
                            .iter()
                            .map(|i| format!("{} {}: {}", i.kind, i.trade_no, i.detail))
                            .collect();
                        self.step_violations.push(format!(
                            "R2: a re-run of {head} found {got:?}, the first run {want:?}; \
                             the re-run's items: {items:?}"
                        ));
                    }
                }
            }
            Ok(r) => line.push_str(&format!("; again: {}", findings(&r))),
            Err(e) => line.push_str(&format!("; again: refused: {}", short(e))),
        }
        line
    }
}
