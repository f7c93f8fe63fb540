//! Notification delivery, once for every simulator: a [`Notifier`] sends a gateway's
//! notification on that gateway's retry schedule (passed in as data, with the gateway's rule
//! for what counts as acknowledged), applying the test controls of [`NotifyMode`], and hands
//! every round's outcome to the simulator's bookkeeping ([`NotifyStats`] or its own record).

use std::time::Duration;

use axum::http::{header, StatusCode};

/// Largest merchant reply body a simulator reads.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// How a payment's notification is delivered (test control). Each simulator acts on the
/// modes its pay page offers (see its `PayOptions`); one it does not offer is delivered like
/// [`NotifyMode::Normal`] (apart from `Delay`, which every simulator honours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    #[default]
    Normal,
    /// Paid, never notified (kami must find it by query/close).
    Drop,
    /// Every attempt sent twice concurrently.
    Duplicate,
    /// Wait this long before the first attempt.
    Delay(Duration),
    /// Kept until the simulator's `release_held` (which can release out of order).
    Hold,
    /// Alipay: also emit a `WAIT_BUYER_PAY` notification, delivered AFTER the
    /// `TRADE_SUCCESS` one (an out-of-order, stale notification).
    Reorder,
}

impl NotifyMode {
    /// The pay form's `notify` value (`""` is normal), if it is one of `offered`; `delay`
    /// becomes [`NotifyMode::Delay`] of `delay`.
    pub fn parse(s: &str, delay: Duration, offered: &[&str]) -> Option<NotifyMode> {
        let s = if s.is_empty() { "normal" } else { s };
        if !offered.contains(&s) {
            return None;
        }
        Some(match s {
            "normal" => NotifyMode::Normal,
            "drop" => NotifyMode::Drop,
            "duplicate" => NotifyMode::Duplicate,
            "delay" => NotifyMode::Delay(delay),
            "hold" => NotifyMode::Hold,
            "reorder" => NotifyMode::Reorder,
            _ => return None,
        })
    }

    /// Requests per attempt.
    pub fn copies(self) -> u32 {
        if self == NotifyMode::Duplicate {
            2
        } else {
            1
        }
    }
}

/// Delivery bookkeeping of one trade's payment notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// HTTP requests sent so far (a duplicated attempt counts two).
    pub attempts: u32,
    /// The merchant acknowledged at least once.
    pub delivered: bool,
    /// Why the last failed request failed.
    pub last_error: Option<String>,
}

impl NotifyStats {
    /// Count one round.
    pub fn record(&mut self, round: &Round) {
        self.attempts += round.sent;
        self.delivered |= round.ok;
        if let Some(e) = &round.last_error {
            self.last_error = Some(e.clone());
        }
    }
}

/// What a round of one attempt came to.
#[derive(Debug, Clone)]
pub struct Round {
    /// 0 for the first attempt.
    pub index: usize,
    /// Requests sent in this round.
    pub sent: u32,
    /// At least one was acknowledged.
    pub ok: bool,
    pub last_error: Option<String>,
}

/// How the request of one attempt is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// The body is the URL's query string (appended with `?` or `&`).
    Get,
    Post,
}

/// One notification request, built afresh per attempt (gateways that re-sign per attempt).
#[derive(Debug, Clone)]
pub struct Outbound {
    pub verb: Verb,
    pub url: String,
    /// `Content-Type` of a POST.
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Outbound {
    /// A form POST, as most gateways send.
    pub fn post(url: &str, content_type: &'static str, body: String) -> Outbound {
        Outbound {
            verb: Verb::Post,
            url: url.to_owned(),
            content_type,
            headers: Vec::new(),
            body,
        }
    }
}

/// One gateway's delivery rules.
#[derive(Debug, Clone)]
pub struct Notifier {
    http: reqwest::Client,
    /// Delay before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    /// Timeout of one request (connect + answer).
    pub timeout: Duration,
    /// Whether the merchant's answer (status, body) acknowledges the notification.
    pub acknowledged: fn(StatusCode, &[u8]) -> bool,
    /// Names the gateway in logs.
    pub gateway: &'static str,
}

/// 200 with a body that trims to `success` (sandbox).
pub fn ok_success(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::OK && body.trim_ascii() == b"success"
}

/// 200 with a body of exactly `success` (Alipay, A.4).
pub fn ok_exactly_success(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::OK && body == b"success"
}

/// A body that trims to `success`, whatever the status (易支付 hosts read only the body).
pub fn any_success(_: StatusCode, body: &[u8]) -> bool {
    body.trim_ascii() == b"success"
}

/// 200 or 204 (WeChat Pay, B.3).
pub fn ok_or_no_content(status: StatusCode, _: &[u8]) -> bool {
    status == StatusCode::OK || status == StatusCode::NO_CONTENT
}

impl Notifier {
    pub fn new(
        gateway: &'static str,
        schedule: Vec<Duration>,
        timeout: Duration,
        acknowledged: fn(StatusCode, &[u8]) -> bool,
    ) -> Notifier {
        Notifier {
            http: reqwest::Client::new(),
            schedule,
            timeout,
            acknowledged,
            gateway,
        }
    }

    /// Send one request; `Ok` iff the answer acknowledges it.
    pub async fn send(&self, o: &Outbound) -> Result<(), String> {
        let request = match o.verb {
            Verb::Get => {
                let sep = if o.url.contains('?') { '&' } else { '?' };
                self.http.get(format!("{}{sep}{}", o.url, o.body))
            }
            Verb::Post => self
                .http
                .post(&o.url)
                .header(header::CONTENT_TYPE, o.content_type)
                .body(o.body.clone()),
        };
        let request = o
            .headers
            .iter()
            .fold(request, |r, (k, v)| r.header(*k, v.as_str()));
        let transport = |e: reqwest::Error| format!("transport: {}", e.without_url());
        let mut resp = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let mut reply = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err("reply too large".into());
            }
            reply.extend_from_slice(&chunk);
        }
        if (self.acknowledged)(status, &reply) {
            Ok(())
        } else {
            let snippet: String = String::from_utf8_lossy(&reply).chars().take(64).collect();
            Err(format!("HTTP {}: {snippet:?}", status.as_u16()))
        }
    }

    /// Deliver on the schedule: before each attempt `request(round)` builds the request
    /// (`None` stops: the trade is gone); after it `record(&round)` books the outcome and says
    /// whether delivery is done. `mode` adds the initial delay and the duplicate copies.
    pub async fn deliver(
        &self,
        trade: &str,
        mode: NotifyMode,
        mut request: impl FnMut(usize) -> Option<Outbound>,
        mut record: impl FnMut(&Round) -> bool,
    ) {
        if let NotifyMode::Delay(d) = mode {
            tokio::time::sleep(d).await;
        }
        let copies = mode.copies();
        for (index, delay) in self.schedule.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            let Some(o) = request(index) else {
                return;
            };
            let results = if copies == 2 {
                let (a, b) = tokio::join!(self.send(&o), self.send(&o));
                vec![a, b]
            } else {
                vec![self.send(&o).await]
            };
            let round = Round {
                index,
                sent: copies,
                ok: results.iter().any(Result::is_ok),
                last_error: results.into_iter().filter_map(Result::err).next_back(),
            };
            if record(&round) {
                tracing::debug!(gateway = self.gateway, %trade, index, "notification delivered");
                return;
            }
            tracing::info!(gateway = self.gateway, %trade, index, error = ?round.last_error,
                "notification not acknowledged");
        }
        tracing::warn!(gateway = self.gateway, %trade, "notification retries exhausted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_only_when_offered() {
        let offered = ["normal", "drop", "duplicate"];
        assert_eq!(
            NotifyMode::parse("", Duration::ZERO, &offered),
            Some(NotifyMode::Normal)
        );
        assert_eq!(
            NotifyMode::parse("drop", Duration::ZERO, &offered),
            Some(NotifyMode::Drop)
        );
        assert_eq!(NotifyMode::parse("hold", Duration::ZERO, &offered), None);
        let d = Duration::from_millis(5);
        assert_eq!(
            NotifyMode::parse("delay", d, &["delay"]),
            Some(NotifyMode::Delay(d))
        );
        assert_eq!(NotifyMode::Duplicate.copies(), 2);
        assert_eq!(NotifyMode::Hold.copies(), 1);
    }

    #[test]
    fn acknowledgement_rules_differ_per_gateway() {
        assert!(ok_success(StatusCode::OK, b" success\n"));
        assert!(!ok_success(StatusCode::ACCEPTED, b"success"));
        assert!(ok_exactly_success(StatusCode::OK, b"success"));
        assert!(!ok_exactly_success(StatusCode::OK, b"success\n"));
        assert!(any_success(StatusCode::INTERNAL_SERVER_ERROR, b"success "));
        assert!(!any_success(StatusCode::OK, b"fail"));
        assert!(ok_or_no_content(StatusCode::NO_CONTENT, b""));
        assert!(!ok_or_no_content(StatusCode::BAD_REQUEST, b"success"));
    }
}
