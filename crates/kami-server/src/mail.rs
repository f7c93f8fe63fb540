//! Buyer mail: when an order is delivered, the buyer gets its keys by email.
//!
//! Delivery writes an `order.delivered` outbox row in the delivering transaction; the mail
//! worker (only when `[smtp]` is configured) claims due rows with a lease, loads the order and
//! its keys from the database (keys never sit in the outbox), renders the theme's
//! `mail/delivered.txt` and `mail/delivered.html` in the order's language and hands the
//! message to the SMTP server. The row is marked done only once the server accepted the
//! message; any failure reschedules it with a backoff (`retry_base_seconds` · 2^(attempt-1),
//! at most an hour), so an unreachable mail server delays mail and never blocks or loses a
//! delivery. A row still unsent three days after delivery is given up (a shop that turns
//! mail on later does not mail its whole history either).
//!
//! Several kami processes may run the worker against one database: claims are exclusive, and a
//! message's `Message-ID` is stable across retries (`<ORDER_NO.ROW@from-domain>`), so even the
//! rare resend after a crash between "accepted" and "marked done" is recognisable.
//!
//! Logs name the order and the cause, never the SMTP password or a key.

use std::sync::Arc;
use std::time::Duration;

use kami_core::OrderNo;
use kami_store::{MailState, Order, OutboxItem, StoreError, ORDER_DELIVERED};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::app::AppState;
use crate::config::{ShopConfig, SmtpConfig, SmtpTls};
use crate::time::now_ms;
use crate::web::{Locale, Theme};

/// How often the worker looks for due mail when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);
/// Rows claimed (and messages sent concurrently) per round.
const BATCH: u32 = 8;
/// Longest wait between two tries of one message.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// A delivery mail still unsent this long after delivery is given up.
const GIVE_UP_AFTER_MS: i64 = 3 * 24 * 3_600_000;

/// Why the mailer could not be set up (at start-up, so a bad `[smtp]` is seen at once).
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("cannot read `smtp.ca_file` `{}`: {source}", .path.display())]
    ReadCaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("`smtp.ca_file` `{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate { path: std::path::PathBuf },
    #[error("`smtp.ca_file` `{}`: {message}", .path.display())]
    BadCaFile {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("smtp: TLS setup for `{host}`: {message}")]
    Tls { host: String, message: String },
}

/// The SMTP side of buyer mail: one per process, shared by the worker.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    retry_base_ms: i64,
    /// Bound on one whole SMTP transaction (connect … QUIT).
    send_timeout: Duration,
    /// How long a claimed row belongs to this worker: longer than any send.
    lease_ms: i64,
    wake: Notify,
}

impl Mailer {
    /// Build the transport from `[smtp]` (reading `ca_file`). Needs a Tokio runtime: the
    /// connection pool starts its housekeeping task.
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, MailSetupError> {
        let timeout = Duration::from_secs(u64::from(cfg.timeout_seconds));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(BATCH));
        if cfg.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(cfg.host.clone());
            if let Some(path) = &cfg.ca_file {
                params = params.add_root_certificate(read_ca_file(path)?);
            }
            let params = params.build().map_err(|e| MailSetupError::Tls {
                host: cfg.host.clone(),
                message: e.to_string(),
            })?;
            builder = builder.tls(match cfg.tls {
                SmtpTls::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let send_timeout = timeout * 4;
        Ok(Mailer {
            transport: builder.build(),
            from: cfg.from.clone(),
            retry_base_ms: i64::from(cfg.retry_base_seconds) * 1000,
            send_timeout,
            lease_ms: send_timeout.as_millis() as i64 + 60_000,
            wake: Notify::new(),
        })
    }

    /// Look for due mail now rather than at the next poll (an order was just delivered).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The wait after failed try number `attempts` (1, 2, …): base · 2^(attempts-1), at most an hour.
fn backoff_ms(base_ms: i64, attempts: i64) -> i64 {
    base_ms
        .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
        .min(MAX_BACKOFF_MS)
}

fn read_ca_file(path: &std::path::Path) -> Result<Certificate, MailSetupError> {
    let pem = std::fs::read(path).map_err(|source| MailSetupError::ReadCaFile {
        path: path.to_path_buf(),
        source,
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(MailSetupError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Certificate::from_pem(&pem).map_err(|e| MailSetupError::BadCaFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Where an order's delivery mail stands, as the order page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailStatus {
    /// The order has no delivery mail (not delivered automatically, or unknown).
    NotApplicable,
    /// This shop sends no mail (no `[smtp]`), and this order's mail was never sent.
    Disabled,
    /// Sent, pending (with tries so far) or given up: see [`MailState`].
    Known(MailState),
}

/// The delivery-mail status of an order, for the order page (and the admin).
pub async fn status(state: &AppState, order_no: &OrderNo) -> Result<MailStatus, StoreError> {
    Ok(match state.store.mail_state(order_no).await? {
        None => MailStatus::NotApplicable,
        Some(MailState::Pending { .. }) if state.mailer.is_none() => MailStatus::Disabled,
        Some(s) => MailStatus::Known(s),
    })
}

/// Run the mail worker until `shutdown`: every second, or at once when woken.
pub fn spawn(
    state: Arc<AppState>,
    mailer: Arc<Mailer>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let handled = match send_due_once(&state, &mailer).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("mail worker: {e}");
                    0
                }
            };
            if handled >= BATCH as usize {
                continue; // more may be due
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = mailer.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Claim the due delivery mails (at most one batch) and send them; returns how many.
pub async fn send_due_once(
    state: &Arc<AppState>,
    mailer: &Arc<Mailer>,
) -> Result<usize, StoreError> {
    let now = now_ms();
    let due = state
        .store
        .claim_outbox(&[ORDER_DELIVERED], now, now + mailer.lease_ms, BATCH)
        .await?;
    let n = due.len();
    let mut tasks = JoinSet::new();
    for item in due {
        let (state, mailer) = (state.clone(), mailer.clone());
        tasks.spawn(async move {
            let (id, order) = (item.id, item.order_no.clone().unwrap_or_default());
            if let Err(e) = send_one(&state, &mailer, item).await {
                // The lease runs out and the row is claimed again.
                tracing::warn!(order = %order, outbox = id, "delivery mail: {e}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(n)
}

enum Failure {
    /// Try again after the backoff.
    Retry(String),
    /// Retrying cannot help.
    GiveUp(String),
}

async fn send_one(state: &AppState, mailer: &Mailer, item: OutboxItem) -> Result<(), StoreError> {
    let no = item.order_no.clone().unwrap_or_default();
    if now_ms() - item.created_at >= GIVE_UP_AFTER_MS {
        // Failing for days, or mail was off (or no worker ran) when the order was delivered.
        let why = match &item.last_error {
            Some(e) => format!("unsent 3 days after delivery; last error: {e}"),
            None => "not sent: no mail was being sent within 3 days of delivery".to_owned(),
        };
        tracing::warn!(order = %no, attempt = item.attempts, "delivery mail given up: {why}");
        state.store.give_up_outbox(item.id, now_ms(), &why).await?;
        return Ok(());
    }
    let outcome = match prepare(state, mailer, &item).await {
        Ok(message) => {
            match tokio::time::timeout(mailer.send_timeout, mailer.transport.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Failure::Retry(error_chain(&e))),
                Err(_) => Err(Failure::Retry(format!(
                    "no answer from the mail server within {} s",
                    mailer.send_timeout.as_secs()
                ))),
            }
        }
        Err(f) => Err(f),
    };
    let now = now_ms();
    match outcome {
        Ok(()) => {
            state.store.complete_outbox(item.id, now).await?;
            tracing::info!(order = %no, attempt = item.attempts, "delivery mail sent");
        }
        Err(Failure::Retry(cause)) => {
            let wait = backoff_ms(mailer.retry_base_ms, item.attempts);
            tracing::warn!(
                order = %no,
                attempt = item.attempts,
                retry_in_s = wait / 1000,
                "delivery mail not sent, will retry: {cause}"
            );
            state
                .store
                .reschedule_outbox(item.id, item.attempts, now + wait, &cause)
                .await?;
        }
        Err(Failure::GiveUp(cause)) => {
            tracing::warn!(order = %no, "delivery mail cannot be sent: {cause}");
            state.store.give_up_outbox(item.id, now, &cause).await?;
        }
    }
    Ok(())
}

/// Load the order and its keys and build the message.
async fn prepare(state: &AppState, mailer: &Mailer, item: &OutboxItem) -> Result<Message, Failure> {
    let no = item
        .order_no
        .as_deref()
        .and_then(|n| OrderNo::parse(n).ok())
        .ok_or_else(|| Failure::GiveUp("the outbox row names no order".into()))?;
    let order = match state.store.order(&no).await {
        Ok(Some(o)) => o,
        Ok(None) => return Err(Failure::GiveUp(format!("order {no} not found"))),
        Err(e) => return Err(Failure::Retry(format!("reading the order: {e}"))),
    };
    // Refunded (or otherwise reversed) before the mail went out: its keys are not the
    // buyer's to keep, so they are not mailed.
    if !matches!(
        order.status,
        kami_core::OrderStatus::Delivered | kami_core::OrderStatus::Fulfilled
    ) {
        return Err(Failure::GiveUp(format!(
            "order is {} now; keys are not mailed",
            order.status.as_str()
        )));
    }
    build_message(state, mailer, item.id, &order)
}

fn build_message(
    state: &AppState,
    mailer: &Mailer,
    row_id: i64,
    order: &Order,
) -> Result<Message, Failure> {
    let Some(keys) = order.cards.as_ref().filter(|k| !k.is_empty()) else {
        return Err(Failure::GiveUp(format!(
            "order {} has no delivered keys to mail",
            order.order_no
        )));
    };
    let to: Mailbox = order
        .email
        .parse::<lettre::Address>()
        .map(|a| Mailbox::new(None, a))
        .map_err(|e| Failure::GiveUp(format!("the buyer's address is not usable for SMTP: {e}")))?;
    let rendered = render(
        &state.theme,
        &state.config.shop,
        &state.public_url,
        order,
        keys,
    )
    .map_err(Failure::Retry)?;
    let domain = mailer.from.email.domain();
    Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(format!("<{}.{row_id}@{domain}>", order.order_no)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| Failure::Retry(format!("building the message: {e}")))
}

/// A delivery mail's subject and bodies.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Render the delivery mail of `order` (with its `keys`) from the theme, in the order's
/// language; links point at `public_url`. Errors (a broken theme override) are described
/// for the log.
pub fn render(
    theme: &Theme,
    shop_config: &ShopConfig,
    public_url: &str,
    order: &Order,
    keys: &[String],
) -> Result<Rendered, String> {
    let locale = Locale::parse(&order.locale)
        .or_else(|| Locale::parse(&shop_config.default_locale))
        .unwrap_or(Locale::ZhCn);
    let shop = shop_config.name.as_str();
    let ctx = minijinja::context! {
        shop_name => shop,
        order_no => order.order_no.as_str(),
        product => order.product_title.as_str(),
        quantity => order.quantity,
        amount => order.amount.minor(),
        currency => order.amount.currency().code(),
        keys => keys,
        email => order.email.as_str(),
        order_url => format!("{public_url}/orders/{}", order.order_no),
        lookup_url => format!("{public_url}/lookup"),
    };
    let text = theme
        .render("mail/delivered.txt", locale, ctx.clone())
        .map_err(|e| format!("rendering mail/delivered.txt: {e}"))?;
    let html = theme
        .render("mail/delivered.html", locale, ctx)
        .map_err(|e| format!("rendering mail/delivered.html: {e}"))?;
    let subject = theme.text(
        locale,
        "mail.delivered.subject",
        &[
            ("shop", shop.to_owned()),
            ("order_no", order.order_no.to_string()),
            ("product", order.product_title.clone()),
        ],
    );
    // A subject is one line, whatever a theme or a product title holds.
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

/// An error with its causes, on one line ("Connection error: Connection refused (os error 111)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use kami_core::{Currency, Money, OrderStatus};

    fn order(locale: &str) -> Order {
        Order {
            order_no: OrderNo::parse("K20261122030000123456789012").unwrap(),
            product_slug: "game".into(),
            product_title: "Game <Deluxe> & \"More\"".into(),
            quantity: 2,
            amount: Money::new(2460, Currency::Cny).unwrap(),
            email: "buyer@example.com".into(),
            method: "sandbox".into(),
            channel_id: "sandbox".into(),
            status: OrderStatus::Delivered,
            access_token_hash: String::new(),
            query_password_hash: None,
            note: None,
            created_at: 0,
            expires_at: 0,
            paid_at: Some(1),
            delivered_at: Some(1),
            locale: locale.into(),
            pay_action: None,
            cards: None,
        }
    }

    fn render_for(locale: &str, keys: &[String]) -> Rendered {
        let theme = Theme::load(None).unwrap();
        let shop = ShopConfig {
            name: "Kami & Co".into(),
            ..ShopConfig::default()
        };
        render(
            &theme,
            &shop,
            "https://shop.example.com",
            &order(locale),
            keys,
        )
        .unwrap()
    }

    #[test]
    fn renders_both_languages_with_every_key_and_no_missing_message() {
        let keys = vec!["KEY-<b>one</b>".to_owned(), "KEY-two & \"2\"".to_owned()];
        for (locale, subject, heading) in [
            (
                "en",
                "[Kami & Co] Your order K20261122030000123456789012 has been delivered",
                "Your keys (2)",
            ),
            (
                "zh-CN",
                "【Kami & Co】您的订单 K20261122030000123456789012 已发货",
                "您的卡密（2 个）",
            ),
        ] {
            let r = render_for(locale, &keys);
            assert_eq!(r.subject, subject);
            // HTML escapes `/` too (`&#x2f;`); decoded, the links are the same.
            let html = r.html.replace("&#x2f;", "/");
            for body in [&r.text, &html] {
                // A message missing from the catalogue would show as its key.
                assert!(!body.contains("mail.delivered."), "{locale}: {body}");
                assert!(body.contains("K20261122030000123456789012"), "{body}");
                assert!(body.contains("¥24.60"), "{body}");
                assert!(
                    body.contains("https://shop.example.com/orders/K20261122030000123456789012")
                );
                assert!(body.contains("https://shop.example.com/lookup"));
            }
            assert!(html
                .contains("href=\"https://shop.example.com/orders/K20261122030000123456789012\""));
            // Plain text carries the data as is; HTML escapes it (keys and titles are user data).
            assert!(r.text.contains("KEY-<b>one</b>\n"), "{}", r.text);
            assert!(r.text.contains("KEY-two & \"2\"\n"));
            assert!(r.text.contains("Game <Deluxe> & \"More\""));
            assert!(r.text.contains(heading), "{}", r.text);
            assert!(
                r.html.contains("KEY-&lt;b&gt;one&lt;&#x2f;b&gt;"),
                "{}",
                r.html
            );
            assert!(r.html.contains("KEY-two &amp; &quot;2&quot;"), "{}", r.html);
            assert!(!r.html.contains("<b>"));
            assert!(r
                .html
                .contains("Game &lt;Deluxe&gt; &amp; &quot;More&quot;"));
            assert!(r.html.contains("Kami &amp; Co"));
            assert!(r.html.contains(&format!("<html lang=\"{locale}\">")));
        }
        let zh = render_for("zh-CN", &keys);
        assert!(
            zh.text.contains("订单号：K20261122030000123456789012"),
            "{}",
            zh.text
        );
        let en = render_for("en", &keys);
        assert!(en
            .text
            .contains("Order number: K20261122030000123456789012"));
        // Unknown languages fall back to the shop's default (zh-CN).
        assert_eq!(render_for("fr", &keys).subject, zh.subject);
    }

    #[test]
    fn subjects_stay_on_one_line() {
        let theme = Theme::load(None).unwrap();
        let shop = ShopConfig {
            name: "Evil\r\nBcc: x@example.com".into(),
            ..ShopConfig::default()
        };
        let r = render(&theme, &shop, "http://x", &order("en"), &["k".into()]).unwrap();
        assert!(
            !r.subject.contains('\n') && !r.subject.contains('\r'),
            "{}",
            r.subject
        );
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_an_hour() {
        let waits: Vec<i64> = (1..=9).map(|a| backoff_ms(30_000, a)).collect();
        assert_eq!(
            waits,
            [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]
        );
        assert_eq!(backoff_ms(1000, 1), 1000);
        assert_eq!(backoff_ms(1000, 3), 4000);
        assert_eq!(backoff_ms(3_600_000, 1_000_000), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(1000, 0), 1000);
    }

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "tls error: bad\ncert",
            Some(Box::new(E("bad\ncert", Some(Box::new(E("root", None)))))),
        );
        assert_eq!(error_chain(&e), "tls error: bad cert: root");
    }

    #[tokio::test]
    async fn setup_errors_name_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |ca: &str| {
            let toml = format!(
                "[smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@example.com\"\nca_file = \"{}\"\n",
                dir.path().join(ca).display()
            );
            crate::Config::from_toml_str(&toml)
                .unwrap()
                .config
                .smtp
                .unwrap()
        };
        let err = |ca: &str| match Mailer::new(&cfg(ca)) {
            Ok(_) => panic!("accepted {ca}"),
            Err(e) => e.to_string(),
        };
        let msg = err("missing.pem");
        assert!(msg.starts_with("cannot read `smtp.ca_file`"), "{msg}");
        assert!(msg.contains("missing.pem"), "{msg}");
        std::fs::write(dir.path().join("empty.pem"), "hello").unwrap();
        assert!(err("empty.pem").contains("holds no PEM certificate"));
        std::fs::write(
            dir.path().join("bad.pem"),
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(err("bad.pem").starts_with("`smtp.ca_file`"));
        // Without a CA file (public roots) the mailer builds; nothing is connected yet.
        let ok = crate::Config::from_toml_str(
            "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"a@example.com\"\n",
        )
        .unwrap()
        .config
        .smtp
        .unwrap();
        assert!(Mailer::new(&ok).is_ok());
    }
}
