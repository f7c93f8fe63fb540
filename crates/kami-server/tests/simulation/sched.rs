//! A seeded scheduler for concurrent operations: several futures (buyers, notifications,
//! seller actions) run "at once", but only one of them makes progress at a time, and they
//! switch only where a fake gateway call parks them (a gate). Which one runs next is the
//! seed's choice, so a seed replays the same interleaving, while the database work between two
//! gates runs exactly as in production (one future's store calls finish before another's begin).
//!
//! A crash is a seeded choice point too: every unfinished future is dropped there (each is
//! either not started or parked at a gateway call that has not happened yet).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rand::rngs::StdRng;
use rand::Rng;

tokio::task_local! {
    /// The scheduled operation the current future is (absent outside a concurrent batch).
    static OP: usize;
}

/// Where scheduled futures park. Shared by the fake gateways (who park) and the scheduler.
#[derive(Default)]
pub struct Gates {
    inner: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Operations parked at a gateway call, with what they were about to do.
    parked: BTreeMap<usize, String>,
    /// Operations the scheduler let through their gate.
    released: BTreeMap<usize, bool>,
}

impl Gates {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by a fake gateway before it acts: inside a scheduled operation, wait until the
    /// scheduler picks this operation again; elsewhere, pass at once.
    pub async fn pass(&self, what: String) {
        let Ok(op) = OP.try_with(|op| *op) else {
            return;
        };
        let mut what = Some(what);
        std::future::poll_fn(|_cx| {
            let mut g = self.lock();
            if g.released.remove(&op).is_some() {
                g.parked.remove(&op);
                return Poll::Ready(());
            }
            if let Some(w) = what.take() {
                g.parked.insert(op, w);
            }
            // The scheduler polls this future itself when it picks it: no waker needed.
            Poll::Pending
        })
        .await
    }

    fn parked(&self, op: usize) -> Option<String> {
        self.lock().parked.get(&op).cloned()
    }

    fn release(&self, op: usize) {
        self.lock().released.insert(op, true);
    }

    fn clear(&self) {
        let mut g = self.lock();
        g.parked.clear();
        g.released.clear();
    }
}

pub type OpFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// How a concurrent batch ended.
pub enum Batch<T> {
    /// Every operation finished: their results in the order given.
    Done(Vec<T>),
    /// The engine crashed at a choice point: results of the operations that had finished
    /// (`None` for those dropped in flight).
    Crashed(Vec<Option<T>>),
}

/// Run `ops` interleaved at their gateway calls, choosing with `rng`; with `crash_at =
/// Some(k)`, crash at the k-th choice point if the batch is still running then. `log` gets
/// one line per switch.
pub async fn run<'a, T: 'a>(
    gates: &Arc<Gates>,
    rng: &RefCell<StdRng>,
    ops: Vec<OpFuture<'a, T>>,
    crash_at: Option<usize>,
    log: &RefCell<Vec<String>>,
) -> Batch<T> {
    gates.clear();
    let mut futs: Vec<Option<OpFuture<'a, T>>> = ops
        .into_iter()
        .enumerate()
        .map(|(i, f)| Some(Box::pin(OP.scope(i, f)) as OpFuture<'a, T>))
        .collect();
    let mut results: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    let mut active: Option<usize> = None;
    let mut choices = 0usize;
    let outcome = std::future::poll_fn(|cx: &mut Context<'_>| loop {
        let i = match active {
            Some(i) => i,
            None => {
                let open: Vec<usize> = (0..futs.len()).filter(|&i| futs[i].is_some()).collect();
                if open.is_empty() {
                    return Poll::Ready(false);
                }
                if crash_at == Some(choices) {
                    return Poll::Ready(true);
                }
                choices += 1;
                let i = open[rng.borrow_mut().gen_range(0..open.len())];
                if let Some(what) = gates.parked(i) {
                    log.borrow_mut().push(format!("    op{i} resumes: {what}"));
                    gates.release(i);
                } else {
                    log.borrow_mut().push(format!("    op{i} starts"));
                }
                active = Some(i);
                i
            }
        };
        let Some(f) = futs[i].as_mut() else {
            active = None;
            continue;
        };
        match f.as_mut().poll(cx) {
            Poll::Ready(r) => {
                results[i] = Some(r);
                futs[i] = None;
                active = None;
            }
            Poll::Pending => {
                if gates.parked(i).is_some() {
                    active = None;
                } else {
                    // Inside the store (a read on the blocking pool, a write on the writer
                    // thread): only this operation runs until it finishes or parks.
                    return Poll::Pending;
                }
            }
        }
    })
    .await;
    // Dropping the unfinished futures here is the crash: their gateway calls never happen.
    drop(futs);
    gates.clear();
    if outcome {
        Batch::Crashed(results)
    } else {
        Batch::Done(results.into_iter().flatten().collect())
    }
}
