//! Alipay notifications (A.4): build and sign one for a trade's current state, record it on
//! the trade, and deliver it with the common [`Notifier`] (POST form, acknowledged by exactly
//! `success`), then whatever was queued behind it (reorder).

use std::sync::Arc;

use kami_pay::alipay::wire::signed_notify;

use super::{bj, random_digits, AlipaySim, NotifyMode, NotifyRecord, Outgoing, Status, Trade};
use crate::common::notify::Outbound;

impl AlipaySim {
    /// Build, sign and record a notification of the trade's current state (A.4).
    pub(super) fn notification_locked(
        &self,
        t: &mut Trade,
        kind: &'static str,
        mode: NotifyMode,
        extra: &[(&str, String)],
    ) -> Option<Outgoing> {
        let url = t.notify_url.clone()?;
        let status = if kind == "wait" {
            Status::WaitBuyerPay
        } else {
            t.status
        };
        let now = self.now_ms();
        let notify_id = format!(
            "{}{}",
            bj(now).replace(['-', ' ', ':'], ""),
            random_digits(20)
        );
        let paid = t.paid.unwrap_or(t.total).to_major_string();
        let mut params: Vec<(String, String)> = vec![
            ("notify_time".into(), bj(now)),
            ("notify_type".into(), "trade_status_sync".into()),
            ("notify_id".into(), notify_id.clone()),
            ("app_id".into(), self.cfg.app_id.clone()),
            ("auth_app_id".into(), self.cfg.app_id.clone()),
            ("charset".into(), "utf-8".into()),
            ("version".into(), "1.0".into()),
            ("trade_no".into(), t.trade_no.clone()),
            ("out_trade_no".into(), t.out_trade_no.clone()),
            ("buyer_id".into(), "2088102177846880".into()),
            ("buyer_logon_id".into(), "158****1234".into()),
            ("seller_id".into(), self.cfg.seller_id.clone()),
            ("seller_email".into(), "shop@example.com".into()),
            ("trade_status".into(), status.api().into()),
            ("total_amount".into(), paid.clone()),
            ("subject".into(), t.subject.clone()),
            ("gmt_create".into(), bj(t.created_ms)),
        ];
        if status != Status::WaitBuyerPay && t.paid.is_some() {
            let zero = "0.00".to_owned();
            params.extend([
                ("receipt_amount".into(), paid.clone()),
                ("invoice_amount".into(), paid.clone()),
                ("buyer_pay_amount".into(), paid.clone()),
                ("point_amount".into(), zero),
                ("gmt_payment".into(), bj(t.paid_ms.unwrap_or(now))),
                (
                    "fund_bill_list".into(),
                    format!("[{{\"amount\":\"{paid}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]"),
                ),
            ]);
        }
        if status == Status::Closed {
            params.push(("gmt_close".into(), bj(now)));
        }
        for (k, v) in extra {
            params.push(((*k).to_owned(), v.clone()));
        }
        let signed = match signed_notify(&self.cfg.gateway_key, t.sign_type, params) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign alipay notification");
                return None;
            }
        };
        let body = match serde_urlencoded::to_string(&signed) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode alipay notification");
                return None;
            }
        };
        t.notifications.push(NotifyRecord {
            notify_id,
            trade_status: status.api().into(),
            kind,
            attempts: 0,
            delivered: false,
            last_error: None,
            body: body.clone(),
        });
        Some(Outgoing {
            out_trade_no: t.out_trade_no.clone(),
            url,
            index: t.notifications.len() - 1,
            body,
            mode,
            then: None,
        })
    }

    pub(super) fn spawn_delivery(&self, o: Outgoing) {
        // Deliveries outlive the request: they need the Arc. Handlers and `pay` hold one.
        if let Some(sim) = self.me.upgrade() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(sim.deliver(o));
            }
        }
    }

    /// Send one notification; `Ok` iff the merchant answered 200 with body exactly
    /// Deliver on the retry schedule, then whatever was queued behind it (reorder).
    async fn deliver(self: Arc<Self>, first: Outgoing) {
        let mut next = Some(first);
        while let Some(o) = next.take() {
            self.deliver_one(&o).await;
            next = o.then.map(|b| *b);
        }
    }

    async fn deliver_one(&self, o: &Outgoing) {
        let outbound = Outbound::post(
            &o.url,
            "application/x-www-form-urlencoded; charset=utf-8",
            o.body.clone(),
        );
        self.notifier
            .deliver(
                &o.out_trade_no,
                o.mode,
                |_| Some(outbound.clone()),
                |round| {
                    let mut st = self.lock();
                    if let Some(r) = st
                        .trades
                        .get_mut(&o.out_trade_no)
                        .and_then(|t| t.notifications.get_mut(o.index))
                    {
                        r.attempts += round.sent;
                        r.delivered |= round.ok;
                        if let Some(e) = &round.last_error {
                            r.last_error = Some(e.clone());
                        }
                    }
                    round.ok
                },
            )
            .await;
    }
}
