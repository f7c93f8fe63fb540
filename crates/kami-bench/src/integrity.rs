//! Integrity checks over what the buyers saw (and what the server says it delivered).

use crate::load::{OrderRecord, Outcome, ServerCount};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    pub pass: bool,
    pub checks: Vec<Check>,
    pub warnings: Vec<String>,
}

fn check(name: &str, pass: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        pass,
        detail,
    }
}

fn examples(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    let more = items.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} (+{more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn label(r: &OrderRecord) -> String {
    r.order_no
        .clone()
        .unwrap_or_else(|| format!("#{}", r.index))
}

/// Checks that need only the bench's own records. `imported` is every key this run
/// imported (`None` to skip the provenance check).
pub fn check_records(
    records: &[OrderRecord],
    quantity: u32,
    deliver_timeout_s: u64,
    imported: Option<&HashSet<String>>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let delivered: Vec<&OrderRecord> = records
        .iter()
        .filter(|r| r.delivered_cards().is_some())
        .collect();

    checks.push(check(
        "at least one order delivered",
        !delivered.is_empty(),
        format!("{} of {} orders delivered", delivered.len(), records.len()),
    ));

    let paid: Vec<&OrderRecord> = records.iter().filter(|r| r.paid).collect();
    let undelivered: Vec<String> = paid
        .iter()
        .filter(|r| r.delivered_cards().is_none())
        .map(|r| match &r.outcome {
            Outcome::Failed { kind, .. } => format!("{} ({kind})", label(r)),
            _ => label(r),
        })
        .collect();
    checks.push(check(
        &format!("every paid order delivered within {deliver_timeout_s} s"),
        undelivered.is_empty(),
        if undelivered.is_empty() {
            format!("{}/{} paid orders delivered", paid.len(), paid.len())
        } else {
            format!(
                "{} of {} paid orders not delivered: {}",
                undelivered.len(),
                paid.len(),
                examples(&undelivered)
            )
        },
    ));

    let mut owner: HashMap<&str, String> = HashMap::new();
    let mut dup = Vec::new();
    let mut total_cards = 0usize;
    for r in &delivered {
        for card in r.delivered_cards().unwrap_or_default() {
            total_cards += 1;
            if let Some(prev) = owner.insert(card.as_str(), label(r)) {
                dup.push(format!("{card} in {prev} and {}", label(r)));
            }
        }
    }
    checks.push(check(
        "no card key delivered twice",
        dup.is_empty(),
        if dup.is_empty() {
            format!("{total_cards} cards, all distinct")
        } else {
            format!("{} duplicate deliveries: {}", dup.len(), examples(&dup))
        },
    ));

    let wrong_count: Vec<String> = delivered
        .iter()
        .filter_map(|r| {
            let n = r.delivered_cards().map_or(0, <[String]>::len);
            (n != quantity as usize).then(|| format!("{} has {n}", label(r)))
        })
        .collect();
    checks.push(check(
        &format!("each delivered order has exactly {quantity} card(s)"),
        wrong_count.is_empty(),
        if wrong_count.is_empty() {
            format!("{} orders", delivered.len())
        } else {
            format!(
                "{} orders wrong: {}",
                wrong_count.len(),
                examples(&wrong_count)
            )
        },
    ));

    if let Some(imported) = imported {
        let foreign: Vec<String> = delivered
            .iter()
            .flat_map(|r| {
                r.delivered_cards()
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| !imported.contains(c.as_str()))
                    .map(|c| format!("{c} in {}", label(r)))
            })
            .collect();
        checks.push(check(
            "every delivered card is one this run imported",
            foreign.is_empty(),
            if foreign.is_empty() {
                format!("{total_cards} cards checked")
            } else {
                format!("{} unknown cards: {}", foreign.len(), examples(&foreign))
            },
        ));
    }
    checks
}

/// The admin-API cross-check. `fresh_server`: the bench created the database, so every
/// delivered order server-side must be one of ours.
pub fn check_server_count(
    count: &ServerCount,
    bench_delivered: u64,
    fresh_server: bool,
    warnings: &mut Vec<String>,
) -> Option<Check> {
    match count {
        ServerCount::Unavailable => {
            warnings.push(
                "GET /api/v1/admin/orders answered 404: server-side delivered count not cross-checked"
                    .to_string(),
            );
            None
        }
        ServerCount::Counted {
            ours,
            total,
            pages,
            wrong_status,
        } => {
            let mut pass = *ours == bench_delivered && *wrong_status == 0;
            if fresh_server && *total != *ours {
                pass = false;
            }
            let mut detail = format!(
                "server lists {ours} delivered orders of this run ({total} in all, {pages} page(s)); bench saw {bench_delivered}"
            );
            if *wrong_status > 0 {
                detail.push_str(&format!(
                    "; {wrong_status} listed orders are not `delivered` despite status=delivered"
                ));
            }
            Some(check(
                "server-side delivered count matches (admin API)",
                pass,
                detail,
            ))
        }
    }
}

pub fn summarize(checks: Vec<Check>, warnings: Vec<String>) -> Integrity {
    Integrity {
        pass: checks.iter().all(|c| c.pass),
        checks,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize, paid: bool, outcome: Outcome) -> OrderRecord {
        OrderRecord {
            index: i,
            order_no: Some(format!("K{i}")),
            channel: None,
            paid,
            create_us: Some(1),
            pay_us: None,
            deliver_us: None,
            total_us: None,
            polls: 1,
            outcome,
        }
    }

    fn delivered(i: usize, cards: &[&str]) -> OrderRecord {
        rec(
            i,
            true,
            Outcome::Delivered {
                cards: cards.iter().map(|s| s.to_string()).collect(),
            },
        )
    }

    fn all_pass(checks: &[Check]) -> bool {
        checks.iter().all(|c| c.pass)
    }

    #[test]
    fn clean_run_passes() {
        let recs = vec![
            delivered(0, &["a"]),
            delivered(1, &["b"]),
            rec(2, false, Outcome::OutOfStock),
            rec(
                3,
                false,
                Outcome::Failed {
                    kind: "create_http_500".into(),
                    message: String::new(),
                },
            ),
        ];
        let imported: HashSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let checks = check_records(&recs, 1, 30, Some(&imported));
        assert!(all_pass(&checks), "{checks:?}");
    }

    #[test]
    fn duplicate_card_fails() {
        let recs = vec![delivered(0, &["a"]), delivered(1, &["a"])];
        let checks = check_records(&recs, 1, 30, None);
        let c = checks
            .iter()
            .find(|c| c.name.contains("twice"))
            .expect("check present");
        assert!(!c.pass);
        assert!(c.detail.contains("K0") && c.detail.contains("K1"));
    }

    #[test]
    fn paid_but_undelivered_fails() {
        let recs = vec![
            delivered(0, &["a"]),
            rec(
                1,
                true,
                Outcome::Failed {
                    kind: "deliver_timeout".into(),
                    message: String::new(),
                },
            ),
        ];
        let checks = check_records(&recs, 1, 30, None);
        assert!(!all_pass(&checks));
        let c = checks
            .iter()
            .find(|c| c.name.starts_with("every paid"))
            .expect("check present");
        assert!(!c.pass);
        assert!(c.detail.contains("K1 (deliver_timeout)"));
    }

    #[test]
    fn wrong_quantity_and_foreign_cards_fail() {
        let recs = vec![delivered(0, &["a", "b"]), delivered(1, &["zzz"])];
        let imported: HashSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let checks = check_records(&recs, 1, 30, Some(&imported));
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed.iter().any(|n| n.contains("exactly 1")));
        assert!(failed.iter().any(|n| n.contains("imported")));
    }

    #[test]
    fn nothing_delivered_fails() {
        let recs = vec![rec(0, false, Outcome::OutOfStock)];
        assert!(!all_pass(&check_records(&recs, 1, 30, None)));
    }

    #[test]
    fn server_count() {
        let mut w = Vec::new();
        assert!(check_server_count(&ServerCount::Unavailable, 5, true, &mut w).is_none());
        assert_eq!(w.len(), 1);
        let ok = ServerCount::Counted {
            ours: 5,
            total: 5,
            pages: 1,
            wrong_status: 0,
        };
        assert!(check_server_count(&ok, 5, true, &mut w).is_some_and(|c| c.pass));
        assert!(check_server_count(&ok, 4, true, &mut w).is_some_and(|c| !c.pass));
        let shared = ServerCount::Counted {
            ours: 5,
            total: 9,
            pages: 1,
            wrong_status: 0,
        };
        assert!(check_server_count(&shared, 5, false, &mut w).is_some_and(|c| c.pass));
        assert!(check_server_count(&shared, 5, true, &mut w).is_some_and(|c| !c.pass));
    }
}
