//! Scenarios the seeds found, pinned as plain tests built from the simulation's parts (each
//! names the seed that found it).

use crate::invariants;
use crate::steps::{Fate, Step};
use crate::world::World;
use crate::{block_on, config};
use kami_testkit::Backend;

/// Seed 1056: a refund whose first call to the gateway came more than a day after it was
/// asked for (kami was down, then the gateway) timed out — the money moved, kami did not hear.
/// It must stay held with its outcome unknown for the seller to check, never be marked failed
/// (which would make the amount refundable a second time).
#[test]
fn a_refund_unanswered_after_a_day_stays_held_sqlite() {
    a_refund_unanswered_after_a_day_stays_held(Backend::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL at KAMI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)"]
fn a_refund_unanswered_after_a_day_stays_held_postgres() {
    a_refund_unanswered_after_a_day_stays_held(Backend::Postgres);
}

fn a_refund_unanswered_after_a_day_stays_held(backend: Backend) {
    block_on(async {
        let mut w = World::new(1056, config(backend)).await;
        // `plenty` through `alpha` (refunds de-duplicated, so kami retries them).
        let out = w
            .run(&Step::Buy {
                product: 1,
                channel: 0,
                qty: 1,
            })
            .await;
        assert!(out.starts_with("placed"), "{out}");
        w.run(&Step::Pay {
            channel: 0,
            seq: 0,
            wrong: false,
        })
        .await;
        w.run(&Step::Notify {
            channel: 0,
            seq: 0,
            copies: 1,
            fate: Fate::Acked,
        })
        .await;
        invariants::check(&mut w, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.orders[0].status, "delivered");

        // The gateway is unreachable for more than a day: the refund waits for a retry.
        w.run(&Step::Outage {
            channel: 0,
            ms: 25 * 3_600_000,
        })
        .await;
        let out = w
            .run(&Step::Refund {
                order: 0,
                amount: None,
            })
            .await;
        assert!(out.contains("pending / delivered"), "{out}");
        w.run(&Step::Clock {
            ms: 25 * 3_600_000 + 60_000,
        })
        .await;

        // Back: the retry refunds the buyer, but the answer is lost.
        w.fakes[0].ledger().lose_next_refund_answer = true;
        assert_eq!(w.run(&Step::RefundRetries).await, "1 retried");
        invariants::check(&mut w, false).unwrap_or_else(|e| panic!("{e}"));

        // The amount stays held: no second refund of the same money.
        let out = w
            .run(&Step::Refund {
                order: 0,
                amount: None,
            })
            .await;
        assert!(out.contains("already fully refunded"), "{out}");
        invariants::check(&mut w, false).unwrap_or_else(|e| panic!("{e}"));
    });
}
