//! The configuration's tests: defaults, every section, environment overrides, channel
//! settings and the wording of errors.

use std::path::{Path, PathBuf};

use kami_core::Method;
use url::Url;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn alipay(c: &ChannelConfig) -> &AlipaySettings {
    match &c.settings {
        ChannelSettings::Alipay(s) => s,
        other => panic!("not alipay: {other:?}"),
    }
}

fn wechatpay(c: &ChannelConfig) -> &WechatPaySettings {
    match &c.settings {
        ChannelSettings::Wechatpay(s) => s,
        other => panic!("not wechatpay: {other:?}"),
    }
}

fn epay(c: &ChannelConfig) -> &EpaySettings {
    match &c.settings {
        ChannelSettings::Epay(s) => s,
        other => panic!("not epay: {other:?}"),
    }
}

fn sandbox(c: &ChannelConfig) -> &SandboxSettings {
    match &c.settings {
        ChannelSettings::Sandbox(s) => s,
        other => panic!("not sandbox: {other:?}"),
    }
}

fn parse(s: &str) -> Loaded {
    match Config::from_toml_str(s) {
        Ok(l) => l,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn parse_err(s: &str) -> String {
    match Config::from_toml_str(s) {
        Ok(l) => panic!("expected an error, got {:?}", l.config),
        Err(e) => e.to_string(),
    }
}

fn load_env(toml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load_text(Some(toml), "kami.toml", PathBuf::from("."), env(vars))
}

const SANDBOX: &str = r#"
[[channels]]
id = "sb"
kind = "sandbox"
methods = ["sandbox"]
"#;

const DESIGN_EXAMPLE: &str = r#"
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

const ALIPAY_MIN: &str = r#"
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
        a.app_private_key_file,
        Path::new("./keys/app_private_key.pem")
    );
    assert!(c.channel("ali-main").is_some());
    assert!(c.channel("nope").is_none());
}

#[test]
fn every_kind_parses() {
    let toml = r#"
[[channels]]
id = "wx"
kind = "wechatpay"
methods = ["wxpay"]
mchid = 1900000001
appid = "wx123"
merchant_serial_no = "ABC"
merchant_private_key_file = "/keys/wx.pem"
apiv3_key_file = "/keys/v3"
wechatpay_public_key_file = "/keys/wxpub.pem"
wechatpay_public_key_id = "PUB_KEY_ID_0001"
mode = "native"

[[channels]]
id = "ep1"
kind = "epay"
methods = ["alipay", "wxpay", "qqpay"]
gateway = "https://pay.example.com/"
pid = 1001
key_file = "/keys/epay"
enabled = false

[[channels]]
id = "ep2"
kind = "epay"
methods = ["alipay"]
gateway = "https://pay.example.com/"
pid = "1002"
version = 2
merchant_private_key_file = "/keys/m.pem"
platform_public_key_file = "/keys/p.pem"

[[channels]]
id = "sb"
kind = "sandbox"
methods = ["sandbox"]
secret = "s3cr3t"
gateway = "http://127.0.0.1:9100"
"#;
    let loaded = parse(toml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let ch = &loaded.config.channels;
    assert_eq!(ch[0].kind, ChannelKind::Wechatpay);
    assert_eq!(wechatpay(&ch[0]).mchid, "1900000001");
    assert_eq!(wechatpay(&ch[0]).api_base, WECHATPAY_DEFAULT_API_BASE);
    assert_eq!(wechatpay(&ch[0]).apiv3_key_file, Path::new("/keys/v3"));
    assert_eq!(
        wechatpay(&ch[0]).mode,
        kami_pay::wechatpay::WechatMode::Native
    );
    assert_eq!(epay(&ch[1]).pid, "1001");
    assert_eq!(epay(&ch[1]).version, EpayVersion::V1);
    assert_eq!(epay(&ch[1]).mode, kami_pay::epay::EpayFlow::Submit);
    assert!(!ch[1].enabled);
    assert_eq!(
        ch[1].methods,
        vec![Method::Alipay, Method::Wxpay, Method::Qqpay]
    );
    assert_eq!(epay(&ch[2]).version, EpayVersion::V2);
    assert_eq!(epay(&ch[2]).pid, "1002");
    let sb = sandbox(&ch[3]);
    assert_eq!(sb.secret.as_ref().map(Secret::expose), Some("s3cr3t"));
    assert_eq!(sb.secret_file, None);
    assert_eq!(sb.gateway.as_deref(), Some("http://127.0.0.1:9100"));
    assert!(!sb.allow_sandbox);
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
fn env_overrides_an_array() {
    let loaded = load_env(
        DESIGN_EXAMPLE,
        &[("KAMI__CHANNELS__0__METHODS", r#"["alipay", "qqpay"]"#)],
    );
    match loaded {
        Ok(l) => assert_eq!(
            l.config.channels[0].methods,
            vec![Method::Alipay, Method::Qqpay]
        ),
        Err(e) => panic!("{e}"),
    }
    // A bare word list is accepted too.
    let loaded = load_env(DESIGN_EXAMPLE, &[("KAMI__CHANNELS__0__METHODS", "alipay")]);
    match loaded {
        Ok(l) => assert_eq!(l.config.channels[0].methods, vec![Method::Alipay]),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn env_overrides_a_channel_key_keeping_numbers_as_strings() {
    let loaded = load_env(
        DESIGN_EXAMPLE,
        &[
            ("KAMI__CHANNELS__0__APP_ID", "2021000000000001"),
            ("KAMI__CHANNELS__0__PRIORITY", "-5"),
            ("KAMI__CHANNELS__0__ENABLED", "false"),
        ],
    );
    let c = match loaded {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(alipay(&c.channels[0]).app_id, "2021000000000001");
    assert_eq!(c.channels[0].priority, -5);
    assert!(!c.channels[0].enabled);
}

#[test]
fn env_appends_a_channel() {
    let loaded = load_env(
        DESIGN_EXAMPLE,
        &[
            ("KAMI__CHANNELS__1__METHODS", r#"["sandbox"]"#),
            ("KAMI__CHANNELS__1__ID", "sb"),
            ("KAMI__CHANNELS__1__KIND", "sandbox"),
            ("KAMI__CHANNELS__2__ID", "sb2"),
            ("KAMI__CHANNELS__2__KIND", "sandbox"),
            ("KAMI__CHANNELS__2__METHODS", "sandbox"),
        ],
    );
    let c = match loaded {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.channels.len(), 3);
    assert_eq!(c.channels[1].id.as_str(), "sb");
    assert_eq!(c.channels[1].kind, ChannelKind::Sandbox);
    assert_eq!(c.channels[2].id.as_str(), "sb2");

    // Also into an empty configuration.
    let loaded = load(
        None,
        env(&[
            ("KAMI__CHANNELS__0__ID", "sb"),
            ("KAMI__CHANNELS__0__KIND", "sandbox"),
            ("KAMI__CHANNELS__0__METHODS", "[\"sandbox\"]"),
        ]),
    );
    match loaded {
        Ok(l) => assert_eq!(l.config.channels.len(), 1),
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
fn keys_of_another_kind_are_warned_and_cleared() {
    let toml = format!("{ALIPAY_MIN}mchid = \"190\"\nsecret = \"hidden\"\nversion = 2\n");
    let loaded = parse(&toml);
    let w = loaded.warnings.join("\n");
    assert_eq!(loaded.warnings.len(), 3, "{w}");
    assert!(
        w.contains("channel `ali` (channels[0]): key `mchid` does not apply to kind `alipay`"),
        "{w}"
    );
    assert!(!w.contains("hidden"), "{w}");
    let ch = &loaded.config.channels[0];
    // Typed settings have no place for them: the channel is an alipay one, as written.
    assert_eq!(alipay(ch).app_id, "2021000000000000");
    assert!(!format!("{ch:?}").contains("hidden"));
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
fn channel_requirements_name_channel_and_key() {
    let toml = ALIPAY_MIN.replace("app_id = \"2021000000000000\"\n", "");
    assert_eq!(
        parse_err(&toml),
        "channel `ali` (channels[0]): missing required key `app_id` (required for kind `alipay`)"
    );
    let wx = "[[channels]]\nid = \"wx\"\nkind = \"wechatpay\"\nmethods = [\"wxpay\"]\nmchid = \"1\"\nappid = \"a\"\nmerchant_serial_no = \"s\"\nmerchant_private_key_file = \"k\"\n";
    assert!(parse_err(wx).contains("missing required key `apiv3_key_file`"));
    let ep = "[[channels]]\nid = \"ep\"\nkind = \"epay\"\nmethods = [\"alipay\"]\ngateway = \"https://pay.example.com/\"\npid = \"1\"\n";
    assert!(parse_err(ep).contains("missing required key `key_file` (required for epay version 1)"));
    let v2 = format!("{ep}version = 2\nkey_file = \"k\"\nmerchant_private_key_file = \"m\"\n");
    assert!(parse_err(&v2).contains("`platform_public_key_file` (required for epay version 2)"));
    let v3 = format!("{ep}version = 3\nkey_file = \"k\"\n");
    assert_eq!(
        parse_err(&v3),
        "channel `ep` (channels[0]): invalid `version`: must be 1 or 2, got 3"
    );
    let bad_gateway =
        ep.replace("https://pay.example.com/", "pay.example.com") + "key_file = \"k\"\n";
    assert!(parse_err(&bad_gateway).contains("invalid `gateway`"));
    let bad_mode = format!("{ALIPAY_MIN}mode = \"native\"\n");
    assert!(parse_err(&bad_mode).contains("invalid `mode`"));
    assert!(
        parse_err("[[channels]]\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n")
            .contains("channels[0]: missing required key `id`")
    );
    assert!(parse_err("[[channels]]\nid = \"x\"\nkind = \"sandbox\"\n")
        .contains("missing required key `methods`"));
    assert!(
        parse_err("[[channels]]\nid = \"x\"\nkind = \"sandbox\"\nmethods = []\n")
            .contains("missing required key `methods`")
    );
    assert!(parse_err(
        "[[channels]]\nid = \"Bad Id\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n"
    )
    .contains("invalid `id`: `Bad Id`"));
}

#[test]
fn duplicate_channel_ids() {
    assert_eq!(
        parse_err(&format!("{SANDBOX}{SANDBOX}")),
        "duplicate channel id `sb` (channels[0] and channels[1]); channel ids must be unique"
    );
}

#[test]
fn unknown_kind_and_method() {
    let msg = parse_err(&SANDBOX.replace("kind = \"sandbox\"", "kind = \"paypal\""));
    assert_eq!(
        msg,
        "channel `sb` (channels[0]): invalid `kind`: unknown channel kind `paypal` \
         (expected one of: alipay, wechatpay, epay, sandbox)"
    );
    let msg = parse_err(&SANDBOX.replace("[\"sandbox\"]", "[\"sandbox\", \"bitcoin\"]"));
    assert_eq!(
        msg,
        "channel `sb` (channels[0]): invalid `methods`: unknown payment method `bitcoin` \
         (expected one of: alipay, wxpay, qqpay, sandbox)"
    );
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

const SMTP_MIN: &str = "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Shop <shop@example.com>\"\n";

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

#[test]
fn unknown_modes_are_rejected_naming_the_allowed_values() {
    let msg = parse_err(&format!("{ALIPAY_MIN}mode = \"native\"\n"));
    assert_eq!(
        msg,
        "channel `ali` (channels[0]): invalid `mode`: `native` is not one of: qr, page, wap, auto"
    );
    let msg = parse_err(&format!("{ALIPAY_MIN}sign_type = \"rsa2\"\n"));
    assert_eq!(
        msg,
        "channel `ali` (channels[0]): invalid `sign_type`: `rsa2` is not one of: RSA2, RSA"
    );
    let ep = "[[channels]]\nid = \"ep\"\nkind = \"epay\"\nmethods = [\"alipay\"]\n\
              gateway = \"https://pay.example.com/\"\npid = \"1\"\nkey_file = \"k\"\n";
    let msg = parse_err(&format!("{ep}mode = \"auto\"\n"));
    assert!(
        msg.ends_with("invalid `mode`: `auto` is not one of: submit, api"),
        "{msg}"
    );
    // From the environment: the variable is named.
    match load_env(ALIPAY_MIN, &[("KAMI__CHANNELS__0__MODE", "h5")]) {
        Ok(_) => panic!("accepted"),
        Err(e) => assert_eq!(
            e.to_string(),
            "channel `ali` (channels[0]): invalid `mode`: `h5` is not one of: qr, page, wap, auto \
             (set by environment variable `KAMI__CHANNELS__0__MODE`)"
        ),
    }
}

#[test]
fn a_sandbox_channel_never_serves_a_real_wallet() {
    for method in ["alipay", "wxpay", "qqpay"] {
        let toml = SANDBOX.replace("[\"sandbox\"]", &format!("[\"sandbox\", \"{method}\"]"));
        let msg = parse_err(&toml);
        assert_eq!(
            msg,
            format!(
                "channel `sb` (channels[0]): invalid `methods`: a sandbox channel cannot serve \
                 `{method}`: it confirms payments that move no money, so it may serve only `sandbox`"
            )
        );
    }
    // Also when the environment adds the method.
    match load_env(SANDBOX, &[("KAMI__CHANNELS__0__METHODS", "sandbox,alipay")]) {
        Ok(_) => panic!("accepted"),
        Err(e) => assert!(
            e.to_string()
                .contains("(set by environment variable `KAMI__CHANNELS__0__METHODS`)"),
            "{e}"
        ),
    }
}

#[test]
fn allow_sandbox_is_parsed() {
    let c = parse(SANDBOX).config;
    assert!(!sandbox(&c.channels[0]).allow_sandbox, "off by default");
    let loaded = parse(&format!("{SANDBOX}allow_sandbox = true\n"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(sandbox(&loaded.config.channels[0]).allow_sandbox);
    let c = match load_env(SANDBOX, &[("KAMI__CHANNELS__0__ALLOW_SANDBOX", "true")]) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    assert!(sandbox(&c.channels[0]).allow_sandbox);
    let msg = parse_err(&format!("{SANDBOX}allow_sandbox = \"yes\"\n"));
    assert!(
        msg.starts_with("configuration error at `channels[0].allow_sandbox`: invalid type"),
        "{msg}"
    );
    // Another kind does not take it.
    let loaded = parse(&format!("{ALIPAY_MIN}allow_sandbox = true\n"));
    assert_eq!(
        loaded.warnings,
        vec![
            "channel `ali` (channels[0]): key `allow_sandbox` does not apply to kind `alipay` (ignored)"
                .to_owned()
        ]
    );
}

#[test]
fn env_overrides_nested_channel_keys() {
    let toml = "[[channels]]\nid = \"ep\"\nkind = \"epay\"\nmethods = [\"qqpay\"]\n\
                gateway = \"https://pay.example.com/\"\npid = \"1\"\nkey_file = \"k\"\n";
    let c = match load_env(
        &format!("{toml}{SANDBOX}"),
        &[
            ("KAMI__CHANNELS__0__PID", "0042"),
            ("KAMI__CHANNELS__0__VERSION", "2"),
            ("KAMI__CHANNELS__0__MERCHANT_PRIVATE_KEY_FILE", "m.pem"),
            ("KAMI__CHANNELS__0__PLATFORM_PUBLIC_KEY_FILE", "p.pem"),
            ("KAMI__CHANNELS__0__MODE", "api"),
            ("KAMI__CHANNELS__1__SECRET", "0123"),
        ],
    ) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    let ep = epay(&c.channels[0]);
    // Numeric-looking values of string keys stay exactly as written.
    assert_eq!(ep.pid, "0042");
    assert_eq!(ep.version, EpayVersion::V2);
    assert_eq!(ep.mode, kami_pay::epay::EpayFlow::Api);
    assert_eq!(
        ep.merchant_private_key_file.as_deref(),
        Some(Path::new("./m.pem"))
    );
    // The rest of the entry is the file's.
    assert_eq!(ep.gateway, "https://pay.example.com/");
    assert_eq!(
        sandbox(&c.channels[1]).secret.as_ref().map(Secret::expose),
        Some("0123")
    );
    // A wrong type from the environment names the variable.
    match load_env(toml, &[("KAMI__CHANNELS__0__VERSION", "two")]) {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("`channels[0].version`"), "{msg}");
            assert!(msg.contains("KAMI__CHANNELS__0__VERSION"), "{msg}");
        }
    }
}

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
