//! `[smtp]`: defaults, every key, errors and the password from a file or the environment.

use std::path::Path;

use super::super::*;
use super::{env, load, load_env, parse, parse_err, DESIGN_EXAMPLE, SMTP_MIN};

fn smtp_of(toml: &str) -> SmtpConfig {
    let loaded = parse(toml);
    match loaded.config.smtp {
        Some(s) => s,
        None => panic!("no [smtp] in {toml}"),
    }
}

#[test]
fn smtp_is_absent_without_the_section() {
    assert!(parse("").config.smtp.is_none());
    assert!(parse(DESIGN_EXAMPLE).config.smtp.is_none());
    assert!(Config::default().smtp.is_none());
}

#[test]
fn smtp_defaults() {
    let loaded = parse(SMTP_MIN);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let s = smtp_of(SMTP_MIN);
    assert_eq!(s.host, "smtp.example.com");
    assert_eq!(s.tls, SmtpTls::StartTls);
    assert_eq!(s.port, 587);
    assert_eq!(s.username, None);
    assert_eq!(s.password, None);
    assert_eq!(s.from.email.to_string(), "shop@example.com");
    assert_eq!(s.from.name.as_deref(), Some("Shop"));
    assert_eq!(s.ca_file, None);
    assert_eq!(s.timeout_seconds, 15);
    assert_eq!(s.retry_base_seconds, 30);
    // The default port follows the TLS mode; an explicit port wins.
    assert_eq!(smtp_of(&format!("{SMTP_MIN}tls = \"tls\"\n")).port, 465);
    assert_eq!(smtp_of(&format!("{SMTP_MIN}tls = \"none\"\n")).port, 25);
    let s = smtp_of(&format!("{SMTP_MIN}tls = \"tls\"\nport = 2465\n"));
    assert_eq!((s.tls, s.port), (SmtpTls::Tls, 2465));
    // A bare address and a non-ASCII display name are mailboxes too.
    let s = smtp_of("[smtp]\nhost = \"127.0.0.1\"\nfrom = \"shop@example.com\"\n");
    assert_eq!(s.from.name, None);
    let s = smtp_of("[smtp]\nhost = \"::1\"\nfrom = \"卡密小店 <shop@example.com>\"\n");
    assert_eq!(s.from.name.as_deref(), Some("卡密小店"));
}

#[test]
fn smtp_every_key() {
    let toml = "[smtp]\nhost = \" mail.example.com \"\nport = 2587\ntls = \"starttls\"\n\
                username = \"kami\"\npassword = \"hunter2\"\nfrom = \"shop@example.com\"\n\
                ca_file = \"certs/ca.pem\"\ntimeout_seconds = 5\nretry_base_seconds = 1\n";
    let loaded = parse(toml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let s = smtp_of(toml);
    assert_eq!(s.host, "mail.example.com");
    assert_eq!(s.port, 2587);
    assert_eq!(s.username.as_deref(), Some("kami"));
    assert_eq!(s.password.as_ref().map(Secret::expose), Some("hunter2"));
    assert_eq!(s.ca_file.as_deref(), Some(Path::new("./certs/ca.pem")));
    assert_eq!((s.timeout_seconds, s.retry_base_seconds), (5, 1));
    // The password never shows in Debug.
    let debug = format!("{:?}", parse(toml).config);
    assert!(!debug.contains("hunter2"), "{debug}");
    // Unknown keys in the section are warned about.
    let loaded = parse(&format!("{SMTP_MIN}pasword = \"x\"\n"));
    assert_eq!(
        loaded.warnings,
        vec!["unknown configuration key `smtp.pasword` (ignored)".to_owned()]
    );
}

#[test]
fn smtp_errors_name_the_key() {
    assert_eq!(
        parse_err("[smtp]\nfrom = \"shop@example.com\"\n"),
        "invalid `smtp.host`: required when [smtp] is present (the mail server's host name)"
    );
    let msg = parse_err("[smtp]\nhost = \"smtp.example.com\"\n");
    assert!(msg.starts_with("invalid `smtp.from`: required"), "{msg}");
    for host in ["smtp://smtp.example.com", "smtp.example.com:587", "a b"] {
        let msg = parse_err(&format!("[smtp]\nhost = \"{host}\"\nfrom = \"a@b.c\"\n"));
        assert!(msg.starts_with("invalid `smtp.host`: "), "{msg}");
        assert!(msg.contains(host), "{msg}");
    }
    let msg = parse_err(&format!("{SMTP_MIN}tls = \"ssl\"\n"));
    assert_eq!(
        msg,
        "invalid `smtp.tls`: `ssl` is not one of: starttls, tls, none"
    );
    for port in ["0", "65536"] {
        let msg = parse_err(&format!("{SMTP_MIN}port = {port}\n"));
        assert_eq!(
            msg,
            format!("invalid `smtp.port`: must be between 1 and 65535, got {port}")
        );
    }
    let msg = parse_err("[smtp]\nhost = \"h\"\nfrom = \"not an address\"\n");
    assert!(
        msg.starts_with("invalid `smtp.from`: `not an address` is not a mail address"),
        "{msg}"
    );
    let msg = parse_err(&format!("{SMTP_MIN}timeout_seconds = 0\n"));
    assert_eq!(
        msg,
        "invalid `smtp.timeout_seconds`: must be between 1 and 300, got 0"
    );
    let msg = parse_err(&format!("{SMTP_MIN}retry_base_seconds = 7200\n"));
    assert_eq!(
        msg,
        "invalid `smtp.retry_base_seconds`: must be between 1 and 3600, got 7200"
    );
    // Credentials come in pairs.
    let msg = parse_err(&format!("{SMTP_MIN}username = \"kami\"\n"));
    assert!(msg.starts_with("invalid `smtp.password`: "), "{msg}");
    let msg = parse_err(&format!("{SMTP_MIN}password = \"s3cret\"\n"));
    assert!(msg.starts_with("invalid `smtp.username`: "), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
    assert_eq!(
        parse_err(&format!(
            "{SMTP_MIN}username = \"u\"\npassword = \"p\"\npassword_file = \"/x\"\n"
        )),
        "both `smtp.password` and `smtp.password_file` are set; set only one"
    );
    // A password of the wrong type is not echoed.
    let msg = parse_err(&format!(
        "{SMTP_MIN}username = \"u\"\npassword = [\"hunter2\"]\n"
    ));
    assert!(msg.contains("`smtp.password`"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn smtp_plaintext_password_is_warned_about() {
    let loaded = parse(&format!(
        "{SMTP_MIN}tls = \"none\"\nusername = \"u\"\npassword = \"p\"\nca_file = \"ca.pem\"\n"
    ));
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("unencrypted"),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.warnings[1].contains("`ca_file` has no effect"));
}

#[test]
fn smtp_password_file_and_env_overrides() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = std::fs::write(dir.path().join("smtp-pass"), "  0123456789\n") {
        panic!("{e}");
    }
    if let Err(e) = std::fs::write(
        dir.path().join("kami.toml"),
        format!(
            "{SMTP_MIN}username = \"kami\"\npassword_file = \"smtp-pass\"\nca_file = \"ca.pem\"\n"
        ),
    ) {
        panic!("{e}");
    }
    let loaded = match load(Some(&dir.path().join("kami.toml")), Vec::new()) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let s = loaded.config.smtp.unwrap_or_else(|| panic!("no smtp"));
    assert_eq!(s.password.as_ref().map(Secret::expose), Some("0123456789"));
    assert!(s
        .ca_file
        .is_some_and(|p| p.starts_with(&loaded.config.base_dir)));

    // The whole section from the environment; numeric-looking strings stay strings.
    let loaded = load(
        None,
        env(&[
            ("KAMI__SMTP__HOST", "127.0.0.1"),
            ("KAMI__SMTP__PORT", "2525"),
            ("KAMI__SMTP__TLS", "none"),
            ("KAMI__SMTP__FROM", "Shop <shop@example.com>"),
            ("KAMI__SMTP__USERNAME", "10001"),
            ("KAMI__SMTP__PASSWORD", "123456"),
            ("KAMI__SMTP__RETRY_BASE_SECONDS", "1"),
        ]),
    );
    let s = match loaded {
        Ok(l) => l.config.smtp.unwrap_or_else(|| panic!("no smtp")),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        (s.host.as_str(), s.port, s.tls),
        ("127.0.0.1", 2525, SmtpTls::None)
    );
    assert_eq!(s.username.as_deref(), Some("10001"));
    assert_eq!(s.password.as_ref().map(Secret::expose), Some("123456"));
    assert_eq!(s.retry_base_seconds, 1);
    // An environment error names the variable.
    match load_env(SMTP_MIN, &[("KAMI__SMTP__TLS", "ssl")]) {
        Ok(_) => panic!("accepted"),
        Err(e) => assert!(e.to_string().contains("KAMI__SMTP__TLS"), "{e}"),
    }
    // A missing password file names the key and the path.
    let msg = parse_err(&format!(
        "{SMTP_MIN}username = \"u\"\npassword_file = \"{}\"\n",
        dir.path().join("nope").display()
    ));
    assert!(
        msg.starts_with("cannot read `smtp.password_file` file"),
        "{msg}"
    );
}
