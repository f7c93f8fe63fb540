//! The candidates of one checkout, in the order to try them: the highest priority first;
//! within a priority, a channel due for its half-open probe first, then the others drawn one
//! by one in proportion to their effective weight — `weight`, divided by five when degraded,
//! and in success-rate mode multiplied by `score ^ sharpness` (except for the exploration
//! share of decisions). Resting channels are left out. Amount limits are applied once the
//! order's amount is known ([`admitted`]): the drawn order of the rest is kept.

use kami_core::AmountLimits;
use rand::Rng;

use super::{Admission, HealthState, RoutingMode, RoutingPolicy};

/// A degraded channel keeps this share of its weight.
pub const DEGRADED_SHARE: f64 = 0.2;

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<K> {
    pub key: K,
    pub priority: i32,
    pub weight: u32,
    pub state: HealthState,
    pub admission: Admission,
    /// [`super::SuccessWindow::score`].
    pub score: f64,
    pub limits: AmountLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan<K> {
    /// The candidates in the order to try them.
    pub order: Vec<Candidate<K>>,
    /// Shadow mode: the channel success-rate routing would have tried first.
    pub shadow_first: Option<K>,
    /// This decision ignored success rates (the exploration share).
    pub explored: bool,
}

impl<K: PartialEq> Plan<K> {
    /// Shadow mode: whether success-rate routing agrees with the channel tried first.
    pub fn shadow_agrees(&self) -> Option<bool> {
        let first = self.order.first()?;
        self.shadow_first.as_ref().map(|k| *k == first.key)
    }
}

/// Order the candidates for one checkout.
pub fn plan<K: Clone + PartialEq, R: Rng>(
    candidates: Vec<Candidate<K>>,
    policy: &RoutingPolicy,
    rng: &mut R,
) -> Plan<K> {
    let open: Vec<Candidate<K>> = candidates
        .into_iter()
        .filter(|c| c.admission != Admission::Closed)
        .collect();
    let explored =
        policy.mode != RoutingMode::Priority && rng.gen_bool(policy.exploration.clamp(0.0, 1.0));
    let by_score = policy.mode == RoutingMode::SuccessRate && !explored;
    let shadow_first = if policy.mode == RoutingMode::Shadow {
        let sr = ordered(open.clone(), !explored, policy, rng);
        sr.into_iter().next().map(|c| c.key)
    } else {
        None
    };
    Plan {
        order: ordered(open, by_score, policy, rng),
        shadow_first,
        explored,
    }
}

/// The candidates whose limits admit `amount_minor`, in plan order.
pub fn admitted<K>(order: Vec<Candidate<K>>, amount_minor: i64) -> Vec<Candidate<K>> {
    order
        .into_iter()
        .filter(|c| c.limits.admits(amount_minor))
        .collect()
}

fn effective_weight<K>(c: &Candidate<K>, by_score: bool, policy: &RoutingPolicy) -> f64 {
    let mut w = f64::from(c.weight.max(1));
    if c.state == HealthState::Degraded {
        w *= DEGRADED_SHARE;
    }
    if by_score {
        w *= c.score.clamp(0.0, 1.0).powi(policy.score.sharpness);
    }
    w.max(1e-9)
}

fn ordered<K, R: Rng>(
    mut open: Vec<Candidate<K>>,
    by_score: bool,
    policy: &RoutingPolicy,
    rng: &mut R,
) -> Vec<Candidate<K>> {
    open.sort_by_key(|c| std::cmp::Reverse(c.priority));
    let mut out = Vec::with_capacity(open.len());
    while !open.is_empty() {
        let top = open[0].priority;
        let split = open.iter().take_while(|c| c.priority == top).count();
        let rest = open.split_off(split);
        let (probes, others): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|c| c.admission == Admission::Probe);
        out.extend(draw(probes, false, policy, rng));
        out.extend(draw(others, by_score, policy, rng));
        open = rest;
    }
    out
}

/// Weighted sampling without replacement.
fn draw<K, R: Rng>(
    mut pool: Vec<Candidate<K>>,
    by_score: bool,
    policy: &RoutingPolicy,
    rng: &mut R,
) -> Vec<Candidate<K>> {
    let mut out = Vec::with_capacity(pool.len());
    while !pool.is_empty() {
        let weights: Vec<f64> = pool
            .iter()
            .map(|c| effective_weight(c, by_score, policy))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut ticket = rng.gen::<f64>() * total;
        let mut pick = pool.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if ticket < *w {
                pick = i;
                break;
            }
            ticket -= w;
        }
        out.push(pool.remove(pick));
    }
    out
}
