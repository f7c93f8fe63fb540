//! `[routing]`: how checkouts choose among the channels of a method and fail over
//! (`kami_pay::routing`).

use kami_pay::routing::RoutingMode;
use serde::Deserialize;

use super::{invalid, ConfigError, Origins};

/// `[routing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// `priority` (default), `success_rate` or `shadow`.
    pub mode: RoutingMode,
    /// Share of success-rate decisions that ignore success rates, 0 to 0.5; default 0.05.
    pub exploration: f64,
    /// Time all create calls of one checkout may take together (failover included),
    /// 500..=30000 ms; default 3000.
    pub create_budget_ms: u32,
    /// How long a channel that went down rests before a probe, 1..=3600 s; default 60.
    pub rest_seconds: u32,
}

impl Default for RoutingConfig {
    fn default() -> RoutingConfig {
        RoutingConfig {
            mode: RoutingMode::Priority,
            exploration: 0.05,
            create_budget_ms: 3_000,
            rest_seconds: 60,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawRouting {
    mode: Option<String>,
    exploration: Option<f64>,
    create_budget_ms: Option<i64>,
    rest_seconds: Option<i64>,
}

pub(super) fn build_routing(
    raw: RawRouting,
    origins: &Origins,
) -> Result<RoutingConfig, ConfigError> {
    let d = RoutingConfig::default();
    let mode = match raw.mode {
        None => d.mode,
        Some(m) => RoutingMode::parse(m.trim()).ok_or_else(|| {
            invalid(
                origins,
                "routing.mode",
                format!("expected one of priority, success_rate, shadow, got `{m}`"),
            )
        })?,
    };
    let exploration = match raw.exploration {
        None => d.exploration,
        Some(e) if e.is_finite() && (0.0..=0.5).contains(&e) => e,
        Some(e) => {
            return Err(invalid(
                origins,
                "routing.exploration",
                format!("must be a share from 0 to 0.5 (0.05 = 5 %), got {e}"),
            ))
        }
    };
    let whole =
        |key: &str, v: Option<i64>, default: u32, (min, max): (u32, u32), unit: &str| match v {
            None => Ok(default),
            Some(v) => u32::try_from(v)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| {
                    invalid(
                        origins,
                        key,
                        format!("must be a whole number of {unit} from {min} to {max}, got {v}"),
                    )
                }),
        };
    Ok(RoutingConfig {
        mode,
        exploration,
        create_budget_ms: whole(
            "routing.create_budget_ms",
            raw.create_budget_ms,
            d.create_budget_ms,
            (500, 30_000),
            "milliseconds",
        )?,
        rest_seconds: whole(
            "routing.rest_seconds",
            raw.rest_seconds,
            d.rest_seconds,
            (1, 3_600),
            "seconds",
        )?,
    })
}

impl RoutingConfig {
    /// The routing policy these settings make.
    pub fn policy(&self) -> kami_pay::routing::RoutingPolicy {
        let mut p = kami_pay::routing::RoutingPolicy {
            mode: self.mode,
            exploration: self.exploration,
            ..Default::default()
        };
        p.health.rest_ms = i64::from(self.rest_seconds) * 1000;
        p
    }
}
