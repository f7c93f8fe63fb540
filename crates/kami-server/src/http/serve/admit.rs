//! The in-flight request caps: beyond the global one, `503` + `Retry-After` at once; beyond
//! one client's (`server.max_in_flight_per_ip`), `429` + `Retry-After`. Gateway notifications
//! may use the whole capacity; everything else only what leaves them a share, so a storefront
//! rush never sheds a payment notification first. One client may hold no more than its cap
//! in all, and no more than a quarter of the notifications' share: a few addresses holding
//! requests open (bodies never sent, responses never read) take neither the capacity nor
//! the share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::response::{Html, IntoResponse};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::conn::Started;
use crate::http::error::ApiError;

/// Seconds a shed client is told to wait.
const RETRY_AFTER_SECS: &str = "2";

/// Which share of the capacity a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `/pay/notify/…`: a gateway telling us about a payment.
    Notification,
    Other,
}

impl Class {
    pub fn of(path: &str) -> Class {
        if path.starts_with("/pay/notify/") {
            Class::Notification
        } else {
            Class::Other
        }
    }
}

pub(super) struct InFlight {
    now: Arc<AtomicUsize>,
    max: usize,
    /// What requests other than notifications may use: `max` less an eighth (at least one).
    max_other: usize,
    clients: Clients,
    /// Requests one client may have in flight.
    max_per_client: usize,
    /// Places of the notifications' share one client may hold: a quarter of it (at least
    /// one), and no more than `max_per_client`.
    max_share_per_client: usize,
}

/// In-flight requests per client key; an entry lives while its client has one.
type Clients = Arc<Mutex<HashMap<IpAddr, Held>>>;

#[derive(Default)]
struct Held {
    all: usize,
    /// Of them, admitted into the notifications' share.
    share: usize,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The global cap (or what of it this class may use): `503`.
    Overloaded,
    /// This client's cap: `429`.
    ClientBusy,
}

/// A request's place under the caps; given back on drop.
pub(super) struct Permit {
    now: Arc<AtomicUsize>,
    client: Option<(Clients, IpAddr, bool)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::AcqRel);
        if let Some((clients, key, in_share)) = self.client.take() {
            let mut held = clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = held.get_mut(&key) {
                h.all = h.all.saturating_sub(1);
                if in_share {
                    h.share = h.share.saturating_sub(1);
                }
                if h.all == 0 {
                    held.remove(&key);
                }
            }
        }
    }
}

impl InFlight {
    pub(super) fn new(max: usize, max_per_client: usize) -> InFlight {
        let max = max.max(2);
        let share = (max / 8).max(1);
        let max_per_client = max_per_client.max(1);
        InFlight {
            now: Arc::new(AtomicUsize::new(0)),
            max,
            max_other: max - share,
            clients: Arc::new(Mutex::new(HashMap::new())),
            max_per_client,
            max_share_per_client: (share / 4).clamp(1, max_per_client),
        }
    }

    /// A place for a request of `class` from `client` (its key, see
    /// [`crate::limits::client_key`]; `None`: exempt from the per-client caps).
    pub(super) fn admit(&self, class: Class, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        let Some(key) = client else {
            return self.take(class, |_| true).map(|_| Permit {
                now: self.now.clone(),
                client: None,
            });
        };
        let mut held = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let h = held.entry(key).or_default();
        if h.all >= self.max_per_client {
            return Err(Refusal::ClientBusy);
        }
        let share_left = h.share < self.max_share_per_client;
        let max_other = self.max_other;
        // Beyond what other requests may use, a notification takes a place of the share.
        let n = self.take(class, |n| n < max_other || share_left);
        let n = match n {
            Ok(n) => n,
            Err(refusal) => {
                if h.all == 0 {
                    held.remove(&key);
                }
                return Err(refusal);
            }
        };
        let in_share = n >= max_other;
        h.all += 1;
        if in_share {
            h.share += 1;
        }
        Ok(Permit {
            now: self.now.clone(),
            client: Some((self.clients.clone(), key, in_share)),
        })
    }

    /// One more in flight if `class` may have it and `allowed(count before)`; that count.
    fn take(&self, class: Class, allowed: impl Fn(usize) -> bool) -> Result<usize, Refusal> {
        let limit = match class {
            Class::Notification => self.max,
            Class::Other => self.max_other,
        };
        let mut n = self.now.load(Ordering::Acquire);
        loop {
            if n >= limit {
                return Err(Refusal::Overloaded);
            }
            if !allowed(n) {
                return Err(Refusal::ClientBusy);
            }
            match self
                .now
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(n),
                Err(actual) => n = actual,
            }
        }
    }
}

/// The answer to a request not admitted: `503` (the server is busy) or `429` (this client
/// has enough in flight), JSON under `/api`, a short page elsewhere; both with `Retry-After`.
pub(super) fn refused(path: &str, started: Started, refusal: Refusal) -> Response<GuardedBody> {
    let (status, code, message, title, page) = match refusal {
        Refusal::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is busy; please retry shortly",
            "Busy",
            "<h1>The shop is busy</h1><p>Please try again in a moment.</p>",
        ),
        Refusal::ClientBusy => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_in_flight",
            "too many requests from your address at once; please retry shortly",
            "Too many requests",
            "<h1>Too many requests at once</h1><p>Please try again in a moment.</p>",
        ),
    };
    let mut response = if path.starts_with("/api/") {
        ApiError::new(status, code, message).into_response()
    } else {
        (
            status,
            Html(format!(
                "<!doctype html><meta charset=\"utf-8\"><title>{title}</title>{page}"
            )),
        )
            .into_response()
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response.map(|b| GuardedBody::new(b, started, None))
}

/// A response body that holds its request's guards until hyper is done sending it.
pub struct GuardedBody {
    inner: Body,
    _started: Started,
    _permit: Option<Permit>,
}

impl GuardedBody {
    pub(super) fn new(inner: Body, started: Started, permit: Option<Permit>) -> GuardedBody {
        GuardedBody {
            inner,
            _started: started,
            _permit: permit,
        }
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    fn client(i: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i)))
    }

    #[test]
    fn notifications_keep_a_share_no_other_request_may_use() {
        let cap = InFlight::new(16, 100);
        let others: Vec<Permit> = (0..14)
            .filter_map(|_| cap.admit(Class::Other, None).ok())
            .collect();
        assert_eq!(others.len(), 14, "16 less an eighth");
        assert_eq!(
            cap.admit(Class::Other, None).err(),
            Some(Refusal::Overloaded)
        );
        let n1 = cap.admit(Class::Notification, None);
        let n2 = cap.admit(Class::Notification, None);
        assert!(n1.is_ok() && n2.is_ok());
        assert_eq!(
            cap.admit(Class::Notification, None).err(),
            Some(Refusal::Overloaded),
            "the cap binds them too"
        );
        drop(others);
        assert!(
            cap.admit(Class::Other, None).is_ok(),
            "permits are given back"
        );
        assert_eq!(
            InFlight::new(2, 1).max_other,
            1,
            "at least one place is kept"
        );
    }

    #[test]
    fn one_client_holds_its_cap_at_most_and_gets_it_back() {
        let cap = InFlight::new(64, 3);
        let mine: Vec<Permit> = (0..5)
            .filter_map(|_| cap.admit(Class::Other, ME).ok())
            .collect();
        assert_eq!(mine.len(), 3);
        assert_eq!(
            cap.admit(Class::Notification, ME).err(),
            Some(Refusal::ClientBusy),
            "notifications count against the client's cap too"
        );
        assert!(
            cap.admit(Class::Other, client(1)).is_ok(),
            "others are served"
        );
        assert!(cap.admit(Class::Other, None).is_ok(), "exempt clients too");
        drop(mine);
        assert!(
            cap.admit(Class::Other, ME).is_ok(),
            "permits are given back"
        );
        assert!(
            cap.clients.lock().unwrap().is_empty(),
            "no entry outlives its requests"
        );
    }

    #[test]
    fn no_client_takes_more_than_a_quarter_of_the_notification_share() {
        // 64: 56 for everything, 8 kept for notifications, 2 of them per client.
        let cap = InFlight::new(64, 16);
        assert_eq!(cap.max_share_per_client, 2);
        let rush: Vec<Permit> = (0..56)
            .filter_map(|i| cap.admit(Class::Other, client(i as u8)).ok())
            .collect();
        assert_eq!(rush.len(), 56);
        let mine: Vec<Permit> = (0..4)
            .filter_map(|_| cap.admit(Class::Notification, ME).ok())
            .collect();
        assert_eq!(mine.len(), 2, "a quarter of the share");
        let theirs: Vec<Permit> = (0..6)
            .filter_map(|i| cap.admit(Class::Notification, client(100 + i)).ok())
            .collect();
        assert_eq!(theirs.len(), 6, "the rest of the share is left to others");
        assert_eq!(
            cap.admit(Class::Notification, client(200)).err(),
            Some(Refusal::Overloaded)
        );
        drop((rush, theirs));
        // With room outside the share, the client's notifications are not share places.
        let more: Vec<Permit> = (0..4)
            .filter_map(|_| cap.admit(Class::Notification, ME).ok())
            .collect();
        assert_eq!(more.len(), 4);
        drop((mine, more));
        assert!(cap.clients.lock().unwrap().is_empty());
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of("/pay/notify/alipay"), Class::Notification);
        assert_eq!(Class::of("/pay/return/alipay"), Class::Other);
        assert_eq!(Class::of("/api/v1/orders"), Class::Other);
    }
}
