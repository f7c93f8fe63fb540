//! Sandbox notifications (gateway → kami): a form POST body or a GET query string, every
//! required field present, the HMAC valid, `status` `paid` for a payment.

use super::wire::parse_money;
use crate::common::form::{body_or_query, required};
use crate::{NotifyVerdict, PayError, PaymentConfirmation, RawNotification};

/// Field names of the notification that must be present.
pub(crate) const NOTIFY_REQUIRED: [&str; 6] = [
    "trade_no",
    "gateway_trade_no",
    "amount",
    "currency",
    "status",
    "sign",
];

/// Parse and verify one notification with the shared `secret`.
pub(crate) fn verify_notification(
    secret: &[u8],
    raw: &RawNotification,
) -> Result<NotifyVerdict, PayError> {
    let params = body_or_query(raw)?;
    for key in NOTIFY_REQUIRED {
        required(&params, key)?;
    }
    if !super::verify(secret, &params) {
        return Err(PayError::BadSignature);
    }
    let trade_no = required(&params, "trade_no")?;
    let gateway_trade_no = required(&params, "gateway_trade_no")?;
    let amount = parse_money(required(&params, "amount")?, required(&params, "currency")?)?;
    let status = required(&params, "status")?;
    if status == "paid" {
        Ok(NotifyVerdict::Paid(PaymentConfirmation {
            trade_no: trade_no.to_owned(),
            gateway_trade_no: gateway_trade_no.to_owned(),
            amount,
            paid_at: super::wire::paid_at(&params),
            coin_amount: None,
        }))
    } else {
        Ok(NotifyVerdict::NotPaid {
            trade_no: trade_no.to_owned(),
            status: status.to_owned(),
        })
    }
}
