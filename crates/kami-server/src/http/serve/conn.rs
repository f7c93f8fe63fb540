//! Connection caps (global and per client address) and the watchdog on a connection's socket
//! (head and write-stall deadlines).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

// Whom a connection counts against: the IPv4 address, or the IPv6 /64 (one subscriber's
// prefix; its addresses are free to the holder).
use crate::limits::client_key;

/// Open connections per client key.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The caps on open connections.
pub(super) struct ConnCaps {
    open: Arc<AtomicUsize>,
    max: usize,
    per_ip: PerIp,
    max_per_ip: usize,
    trusted: Vec<IpNet>,
}

/// An open connection's place under the caps; freed on drop.
pub(super) struct Slot {
    open: Arc<AtomicUsize>,
    per_ip: Option<(PerIp, IpAddr)>,
}

impl ConnCaps {
    pub(super) fn new(max: usize, max_per_ip: usize, trusted: Vec<IpNet>) -> ConnCaps {
        ConnCaps {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            max_per_ip,
            trusted,
        }
    }

    /// A slot for a new connection from `peer`, or `None` when a cap is reached. Our own
    /// proxies (`server.trusted_proxies`) carry many clients: only the global cap applies;
    /// so does it to this host itself (127.0.0.1, ::1): a reverse proxy beside kami, even
    /// one not (yet) listed, must not make all its clients share one address's cap.
    pub(super) fn admit(&self, peer: IpAddr) -> Option<Slot> {
        let peer = peer.to_canonical();
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut slot = Slot {
            open: self.open.clone(),
            per_ip: None,
        };
        if is_this_host(peer) || self.trusted.iter().any(|net| net.contains(&peer)) {
            return Some(slot);
        }
        let key = client_key(Some(peer));
        let mut counts = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max_per_ip {
            return None; // `slot` gives the global place back
        }
        *n += 1;
        drop(counts);
        slot.per_ip = Some((self.per_ip.clone(), key));
        Some(slot)
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some((per_ip, key)) = self.per_ip.take() {
            let mut counts = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

/// 127.0.0.1 or ::1: this host (other 127.0.0.0/8 addresses count as clients).
pub(super) fn is_this_host(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == std::net::Ipv6Addr::LOCALHOST,
    }
}

/// What a connection's requests tell its watchdog.
#[derive(Default)]
pub(super) struct Activity {
    /// Requests whose head was read and whose response is not sent yet.
    busy: AtomicUsize,
    /// Request heads read so far.
    heads: AtomicU64,
}

/// A request in progress on its connection (until its response is sent or dropped).
pub(super) struct Started(Arc<Activity>);

impl Activity {
    pub(super) fn request_started(self: &Arc<Self>) -> Started {
        self.heads.fetch_add(1, Ordering::AcqRel);
        self.busy.fetch_add(1, Ordering::AcqRel);
        Started(self.clone())
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket under a watchdog:
/// - a request head must be complete within `head` of its first byte (a new connection's
///   first head: of accepting it), else reads fail with `TimedOut` and hyper closes the
///   connection. Idle time between requests is hyper's keep-alive timer, not this one;
/// - a write that makes no progress for `stall` (a client that does not read its response)
///   fails the same way.
pub(super) struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
    head: Duration,
    stall: Duration,
    /// Armed head deadline and the number of heads read when it was armed.
    head_deadline: Option<(u64, Pin<Box<Sleep>>)>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> Watched<IO> {
    pub(super) fn new(io: IO, activity: Arc<Activity>, head: Duration, stall: Duration) -> Self {
        let heads = activity.heads.load(Ordering::Acquire);
        Watched {
            io,
            activity,
            head,
            stall,
            head_deadline: Some((heads, Box::pin(tokio::time::sleep(head)))),
            write_deadline: None,
        }
    }

    fn timed_out(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let heads = this.activity.heads.load(Ordering::Acquire);
        let busy = this.activity.busy.load(Ordering::Acquire) > 0;
        // A head read since arming, or a request being answered: that head is done.
        if busy
            || this
                .head_deadline
                .as_ref()
                .is_some_and(|(h, _)| *h != heads)
        {
            this.head_deadline = None;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // The first bytes of a new request: its head is now on the clock.
                if !busy && this.head_deadline.is_none() && buf.filled().len() > before {
                    let deadline = Instant::now() + this.head;
                    this.head_deadline =
                        Some((heads, Box::pin(tokio::time::sleep_until(deadline))));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some((_, sleep)) = &mut this.head_deadline {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(Self::timed_out("request head")));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Watched<IO> {
    /// Clears the stall deadline on progress; on `Pending`, arms and polls it.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.write_deadline = None;
            return r;
        }
        let stall = self.stall;
        let sleep = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Self::timed_out("response write")));
        }
        Poll::Pending
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.watch_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch_write(cx, r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Reads from `io` until it fails or `limit` passes; the error kind and when.
    async fn read_until_error(
        io: &mut Watched<tokio::io::DuplexStream>,
        limit: Duration,
    ) -> Option<(io::ErrorKind, Duration)> {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        tokio::time::timeout(limit, async {
            loop {
                if let Err(e) = io.read(&mut buf).await {
                    return (e.kind(), started.elapsed());
                }
            }
        })
        .await
        .ok()
    }

    #[tokio::test]
    async fn a_head_has_its_time_from_connecting_then_from_its_first_byte_never_while_idle() {
        // Nothing sent: the connection's first head times out.
        let (server, _client) = tokio::io::duplex(1024);
        let mut io = Watched::new(server, Arc::default(), MS(200), MS(200));
        let (kind, after) = read_until_error(&mut io, MS(2000)).await.unwrap();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(after >= MS(150), "{after:?}");

        // A request read and answered: idle, the head clock is stopped (hyper's keep-alive
        // timer is in charge) ...
        let (server, mut client) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::default());
        let mut io = Watched::new(server, activity.clone(), MS(200), MS(200));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        drop(activity.request_started());
        assert_eq!(
            read_until_error(&mut io, MS(600)).await,
            None,
            "idle is not a late head"
        );
        // ... until the next head's first byte: then it has 200 ms.
        client.write_all(b"GET").await.unwrap();
        let (kind, after) = read_until_error(&mut io, MS(2000)).await.unwrap();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(after >= MS(150) && after < MS(1000), "{after:?}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_its_response_is_cut_off() {
        let (server, _client) = tokio::io::duplex(64);
        let mut io = Watched::new(server, Arc::default(), MS(5000), MS(200));
        let started = Instant::now();
        let err = io.write_all(&[b'x'; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= MS(150));
    }

    #[test]
    fn caps_per_client_and_overall_and_trusted_proxies_are_exempt_from_the_first() {
        let caps = ConnCaps::new(6, 2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a1 = caps.admit(ip("192.0.2.1")).unwrap();
        let a2 = caps.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(caps.admit(ip("192.0.2.1")).is_none(), "third from one IP");
        assert_eq!(caps.open(), 2, "a refused connection holds no place");
        let b = caps.admit(ip("2001:db8::1")).unwrap();
        let b2 = caps.admit(ip("2001:db8::2")).unwrap();
        assert!(caps.admit(ip("2001:db8::3")).is_none(), "same /64");
        drop(a1);
        let a3 = caps.admit(ip("192.0.2.1")).unwrap();
        let p1 = caps.admit(ip("10.1.1.1")).unwrap();
        let p2 = caps.admit(ip("10.1.1.1")).unwrap();
        assert_eq!(caps.open(), 6);
        assert!(
            caps.admit(ip("10.1.1.1")).is_none(),
            "the global cap binds proxies too"
        );
        assert!(caps.admit(ip("198.51.100.1")).is_none(), "global cap");
        assert!(
            caps.admit(ip("127.0.0.1")).is_none(),
            "global cap, this host too"
        );
        drop((a2, a3, b, b2, p1, p2));
        let local: Vec<Slot> = (0..6).filter_map(|_| caps.admit(ip("::1"))).collect();
        assert_eq!(local.len(), 6, "no per-IP cap for this host");
        assert!(caps.admit(ip("127.0.0.2")).is_none(), "global cap");
        drop(local);
        let other_loopback: Vec<Slot> =
            (0..3).filter_map(|_| caps.admit(ip("127.0.0.2"))).collect();
        assert_eq!(
            other_loopback.len(),
            2,
            "127.0.0.2 is a client like any other"
        );
        drop(other_loopback);
        assert_eq!(caps.open(), 0);
        assert!(
            caps.per_ip.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }
}
