//! Epay v1 (G.1–G.4): MD5 signatures with the merchant key, `mapi.php` for server-to-server
//! payments, `api.php?act=order|refund` with the key in the request, and no close.

use super::sign::{canonical, canonical_with, has_zero, UNSIGNED};
use super::wire::{gateway_error, is_not_found, is_safe_redirect, push_client};
use super::{EpayChannel, EpayCredentials};
use crate::common::form::field;
use crate::common::sign::{unique_sign, without};
use crate::common::text::{owned, urlencode};
use crate::crypto::{ct_eq, md5_hex};
use crate::{
    CreatePayment, Device, PayError, PaymentAction, RefundOutcome, RefundRequest, TradeState,
};

/// v1 signature (G.4): lower-case hex `MD5(canonical + key)`.
pub fn md5_sign<K: AsRef<str>, V: AsRef<str>>(key: &str, params: &[(K, V)]) -> String {
    md5_of(key, &canonical(params))
}

fn md5_of(key: &str, canonical: &str) -> String {
    let mut buf = Vec::with_capacity(canonical.len() + key.len());
    buf.extend_from_slice(canonical.as_bytes());
    buf.extend_from_slice(key.as_bytes());
    md5_hex(&buf)
}

/// True iff `params` has exactly one `sign`, no duplicated key, and `sign` is the MD5
/// signature (hex, either case) of the other parameters under `key` — by the exact G.4 rule,
/// or else by the variant that also drops `"0"` values (G.6). Constant-time comparison.
pub fn md5_verify<K: AsRef<str>, V: AsRef<str>>(key: &str, params: &[(K, V)]) -> bool {
    let Some(sig) = unique_sign(params) else {
        return false;
    };
    if sig.len() != 32 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let sig = sig.to_ascii_lowercase();
    if ct_eq(md5_of(key, &canonical(params)).as_bytes(), sig.as_bytes()) {
        return true;
    }
    has_zero(params)
        && ct_eq(
            md5_of(key, &canonical_with(params, true)).as_bytes(),
            sig.as_bytes(),
        )
}

/// `params` with `sign` (v1 MD5) and `sign_type=MD5` appended (existing ones replaced).
pub fn signed_md5(key: &str, params: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut params = without(params, &UNSIGNED);
    let s = md5_sign(key, &params);
    params.push(("sign".into(), s));
    params.push(("sign_type".into(), "MD5".into()));
    params
}

impl EpayChannel {
    pub(super) async fn create_api_v1(
        &self,
        req: &CreatePayment,
    ) -> Result<PaymentAction, PayError> {
        let mut params = self.create_params(req)?;
        push_client(&mut params, req);
        let params = self.sign_request(params)?;
        let fields = self
            .call(self.post_form(self.url("mapi.php")?, &params)?)
            .await?;
        if field(&fields, "code") != Some("1") {
            return Err(gateway_error(&fields));
        }
        self.check_reply_binding(&fields, req.trade_no.as_str())?;
        let get = |k: &str| field(&fields, k).filter(|v| !v.trim().is_empty());
        let qr = get("qrcode").map(|q| PaymentAction::Qr {
            qr_code: q.trim().to_owned(),
        });
        let pay_url = get("payurl").map(|u| (u.trim(), true));
        let scheme = get("urlscheme").map(|u| (u.trim(), false));
        let redirect = pay_url.or(scheme).map(|(u, web_only)| {
            if is_safe_redirect(u, web_only) {
                Ok(PaymentAction::Redirect { url: u.to_owned() })
            } else {
                Err(PayError::Malformed(
                    "unsafe payment URL from gateway".into(),
                ))
            }
        });
        let chosen = match req.device {
            Device::Pc => qr.map(Ok).or(redirect),
            Device::Mobile => redirect.or(qr.map(Ok)),
        };
        chosen.unwrap_or_else(|| {
            Err(PayError::Malformed(
                "mapi.php reply has no qrcode, payurl or urlscheme".into(),
            ))
        })
    }

    pub(super) async fn query_v1(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let EpayCredentials::V1 { key } = &self.credentials else {
            return Err(PayError::Config("not a v1 channel".into()));
        };
        let query = urlencode(&owned(&[
            ("act", "order"),
            ("pid", &self.pid),
            ("key", key),
            ("out_trade_no", trade_no),
        ]))?;
        let url = format!("{}?{query}", self.url("api.php")?);
        let fields = self.call(self.http.get(url)).await?;
        if field(&fields, "code") == Some("1") {
            return self.trade_state(trade_no, &fields);
        }
        if is_not_found(field(&fields, "msg").unwrap_or("")) {
            return Ok(TradeState::NotFound);
        }
        Err(gateway_error(&fields))
    }

    /// v1 cannot close (see the module documentation): the queried state, with anything
    /// not paid or refunded reported as `Waiting`.
    pub(super) async fn close_v1(&self, trade_no: &str) -> Result<TradeState, PayError> {
        match self.query_v1(trade_no).await? {
            s @ (TradeState::Paid(_) | TradeState::Refunded) => Ok(s),
            TradeState::NotFound | TradeState::Waiting | TradeState::Closed => {
                Ok(TradeState::Waiting)
            }
        }
    }

    pub(super) async fn refund_v1(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let EpayCredentials::V1 { key } = &self.credentials else {
            return Err(PayError::Config("not a v1 channel".into()));
        };
        let money = Self::refund_money(req)?;
        let body = owned(&[
            ("pid", &self.pid),
            ("key", key),
            ("out_trade_no", &req.trade_no),
            ("money", &money),
        ]);
        let url = format!("{}?act=refund", self.url("api.php")?);
        let fields = self.call(self.post_form(url, &body)?).await?;
        if field(&fields, "code") != Some("1") {
            return Err(gateway_error(&fields));
        }
        Ok(RefundOutcome {
            refund_no: req.refund_no.clone(),
            amount: req.amount,
            settled: true,
        })
    }
}
