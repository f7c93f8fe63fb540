//! `[[channels]]`: routing keys, every kind's typed settings, keys of other kinds, and
//! channel keys from the environment.

use std::path::Path;

use kami_core::Method;

use super::super::*;
use super::{
    alipay, env, load, load_env, parse, parse_err, sandbox, ALIPAY_MIN, DESIGN_EXAMPLE, SANDBOX,
};

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
confirm_by_query = false

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
    assert_eq!(
        wechatpay(&ch[0]).apiv3_key_file.as_deref(),
        Some(Path::new("/keys/v3"))
    );
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
    // Confirmation by query: on unless turned off.
    assert!(epay(&ch[1]).confirm_by_query);
    assert!(!epay(&ch[2]).confirm_by_query);
    let sb = sandbox(&ch[3]);
    assert_eq!(sb.secret.as_ref().map(Secret::expose), Some("s3cr3t"));
    assert_eq!(sb.secret_file, None);
    assert_eq!(sb.gateway.as_deref(), Some("http://127.0.0.1:9100"));
    assert!(!sb.allow_sandbox);
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
fn channel_requirements_name_channel_and_key() {
    let toml = ALIPAY_MIN.replace("app_id = \"2021000000000000\"\n", "");
    assert_eq!(
        parse_err(&toml),
        "channel `ali` (channels[0]): missing required key `app_id` (required for kind `alipay`)"
    );
    let wx = "[[channels]]\nid = \"wx\"\nkind = \"wechatpay\"\nmethods = [\"wxpay\"]\nmchid = \"1\"\nappid = \"a\"\nmerchant_serial_no = \"s\"\nmerchant_private_key_file = \"k\"\n";
    assert!(parse_err(wx).contains("missing required key `apiv3_key_file`"));
    let ep = "[[channels]]\nid = \"ep\"\nkind = \"epay\"\nmethods = [\"alipay\"]\ngateway = \"https://pay.example.com/\"\npid = \"1\"\n";
    assert!(parse_err(ep).contains(
        "missing required key `key_file` (required for epay version 1; or the key itself as `key`)"
    ));
    let v2 = format!("{ep}version = 2\nkey_file = \"k\"\nmerchant_private_key_file = \"m\"\n");
    assert!(parse_err(&v2).contains("`platform_public_key_file` (required for epay version 2"));
    // A key given as text instead of a file is accepted (environment variables, the API);
    // both at once is refused.
    let inline = format!("{ep}key = \"merchant-key\"\n");
    assert!(Config::from_toml_str(&inline).is_ok());
    let both = format!("{ep}key = \"merchant-key\"\nkey_file = \"k\"\n");
    assert!(
        parse_err(&both).contains("both `channels[0].key` and `channels[0].key_file` are set"),
        "{}",
        parse_err(&both)
    );
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
    let msg = parse_err(&SANDBOX.replace("kind = \"sandbox\"", "kind = \"bitpay\""));
    assert_eq!(
        msg,
        "channel `sb` (channels[0]): invalid `kind`: unknown channel kind `bitpay` \
         (expected one of: alipay, wechatpay, epay, epusdt, tokenpay, stripe, paypal, sandbox)"
    );
    let msg = parse_err(&SANDBOX.replace("[\"sandbox\"]", "[\"sandbox\", \"bitcoin\"]"));
    assert_eq!(
        msg,
        "channel `sb` (channels[0]): invalid `methods`: unknown payment method `bitcoin` \
         (expected one of: alipay, wxpay, qqpay, usdt, card, paypal, sandbox)"
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
