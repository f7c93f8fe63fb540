#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use kami_core::AmountLimits;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::PayError;

const OK: Outcome = Outcome::Success { latency_ms: 100 };

fn err() -> Outcome {
    Outcome::Error {
        code: Some("ACQ.SYSTEM_ERROR".into()),
    }
}

fn rules() -> HealthRules {
    HealthRules::default()
}

#[test]
fn runs_of_failures_degrade_then_take_down_and_the_rest_ends_in_a_probe() {
    let r = rules();
    let mut h = ChannelHealth::new(0);
    assert_eq!(h.record(&err(), 1, &r), None);
    assert_eq!(h.record(&err(), 2, &r), None);
    let t = h
        .record(&Outcome::Timeout, 3, &r)
        .expect("third failure degrades");
    assert_eq!(
        (t.from, t.to),
        (HealthState::Healthy, HealthState::Degraded)
    );
    assert_eq!(t.last_code.as_deref(), Some("TIMEOUT"));
    assert_eq!(
        h.admission(3),
        Admission::Open,
        "degraded still takes orders"
    );
    assert_eq!(h.record(&err(), 4, &r), None);
    let t = h
        .record(&err(), 5, &r)
        .expect("fifth failure takes it down");
    assert_eq!((t.from, t.to), (HealthState::Degraded, HealthState::Down));
    assert_eq!(t.rest_until, Some(5 + r.rest_ms));
    assert_eq!(t.run, 5);
    assert!(
        t.reason.contains("5 create failures in a row"),
        "{}",
        t.reason
    );
    assert_eq!(t.last_code.as_deref(), Some("ACQ.SYSTEM_ERROR"));

    assert_eq!(h.admission(5 + r.rest_ms - 1), Admission::Closed, "resting");
    // Late answers of calls made before the rest change nothing.
    assert_eq!(h.record(&OK, 6, &r), None);
    assert_eq!(h.record(&err(), 7, &r), None);
    assert_eq!(h.state(), HealthState::Down);

    let after = 5 + r.rest_ms;
    assert_eq!(h.admission(after), Admission::Probe);
    h.begin_probe(after, &r);
    assert_eq!(h.admission(after), Admission::Closed, "one probe at a time");
    assert_eq!(
        h.admission(after + r.probe_ms),
        Admission::Probe,
        "a probe that never reported frees the slot"
    );
    let t = h.record(&OK, after + 10, &r).expect("probe success");
    assert_eq!((t.from, t.to), (HealthState::Down, HealthState::Degraded));
    assert_eq!(h.record(&OK, after + 11, &r), None);
    let t = h
        .record(&OK, after + 12, &r)
        .expect("three successes in a row");
    assert_eq!(
        (t.from, t.to),
        (HealthState::Degraded, HealthState::Healthy)
    );
}

#[test]
fn a_failed_probe_rests_the_channel_again() {
    let r = rules();
    let mut h = ChannelHealth::new(0);
    for t in 1..=5 {
        h.record(&err(), t, &r);
    }
    assert_eq!(h.state(), HealthState::Down);
    let at = 5 + r.rest_ms;
    h.begin_probe(at, &r);
    assert_eq!(h.record(&err(), at + 1, &r), None);
    assert_eq!(h.state(), HealthState::Down);
    assert_eq!(h.rest_until(), Some(at + 1 + r.rest_ms));
    assert_eq!(h.admission(at + 2), Admission::Closed);
    assert_eq!(h.admission(at + 1 + r.rest_ms), Admission::Probe);
}

#[test]
fn rates_need_volume_and_count_only_the_window() {
    let r = rules();
    let mut h = ChannelHealth::new(0);
    // 2 of 9 failed, never two in a row: under min_calls, rates do not count.
    for i in 0..9 {
        let o = if i % 4 == 1 { err() } else { OK };
        assert_eq!(h.record(&o, i, &r), None);
    }
    // The 10th call: 2 of 10 = 20 % → degraded.
    let t = h.record(&OK, 9, &r).expect("20 % of 10");
    assert_eq!(t.to, HealthState::Degraded);
    assert_eq!((t.calls, t.failures), (10, 2));
    assert!(t.reason.contains("2 of 10"), "{}", t.reason);

    // Half failing, alternating (never a run of 3): down by rate.
    let mut h = ChannelHealth::new(0);
    let mut last = None;
    for i in 0..10 {
        let o = if i % 2 == 0 { err() } else { OK };
        last = h.record(&o, i, &r).or(last);
    }
    assert_eq!(h.state(), HealthState::Down, "{last:?}");

    // Failures older than the window are forgotten.
    let mut h = ChannelHealth::new(0);
    for i in 0..10 {
        let o = if i < 2 { err() } else { OK };
        h.record(&o, i, &r);
    }
    assert_eq!(h.state(), HealthState::Degraded);
    let mut h2 = ChannelHealth::new(0);
    h2.record(&err(), 0, &r);
    h2.record(&err(), 1, &r);
    for i in 0..10 {
        assert_eq!(h2.record(&OK, r.window_ms + 10 + i, &r), None);
    }
    assert_eq!(h2.counts(r.window_ms + 20, &r).failures, 0);
    assert_eq!(h2.state(), HealthState::Healthy);
}

#[test]
fn degraded_recovers_only_well_below_the_degrade_rate() {
    let r = rules();
    let mut h = ChannelHealth::new(0);
    // 3 failures in a row: degraded.
    for t in 0..3 {
        h.record(&err(), t, &r);
    }
    assert_eq!(h.state(), HealthState::Degraded);
    // 3 successes: 3 of 6 calls failed, under min_calls → the run alone decides.
    for t in 3..6 {
        h.record(&OK, t, &r);
    }
    assert_eq!(h.state(), HealthState::Healthy);

    // With volume: under the degrade rate is not enough, it must fall under half of it.
    let mut h = ChannelHealth::new(0);
    for t in 0..10 {
        h.record(&OK, t, &r);
    }
    for t in 10..13 {
        h.record(&err(), t, &r);
    }
    assert_eq!(h.state(), HealthState::Degraded);
    for t in 13..21 {
        h.record(&OK, t, &r);
    }
    assert_eq!(
        h.state(),
        HealthState::Degraded,
        "hysteresis: 3 of 21 failed"
    );
    let mut t = 21;
    while h.state() == HealthState::Degraded {
        h.record(&OK, t, &r);
        t += 1;
        assert!(t < 100);
    }
    let c = h.counts(t, &r);
    assert!(f64::from(c.failures) / f64::from(c.calls) < r.degrade_rate / 2.0);
}

#[test]
fn slow_successes_count_in_the_rate_not_in_the_run() {
    let r = rules();
    let mut h = ChannelHealth::new(0);
    let slow = Outcome::Success {
        latency_ms: r.slow_ms + 1,
    };
    for t in 0..9 {
        assert_eq!(h.record(&slow, t, &r), None, "no run of failures");
    }
    let t = h.record(&slow, 9, &r).expect("10 of 10 slow");
    assert_eq!(t.to, HealthState::Down);
}

#[test]
fn another_process_newer_state_is_adopted() {
    let r = rules();
    let old = SharedHealth {
        state: HealthState::Down,
        since: 50,
        rest_until: Some(50 + r.rest_ms),
    };
    let mut fresh = ChannelHealth::new(100);
    assert!(
        fresh.adopt(&old, &r),
        "a process that saw nothing takes the stored state"
    );
    assert_eq!(fresh.state(), HealthState::Down);
    let mut h = ChannelHealth::new(100);
    h.record(&OK, 100, &r);
    let down = old;
    assert!(!h.adopt(&down, &r), "older than our own state");
    let down = SharedHealth {
        since: 200,
        rest_until: Some(200 + r.rest_ms),
        ..down
    };
    assert!(h.adopt(&down, &r));
    assert_eq!(h.state(), HealthState::Down);
    assert_eq!(h.admission(201), Admission::Closed);
    assert_eq!(h.admission(200 + r.rest_ms), Admission::Probe);
    assert!(!h.adopt(&down, &r), "same state: nothing to do");
    let up = SharedHealth {
        state: HealthState::Degraded,
        since: 300,
        rest_until: None,
    };
    assert!(h.adopt(&up, &r));
    assert_eq!(h.admission(301), Admission::Open);
}

#[test]
fn buyer_caused_refusals_are_not_the_channel_s() {
    let gw = |code: &str| PayError::Gateway {
        code: code.into(),
        message: "m".into(),
    };
    assert_eq!(attribute(&gw("ACQ.INVALID_PARAMETER")), Attribution::Buyer);
    assert_eq!(attribute(&gw("PARAM_ERROR")), Attribution::Buyer);
    assert_eq!(attribute(&PayError::Unsupported("h5")), Attribution::Buyer);
    for code in [
        "ACQ.SYSTEM_ERROR",
        "20000",
        "HTTP_502",
        "SYSTEM_ERROR",
        "isp.unknow-error",
    ] {
        assert_eq!(
            attribute(&gw(code)),
            Attribution::Channel(Outcome::Error {
                code: Some(code.into())
            }),
            "{code}"
        );
    }
    assert_eq!(
        attribute(&PayError::Transport("operation timed out".into())),
        Attribution::Channel(Outcome::Timeout)
    );
    assert!(matches!(
        attribute(&PayError::Transport("connection refused".into())),
        Attribution::Channel(Outcome::Error { .. })
    ));
    assert!(matches!(
        attribute(&PayError::BadResponseSignature),
        Attribution::Channel(_)
    ));
}

#[test]
fn scores_are_optimistic_until_volume_and_slide() {
    let r = ScoreRules::default();
    let mut w = SuccessWindow::default();
    assert_eq!(w.score(&r), 1.0);
    for _ in 0..r.min_volume - 1 {
        w.record(false, &r);
    }
    assert_eq!(w.score(&r), 1.0, "optimistic below min volume");
    w.record(false, &r);
    assert_eq!(w.score(&r), 0.0);
    for _ in 0..r.window {
        w.record(true, &r);
    }
    assert_eq!(w.volume(), r.window);
    assert_eq!(w.score(&r), 1.0, "old failures slid out");
}

fn cand(key: &'static str, priority: i32, weight: u32) -> Candidate<&'static str> {
    Candidate {
        key,
        priority,
        weight,
        state: HealthState::Healthy,
        admission: Admission::Open,
        score: 1.0,
        limits: AmountLimits::default(),
    }
}

fn shares(
    cands: &[Candidate<&'static str>],
    policy: &RoutingPolicy,
    n: usize,
) -> (HashMap<&'static str, usize>, HashMap<&'static str, usize>) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut first = HashMap::new();
    let mut shadow = HashMap::new();
    for _ in 0..n {
        let p = plan(cands.to_vec(), policy, &mut rng);
        *first.entry(p.order[0].key).or_default() += 1;
        if let Some(k) = p.shadow_first {
            *shadow.entry(k).or_default() += 1;
        }
    }
    (first, shadow)
}

#[test]
fn priority_first_weights_within_resting_left_out_probe_first() {
    let policy = RoutingPolicy::default();
    let mut rng = StdRng::seed_from_u64(1);
    let mut down = cand("down", 10, 1);
    down.state = HealthState::Down;
    down.admission = Admission::Closed;
    let p = plan(
        vec![
            cand("low", 1, 100),
            cand("a", 10, 3),
            down.clone(),
            cand("b", 10, 1),
        ],
        &policy,
        &mut rng,
    );
    let keys: Vec<_> = p.order.iter().map(|c| c.key).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[2], "low", "lower priority last");
    assert!(!keys.contains(&"down"));

    down.admission = Admission::Probe;
    let p = plan(vec![cand("a", 10, 100), down], &policy, &mut rng);
    assert_eq!(p.order[0].key, "down", "the probe goes first");

    let (first, _) = shares(&[cand("a", 0, 3), cand("b", 0, 1)], &policy, 4000);
    let a = first["a"] as f64 / 4000.0;
    assert!((0.70..0.80).contains(&a), "{first:?}");

    let mut degraded = cand("d", 0, 1);
    degraded.state = HealthState::Degraded;
    let (first, _) = shares(&[cand("h", 0, 1), degraded], &policy, 4000);
    let d = first["d"] as f64 / 4000.0;
    assert!(
        (0.12..0.22).contains(&d),
        "degraded keeps a fifth of its weight: {first:?}"
    );
}

#[test]
fn success_rate_mode_favours_the_better_channel_and_still_explores() {
    let mut good = cand("good", 0, 1);
    good.score = 0.95;
    let mut poor = cand("poor", 0, 1);
    poor.score = 0.70;
    let policy = RoutingPolicy {
        mode: RoutingMode::SuccessRate,
        ..RoutingPolicy::default()
    };
    let (first, _) = shares(&[good.clone(), poor.clone()], &policy, 10_000);
    let g = first["good"] as f64 / 10_000.0;
    println!("success_rate shares: {first:?}");
    assert!(g > 0.85, "{first:?}");
    assert!(
        first["poor"] > 300,
        "exploration keeps the poor one measured: {first:?}"
    );

    // Shadow: routes by weight, records what success-rate routing would pick.
    let shadow = RoutingPolicy {
        mode: RoutingMode::Shadow,
        ..RoutingPolicy::default()
    };
    let (first, sr) = shares(&[good, poor], &shadow, 10_000);
    let g = first["good"] as f64 / 10_000.0;
    assert!(
        (0.45..0.55).contains(&g),
        "shadow routes like priority: {first:?}"
    );
    assert!(sr["good"] as f64 / 10_000.0 > 0.85, "{sr:?}");
}

#[test]
fn amount_limits_filter_in_plan_order() {
    let mut small = cand("small", 0, 1);
    small.limits = AmountLimits {
        max: Some(1000),
        ..AmountLimits::default()
    };
    let mut full = cand("full", 0, 1);
    full.limits = AmountLimits {
        room: Some(500),
        ..AmountLimits::default()
    };
    let order = vec![small, full, cand("any", -1, 1)];
    let keys = |o: Vec<Candidate<&'static str>>| o.into_iter().map(|c| c.key).collect::<Vec<_>>();
    assert_eq!(keys(admitted(order.clone(), 400)), ["small", "full", "any"]);
    assert_eq!(keys(admitted(order.clone(), 800)), ["small", "any"]);
    assert_eq!(keys(admitted(order, 2000)), ["any"]);
}

#[test]
fn modes_round_trip() {
    for m in RoutingMode::ALL {
        assert_eq!(RoutingMode::parse(m.as_str()), Some(m));
    }
    for s in HealthState::ALL {
        assert_eq!(HealthState::parse(s.as_str()), Some(s));
    }
    assert_eq!(RoutingMode::parse("random"), None);
}

fn allowed(from: HealthState, to: HealthState) -> bool {
    use HealthState::*;
    matches!(
        (from, to),
        (Healthy, Degraded)
            | (Healthy, Down)
            | (Degraded, Down)
            | (Degraded, Healthy)
            | (Down, Degraded)
    )
}

proptest! {
    /// Whatever the outcomes and their timing: only the allowed edges are taken, a resting
    /// channel admits nothing, a run of `down_run` failures on an open channel takes it down,
    /// and a transition reports the state the machine is in.
    #[test]
    fn health_machine_invariants(steps in prop::collection::vec((0u8..4, 0i64..20_000, any::<bool>()), 1..300)) {
        let r = rules();
        let mut h = ChannelHealth::new(0);
        let mut now = 0;
        let mut run = 0;
        for (kind, dt, probe) in steps {
            now += dt;
            if probe && h.admission(now) == Admission::Probe {
                h.begin_probe(now, &r);
            }
            if h.state() == HealthState::Down {
                if let Some(until) = h.rest_until() {
                    if now < until { prop_assert_eq!(h.admission(now), Admission::Closed); }
                }
            }
            let open = h.state() != HealthState::Down;
            let o = match kind {
                0 => OK,
                1 => Outcome::Timeout,
                2 => err(),
                _ => Outcome::Success { latency_ms: r.slow_ms + 1 },
            };
            run = if o.is_success() { 0 } else { run + 1 };
            let before = h.state();
            if let Some(t) = h.record(&o, now, &r) {
                prop_assert!(allowed(t.from, t.to), "{:?} → {:?}", t.from, t.to);
                prop_assert_eq!(t.from, before);
                prop_assert_eq!(t.to, h.state());
                prop_assert_eq!(h.since(), now);
            } else {
                prop_assert_eq!(before, h.state());
            }
            if open && run >= r.down_run as usize {
                prop_assert_eq!(h.state(), HealthState::Down);
            }
            if !open { run = 0; }
        }
    }

    /// A plan is a permutation of the admissible candidates, in non-increasing priority.
    #[test]
    fn plans_are_ordered_permutations(
        cands in prop::collection::vec((-2i32..3, 1u32..10, 0u8..3, 0.0f64..1.0), 0..8),
        seed in any::<u64>(),
        mode in 0usize..3,
    ) {
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let list: Vec<Candidate<&'static str>> = cands.iter().enumerate().map(|(i, &(p, w, a, s))| Candidate {
            key: names[i],
            priority: p,
            weight: w,
            state: HealthState::Healthy,
            admission: [Admission::Open, Admission::Probe, Admission::Closed][a as usize],
            score: s,
            limits: AmountLimits::default(),
        }).collect();
        let policy = RoutingPolicy { mode: RoutingMode::ALL[mode], ..RoutingPolicy::default() };
        let p = plan(list.clone(), &policy, &mut StdRng::seed_from_u64(seed));
        let mut want: Vec<_> = list.iter().filter(|c| c.admission != Admission::Closed).map(|c| c.key).collect();
        let mut got: Vec<_> = p.order.iter().map(|c| c.key).collect();
        want.sort();
        got.sort();
        prop_assert_eq!(want, got);
        for pair in p.order.windows(2) {
            prop_assert!(pair[0].priority >= pair[1].priority);
            if pair[0].priority == pair[1].priority && pair[1].admission == Admission::Probe {
                prop_assert_eq!(pair[0].admission, Admission::Probe, "probes lead their priority");
            }
        }
        prop_assert_eq!(p.shadow_first.is_some(), policy.mode == RoutingMode::Shadow && !p.order.is_empty());
    }
}
