//! Epay notifications (G.3, G.6): GET query string or POST form, every required field, the
//! version's signature (and v2 timestamp), our `pid`, exact money; `TRADE_SUCCESS` is paid.

use super::wire::parse_money;
use super::{EpayChannel, TRADE_SUCCESS};
use crate::common::form::{clip, parse_form, required};
use crate::{NotifyVerdict, PayError, PaymentConfirmation, RawNotification};

/// Fields every notification must carry (besides `sign`).
pub(super) const NOTIFY_REQUIRED: [&str; 6] = [
    "pid",
    "trade_no",
    "out_trade_no",
    "money",
    "trade_status",
    "sign",
];

/// The parameters of a notification: GET → query string; POST → form body (or the query
/// string when the body is empty: some hosts POST with the parameters in the URL).
pub(super) fn notification_params(
    raw: &RawNotification,
) -> Result<Vec<(String, String)>, PayError> {
    let input: &[u8] = if raw.method.eq_ignore_ascii_case("GET") {
        raw.query.as_bytes()
    } else if raw.method.eq_ignore_ascii_case("POST") {
        if raw.body.is_empty() {
            raw.query.as_bytes()
        } else {
            let ct = raw.header("content-type").unwrap_or("");
            let form = ct.is_empty()
                || ct
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded");
            if !form {
                return Err(PayError::Malformed(format!(
                    "unsupported content type {}",
                    clip(ct)
                )));
            }
            &raw.body
        }
    } else {
        return Err(PayError::Malformed(format!(
            "unsupported method {}",
            clip(&raw.method)
        )));
    };
    parse_form(input)
}

impl EpayChannel {
    /// Parse and verify notification parameters at time `now` (Unix seconds).
    pub(super) fn verify_params(
        &self,
        params: &[(String, String)],
        now: i64,
    ) -> Result<NotifyVerdict, PayError> {
        for key in NOTIFY_REQUIRED {
            required(params, key)?;
        }
        self.check_signature(params, now, PayError::BadSignature)?;
        if required(params, "pid")? != self.pid {
            return Err(PayError::WrongMerchant);
        }
        let out_trade_no = required(params, "out_trade_no")?;
        let trade_no = required(params, "trade_no")?;
        let amount = parse_money(required(params, "money")?)?;
        let status = required(params, "trade_status")?;
        if status == TRADE_SUCCESS {
            // G.3: an Epay notification carries no pay time.
            Ok(NotifyVerdict::Paid(PaymentConfirmation {
                trade_no: out_trade_no.to_owned(),
                gateway_trade_no: trade_no.to_owned(),
                amount,
                paid_at: None,
                coin_amount: None,
            }))
        } else {
            Ok(NotifyVerdict::NotPaid {
                trade_no: out_trade_no.to_owned(),
                status: status.to_owned(),
            })
        }
    }
}
