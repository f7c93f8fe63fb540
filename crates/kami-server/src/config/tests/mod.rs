//! The configuration's tests: defaults, every section, environment overrides, channel
//! settings and the wording of errors.

use std::path::{Path, PathBuf};

use kami_core::Method;
use url::Url;

use super::*;

mod alerts;
mod channels;
mod fx;
mod risk;
mod routing;
mod security;
mod smtp;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn alipay(c: &ChannelConfig) -> &AlipaySettings {
    match &c.settings {
        ChannelSettings::Alipay(s) => s,
        other => panic!("not alipay: {other:?}"),
    }
}

pub(super) fn sandbox(c: &ChannelConfig) -> &SandboxSettings {
    match &c.settings {
        ChannelSettings::Sandbox(s) => s,
        other => panic!("not sandbox: {other:?}"),
    }
}

pub(super) fn parse(s: &str) -> Loaded {
    match Config::from_toml_str(s) {
        Ok(l) => l,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub(super) fn parse_err(s: &str) -> String {
    match Config::from_toml_str(s) {
        Ok(l) => panic!("expected an error, got {:?}", l.config),
        Err(e) => e.to_string(),
    }
}

pub(super) fn load_env(toml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load_text(
        Some(toml),
        "kami.toml",
        false,
        PathBuf::from("."),
        env(vars),
    )
}

pub(super) const SANDBOX: &str = r#"
[[channels]]
id = "sb"
kind = "sandbox"
methods = ["sandbox"]
"#;

pub(super) const DESIGN_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://shop.example.com"   # base for notify_url / return_url sent to gateways

[database]
url = "sqlite://data/kami.db"             # or "postgres://user@host/dbname"

[orders]
expire_minutes = 15

[[channels]]
id = "ali-main"                # stable; appears in /pay/notify/ali-main
kind = "alipay"                # alipay | wechatpay | epay | sandbox  (more kinds later)
methods = ["alipay"]           # buyer-facing methods this channel serves
priority = 10                  # routing preference; higher first
# kind-specific keys, e.g. for alipay:
gateway = "https://openapi.alipay.com/gateway.do"
app_id = "2021000000000000"
app_private_key_file = "keys/app_private_key.pem"     # PKCS#1 or PKCS#8, PEM or bare base64
alipay_public_key_file = "keys/alipay_public_key.pem" # SPKI, PEM or bare base64
sign_type = "RSA2"
mode = "auto"                  # qr (当面付 precreate) | page | wap | auto
"#;

pub(super) const ALIPAY_MIN: &str = r#"
[[channels]]
id = "ali"
kind = "alipay"
methods = ["alipay"]
app_id = "2021000000000000"
app_private_key_file = "keys/app.pem"
alipay_public_key_file = "keys/ali.pem"
"#;

#[test]
fn defaults_without_a_file() {
    let loaded = match load(None, Vec::new()) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert!(loaded.warnings.is_empty());
    let c = loaded.config;
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.public_url, None);
    assert_eq!(c.server.data_dir, PathBuf::from("./data"));
    assert_eq!(c.database.url, "sqlite://data/kami.db");
    assert_eq!(c.database.max_connections, 16);
    assert_eq!(c.orders.expire_minutes, 15);
    assert!(c.channels.is_empty());
    assert!(c.base_dir.is_absolute());

    let d = Config::default();
    assert_eq!(d.server, c.server);
    assert_eq!(d.database, c.database);
    assert_eq!(d.orders, c.orders);
    assert!(d.channels.is_empty());
    assert_eq!(parse("").config, d);
}

#[test]
fn design_example_parses() {
    let loaded = parse(DESIGN_EXAMPLE);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(
        c.server.public_url.as_ref().map(Url::as_str),
        Some("https://shop.example.com/")
    );
    assert_eq!(c.channels.len(), 1);
    let ch = &c.channels[0];
    assert_eq!(ch.id.as_str(), "ali-main");
    assert_eq!(ch.kind, ChannelKind::Alipay);
    assert_eq!(ch.methods, vec![Method::Alipay]);
    assert_eq!(ch.priority, 10);
    assert!(ch.enabled);
    let a = alipay(ch);
    assert_eq!(a.app_id, "2021000000000000");
    assert_eq!(a.sign_type, kami_pay::alipay::AlipaySignType::Rsa2);
    assert_eq!(a.mode, kami_pay::alipay::AlipayMode::Auto);
    assert_eq!(a.gateway, "https://openapi.alipay.com/gateway.do");
    // Relative key paths resolve against base_dir (here ".").
    assert_eq!(
        a.app_private_key_file.as_deref(),
        Some(Path::new("./keys/app_private_key.pem"))
    );
    assert!(c.channel("ali-main").is_some());
    assert!(c.channel("nope").is_none());
}

#[test]
fn env_overrides_scalars() {
    let loaded = load_env(
        DESIGN_EXAMPLE,
        &[
            ("KAMI__ORDERS__EXPIRE_MINUTES", "30"),
            ("KAMI__SERVER__LISTEN", "0.0.0.0:9000"),
            ("KAMI__database__Max_Connections", "4"),
            ("KAMI__SERVER__PUBLIC_URL", "\"http://localhost:9000\""),
            ("PATH", "/usr/bin"),
            ("KAMI_SERVER__LISTEN", "not ours"),
        ],
    );
    let c = match loaded {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.orders.expire_minutes, 30);
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.database.max_connections, 4);
    assert_eq!(
        c.server.public_url.as_ref().map(Url::as_str),
        Some("http://localhost:9000/")
    );
}

#[test]
fn env_overrides_without_a_file_create_sections() {
    let loaded = load(None, env(&[("KAMI__ORDERS__EXPIRE_MINUTES", "60")]));
    match loaded {
        Ok(l) => assert_eq!(l.config.orders.expire_minutes, 60),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_env_paths_name_the_variable() {
    for (var, expect) in [
        ("KAMI__CHANNELS__5__ID", "out of range"),
        ("KAMI__SERVER__LISTEN__PORT", "not a table"),
        ("KAMI__CHANNELS__FIRST__ID", "numeric index"),
        ("KAMI__SERVER____LISTEN", "empty path segment"),
        ("KAMI__", "empty path segment"),
    ] {
        match load_env(DESIGN_EXAMPLE, &[(var, "x")]) {
            Ok(_) => panic!("{var} accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(matches!(e, ConfigError::Env { .. }), "{msg}");
                assert!(msg.contains(&format!("`{var}`")), "{msg}");
                assert!(msg.contains(expect), "{msg}");
                assert!(!msg.contains("`x`"), "{msg}");
            }
        }
    }
    let both = load_env(
        "",
        &[
            ("KAMI__SERVER__LISTEN", "0.0.0.0:1"),
            ("KAMI__server__listen", "0.0.0.0:2"),
        ],
    );
    match both {
        Ok(_) => panic!("ambiguous overrides accepted"),
        Err(e) => assert!(e.to_string().contains("also sets"), "{e}"),
    }
}

#[test]
fn unknown_keys_are_warnings() {
    let toml = format!(
        "typo_section = 1\n[server]\nlistn = \"x\"\n[orders]\nexpire_minutes = 5\n{SANDBOX}colour = \"red\"\n"
    );
    let loaded = match load_env(&toml, &[("KAMI__DATABASE__POOL", "3")]) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let w = loaded.warnings.join("\n");
    assert!(
        w.contains("unknown configuration key `server.listn` (ignored)"),
        "{w}"
    );
    assert!(
        w.contains("unknown configuration key `typo_section` (ignored)"),
        "{w}"
    );
    assert!(
        w.contains("unknown configuration key `channels[0].colour` (ignored)"),
        "{w}"
    );
    assert!(
        w.contains(
            "`database.pool` (ignored) (set by environment variable `KAMI__DATABASE__POOL`)"
        ),
        "{w}"
    );
    assert_eq!(loaded.warnings.len(), 4, "{w}");
    assert_eq!(loaded.config.orders.expire_minutes, 5);
}

#[test]
fn type_errors_name_the_key() {
    assert_eq!(
        parse_err("[orders]\nexpire_minutes = \"x\"\n"),
        "configuration error at `orders.expire_minutes`: invalid type: string \"x\", expected u32"
    );
    let msg = parse_err(&format!("{SANDBOX}priority = \"high\"\n"));
    assert!(
        msg.starts_with("configuration error at `channels[0].priority`"),
        "{msg}"
    );
    let msg = parse_err("[database]\nmax_connections = -1\n");
    assert!(msg.contains("`database.max_connections`"), "{msg}");
    // From the environment: the variable is named.
    match load_env("", &[("KAMI__ORDERS__EXPIRE_MINUTES", "soon")]) {
        Ok(_) => panic!("accepted"),
        Err(e) => assert_eq!(
            e.to_string(),
            "configuration error at `orders.expire_minutes`: invalid type: string \"soon\", \
             expected u32 (set by environment variable `KAMI__ORDERS__EXPIRE_MINUTES`)"
        ),
    }
    // Secret values are not echoed.
    let msg = parse_err(&format!("{SANDBOX}secret = true\n"));
    assert!(msg.contains("`channels[0].secret`"), "{msg}");
    assert!(!msg.contains("true"), "{msg}");
}

#[test]
fn ranges_are_checked() {
    assert_eq!(
        parse_err("[orders]\nexpire_minutes = 0\n"),
        "invalid `orders.expire_minutes`: must be between 1 and 1440, got 0"
    );
    assert!(parse_err("[orders]\nexpire_minutes = 1441\n").contains("got 1441"));
    assert_eq!(
        parse("[orders]\nexpire_minutes = 1440\n")
            .config
            .orders
            .expire_minutes,
        1440
    );
    assert!(parse_err("[database]\nmax_connections = 0\n").contains("`database.max_connections`"));
    assert!(parse_err("[database]\nmax_connections = 201\n").contains("between 1 and 200"));
}

#[test]
fn bad_listen_address() {
    let msg = parse_err("[server]\nlisten = \"localhost\"\n");
    assert!(
        msg.starts_with("invalid `server.listen`: `localhost`"),
        "{msg}"
    );
    assert!(msg.contains("127.0.0.1:8080"), "{msg}");
}

#[test]
fn public_url_must_be_http_without_query() {
    for (url, expect) in [
        ("ftp://example.com", "http:// or https://"),
        ("https://example.com/?a=1", "query"),
        ("https://example.com/#x", "fragment"),
        ("not a url", "not a valid URL"),
    ] {
        let msg = parse_err(&format!("[server]\npublic_url = \"{url}\"\n"));
        assert!(msg.starts_with("invalid `server.public_url`"), "{msg}");
        assert!(msg.contains(expect), "{msg}");
    }
    let c = parse("[server]\npublic_url = \"http://shop.test:8080/base/\"\n").config;
    assert_eq!(
        c.server.public_url.as_ref().map(Url::as_str),
        Some("http://shop.test:8080/base/")
    );
}

#[test]
fn database_url_scheme_is_checked_without_leaking_it() {
    let msg = parse_err("[database]\nurl = \"mysql://root:hunter2@db/kami\"\n");
    assert!(msg.starts_with("invalid `database.url`"), "{msg}");
    assert!(msg.contains("got scheme `mysql`"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = parse_err("[database]\nurl = \"hunter2\"\n");
    assert!(!msg.contains("hunter2"), "{msg}");
    for ok in ["sqlite://x.db", "postgres://u@h/d", "postgresql://u@h/d"] {
        assert_eq!(
            parse(&format!("[database]\nurl = \"{ok}\"\n"))
                .config
                .database
                .url,
            ok
        );
    }
}

#[test]
fn database_debug_hides_the_password() {
    let c = parse(
        "[database]\nurl = \"postgres://kami:hunter2@db/kami?password=pw2&sslmode=require\"\n",
    )
    .config;
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("pw2"), "{dbg}");
    assert!(dbg.contains("sslmode=require"), "{dbg}");
    assert_eq!(
        c.database.url,
        "postgres://kami:hunter2@db/kami?password=pw2&sslmode=require"
    );
}

#[test]
fn url_file_is_read_trimmed_and_relative_to_the_config_file() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let write = |name: &str, text: &str| {
        if let Err(e) = std::fs::write(dir.path().join(name), text) {
            panic!("{e}");
        }
    };
    write("db-url", "  postgres://kami:hunter2@db/kami\n\n");
    write("sb-secret", "s3cr3t\n");
    write(
        "kami.toml",
        &format!("[database]\nurl_file = \"db-url\"\n{SANDBOX}secret_file = \"sb-secret\"\n"),
    );
    let loaded = match load(Some(&dir.path().join("kami.toml")), Vec::new()) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.database.url, "postgres://kami:hunter2@db/kami");
    let sb = sandbox(&c.channels[0]);
    assert_eq!(sb.secret.as_ref().map(Secret::expose), Some("s3cr3t"));
    assert_eq!(
        sb.secret_file.as_deref(),
        Some(dir.path().join("sb-secret").as_path())
    );
    assert!(c
        .base_dir
        .ends_with(dir.path().file_name().unwrap_or_default()));

    // The file can also come from the environment.
    let loaded = load(
        Some(&dir.path().join("kami.toml")),
        env(&[("KAMI__CHANNELS__0__SECRET_FILE", "db-url")]),
    );
    match loaded {
        Ok(l) => assert_eq!(
            sandbox(&l.config.channels[0])
                .secret
                .as_ref()
                .map(Secret::expose),
            Some("postgres://kami:hunter2@db/kami")
        ),
        Err(e) => panic!("{e}"),
    }

    // Missing and empty secret files.
    write("empty", " \n");
    let missing = format!(
        "[database]\nurl_file = \"{}\"\n",
        dir.path().join("nope").display()
    );
    let msg = parse_err(&missing);
    assert!(
        msg.starts_with("cannot read `database.url_file` file"),
        "{msg}"
    );
    assert!(msg.contains("nope"), "{msg}");
    let empty = format!(
        "[database]\nurl_file = \"{}\"\n",
        dir.path().join("empty").display()
    );
    assert!(parse_err(&empty).contains("is empty"));
}

#[test]
fn url_and_url_file_together_are_an_error() {
    let msg = parse_err("[database]\nurl = \"sqlite://a.db\"\nurl_file = \"/x\"\n");
    assert_eq!(
        msg,
        "both `database.url` and `database.url_file` are set; set only one"
    );
    match load_env(
        "[database]\nurl = \"sqlite://a.db\"\n",
        &[("KAMI__DATABASE__URL_FILE", "/run/secrets/db")],
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => assert!(e.to_string().contains("KAMI__DATABASE__URL_FILE"), "{e}"),
    }
    let msg = parse_err(&format!("{SANDBOX}secret = \"a\"\nsecret_file = \"/b\"\n"));
    assert!(msg.contains("`channels[0].secret_file`"), "{msg}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let path = Path::new("/nonexistent/kami-config-test.toml");
    match load(Some(path), Vec::new()) {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(matches!(e, ConfigError::ReadFile { .. }));
            assert!(msg.contains("/nonexistent/kami-config-test.toml"), "{msg}");
        }
    }
}

#[test]
fn secret_debug_is_hidden() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.expose(), "hunter2");
    let c = parse(&format!("{SANDBOX}secret = \"hunter2\"\n")).config;
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn toml_syntax_errors_give_the_position() {
    let err = match Config::from_toml_str("[server]\nlisten = \"127.0.0.1:8080\"\nbroken = = 1\n") {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        matches!(err, ConfigError::Syntax { line: Some(3), .. }),
        "{msg}"
    );
    assert!(
        msg.starts_with("TOML syntax error in configuration at line 3, column"),
        "{msg}"
    );

    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let path = dir.path().join("kami.toml");
    if let Err(e) = std::fs::write(&path, "[orders]\nexpire_minutes = 1\nexpire_minutes = 2\n") {
        panic!("{e}");
    }
    match load(Some(&path), Vec::new()) {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("line 3"), "{msg}");
        }
    }
}

pub(super) const SMTP_MIN: &str =
    "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Shop <shop@example.com>\"\n";

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let secret = "hunter2-very-secret";
    let loaded = parse(&format!(
        "[database]\nurl = \"postgres://kami:{secret}@db/kami\"\n\
         [smtp]\nhost = \"smtp.example.com\"\nfrom = \"shop@example.com\"\n\
         username = \"u\"\npassword = \"{secret}\"\n{SANDBOX}secret = \"{secret}\"\n"
    ));
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains(secret), "{debug}");
    // Wrong types of secret keys, from the file or the environment.
    for (toml, vars) in [
        (format!("{SANDBOX}secret = [\"{secret}\"]\n"), vec![]),
        (
            SANDBOX.to_owned(),
            vec![("KAMI__CHANNELS__0__SECRET", format!("[\"{secret}\"]"))],
        ),
        (
            format!("{SMTP_MIN}username = \"u\"\npassword = {{ v = \"{secret}\" }}\n"),
            vec![],
        ),
        (
            format!("[database]\nurl = \"mysql://root:{secret}@db/kami\"\n"),
            vec![],
        ),
        (
            format!("{SANDBOX}secret = \"{secret}\"\nsecret_file = \"/nonexistent\"\n"),
            vec![],
        ),
    ] {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match load_env(&toml, &vars) {
            Ok(l) => {
                let debug = format!("{:?}", l.config);
                assert!(!debug.contains(secret), "{debug}");
            }
            Err(e) => {
                assert!(!e.to_string().contains(secret), "{e}");
                assert!(!format!("{e:?}").contains(secret), "{e:?}");
            }
        }
    }
}

#[test]
fn errors_about_a_files_values_give_its_line() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let path = dir.path().join("kami.toml");
    let load_file = |text: &str| {
        if let Err(e) = std::fs::write(&path, text) {
            panic!("{e}");
        }
        load(Some(&path), Vec::new())
    };
    let file = path.display().to_string();
    match load_file("# shop\n[orders]\nexpire_minutes = 0\n") {
        Ok(_) => panic!("accepted"),
        Err(e) => assert_eq!(
            e.to_string(),
            format!(
                "invalid `orders.expire_minutes`: must be between 1 and 1440, got 0 ({file}, line 3)"
            )
        ),
    }
    match load_file(&format!("{SANDBOX}{ALIPAY_MIN}mode = \"native\"\n")) {
        Ok(_) => panic!("accepted"),
        Err(e) => assert!(
            e.to_string().ends_with(&format!(
                "invalid `mode`: `native` is not one of: qr, page, wap, auto ({file}, line 14)"
            )),
            "{e}"
        ),
    }
    match load_file(&format!("{SANDBOX}colour = \"red\"\n")) {
        Ok(l) => assert_eq!(
            l.warnings,
            vec![format!(
                "unknown configuration key `channels[0].colour` (ignored) ({file}, line 6)"
            )]
        ),
        Err(e) => panic!("{e}"),
    }
    // The environment wins over the file, and is named instead.
    match load(Some(&path), env(&[("KAMI__CHANNELS__0__COLOUR", "blue")])) {
        Ok(l) => assert_eq!(
            l.warnings,
            vec!["unknown configuration key `channels[0].colour` (ignored) \
                  (set by environment variable `KAMI__CHANNELS__0__COLOUR`)"
                .to_owned()]
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn trusted_proxies_are_cidrs_or_addresses() {
    let c = parse("[server]\ntrusted_proxies = [\"10.1.2.3/8\", \"::1\", \"192.0.2.7\"]\n").config;
    let nets: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
    let ip = |s: &str| {
        s.parse::<std::net::IpAddr>()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())
    };
    assert!(c.server.is_trusted_proxy(ip("10.200.0.1")));
    assert!(c.server.is_trusted_proxy(ip("::ffff:192.0.2.7")));
    assert!(!c.server.is_trusted_proxy(ip("192.0.2.8")));
    assert!(!crate::config::Config::default()
        .server
        .is_trusted_proxy(ip("127.0.0.1")));
    let err = parse_err("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n");
    assert!(
        err.contains("server.trusted_proxies") && err.contains("10.0.0.0/33"),
        "{err}"
    );
}

#[test]
fn retention_keys_and_ranges() {
    let d = Config::default().retention;
    assert_eq!(
        (d.rejected_events_days, d.rejected_events_per_minute),
        (7, 30)
    );
    let c =
        parse("[retention]\nrejected_events_days = 30\nrejected_events_per_minute = 5\n").config;
    assert_eq!(c.retention.rejected_events_days, 30);
    assert_eq!(c.retention.rejected_events_ms(), 30 * 86_400_000);
    assert_eq!(c.retention.rejected_events_per_minute, 5);
    let err = parse_err("[retention]\nrejected_events_days = 0\n");
    assert!(
        err.contains("retention.rejected_events_days") && err.contains("between 1 and 3650"),
        "{err}"
    );
}

#[test]
fn server_limits_have_defaults_and_ranges() {
    let d = crate::config::Config::default().server;
    assert_eq!(
        (d.header_timeout_secs, d.body_timeout_secs, d.keepalive_secs),
        (10, 30, 60)
    );
    assert_eq!(
        (
            d.max_connections,
            d.max_connections_per_ip,
            d.max_in_flight,
            d.max_in_flight_per_ip
        ),
        (4096, 64, 1024, 16)
    );
    let c = parse(
        "[server]\nheader_timeout_secs = 2\nbody_timeout_secs = 5\nkeepalive_secs = 7\n\
         max_connections = 100\nmax_connections_per_ip = 4\nmax_in_flight = 8\n\
         max_in_flight_per_ip = 3\n",
    )
    .config
    .server;
    assert_eq!(
        (c.header_timeout_secs, c.body_timeout_secs, c.keepalive_secs),
        (2, 5, 7)
    );
    assert_eq!(
        (
            c.max_connections,
            c.max_connections_per_ip,
            c.max_in_flight,
            c.max_in_flight_per_ip
        ),
        (100, 4, 8, 3)
    );
    for (key, bad) in [
        ("header_timeout_secs", "0"),
        ("body_timeout_secs", "3601"),
        ("keepalive_secs", "0"),
        ("max_connections", "0"),
        ("max_connections_per_ip", "0"),
        ("max_in_flight", "1"),
        ("max_in_flight_per_ip", "0"),
    ] {
        let err = parse_err(&format!("[server]\n{key} = {bad}\n"));
        assert!(
            err.contains(&format!("server.{key}")) && err.contains(&format!("got {bad}")),
            "{err}"
        );
    }
}

#[test]
fn shop_timezone_is_an_iana_name() {
    assert_eq!(
        parse("").config.shop.timezone,
        "UTC",
        "UTC unless configured"
    );
    let c = parse("[shop]\ntimezone = \"Asia/Shanghai\"\n").config;
    assert_eq!(c.shop.time_zone().iana_name(), Some("Asia/Shanghai"));
    let e = parse_err("[shop]\ntimezone = \"Asia/Beijing\"\n");
    assert!(e.contains("shop.timezone"), "{e}");
    assert!(e.contains("Asia/Beijing"), "{e}");
    assert!(e.contains("IANA"), "{e}");
    let e = parse_err("[shop]\ntimezone = \"+08:00\"\n");
    assert!(e.contains("shop.timezone"), "{e}");
}

#[test]
fn console_low_stock_threshold() {
    assert_eq!(parse("").config.console.low_stock_threshold, 10);
    let c = parse("[console]\nlow_stock_threshold = 3\n").config;
    assert_eq!(c.console.low_stock_threshold, 3);
    let e = parse_err("[console]\nlow_stock_threshold = 2000000\n");
    assert!(e.contains("console.low_stock_threshold"), "{e}");
}
