//! Every gateway simulator at once, with freshly generated keys, plus the merchant-side channel
//! configurations that talk to them. `kami serve --demo` mounts them on its own server so a
//! newcomer can buy through every protocol on one machine; `kami sim --listen` serves them
//! alone and can write a kami configuration (with key files) that points at them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kami_core::{ChannelId, IdError, Method, SharedClock};
use kami_pay::alipay::{AlipayConfig, AlipayMode, AlipaySignType};
use kami_pay::crypto::{KeyError, RsaSigner};
use kami_pay::epay::{EpayConfig, EpayCredentials, EpayFlow};
use kami_pay::epusdt::EpusdtConfig;
use kami_pay::stripe::StripeConfig;
use kami_pay::tokenpay::{CoinCurrency, TokenPayConfig};
use kami_pay::wechatpay::{PlatformKeys, WechatMode, WechatPayConfig};

use crate::alipay::{AlipaySim, AlipaySimConfig};
use crate::epay::{EpaySim, EpaySimConfig};
use crate::epusdt::{EpusdtSim, EpusdtSimConfig};
use crate::paypal::{PaypalSim, PaypalSimConfig, PaypalSimError};
use crate::stripe::{StripeSim, StripeSimConfig};
use crate::tokenpay::{TokenPaySim, TokenPaySimConfig};
use crate::wechatpay::{WechatSim, WechatSimConfig};

pub const ALIPAY_APP_ID: &str = "2021000000000001";
pub const ALIPAY_SELLER_ID: &str = "2088000000000001";
pub const WECHAT_MCHID: &str = "1900000001";
pub const WECHAT_APPID: &str = "wx0000000000000001";
pub const WECHAT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const WECHAT_PUB_KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000001";
pub const EPAY_PID: &str = "1001";
/// The TokenPay simulator's currency.
pub const TOKENPAY_CURRENCY: &str = "USDT_TRC20";
pub const PAYPAL_CLIENT_ID: &str = "AYkami-sim-client-0001";
pub const PAYPAL_WEBHOOK_ID: &str = "1JE4291016473214C";
/// The PayPal simulator's channel id (its webhooks go to `/pay/notify/paypal-sim`).
pub const PAYPAL_CHANNEL: &str = "paypal-sim";
/// The demo's Stripe channel.
pub const STRIPE_CHANNEL_ID: &str = "stripe-sim";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("key generation: {0}")]
    Key(#[from] KeyError),
    #[error("channel id: {0}")]
    Id(#[from] IdError),
    #[error("paypal simulator: {0}")]
    Paypal(#[from] PaypalSimError),
    #[error("paypal simulator certificate policy: {0}")]
    PaypalCerts(#[from] kami_pay::paypal::CertError),
    #[error("writing {path}: {err}")]
    Io { path: String, err: std::io::Error },
}

/// Key material, kept as PEM so it can be written out and loaded again.
struct Keys {
    alipay_app: String,
    alipay_gateway: String,
    wechat_merchant: String,
    wechat_platform: String,
    apiv3: String,
    epay_key: String,
    epusdt_token: String,
    tokenpay_secret: String,
    paypal_secret: String,
    stripe_secret_key: String,
    stripe_webhook_secret: String,
    /// The WeChat Official Account's AppSecret (JSAPI OAuth).
    wechat_appsecret: String,
}

fn random_alnum(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// The merchant side's key material as text, as a seller pastes it into the console or the
/// admin API (`app_private_key`, `alipay_public_key`, ...).
#[derive(Clone)]
pub struct MerchantKeys {
    /// Alipay `app_private_key` (PKCS#8 PEM).
    pub alipay_app_private_key: String,
    /// Alipay `alipay_public_key` (the gateway's, SPKI PEM).
    pub alipay_public_key: String,
    /// WeChat Pay `merchant_private_key`.
    pub wechat_merchant_private_key: String,
    /// WeChat Pay `wechatpay_public_key` (the platform's, SPKI PEM).
    pub wechatpay_public_key: String,
    /// WeChat Pay `apiv3_key`.
    pub apiv3_key: String,
    /// Epay version 1 `key`.
    pub epay_key: String,
    /// epusdt `token`.
    pub epusdt_token: String,
    /// TokenPay `secret`.
    pub tokenpay_secret: String,
    /// Stripe `secret_key` (`sk_test_…`).
    pub stripe_secret_key: String,
    /// Stripe `webhook_secret` (`whsec_…`).
    pub stripe_webhook_secret: String,
}

/// All simulators and the matching merchant configurations.
pub struct Gateways {
    /// Routes of every simulator (`/sim/alipay/...`, `/sim/wechatpay/...`, `/sim/epay/...`).
    pub router: axum::Router,
    pub alipay: Arc<AlipaySim>,
    pub wechatpay: Arc<WechatSim>,
    pub epay: Arc<EpaySim>,
    /// epusdt (channel `usdt-sim`, method `usdt`).
    pub epusdt: Arc<EpusdtSim>,
    /// TokenPay (channel `tokenpay-sim`, method `usdt`, below `usdt-sim`).
    pub tokenpay: Arc<TokenPaySim>,
    pub paypal: Arc<PaypalSim>,
    pub stripe: Arc<StripeSim>,
    base_url: String,
    keys: Keys,
    /// What the simulators and [`Gateways::channels`] read the time from.
    clock: SharedClock,
}

#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// Notification retry schedule: `fast` for tests (50 ms steps), else each protocol's real
    /// one.
    pub fast_retries: bool,
    /// The clock of every simulator and of the channels [`Gateways::channels`] builds
    /// (signatures, timestamps, expiry, pay and refund times, bill days); `None`: the wall
    /// clock. Tests on a `ManualClock` give the server's clock here.
    pub clock: Option<SharedClock>,
}

impl Gateways {
    /// Generate keys and start the simulators for a server reachable at `base_url`
    /// (scheme://host:port, no trailing slash).
    pub fn generate(base_url: &str, opts: GatewayOptions) -> Result<Gateways, GatewayError> {
        let keys = Keys {
            alipay_app: RsaSigner::generate()?.private_key_pem()?,
            alipay_gateway: RsaSigner::generate()?.private_key_pem()?,
            wechat_merchant: RsaSigner::generate()?.private_key_pem()?,
            wechat_platform: RsaSigner::generate()?.private_key_pem()?,
            apiv3: random_alnum(32),
            epay_key: random_alnum(32),
            epusdt_token: random_alnum(32),
            tokenpay_secret: random_alnum(32),
            paypal_secret: random_alnum(40),
            stripe_secret_key: format!("sk_test_{}", random_alnum(24)),
            stripe_webhook_secret: format!("whsec_{}", random_alnum(32)),
            wechat_appsecret: hex::encode(rand::random::<[u8; 16]>()),
        };
        let schedule = |real: Vec<Duration>| {
            if opts.fast_retries {
                (0..real.len() as u64)
                    .map(|i| Duration::from_millis(50 * i))
                    .collect()
            } else {
                real
            }
        };
        let secs = |v: &[u64]| {
            v.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        let clock = opts.clock.clone().unwrap_or_else(kami_core::clock::system);
        let alipay = AlipaySim::with_clock(
            AlipaySimConfig {
                app_id: ALIPAY_APP_ID.into(),
                merchant_public_key: RsaSigner::from_text(&keys.alipay_app)?.verifier()?,
                gateway_key: RsaSigner::from_text(&keys.alipay_gateway)?,
                seller_id: ALIPAY_SELLER_ID.into(),
                // Alipay: 4m 10m 10m 1h 2h 6h 15h after the first try.
                retry_schedule: schedule(secs(&[0, 240, 600, 600, 3600, 7200, 21600, 54000])),
                notify_timeout: Duration::from_secs(10),
            },
            clock.clone(),
        );
        let wechatpay = WechatSim::with_clock(
            WechatSimConfig {
                mchid: WECHAT_MCHID.into(),
                appid: WECHAT_APPID.into(),
                merchant_serial_no: WECHAT_SERIAL.into(),
                merchant_public_key: RsaSigner::from_text(&keys.wechat_merchant)?.verifier()?,
                platform_key: RsaSigner::from_text(&keys.wechat_platform)?,
                platform_key_id: WECHAT_PUB_KEY_ID.into(),
                apiv3_key: keys.apiv3.as_bytes().to_vec(),
                // WeChat Pay: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h.
                retry_schedule: schedule(secs(&[
                    0, 15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800,
                    21600, 21600,
                ])),
                notify_timeout: Duration::from_secs(5),
                appsecret: keys.wechat_appsecret.clone(),
            },
            clock.clone(),
        );
        let mut epay_cfg = EpaySimConfig::v1(EPAY_PID, &keys.epay_key);
        epay_cfg.retry_schedule = schedule(EpaySimConfig::default_schedule());
        let epay = EpaySim::with_clock(epay_cfg, clock.clone());
        let mut epusdt_cfg = EpusdtSimConfig::epusdt(&keys.epusdt_token);
        epusdt_cfg.retry_schedule = schedule(epusdt_cfg.retry_schedule);
        let epusdt = EpusdtSim::new(epusdt_cfg);
        let mut tokenpay_cfg = TokenPaySimConfig::new(&keys.tokenpay_secret, TOKENPAY_CURRENCY);
        tokenpay_cfg.retry_schedule = schedule(tokenpay_cfg.retry_schedule);
        let tokenpay = TokenPaySim::new(tokenpay_cfg);
        let base = base_url.trim_end_matches('/');
        let paypal = PaypalSim::with_clock(
            PaypalSimConfig {
                client_id: PAYPAL_CLIENT_ID.into(),
                client_secret: keys.paypal_secret.clone(),
                webhook_id: PAYPAL_WEBHOOK_ID.into(),
                webhook_url: format!("{base}/pay/notify/{PAYPAL_CHANNEL}"),
                base_url: base.to_owned(),
                retry_schedule: schedule(PaypalSimConfig::default_retry_schedule()),
                notify_timeout: Duration::from_secs(10),
            },
            clock.clone(),
        )?;
        // The simulated account presents CNY too (the demo shop's currency); see
        // `crate::stripe` on what a real account takes.
        let stripe = StripeSim::with_clock(
            StripeSimConfig {
                secret_key: keys.stripe_secret_key.clone(),
                webhook_secrets: vec![keys.stripe_webhook_secret.clone()],
                // Each session's kami endpoint (`/pay/notify/<id>` beside its return URL).
                webhook_url: None,
                currencies: None,
                retry_schedule: schedule(StripeSimConfig::default_schedule()),
                notify_timeout: Duration::from_secs(10),
            },
            clock.clone(),
        );
        let router = axum::Router::new()
            .merge(alipay.router())
            .merge(wechatpay.router())
            .merge(epay.router())
            .merge(epusdt.router())
            .merge(tokenpay.router())
            .merge(paypal.router())
            .merge(stripe.router());
        Ok(Gateways {
            router,
            alipay,
            wechatpay,
            epay,
            epusdt,
            tokenpay,
            paypal,
            stripe,
            base_url: base_url.trim_end_matches('/').to_owned(),
            keys,
            clock,
        })
    }

    /// Where these simulators are reached (scheme://host:port, no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The merchant keys that talk to these simulators, as text.
    pub fn merchant_keys(&self) -> Result<MerchantKeys, GatewayError> {
        Ok(MerchantKeys {
            alipay_app_private_key: self.keys.alipay_app.clone(),
            alipay_public_key: RsaSigner::from_text(&self.keys.alipay_gateway)?.public_key_pem()?,
            wechat_merchant_private_key: self.keys.wechat_merchant.clone(),
            wechatpay_public_key: RsaSigner::from_text(&self.keys.wechat_platform)?
                .public_key_pem()?,
            apiv3_key: self.keys.apiv3.clone(),
            epay_key: self.keys.epay_key.clone(),
            epusdt_token: self.keys.epusdt_token.clone(),
            tokenpay_secret: self.keys.tokenpay_secret.clone(),
            stripe_secret_key: self.keys.stripe_secret_key.clone(),
            stripe_webhook_secret: self.keys.stripe_webhook_secret.clone(),
        })
    }

    /// One channel of every kind wired to these simulators — `alipay-sim`, `wechat-sim`,
    /// `epay-sim`, `usdt-sim`, `tokenpay-sim`, `paypal-sim`, `stripe-sim` — as the demo and the test kit mount them, on the simulators' clock.
    pub fn channels(
        &self,
        http: &reqwest::Client,
    ) -> Result<Vec<Arc<dyn kami_pay::PaymentChannel>>, GatewayError> {
        Ok(vec![
            Arc::new(
                kami_pay::alipay::AlipayChannel::new(
                    self.alipay_config("alipay-sim")?,
                    http.clone(),
                )
                .with_clock(self.clock.clone()),
            ),
            Arc::new(
                kami_pay::wechatpay::WechatPayChannel::new(
                    self.wechatpay_config("wechat-sim")?,
                    http.clone(),
                )
                .with_clock(self.clock.clone()),
            ),
            Arc::new(
                kami_pay::epay::EpayChannel::new(self.epay_config("epay-sim")?, http.clone())
                    .with_clock(self.clock.clone()),
            ),
            Arc::new(kami_pay::epusdt::EpusdtChannel::new(
                self.epusdt_config("usdt-sim")?,
                http.clone(),
            )),
            Arc::new(kami_pay::tokenpay::TokenPayChannel::new(
                self.tokenpay_config("tokenpay-sim")?,
                http.clone(),
            )),
            Arc::new(
                kami_pay::paypal::PaypalChannel::new(
                    self.paypal_config(PAYPAL_CHANNEL)?,
                    http.clone(),
                )
                .with_clock(self.clock.clone()),
            ),
            Arc::new(
                kami_pay::stripe::StripeChannel::new(
                    self.stripe_config(STRIPE_CHANNEL_ID)?,
                    http.clone(),
                )
                .with_clock(self.clock.clone()),
            ),
        ])
    }

    /// epusdt serves `usdt`.
    pub fn epusdt_config(&self, id: &str) -> Result<EpusdtConfig, GatewayError> {
        Ok(EpusdtConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Usdt],
            priority: 10,
            gateway: format!("{}/sim/epusdt", self.base_url),
            token: self.keys.epusdt_token.clone(),
            trade_type: None,
        })
    }

    /// TokenPay serves `usdt` behind epusdt (a failover target; tests raise it).
    pub fn tokenpay_config(&self, id: &str) -> Result<TokenPayConfig, GatewayError> {
        Ok(TokenPayConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Usdt],
            priority: 5,
            gateway: format!("{}/sim/tokenpay", self.base_url),
            secret: self.keys.tokenpay_secret.clone(),
            currency: CoinCurrency::parse(TOKENPAY_CURRENCY).map_err(|e| GatewayError::Io {
                path: "currency".into(),
                err: std::io::Error::other(e),
            })?,
        })
    }

    /// PayPal serves `paypal`; its webhook certificates are trusted through the simulator's
    /// run-time CA, fetched from the simulator's URL prefix only.
    pub fn paypal_config(&self, id: &str) -> Result<kami_pay::paypal::PaypalConfig, GatewayError> {
        Ok(kami_pay::paypal::PaypalConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Paypal],
            priority: 10,
            api_base: format!("{}/sim/paypal", self.base_url),
            client_id: PAYPAL_CLIENT_ID.into(),
            client_secret: kami_pay::settings::Secret::new(self.keys.paypal_secret.clone()),
            webhook_id: PAYPAL_WEBHOOK_ID.into(),
            certs: kami_pay::paypal::CertPolicy::custom(
                &[self.paypal.cert_url_prefix()],
                self.paypal.ca_pem(),
            )?,
            currency: kami_core::Currency::Usd,
        })
    }

    pub fn alipay_config(&self, id: &str) -> Result<AlipayConfig, GatewayError> {
        Ok(AlipayConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Alipay],
            priority: 10,
            gateway: format!("{}/sim/alipay/gateway.do", self.base_url),
            app_id: ALIPAY_APP_ID.into(),
            app_private_key: RsaSigner::from_text(&self.keys.alipay_app)?,
            alipay_public_key: RsaSigner::from_text(&self.keys.alipay_gateway)?.verifier()?,
            sign_type: AlipaySignType::Rsa2,
            mode: AlipayMode::Auto,
            seller_id: Some(ALIPAY_SELLER_ID.into()),
            app_auth_token: None,
            sys_service_provider_id: None,
        })
    }

    pub fn wechatpay_config(&self, id: &str) -> Result<WechatPayConfig, GatewayError> {
        Ok(WechatPayConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Wxpay],
            priority: 10,
            api_base: format!("{}/sim/wechatpay", self.base_url),
            mchid: WECHAT_MCHID.into(),
            appid: WECHAT_APPID.into(),
            merchant_serial_no: WECHAT_SERIAL.into(),
            merchant_private_key: RsaSigner::from_text(&self.keys.wechat_merchant)?,
            apiv3_key: self.keys.apiv3.as_bytes().to_vec(),
            platform: PlatformKeys::PublicKey {
                id: WECHAT_PUB_KEY_ID.into(),
                key: RsaSigner::from_text(&self.keys.wechat_platform)?.verifier()?,
            },
            mode: WechatMode::Auto,
            // Inside WeChat: JSAPI, its OAuth played by the simulator on this server.
            jsapi: Some(kami_pay::wechatpay::JsapiConfig {
                appsecret: kami_pay::common::settings::Secret::new(
                    self.keys.wechat_appsecret.clone(),
                ),
                oauth_base: format!("{}/sim/wechatpay/open", self.base_url),
                sns_api_base: format!("{}/sim/wechatpay", self.base_url),
            }),
        })
    }

    /// Epay serves `qqpay` here (and could serve alipay/wxpay at a lower priority).
    pub fn epay_config(&self, id: &str) -> Result<EpayConfig, GatewayError> {
        Ok(EpayConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Qqpay],
            priority: 10,
            gateway: format!("{}/sim/epay/", self.base_url),
            pid: EPAY_PID.into(),
            credentials: EpayCredentials::V1 {
                key: self.keys.epay_key.clone(),
            },
            flow: EpayFlow::Submit,
        })
    }

    /// Stripe serves `card`.
    pub fn stripe_config(&self, id: &str) -> Result<StripeConfig, GatewayError> {
        Ok(StripeConfig {
            id: ChannelId::parse(id)?,
            methods: vec![Method::Card],
            priority: 10,
            api_base: format!("{}/sim/stripe", self.base_url),
            secret_key: self.keys.stripe_secret_key.clone(),
            webhook_secret: self.keys.stripe_webhook_secret.clone(),
        })
    }

    /// Write the merchant keys into `dir` and return `[[channels]]` TOML for a kami
    /// configuration that talks to these simulators. The configuration must be written in
    /// `dir`'s parent directory: key paths are relative to it.
    pub fn write_channel_config(&self, dir: &Path) -> Result<String, GatewayError> {
        // kami resolves relative `*_file` paths against the configuration file's directory, and
        // `dir` sits next to that file: name the keys relative to it.
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let write = |name: &str, text: &str| -> Result<String, GatewayError> {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|err| GatewayError::Io {
                path: path.display().to_string(),
                err,
            })?;
            // Private keys: owner-only.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            Ok(format!("{dir_name}/{name}"))
        };
        std::fs::create_dir_all(dir).map_err(|err| GatewayError::Io {
            path: dir.display().to_string(),
            err,
        })?;
        let ali_priv = write("alipay_app_private_key.pem", &self.keys.alipay_app)?;
        let ali_pub = write(
            "alipay_public_key.pem",
            &RsaSigner::from_text(&self.keys.alipay_gateway)?.public_key_pem()?,
        )?;
        let wx_priv = write(
            "wechatpay_merchant_private_key.pem",
            &self.keys.wechat_merchant,
        )?;
        let wx_pub = write(
            "wechatpay_public_key.pem",
            &RsaSigner::from_text(&self.keys.wechat_platform)?.public_key_pem()?,
        )?;
        let apiv3 = write("wechatpay_apiv3_key", &self.keys.apiv3)?;
        let appsecret = write("wechatpay_appsecret", &self.keys.wechat_appsecret)?;
        let epay = write("epay_key", &self.keys.epay_key)?;
        let epusdt = write("epusdt_token", &self.keys.epusdt_token)?;
        let tokenpay = write("tokenpay_secret", &self.keys.tokenpay_secret)?;
        let stripe_key = write("stripe_secret_key", &self.keys.stripe_secret_key)?;
        let stripe_whsec = write("stripe_webhook_secret", &self.keys.stripe_webhook_secret)?;
        let b = &self.base_url;
        Ok(format!(
            r#"[[channels]]
id = "alipay-sim"
kind = "alipay"
methods = ["alipay"]
priority = 10
gateway = "{b}/sim/alipay/gateway.do"
app_id = "{ALIPAY_APP_ID}"
app_private_key_file = "{ali_priv}"
alipay_public_key_file = "{ali_pub}"
seller_id = "{ALIPAY_SELLER_ID}"
sign_type = "RSA2"
mode = "auto"

[[channels]]
id = "wechat-sim"
kind = "wechatpay"
methods = ["wxpay"]
priority = 10
api_base = "{b}/sim/wechatpay"
mchid = "{WECHAT_MCHID}"
appid = "{WECHAT_APPID}"
merchant_serial_no = "{WECHAT_SERIAL}"
merchant_private_key_file = "{wx_priv}"
apiv3_key_file = "{apiv3}"
wechatpay_public_key_file = "{wx_pub}"
wechatpay_public_key_id = "{WECHAT_PUB_KEY_ID}"
mode = "auto"
appsecret_file = "{appsecret}"
oauth_base = "{b}/sim/wechatpay/open"
sns_api_base = "{b}/sim/wechatpay"

[[channels]]
id = "epay-sim"
kind = "epay"
methods = ["qqpay"]
priority = 10
gateway = "{b}/sim/epay/"
pid = "{EPAY_PID}"
key_file = "{epay}"
version = 1
mode = "submit"

[[channels]]
id = "usdt-sim"
kind = "epusdt"
methods = ["usdt"]
priority = 10
gateway = "{b}/sim/epusdt"
token_file = "{epusdt}"

[[channels]]
id = "tokenpay-sim"
kind = "tokenpay"
methods = ["usdt"]
priority = 5
gateway = "{b}/sim/tokenpay"
secret_file = "{tokenpay}"
currency = "{TOKENPAY_CURRENCY}"

[[channels]]
id = "{STRIPE_CHANNEL_ID}"
kind = "stripe"
methods = ["card"]
priority = 10
api_base = "{b}/sim/stripe"
secret_key_file = "{stripe_key}"
webhook_secret_file = "{stripe_whsec}"
"#
        ))
    }
}

/// The simulator page a buyer reaches by scanning `qr` (the demo's link beside a QR code):
/// WeChat's `weixin://` codes map to the simulator's scan page; the Alipay simulator's code is
/// its payer page already. `None` for codes that are not the simulators'.
pub fn payer_page(qr: &str) -> Option<String> {
    if let Some(page) = crate::wechatpay::scan_page_url("", qr) {
        return Some(page);
    }
    reqwest::Url::parse(qr)
        .ok()
        .filter(|u| u.path().starts_with("/sim/"))
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
}
