//! The in-flight request cap: beyond it, `503` + `Retry-After` at once. Gateway
//! notifications may use the whole capacity; everything else only what leaves them a share,
//! so a storefront rush never sheds a payment notification first.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
}

/// A request's place under the cap; given back on drop.
pub(super) struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    pub(super) fn new(max: usize) -> InFlight {
        let max = max.max(2);
        InFlight {
            now: Arc::new(AtomicUsize::new(0)),
            max,
            max_other: max - (max / 8).max(1),
        }
    }

    pub(super) fn admit(&self, class: Class) -> Option<Permit> {
        let limit = match class {
            Class::Notification => self.max,
            Class::Other => self.max_other,
        };
        let mut n = self.now.load(Ordering::Acquire);
        loop {
            if n >= limit {
                return None;
            }
            match self
                .now
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Permit(self.now.clone())),
                Err(actual) => n = actual,
            }
        }
    }
}

/// The `503` of a shed request: JSON under `/api`, a short page elsewhere.
pub(super) fn overloaded(path: &str, started: Started) -> Response<GuardedBody> {
    let mut response = if path.starts_with("/api/") {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is busy; please retry shortly",
        )
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(
                "<!doctype html><meta charset=\"utf-8\"><title>Busy</title>\
                 <h1>The shop is busy</h1><p>Please try again in a moment.</p>",
            ),
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
    use super::*;

    #[test]
    fn notifications_keep_a_share_no_other_request_may_use() {
        let cap = InFlight::new(16);
        let others: Vec<Permit> = (0..14).filter_map(|_| cap.admit(Class::Other)).collect();
        assert_eq!(others.len(), 14, "16 less an eighth");
        assert!(cap.admit(Class::Other).is_none());
        let n1 = cap.admit(Class::Notification);
        let n2 = cap.admit(Class::Notification);
        assert!(n1.is_some() && n2.is_some());
        assert!(
            cap.admit(Class::Notification).is_none(),
            "the cap binds them too"
        );
        drop(others);
        assert!(cap.admit(Class::Other).is_some(), "permits are given back");
        assert_eq!(InFlight::new(2).max_other, 1, "at least one place is kept");
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of("/pay/notify/alipay"), Class::Notification);
        assert_eq!(Class::of("/pay/return/alipay"), Class::Other);
        assert_eq!(Class::of("/api/v1/orders"), Class::Other);
    }
}
