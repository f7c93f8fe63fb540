//! Epay v2 (G.5): SHA256withRSA signatures (merchant private key out, platform public key
//! in), a `timestamp` on every message checked against a ±[`TIMESTAMP_WINDOW_SECS`] window,
//! and the `/api/pay/*` endpoints whose success `code` is 0.

use super::sign::{canonical, canonical_with, has_zero, UNSIGNED};
use super::wire::{gateway_error, is_not_found, is_safe_redirect, parse_money, push_client};
use super::{EpayChannel, TIMESTAMP_WINDOW_SECS};
use crate::common::form::{field, required};
use crate::common::sign::{unique_sign, without};
use crate::common::text::owned;
use crate::crypto::{RsaHash, RsaSigner, RsaVerifier};
use crate::{CreatePayment, PayError, PaymentAction, RefundOutcome, RefundRequest, TradeState};

/// v2 signature (G.5): standard base64 SHA256withRSA of the canonical string.
pub fn rsa_sign<K: AsRef<str>, V: AsRef<str>>(
    signer: &RsaSigner,
    params: &[(K, V)],
) -> Result<String, PayError> {
    signer
        .sign_base64(RsaHash::Sha256, canonical(params).as_bytes())
        .map_err(|e| PayError::Config(format!("epay RSA signing: {e}")))
}

/// True iff `params` has exactly one `sign`, no duplicated key, and `sign` is a valid
/// SHA256withRSA signature by `verifier`'s key over the canonical string (exact rule, or the
/// `"0"`-dropping variant of G.6).
pub fn rsa_verify<K: AsRef<str>, V: AsRef<str>>(verifier: &RsaVerifier, params: &[(K, V)]) -> bool {
    let Some(sig) = unique_sign(params) else {
        return false;
    };
    if verifier.verify_base64(RsaHash::Sha256, canonical(params).as_bytes(), sig) {
        return true;
    }
    has_zero(params)
        && verifier.verify_base64(
            RsaHash::Sha256,
            canonical_with(params, true).as_bytes(),
            sig,
        )
}

/// `params` with `sign` (v2 RSA) and `sign_type=RSA` appended (existing ones replaced). The
/// caller includes `timestamp`.
pub fn signed_rsa(
    signer: &RsaSigner,
    params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PayError> {
    let mut params = without(params, &UNSIGNED);
    let s = rsa_sign(signer, &params)?;
    params.push(("sign".into(), s));
    params.push(("sign_type".into(), "RSA".into()));
    Ok(params)
}

/// Check a v2 `timestamp` (Unix seconds, plain digits) against `now` ± [`TIMESTAMP_WINDOW_SECS`].
pub fn check_timestamp(timestamp: Option<&str>, now: i64) -> Result<(), PayError> {
    let ts = timestamp
        .filter(|t| !t.is_empty())
        .ok_or_else(|| PayError::Malformed("missing field timestamp".into()))?;
    if ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayError::Malformed("timestamp is not a number".into()));
    }
    let ts: i64 = ts
        .parse()
        .map_err(|_| PayError::Malformed("timestamp is not a number".into()))?;
    if (ts - now).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(PayError::Stale);
    }
    Ok(())
}

impl EpayChannel {
    /// A v2 API call: signed request, then a reply that must be signed by the platform and
    /// fresh when `code == 0`. Returns `Err(Gateway)` for `code != 0` (unsigned errors are
    /// never facts).
    pub(super) async fn call_v2(
        &self,
        path: &str,
        params: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, PayError> {
        let params = self.sign_request(params)?;
        let req = self.post_form(self.url(path)?, &params)?;
        let fields = self.call(req).await?;
        if field(&fields, "code") != Some("0") {
            return Err(gateway_error(&fields));
        }
        self.check_signature(
            &fields,
            self.clock.now_secs(),
            PayError::BadResponseSignature,
        )?;
        Ok(fields)
    }

    pub(super) async fn create_api_v2(
        &self,
        req: &CreatePayment,
    ) -> Result<PaymentAction, PayError> {
        let mut params = self.create_params(req)?;
        params.push(("method".into(), "web".into()));
        push_client(&mut params, req);
        let fields = self.call_v2("api/pay/create", params).await?;
        self.check_reply_binding(&fields, req.trade_no.as_str())?;
        let info = required(&fields, "pay_info")?.trim();
        match required(&fields, "pay_type")? {
            "qrcode" => Ok(PaymentAction::Qr {
                qr_code: info.to_owned(),
            }),
            t @ ("jump" | "urlscheme") => {
                if is_safe_redirect(info, t == "jump") {
                    Ok(PaymentAction::Redirect {
                        url: info.to_owned(),
                    })
                } else {
                    Err(PayError::Malformed(
                        "unsafe payment URL from gateway".into(),
                    ))
                }
            }
            _ => Err(PayError::Unsupported(
                "epay v2 pay_type other than qrcode, jump, urlscheme (use flow = submit)",
            )),
        }
    }

    pub(super) async fn query_v2(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let params = owned(&[("pid", &self.pid), ("out_trade_no", trade_no)]);
        match self.call_v2("api/pay/query", params).await {
            Ok(fields) => self.trade_state(trade_no, &fields),
            Err(PayError::Gateway { message, .. }) if is_not_found(&message) => {
                Ok(TradeState::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn close_v2(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let params = owned(&[("pid", &self.pid), ("out_trade_no", trade_no)]);
        let closed = match self.call_v2("api/pay/close", params).await {
            Ok(fields) => {
                self.check_reply_binding(&fields, trade_no)?;
                true
            }
            Err(PayError::Gateway { .. }) => false,
            Err(e) => return Err(e),
        };
        match self.query_v2(trade_no).await? {
            s @ (TradeState::Paid(_) | TradeState::Refunded) => Ok(s),
            TradeState::NotFound | TradeState::Waiting | TradeState::Closed if closed => {
                Ok(TradeState::Closed)
            }
            TradeState::Closed => Ok(TradeState::Closed),
            // The host refused to close: the buyer can still pay.
            TradeState::NotFound | TradeState::Waiting => Ok(TradeState::Waiting),
        }
    }

    pub(super) async fn refund_v2(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let money = Self::refund_money(req)?;
        let params = owned(&[
            ("pid", &self.pid),
            ("out_trade_no", &req.trade_no),
            ("money", &money),
            ("out_refund_no", &req.refund_no),
        ]);
        let fields = self.call_v2("api/pay/refund", params).await?;
        self.check_reply_binding(&fields, &req.trade_no)?;
        if let Some(r) = field(&fields, "out_refund_no").filter(|v| !v.is_empty()) {
            if r != req.refund_no {
                return Err(PayError::Malformed(
                    "gateway answered for another refund".into(),
                ));
            }
        }
        if let Some(m) = field(&fields, "money").filter(|v| !v.is_empty()) {
            if parse_money(m)? != req.amount {
                return Err(PayError::Malformed(
                    "gateway refunded another amount".into(),
                ));
            }
        }
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount: req.amount,
            settled: true,
        })
    }
}
