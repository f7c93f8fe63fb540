//! Alipay asynchronous notifications (A.4): a strictly parsed form, verified with the
//! configured sign type over every field but `sign` and `sign_type`, checked for our app and
//! seller, and read as paid only for a plain `trade_status_sync` success.

use super::wire::{clip, cny, field, parse_beijing_time, verify_params, NOTIFY_UNSIGNED};
use super::AlipayChannel;
use crate::common::form::{body_or_query, required};
use crate::common::pay_time::pay_time;
use crate::{NotifyVerdict, PayError, PaymentConfirmation, RawNotification};

/// Notification fields that must be present (and non-empty).
pub const NOTIFY_REQUIRED: [&str; 6] = [
    "sign",
    "app_id",
    "out_trade_no",
    "trade_no",
    "total_amount",
    "trade_status",
];

impl AlipayChannel {
    /// Parse and verify one notification (A.4).
    pub(super) fn verify_notify(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        let params = body_or_query(raw)?;
        let get = |key: &str| required(&params, key);
        for key in NOTIFY_REQUIRED {
            get(key)?;
        }
        if let Some(st) = field(&params, "sign_type") {
            if st != self.cfg.sign_type.as_str() {
                return Err(PayError::BadSignature);
            }
        }
        if !verify_params(
            &self.cfg.alipay_public_key,
            self.cfg.sign_type,
            &params,
            NOTIFY_UNSIGNED,
        ) {
            return Err(PayError::BadSignature);
        }
        if get("app_id")? != self.cfg.app_id {
            return Err(PayError::WrongMerchant);
        }
        if let Some(seller) = self.cfg.seller_id.as_deref().filter(|s| !s.is_empty()) {
            if field(&params, "seller_id") != Some(seller) {
                return Err(PayError::WrongMerchant);
            }
        }
        let out_trade_no = get("out_trade_no")?;
        let gateway_trade_no = get("trade_no")?;
        let amount = cny(get("total_amount")?)?;
        let status = get("trade_status")?;
        let not_paid = |status: &str| {
            Ok(NotifyVerdict::NotPaid {
                trade_no: out_trade_no.to_owned(),
                status: clip(status, 64),
            })
        };
        if let Some(t) = field(&params, "notify_type") {
            if t != "trade_status_sync" {
                return not_paid(t);
            }
        }
        match status {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                let refund = ["refund_fee", "out_biz_no", "gmt_refund"]
                    .iter()
                    .any(|k| field(&params, k).is_some_and(|v| !v.is_empty()));
                if refund {
                    return not_paid("PARTIAL_REFUND");
                }
                Ok(NotifyVerdict::Paid(PaymentConfirmation {
                    trade_no: out_trade_no.to_owned(),
                    gateway_trade_no: gateway_trade_no.to_owned(),
                    amount,
                    paid_at: pay_time(
                        "alipay",
                        "gmt_payment",
                        field(&params, "gmt_payment"),
                        parse_beijing_time,
                    ),
                    coin_amount: None,
                }))
            }
            other => not_paid(other),
        }
    }
}
