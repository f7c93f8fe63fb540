//! `[routing]` and the channels' amount limits: defaults, values, precise refusals.

use kami_pay::routing::RoutingMode;

use super::super::*;
use super::{load_env, parse, parse_err, SANDBOX};

#[test]
fn routing_defaults_and_values() {
    let r = parse("").config.routing;
    assert_eq!(r, RoutingConfig::default());
    assert_eq!(
        (r.mode, r.exploration, r.create_budget_ms, r.rest_seconds),
        (RoutingMode::Priority, 0.05, 3_000, 60)
    );
    let l = parse(
        "[routing]\nmode = \"shadow\"\nexploration = 0.1\ncreate_budget_ms = 5000\nrest_seconds = 30\n",
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let r = l.config.routing;
    assert_eq!(
        (r.mode, r.exploration, r.create_budget_ms, r.rest_seconds),
        (RoutingMode::Shadow, 0.1, 5_000, 30)
    );
    assert_eq!(r.policy().health.rest_ms, 30_000);
    let env = load_env("", &[("KAMI__ROUTING__MODE", "success_rate")]).unwrap();
    assert_eq!(env.config.routing.mode, RoutingMode::SuccessRate);
}

#[test]
fn routing_refusals_name_the_key() {
    let e = parse_err("[routing]\nmode = \"random\"\n");
    assert!(
        e.contains("routing.mode") && e.contains("priority, success_rate, shadow"),
        "{e}"
    );
    let e = parse_err("[routing]\nexploration = 0.9\n");
    assert!(
        e.contains("routing.exploration") && e.contains("0 to 0.5"),
        "{e}"
    );
    let e = parse_err("[routing]\ncreate_budget_ms = 100\n");
    assert!(
        e.contains("routing.create_budget_ms") && e.contains("500 to 30000"),
        "{e}"
    );
    let e = parse_err("[routing]\nrest_seconds = 0\n");
    assert!(e.contains("routing.rest_seconds"), "{e}");
}

#[test]
fn channel_amount_limits() {
    let l = parse(&format!(
        "{SANDBOX}min_amount = 100\nmax_amount = 50000\ndaily_limit = 1000000\n"
    ));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let limits = l.config.channels[0].limits;
    assert_eq!(
        (
            limits.min_amount(),
            limits.max_amount(),
            limits.daily_limit()
        ),
        (Some(100), Some(50_000), Some(1_000_000))
    );
    assert_eq!(parse(SANDBOX).config.channels[0].limits, Default::default());
    let e = parse_err(&format!("{SANDBOX}min_amount = 500\nmax_amount = 100\n"));
    assert!(
        e.contains("`sb`") && e.contains("max_amount") && e.contains("min_amount (500)"),
        "{e}"
    );
    let e = parse_err(&format!("{SANDBOX}daily_limit = 0\n"));
    assert!(e.contains("daily_limit") && e.contains("at least 1"), "{e}");
}
