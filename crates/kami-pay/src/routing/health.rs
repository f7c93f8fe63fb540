//! One (channel, method)'s health from its create calls: healthy → degraded → down, with
//! hysteresis, and a half-open probe after a rest (channel-ops.md §3's suggested defaults).
//!
//! - healthy → degraded: 3 failures in a row, or ≥ 20 % failures over the last 5 minutes
//!   with at least 10 calls;
//! - healthy | degraded → down: 5 failures in a row, or ≥ 50 % over the window (≥ 10 calls);
//!   the window is forgotten and the channel rests;
//! - down → (half-open) after the rest (60 s): one order at a time is let through as a probe;
//!   a success makes the channel degraded (fresh window), a failure rests it again;
//! - degraded → healthy: 3 successes in a row and, with volume, under half the degrade rate —
//!   the gap between the thresholds is the hysteresis that stops flapping.
//!
//! A success slower than `slow_ms` counts as a failure for the rates (not for the runs of
//! failures): a gateway that answers in 5 s is losing buyers.

use std::collections::VecDeque;

use kami_core::Millis;

use super::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub struct HealthRules {
    pub window_ms: i64,
    /// Calls in the window before the rates count.
    pub min_calls: u32,
    pub degrade_rate: f64,
    pub down_rate: f64,
    pub degrade_run: u32,
    pub down_run: u32,
    pub rest_ms: i64,
    /// Successes in a row that bring a degraded channel back to healthy.
    pub recover_run: u32,
    /// A success slower than this counts as a failure in the rates.
    pub slow_ms: i64,
    /// How long one probe has before another may be let through (its process may have died).
    pub probe_ms: i64,
}

impl Default for HealthRules {
    fn default() -> HealthRules {
        HealthRules {
            window_ms: 5 * 60_000,
            min_calls: 10,
            degrade_rate: 0.20,
            down_rate: 0.50,
            degrade_run: 3,
            down_run: 5,
            rest_ms: 60_000,
            recover_run: 3,
            slow_ms: 3_000,
            probe_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    Healthy,
    Degraded,
    Down,
}

impl HealthState {
    pub const ALL: [HealthState; 3] = [
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::Down,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<HealthState> {
        HealthState::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// May the channel take an order now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Healthy or degraded: a normal candidate.
    Open,
    /// Down, rested, no probe out: one order may try it (then [`ChannelHealth::begin_probe`]).
    Probe,
    /// Down and resting (or its probe is out).
    Closed,
}

/// A change of state, with what a person needs to understand it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: HealthState,
    pub to: HealthState,
    pub at: Millis,
    /// Down: until when it rests.
    pub rest_until: Option<Millis>,
    /// Calls and failures in the window when it changed.
    pub calls: u32,
    pub failures: u32,
    /// Failures in a row when it changed.
    pub run: u32,
    pub last_code: Option<String>,
    pub reason: String,
}

/// The state another process wrote to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedHealth {
    pub state: HealthState,
    pub since: Millis,
    pub rest_until: Option<Millis>,
}

/// Counts over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub calls: u32,
    pub failures: u32,
}

#[derive(Debug, Clone)]
pub struct ChannelHealth {
    state: HealthState,
    since: Millis,
    rest_until: Millis,
    /// A probe was let through and has until then to report.
    probe_until: Option<Millis>,
    /// The calls within the window, oldest first.
    window: CallWindow,
    failure_run: u32,
    success_run: u32,
    last_code: Option<String>,
    /// Nothing recorded or adopted yet: any shared state is newer than this process's.
    fresh: bool,
}

/// Calls kept in a window at most (a busy shop's 5 minutes).
const WINDOW_CAP: usize = 2_000;

/// (when, counted as a failure) of recent calls, oldest first, with the failures among them
/// kept as a running count: every create call records an outcome, and rescanning a busy
/// shop's 2,000 calls each time cost more than the rest of the decision.
#[derive(Debug, Clone, Default)]
struct CallWindow {
    calls: VecDeque<(Millis, bool)>,
    failures: u32,
}

impl CallWindow {
    fn push(&mut self, at: Millis, failed: bool) {
        if self.calls.len() >= WINDOW_CAP {
            self.pop();
        }
        self.calls.push_back((at, failed));
        self.failures += u32::from(failed);
    }

    fn pop(&mut self) {
        if let Some((_, failed)) = self.calls.pop_front() {
            self.failures -= u32::from(failed);
        }
    }

    /// Forget the calls at or before `from`.
    fn prune(&mut self, from: Millis) {
        while self.calls.front().is_some_and(|&(at, _)| at <= from) {
            self.pop();
        }
    }

    fn clear(&mut self) {
        self.calls.clear();
        self.failures = 0;
    }

    /// Calls and failures after `from`: the running counts when every call is that recent
    /// (the usual case, just after a prune), else a scan.
    fn counts_after(&self, from: Millis) -> WindowCounts {
        if self.calls.front().is_none_or(|&(at, _)| at > from)
            && self.calls.back().is_none_or(|&(at, _)| at > from)
        {
            return WindowCounts {
                calls: self.calls.len() as u32,
                failures: self.failures,
            };
        }
        let mut c = WindowCounts::default();
        for &(at, failed) in &self.calls {
            if at > from {
                c.calls += 1;
                c.failures += u32::from(failed);
            }
        }
        c
    }
}

impl ChannelHealth {
    pub fn new(now: Millis) -> ChannelHealth {
        ChannelHealth {
            state: HealthState::Healthy,
            since: now,
            rest_until: 0,
            probe_until: None,
            window: CallWindow::default(),
            failure_run: 0,
            success_run: 0,
            last_code: None,
            fresh: true,
        }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// When the state last changed.
    pub fn since(&self) -> Millis {
        self.since
    }

    /// Down: when the rest ends.
    pub fn rest_until(&self) -> Option<Millis> {
        (self.state == HealthState::Down).then_some(self.rest_until)
    }

    pub fn last_code(&self) -> Option<&str> {
        self.last_code.as_deref()
    }

    pub fn failure_run(&self) -> u32 {
        self.failure_run
    }

    pub fn counts(&self, now: Millis, rules: &HealthRules) -> WindowCounts {
        self.window.counts_after(now - rules.window_ms)
    }

    pub fn admission(&self, now: Millis) -> Admission {
        match self.state {
            HealthState::Healthy | HealthState::Degraded => Admission::Open,
            HealthState::Down
                if now >= self.rest_until && self.probe_until.is_none_or(|p| now >= p) =>
            {
                Admission::Probe
            }
            HealthState::Down => Admission::Closed,
        }
    }

    /// An order was let through as the probe.
    pub fn begin_probe(&mut self, now: Millis, rules: &HealthRules) {
        if self.state == HealthState::Down {
            self.probe_until = Some(now + rules.probe_ms);
        }
    }

    /// Count one create call's outcome; returns the transition it caused, if any.
    pub fn record(
        &mut self,
        outcome: &Outcome,
        now: Millis,
        rules: &HealthRules,
    ) -> Option<Transition> {
        self.fresh = false;
        let ok = outcome.is_success();
        if self.state == HealthState::Down {
            return self.record_while_down(outcome, now, rules);
        }
        let slow =
            matches!(outcome, Outcome::Success { latency_ms } if *latency_ms > rules.slow_ms);
        self.window.prune(now - rules.window_ms);
        self.window.push(now, !ok || slow);
        if ok {
            self.failure_run = 0;
            self.success_run += 1;
        } else {
            self.failure_run += 1;
            self.success_run = 0;
            self.last_code = outcome.code().map(str::to_owned);
        }
        let c = self.counts(now, rules);
        let rate = if c.calls >= rules.min_calls {
            f64::from(c.failures) / f64::from(c.calls)
        } else {
            0.0
        };
        let rated = c.calls >= rules.min_calls;
        let reason = |what: &str, run: u32, threshold: f64| {
            if run > 0 {
                format!("{what}: {run} create failures in a row")
            } else {
                format!(
                    "{what}: {} of {} create calls failed in {} min (threshold {:.0} %)",
                    c.failures,
                    c.calls,
                    rules.window_ms / 60_000,
                    threshold * 100.0
                )
            }
        };
        if self.failure_run >= rules.down_run || (rated && rate >= rules.down_rate) {
            let run = if self.failure_run >= rules.down_run {
                self.failure_run
            } else {
                0
            };
            let why = reason("down", run, rules.down_rate);
            let mut t = self.transition(HealthState::Down, now, c, why);
            self.rest(now, rules);
            t.rest_until = Some(self.rest_until);
            return Some(t);
        }
        match self.state {
            HealthState::Healthy
                if self.failure_run >= rules.degrade_run
                    || (rated && rate >= rules.degrade_rate) =>
            {
                let run = if self.failure_run >= rules.degrade_run {
                    self.failure_run
                } else {
                    0
                };
                let why = reason("degraded", run, rules.degrade_rate);
                Some(self.transition(HealthState::Degraded, now, c, why))
            }
            HealthState::Degraded
                if self.success_run >= rules.recover_run
                    && (!rated || rate < rules.degrade_rate / 2.0) =>
            {
                let why = format!(
                    "recovered: {} successes in a row, {} of {} calls failed",
                    self.success_run, c.failures, c.calls
                );
                Some(self.transition(HealthState::Healthy, now, c, why))
            }
            _ => None,
        }
    }

    fn record_while_down(
        &mut self,
        outcome: &Outcome,
        now: Millis,
        rules: &HealthRules,
    ) -> Option<Transition> {
        let probing = self.probe_until.is_some();
        if outcome.is_success() {
            // A call let through after the rest worked: back, on probation (degraded).
            if now < self.rest_until && !probing {
                return None; // a call from before the rest answered late
            }
            self.window.clear();
            self.window.push(now, false);
            self.failure_run = 0;
            self.success_run = 1;
            self.probe_until = None;
            let c = self.counts(now, rules);
            let t = self.transition(
                HealthState::Degraded,
                now,
                c,
                "probe succeeded after the rest".into(),
            );
            return Some(t);
        }
        if probing {
            // The probe failed: rest again.
            self.last_code = outcome.code().map(str::to_owned);
            self.failure_run += 1;
            self.rest(now, rules);
        }
        None
    }

    fn rest(&mut self, now: Millis, rules: &HealthRules) {
        self.rest_until = now + rules.rest_ms;
        self.probe_until = None;
        self.window.clear();
        self.success_run = 0;
    }

    fn transition(
        &mut self,
        to: HealthState,
        now: Millis,
        c: WindowCounts,
        reason: String,
    ) -> Transition {
        let from = self.state;
        self.state = to;
        self.since = now;
        Transition {
            from,
            to,
            at: now,
            rest_until: None,
            calls: c.calls,
            failures: c.failures,
            run: self.failure_run,
            last_code: self.last_code.clone(),
            reason,
        }
    }

    /// Take the state another process wrote when it is newer than this process's own: a
    /// channel another instance found down rests here too, and one it saw recover comes
    /// back (a process that has seen nothing yet takes whatever is stored). Returns whether
    /// anything changed.
    pub fn adopt(&mut self, shared: &SharedHealth, rules: &HealthRules) -> bool {
        let newer = self.fresh || shared.since > self.since;
        if !newer || shared.state == self.state {
            return false;
        }
        self.fresh = false;
        self.state = shared.state;
        self.since = shared.since;
        self.window.clear();
        self.failure_run = 0;
        self.success_run = 0;
        self.probe_until = None;
        if shared.state == HealthState::Down {
            self.rest_until = shared.rest_until.unwrap_or(shared.since + rules.rest_ms);
        }
        true
    }
}
