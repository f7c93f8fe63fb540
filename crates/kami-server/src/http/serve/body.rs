//! The request-body deadline: a body dribbled in too slowly fails with [`BodyTimeout`], the
//! handler answers, and hyper closes the connection (the body was not read to its end).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// When a body is late.
#[derive(Debug, Clone, Copy)]
pub(super) enum BodyRule {
    /// All of it by this instant.
    Whole(Instant),
    /// No more than this between two chunks (very large uploads).
    BetweenChunks(Duration),
}

/// The error a late body fails with (extractors turn it into `408`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// Is `e`, or one of its causes, a [`BodyTimeout`]?
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(e);
    while let Some(err) = e {
        if err.is::<BodyTimeout>() {
            return true;
        }
        e = err.source();
    }
    false
}

pub(super) struct TimedBody<B> {
    inner: B,
    rule: BodyRule,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub(super) fn new(inner: B, rule: BodyRule) -> TimedBody<B> {
        TimedBody {
            inner,
            rule,
            sleep: None,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let BodyRule::BetweenChunks(_) = this.rule {
                this.sleep = None;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let rule = this.rule;
        let sleep = this.sleep.get_or_insert_with(|| {
            Box::pin(match rule {
                BodyRule::Whole(deadline) => tokio::time::sleep_until(deadline),
                BodyRule::BetweenChunks(gap) => tokio::time::sleep(gap),
            })
        });
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
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
    use http_body_util::{BodyExt, StreamBody};

    /// A body yielding one byte every `gap`, `n` times.
    fn dribble(
        gap: Duration,
        n: usize,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let stream = futures::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((Ok(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        StreamBody::new(Box::pin(stream))
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test]
    async fn a_dribbled_body_misses_the_whole_body_deadline() {
        let deadline = Instant::now() + MS(300);
        let body = TimedBody::new(dribble(MS(50), 100), BodyRule::Whole(deadline));
        let err = body.collect().await.err().unwrap();
        assert!(err.downcast_ref::<BodyTimeout>().is_some(), "{err}");
        let late = Instant::now() - deadline;
        assert!(late < MS(200), "cut {late:?} after the deadline");
    }

    #[tokio::test]
    async fn between_chunks_a_steady_upload_is_not_cut_but_a_stalled_one_is() {
        let gap = MS(200);
        let started = Instant::now();
        let steady = TimedBody::new(dribble(MS(20), 25), BodyRule::BetweenChunks(gap));
        assert_eq!(steady.collect().await.unwrap().to_bytes().len(), 25);
        assert!(
            started.elapsed() > gap,
            "the whole took longer than one gap"
        );
        let stalled = TimedBody::new(dribble(MS(400), 2), BodyRule::BetweenChunks(gap));
        let err = stalled.collect().await.err().unwrap();
        assert!(err.downcast_ref::<BodyTimeout>().is_some(), "{err}");
    }
}
