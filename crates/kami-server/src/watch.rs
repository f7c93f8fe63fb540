//! Wakes long-polling readers (`GET /api/v1/orders/{no}?wait=N`) when an order changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct OrderWatch {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

impl OrderWatch {
    pub fn subscribe(&self, order_no: &str) -> Arc<Notify> {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(order_no.to_owned()).or_default().clone()
    }

    /// Called after the change is committed.
    pub fn changed(&self, order_no: &str) {
        let n = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(order_no);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// Drop the entry when the last waiter leaves without a change.
    pub fn unsubscribe(&self, order_no: &str, handle: Arc<Notify>) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(order_no) {
            // map + this handle
            if Arc::ptr_eq(existing, &handle) && Arc::strong_count(&handle) <= 2 {
                map.remove(order_no);
            }
        }
    }
}
