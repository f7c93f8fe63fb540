//! Routing across payment channels: which channel of a method takes an order, in which
//! order the others are tried when its create call fails, and when a channel rests. Pure:
//! no I/O, no clock, no randomness of its own — the caller passes `now` and a random number
//! generator, so every decision is reproducible in tests. `kami-server/src/channels.rs` keeps
//! one [`ChannelHealth`] and one [`SuccessWindow`] per (channel, method) and asks [`plan`] for
//! the candidates of each checkout.
//!
//! - [`outcome`]: what a create call's result says about the channel ([`attribute`]): a
//!   buyer-caused refusal never counts.
//! - [`health`]: healthy → degraded → down with hysteresis, a half-open probe after a rest.
//! - [`score`]: the success rate over the last create calls, optimistic until there is volume.
//! - [`choose`]: the ordered candidates under a [`RoutingMode`].

pub mod choose;
pub mod health;
pub mod outcome;
pub mod score;
#[cfg(test)]
mod tests;

pub use choose::{admitted, plan, Candidate, Plan};
pub use health::{Admission, ChannelHealth, HealthRules, HealthState, SharedHealth, Transition};
pub use outcome::{attribute, Attribution, Outcome};
pub use score::{ScoreRules, SuccessWindow};

/// How the candidates of one priority are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingMode {
    /// By weight (and health): kami's behaviour before success-rate routing.
    #[default]
    Priority,
    /// By weight × success rate (once a channel has volume), with an exploration share.
    SuccessRate,
    /// Routes as `Priority`, and computes what `SuccessRate` would have chosen, so an owner
    /// can watch the agreement before trusting it.
    Shadow,
}

impl RoutingMode {
    pub const ALL: [RoutingMode; 3] = [
        RoutingMode::Priority,
        RoutingMode::SuccessRate,
        RoutingMode::Shadow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingMode::Priority => "priority",
            RoutingMode::SuccessRate => "success_rate",
            RoutingMode::Shadow => "shadow",
        }
    }

    pub fn parse(s: &str) -> Option<RoutingMode> {
        RoutingMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Everything routing needs besides the candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingPolicy {
    pub mode: RoutingMode,
    /// Share of decisions (0 to 0.5) that ignore success rates (weights and health only), so
    /// a channel that lost traffic can show it recovered.
    pub exploration: f64,
    pub health: HealthRules,
    pub score: ScoreRules,
}

impl Default for RoutingPolicy {
    fn default() -> RoutingPolicy {
        RoutingPolicy {
            mode: RoutingMode::Priority,
            exploration: 0.05,
            health: HealthRules::default(),
            score: ScoreRules::default(),
        }
    }
}
