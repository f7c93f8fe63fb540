//! `[risk]` and `[metrics]`: defaults, block lists, the deprecated `[shop]` keys.

use super::super::*;
use super::{parse, parse_err};

#[test]
fn risk_defaults_are_the_designs() {
    let r = parse("").config.risk;
    assert_eq!(r, RiskConfig::default());
    assert_eq!(
        (
            r.max_pending_orders_per_ip,
            r.max_pending_orders_per_email,
            r.orders_per_minute_per_ip,
            r.password_checks_per_minute_per_ip,
            r.password_hashes_at_once_per_ip
        ),
        (3, 3, 10, 20, 2)
    );
    assert!(r.blocked_ips.is_empty() && r.blocked_emails.is_empty());
    assert!(parse("").config.metrics.token.is_none());
}

#[test]
fn block_lists_match_addresses_and_emails() {
    let l = parse(
        "[risk]\nblocked_ips = [\"203.0.113.0/24\", \"2001:db8::1\"]\n\
         blocked_emails = [\"*@Spam.Example\", \" Bad@Example.com \"]\n",
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let r = l.config.risk;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(r.is_blocked_ip(ip("203.0.113.200")));
    assert!(r.is_blocked_ip(ip("::ffff:203.0.113.1")));
    assert!(r.is_blocked_ip(ip("2001:db8::1")));
    assert!(!r.is_blocked_ip(ip("2001:db8::2")));
    assert!(!r.is_blocked_ip(ip("203.0.114.1")));
    assert!(r.is_blocked_email("anyone@spam.example"));
    assert!(r.is_blocked_email("BAD@example.COM"));
    assert!(!r.is_blocked_email("good@example.com"));
    assert!(!r.is_blocked_email("x@notspam.example"));
}

#[test]
fn bad_risk_values_name_the_key() {
    let e = parse_err("[risk]\nblocked_emails = [\"spam.example\"]\n");
    assert!(
        e.contains("risk.blocked_emails") && e.contains("spam.example"),
        "{e}"
    );
    let e = parse_err("[risk]\nblocked_emails = [\"a*@b.com\"]\n");
    assert!(e.contains("risk.blocked_emails"), "{e}");
    let e = parse_err("[risk]\nblocked_ips = [\"10.0.0.0/33\"]\n");
    assert!(
        e.contains("risk.blocked_ips") && e.contains("10.0.0.0/33"),
        "{e}"
    );
    let e = parse_err("[risk]\nmax_pending_orders_per_ip = 0\n");
    assert!(
        e.contains("risk.max_pending_orders_per_ip") && e.contains("between 1"),
        "{e}"
    );
}

#[test]
fn deprecated_shop_keys_still_work_with_a_warning() {
    let l = parse("[shop]\norders_per_minute = 7\ntrust_proxy_headers = true\n");
    assert_eq!(l.config.risk.orders_per_minute_per_ip, 7);
    assert!(l.config.shop.trust_proxy_headers);
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("shop.orders_per_minute")
                && w.contains("risk.orders_per_minute_per_ip")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings.iter().any(|w| w.contains("shop.trust_proxy_headers")
            && w.contains("server.trusted_proxies")),
        "{:?}",
        l.warnings
    );
    // The new key wins.
    let l = parse("[shop]\norders_per_minute = 7\n[risk]\norders_per_minute_per_ip = 12\n");
    assert_eq!(l.config.risk.orders_per_minute_per_ip, 12);
    assert!(
        l.warnings.iter().any(|w| w.contains("ignored")),
        "{:?}",
        l.warnings
    );
    let e = parse_err("[shop]\norders_per_minute = 0\n");
    assert!(e.contains("shop.orders_per_minute"), "{e}");
}

#[test]
fn metrics_token_is_read_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics-token"), "s3cret-metrics\n").unwrap();
    let toml = format!(
        "[metrics]\ntoken_file = \"{}\"\n",
        dir.path().join("metrics-token").display()
    );
    let m = parse(&toml).config.metrics;
    assert_eq!(m.token.as_ref().map(|t| t.expose()), Some("s3cret-metrics"));
    assert!(!format!("{m:?}").contains("s3cret"));
    let e = parse_err("[metrics]\ntoken_file = \"/nonexistent/kami-metrics-token\"\n");
    assert!(e.contains("metrics.token_file"), "{e}");
}
