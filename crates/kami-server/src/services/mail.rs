//! Buyer mail: when an order is delivered, the buyer gets its keys by email.
//!
//! Delivery writes an `order.delivered` outbox row in the delivering transaction; the mail
//! worker (only while SMTP is set up, in the file or the console) claims due rows with a lease, loads the order and
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

use kami_core::OrderNo;
use kami_store::{MailState, Order, OutboxItem, StoreError, ORDER_DELIVERED, ORDER_FULFILLED};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};
use tokio::task::JoinSet;

use crate::config::ShopConfig;
use crate::i18n::Locale;
use crate::mailer::{Mailer, POOL_SIZE};
use crate::state::AppState;
use crate::theme::Theme;

/// Rows claimed (and messages sent concurrently) per round.
pub const BATCH: u32 = POOL_SIZE;
/// Longest wait between two tries of one message.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// A delivery mail still unsent this long after delivery is given up.
const GIVE_UP_AFTER_MS: i64 = 3 * 24 * 3_600_000;

/// The wait after failed try number `attempts` (1, 2, …): base · 2^(attempts-1), at most an hour.
fn backoff_ms(base_ms: i64, attempts: i64) -> i64 {
    base_ms
        .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
        .min(MAX_BACKOFF_MS)
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
        Some(MailState::Pending { .. }) if !state.mail_enabled() => MailStatus::Disabled,
        Some(s) => MailStatus::Known(s),
    })
}

/// Claim the due delivery mails (at most one batch) and send them; returns how many.
pub async fn send_due_once(
    state: &Arc<AppState>,
    mailer: &Arc<Mailer>,
) -> Result<usize, StoreError> {
    let now = state.now_ms();
    let due = state
        .store
        .claim_outbox(
            &[ORDER_DELIVERED, ORDER_FULFILLED],
            now,
            now + mailer.lease_ms(),
            BATCH,
        )
        .await?;
    let n = due.len();
    let mut tasks = JoinSet::new();
    for item in due {
        let (state, mailer) = (state.clone(), mailer.clone());
        tasks.spawn(async move {
            let (id, order) = (
                item.id,
                item.order_no
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
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

#[tracing::instrument(level = "debug", skip_all, fields(outbox = item.id))]
async fn send_one(state: &AppState, mailer: &Mailer, item: OutboxItem) -> Result<(), StoreError> {
    let no = item
        .order_no
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if state.now_ms() - item.created_at >= GIVE_UP_AFTER_MS {
        // Failing for days, or mail was off (or no worker ran) when the order was delivered.
        let why = match &item.last_error {
            Some(e) => format!("unsent 3 days after delivery; last error: {e}"),
            None => "not sent: no mail was being sent within 3 days of delivery".to_owned(),
        };
        tracing::warn!(order = %no, attempt = item.attempts, "delivery mail given up: {why}");
        state
            .store
            .give_up_outbox(item.id, state.now_ms(), &why)
            .await?;
        return Ok(());
    }
    let outcome = match prepare(state, mailer, &item).await {
        Ok(message) => mailer.send(message).await.map_err(Failure::Retry),
        Err(f) => Err(f),
    };
    let now = state.now_ms();
    match outcome {
        Ok(()) => {
            state.store.complete_outbox(item.id, now).await?;
            tracing::info!(order = %no, attempt = item.attempts, "delivery mail sent");
        }
        Err(Failure::Retry(cause)) => {
            let wait = backoff_ms(mailer.retry_base_ms(), item.attempts);
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
        .clone()
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
    // A delivered order mails its keys; a fulfilled (manual) one what the seller gave.
    let keys: &[String] = order.cards.as_deref().unwrap_or_default();
    let content = order.fulfilment.as_deref().filter(|c| !c.is_empty());
    if keys.is_empty() && content.is_none() {
        return Err(Failure::GiveUp(format!(
            "order {} has no delivered keys or content to mail",
            order.order_no
        )));
    }
    let to: Mailbox = order
        .email
        .as_str()
        .parse::<lettre::Address>()
        .map(|a| Mailbox::new(None, a))
        .map_err(|e| Failure::GiveUp(format!("the buyer's address is not usable for SMTP: {e}")))?;
    let rendered = render(
        &state.theme,
        &state.settings().shop,
        &state.public_url,
        order,
        keys,
        content,
    )
    .map_err(Failure::Retry)?;
    let domain = mailer.from().email.domain();
    Message::builder()
        .from(mailer.from().clone())
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

/// Render the delivery mail of `order` (with its `keys`, or the seller's `content` for a
/// fulfilled manual order) from the theme, in the order's language; links point at
/// `public_url`. Errors (a broken theme override) are described for the log.
pub fn render(
    theme: &Theme,
    shop_config: &ShopConfig,
    public_url: &str,
    order: &Order,
    keys: &[String],
    content: Option<&str>,
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
        content => content,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use kami_core::{Currency, Money, OrderStatus};

    fn order(locale: &str) -> Order {
        Order {
            charge: Default::default(),
            order_no: OrderNo::parse("K20261122030000123456789012").unwrap(),
            product_slug: kami_core::Slug::parse("game").unwrap(),
            product_title: "Game <Deluxe> & \"More\"".into(),
            quantity: 2,
            amount: Money::new(2460, Currency::Cny).unwrap(),
            email: kami_core::Email::parse("buyer@example.com").unwrap(),
            method: kami_core::Method::Sandbox,
            channel_id: kami_core::ChannelId::parse("sandbox").unwrap(),
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
            fulfilment: None,
            fields: Default::default(),
            coupon: None,
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
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_fulfilled_order_mails_the_sellers_content_in_both_languages() {
        let theme = Theme::load(None).unwrap();
        let shop = ShopConfig::default();
        let mut o = order("en");
        o.status = OrderStatus::Fulfilled;
        let content = "Account topped up: <100 gems> & a note";
        let en = render(&theme, &shop, "http://x", &o, &[], Some(content)).unwrap();
        assert!(en.text.contains("From the seller"), "{}", en.text);
        assert!(en.text.contains(content), "{}", en.text);
        assert!(!en.text.contains("Your keys"), "{}", en.text);
        assert!(
            en.html
                .contains("Account topped up: &lt;100 gems&gt; &amp; a note"),
            "escaped in HTML: {}",
            en.html
        );
        o.locale = "zh-CN".into();
        let zh = render(&theme, &shop, "http://x", &o, &[], Some(content)).unwrap();
        assert!(zh.text.contains("卖家发给您的内容"), "{}", zh.text);
        assert!(zh.text.contains(content));
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
        let r = render(&theme, &shop, "http://x", &order("en"), &["k".into()], None).unwrap();
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
}
