//! `[[alerts]]` and `[alerting]`: defaults, each kind's keys, `*_file` secrets, and errors that
//! name the key without showing a secret.

use kami_store::AlertEvent;

use super::super::*;
use super::{parse, parse_err};

#[test]
fn alerting_defaults_and_ranges() {
    let c = parse("").config;
    assert!(c.alerts.is_empty());
    assert_eq!(c.alerting, AlertingConfig::default());
    assert_eq!(
        (
            c.alerting.evaluate_seconds,
            c.alerting.success_rate_drop_percent,
            c.alerting.min_orders,
            c.alerting.silent_min_minutes,
            c.alerting.silent_expected_orders,
            c.alerting.retry_base_seconds,
        ),
        (60, 50, 20, 30, 10, 30)
    );
    let e = parse_err("[alerting]\nsuccess_rate_drop_percent = 0\n");
    assert!(
        e.contains("alerting.success_rate_drop_percent") && e.contains("between 1 and 100"),
        "{e}"
    );
    let e = parse_err("[alerting]\nmin_orders = \"many\"\n");
    assert!(e.contains("alerting.min_orders"), "{e}");
}

#[test]
fn each_kind_with_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("tg");
    std::fs::write(&token, "123:abc\n").unwrap();
    let toml = format!(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"https://ops.example.com/kami\"\nsecret = \"s3\"\n\
         events = [\"channel_down\", \"low_stock\"]\n\
         [[alerts]]\nkind = \"telegram\"\nbot_token_file = \"{}\"\nchat_id = -100\n\
         [[alerts]]\nkind = \"email\"\nto = [\"a@example.com\", \"Ops <b@example.com>\"]\n",
        token.display()
    );
    let c = parse(&toml).config;
    assert_eq!(c.alerts.len(), 3);
    assert_eq!(
        c.alerts[0].events,
        [AlertEvent::ChannelDown, AlertEvent::LowStock]
    );
    match &c.alerts[0].sink {
        AlertSink::Webhook { url, secret } => {
            assert_eq!(url.as_str(), "https://ops.example.com/kami");
            assert_eq!(secret.expose(), "s3");
        }
        other => panic!("{other:?}"),
    }
    match &c.alerts[1].sink {
        AlertSink::Telegram {
            api_base,
            bot_token,
            chat_id,
        } => {
            assert_eq!(api_base.as_str(), "https://api.telegram.org/");
            assert_eq!(bot_token.expose(), "123:abc");
            assert_eq!(chat_id, "-100");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.alerts[1].events.len(),
        AlertEvent::ALL.len(),
        "default: all"
    );
    match &c.alerts[2].sink {
        AlertSink::Email { to } => assert_eq!(to.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{:?}", c.alerts).contains("s3\""),
        "secrets hidden from Debug"
    );
}

#[test]
fn broken_targets_name_the_key() {
    for (toml, key, words) in [
        ("[[alerts]]\nurl = \"https://x\"\n", "alerts[0].kind", "required"),
        ("[[alerts]]\nkind = \"pager\"\n", "alerts[0].kind", "unknown alert kind `pager`"),
        ("[[alerts]]\nkind = \"webhook\"\nsecret = \"s\"\n", "alerts[0].url", "required"),
        ("[[alerts]]\nkind = \"webhook\"\nurl = \"ftp://x/y\"\nsecret = \"s\"\n", "alerts[0].url", "http:// or https://"),
        ("[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\n", "alerts[0].secret", "required"),
        ("[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\nsecret = \"s\"\nevents = [\"fire\"]\n", "alerts[0].events", "unknown event `fire`"),
        ("[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\nsecret = \"s\"\nevents = []\n", "alerts[0].events", "at least one"),
        ("[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\nsecret = \"s\"\nchat_id = 1\n", "alerts[0].chat_id", "does not apply"),
        ("[[alerts]]\nkind = \"telegram\"\nbot_token = \"1:a\"\n", "alerts[0].chat_id", "required"),
        ("[[alerts]]\nkind = \"telegram\"\nchat_id = 1\n", "alerts[0].bot_token", "required"),
        ("[[alerts]]\nkind = \"telegram\"\nbot_token = \"1:a\"\nchat_id = 1\napi_base = \"nope\"\n", "alerts[0].api_base", "not a URL"),
        ("[[alerts]]\nkind = \"email\"\n", "alerts[0].to", "required"),
        ("[[alerts]]\nkind = \"email\"\nto = \"not an address\"\n", "alerts[0].to", "not a mail address"),
    ] {
        let e = parse_err(toml);
        assert!(e.contains(key) && e.contains(words), "{toml}: {e}");
    }
    let e = parse_err(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\nsecret = \"s\"\nsecret_file = \"f\"\n",
    );
    assert!(
        e.contains("alerts[0].secret") && e.contains("set only one"),
        "{e}"
    );
    let e = parse_err(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\nsecret_file = \"/nonexistent/alert\"\n",
    );
    assert!(
        e.contains("alerts[0].secret_file") && e.contains("/nonexistent/alert"),
        "{e}"
    );
    // A wrongly typed secret is named, its value not shown.
    let e =
        parse_err("[[alerts]]\nkind = \"webhook\"\nurl = \"https://x\"\nsecret = [\"hunter2\"]\n");
    assert!(
        e.contains("alerts[0].secret") && !e.contains("hunter2"),
        "{e}"
    );
}
