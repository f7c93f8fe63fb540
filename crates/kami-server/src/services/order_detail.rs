//! Everything the seller's order page shows: the order, its payment attempts, and one
//! timeline merging creation, notifications (verified or not, raw as stored), the status
//! times the order records, refunds, the delivery mail and the audit rows about the order.

use kami_core::{Millis, OrderNo, OrderStatus};
use kami_store::{AuditFilter, MailState, Order, OrderPayment};

use super::mail::{self, MailStatus};
use super::{ServiceError, ServiceResult};
use crate::state::AppState;

/// One line of the timeline; `raw` is the notification as received (escaped when shown).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineEntry {
    pub at: Millis,
    /// `created`, `payment_paid`, `payment_event`, `paid`, `delivered`, `refund`, `mail_sent`,
    /// `mail_pending`, `mail_failed`, `audit`.
    pub kind: &'static str,
    /// Short machine words (outcome, status, action) shown beside the kind.
    pub summary: String,
    pub detail: Option<String>,
    /// For notifications: did the signature check out.
    pub verified: Option<bool>,
    pub raw: Option<RawEvent>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RawEvent {
    pub method: String,
    pub query: String,
    pub headers: String,
    pub body: String,
}

pub struct OrderDetail {
    pub order: Order,
    pub payments: Vec<OrderPayment>,
    pub timeline: Vec<TimelineEntry>,
}

fn entry(at: Millis, kind: &'static str, summary: impl Into<String>) -> TimelineEntry {
    TimelineEntry {
        at,
        kind,
        summary: summary.into(),
        detail: None,
        verified: None,
        raw: None,
    }
}

pub async fn load(state: &AppState, no: &OrderNo) -> ServiceResult<OrderDetail> {
    let order = state
        .store
        .order(no)
        .await?
        .ok_or_else(|| ServiceError::not_found("order_not_found", "no such order"))?;
    let payments = state.store.order_payments(no).await?.unwrap_or_default();
    let mut timeline = vec![entry(
        order.created_at,
        "created",
        OrderStatus::Pending.as_str(),
    )];
    for p in &payments {
        if let Some(at) = p.paid_at {
            let mut e = entry(at, "payment_paid", p.channel_id.as_str());
            e.detail = p.gateway_trade_no.clone();
            timeline.push(e);
        }
    }
    for ev in state.store.payment_events(no).await? {
        let mut e = entry(ev.received_at, "payment_event", ev.outcome.clone());
        e.detail = ev.detail.clone();
        e.verified = Some(ev.verified);
        e.raw = Some(RawEvent {
            method: ev.http_method,
            query: ev.query,
            headers: ev.headers,
            body: String::from_utf8_lossy(&ev.body).into_owned(),
        });
        timeline.push(e);
    }
    if let Some(at) = order.paid_at {
        timeline.push(entry(at, "paid", ""));
    }
    if let Some(at) = order.delivered_at {
        timeline.push(entry(at, "delivered", ""));
    }
    for r in state.store.refunds(no).await? {
        let mut e = entry(
            r.created_at,
            "refund",
            format!("{} {}", r.amount, r.status.as_str()),
        );
        e.detail = r.error.clone();
        timeline.push(e);
    }
    match mail::status(state, no).await? {
        MailStatus::Known(MailState::Sent { at, attempts }) => {
            timeline.push(entry(at, "mail_sent", attempts.to_string()));
        }
        MailStatus::Known(MailState::Pending {
            attempts,
            next_attempt_at,
            last_error,
        }) => {
            let mut e = entry(next_attempt_at, "mail_pending", attempts.to_string());
            e.detail = last_error;
            timeline.push(e);
        }
        MailStatus::Known(MailState::Failed { at, error }) => {
            let mut e = entry(at, "mail_failed", "");
            e.detail = Some(error);
            timeline.push(e);
        }
        MailStatus::NotApplicable | MailStatus::Disabled => {}
    }
    let audit = state
        .store
        .audit_log(AuditFilter {
            target: Some(format!("order:{no}")),
            limit: 200,
            ..AuditFilter::default()
        })
        .await?;
    for a in audit {
        let mut e = entry(a.at, "audit", a.entry.action.clone());
        e.detail = Some(format!(
            "{}{}",
            a.entry.actor,
            a.entry
                .after
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        ));
        timeline.push(e);
    }
    // Stable: equal times keep the order above (creation before what follows it).
    timeline.sort_by_key(|e| e.at);
    Ok(OrderDetail {
        order,
        payments,
        timeline,
    })
}
