//! Unit tests of main.rs: the CLI and the run summary.

use super::*;

#[test]
fn cli_is_consistent() {
    use clap::CommandFactory;
    Args::command().debug_assert();
}

#[test]
fn defaults_and_key_count() {
    let a = Args::try_parse_from(["kami-bench"]).expect("parse");
    assert_eq!(a.buyers, 64);
    assert_eq!(a.orders, 5000);
    assert_eq!(a.key_count(), 5500);
    assert_eq!(a.calibrate_commits, 3000);
    assert_eq!(a.commits_per_order, 2.0);
    assert!(a.kami.ends_with("target/release/kami"));
    a.validate().expect("valid");

    let a =
        Args::try_parse_from(["kami-bench", "--orders", "7", "--quantity", "3"]).expect("parse");
    assert_eq!(a.key_count(), 21 + 3);

    let a =
        Args::try_parse_from(["kami-bench", "--rate", "100", "--duration", "10"]).expect("parse");
    assert_eq!(a.planned_orders(), 1000);
    assert_eq!(a.key_count(), 1100);
    assert_eq!(a.concurrency(), 1024);
}

#[test]
fn cli_rejects_bad_combinations() {
    assert!(
        Args::try_parse_from(["kami-bench", "--target", "http://x"]).is_err()
            || std::env::var_os("KAMI_ADMIN_TOKEN").is_some()
    );
    assert!(Args::try_parse_from(["kami-bench", "--duration", "5"]).is_err());
    assert!(Args::try_parse_from(["kami-bench", "--pid", "5"]).is_err());
    let a = Args::try_parse_from(["kami-bench", "--rate", "0"]).expect("parse");
    assert!(a.validate().is_err());
}

#[test]
fn failover_flags() {
    let parse = |extra: &[&str]| {
        Args::try_parse_from(std::iter::once("kami-bench").chain(extra.iter().copied()))
    };
    // The percentage is 0 to 100; the other failover flags need it.
    assert!(parse(&["--failover-primary-fail", "101"]).is_err());
    assert!(parse(&["--single-channel"]).is_err());
    assert!(parse(&["--failover-fault", "http502"]).is_err());
    // Only the Alipay QR flavour calls the gateway when the order is created.
    let a = parse(&["--method", "alipay", "--failover-primary-fail", "50"]).expect("parse");
    a.validate().expect("valid");
    assert_eq!(
        (a.failover_primary_fail, a.failover_fault, a.failover_seed),
        (Some(50), proxy::Fault::Drop, 11)
    );
    for bad in [
        &["--failover-primary-fail", "50"][..],
        &[
            "--method",
            "alipay",
            "--device",
            "mobile",
            "--failover-primary-fail",
            "0",
        ],
        &["--method", "wxpay", "--failover-primary-fail", "0"],
    ] {
        assert!(parse(bad).expect("parse").validate().is_err(), "{bad:?}");
    }
    let a = parse(&[
        "--method",
        "alipay",
        "--failover-primary-fail",
        "0",
        "--single-channel",
    ])
    .expect("parse");
    assert!(a.single_channel);
    a.validate().expect("valid");
}

#[test]
fn sqlite_dirs() {
    assert_eq!(
        sqlite_dir("sqlite:///tmp/x/data/kami.db"),
        Some(PathBuf::from("/tmp/x/data"))
    );
    assert_eq!(sqlite_dir("sqlite://kami.db"), Some(PathBuf::from(".")));
}

#[test]
fn rand_hex_is_hex() {
    let h = rand_hex(12);
    assert_eq!(h.len(), 12);
    assert!(h
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
}

#[test]
fn summary_counts() {
    let mk = |i, paid, outcome, us: Option<u64>| OrderRecord {
        index: i,
        order_no: Some(format!("K{i}")),
        channel: None,
        paid,
        create_us: us,
        pay_us: us,
        deliver_us: us.filter(|_| paid),
        total_us: us.filter(|_| paid),
        polls: 2,
        outcome,
    };
    let recs = vec![
        mk(
            0,
            true,
            Outcome::Delivered {
                cards: vec!["a".into()],
            },
            Some(1000),
        ),
        mk(
            1,
            true,
            Outcome::Delivered {
                cards: vec!["b".into()],
            },
            Some(3000),
        ),
        mk(2, false, Outcome::OutOfStock, Some(10)),
        mk(
            3,
            false,
            Outcome::Failed {
                kind: "pay_http_500".into(),
                message: "boom".into(),
            },
            None,
        ),
    ];
    let mut report = empty_report("spawn", "sqlite");
    summarize_records(&recs, 0, 2.0, &mut report);
    let c = report.orders.as_ref().expect("counts");
    assert_eq!(
        (c.attempted, c.delivered, c.paid, c.out_of_stock, c.failed),
        (4, 2, 2, 1, 1)
    );
    assert_eq!(report.orders_per_s, Some(1.0));
    let l = report.latency_ms.as_ref().expect("latency");
    assert_eq!(l.create.as_ref().map(|s| s.count), Some(2));
    assert_eq!(l.end_to_end.as_ref().map(|s| s.max_ms), Some(3.0));
    assert_eq!(l.mean_polls, Some(2.0));
    assert_eq!(report.errors["pay_http_500"].count, 1);
}
