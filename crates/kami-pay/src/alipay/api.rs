//! One Alipay API call (A.1–A.3, A.5): the business parameters of each call, signing, the
//! bounded read, verification of the answer's raw node, and the gateway's error model.

use std::time::Duration;

use kami_core::Currency;
use serde_json::{json, Map, Value};

use super::wire::{self, check_echo, clean_subject, clip, required_str, str_field};
use super::AlipayChannel;
use crate::common::text::urlencode;
use crate::{CreatePayment, PayError, PaymentAction, PaymentChannel, TradeRef, TradeState};

/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// A business or protocol error answered by the gateway (A.5 result model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    code: String,
    msg: String,
    sub_code: String,
    sub_msg: String,
}

impl ApiError {
    pub(super) fn is(&self, sub_code: &str) -> bool {
        self.sub_code == sub_code
    }

    pub(super) fn into_pay_error(self) -> PayError {
        let code = if self.sub_code.is_empty() {
            self.code
        } else {
            self.sub_code
        };
        let message = if self.sub_msg.is_empty() {
            self.msg
        } else {
            self.sub_msg
        };
        PayError::Gateway {
            code: clip(&code, 64),
            message: clip(&message, 200),
        }
    }
}

/// Answers that mean "the trade is not (or no longer) in WAIT_BUYER_PAY": ask query.
pub(super) const SETTLED_STATE_CODES: [&str; 5] = [
    "ACQ.TRADE_STATUS_ERROR",
    "ACQ.TRADE_HAS_SUCCESS",
    "ACQ.TRADE_HAS_FINISHED",
    "ACQ.TRADE_HAS_CLOSE",
    "ACQ.CANCEL_NOT_ALLOWED",
];

impl AlipayChannel {
    pub(super) fn create_biz(
        &self,
        req: &CreatePayment,
        product_code: &str,
    ) -> Result<Value, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("Alipay collects CNY only"));
        }
        let time_expire = wire::beijing_time(req.expires_at_ms)
            .ok_or_else(|| PayError::Malformed("expiry time out of range".into()))?;
        let mut biz = json!({
            "out_trade_no": req.trade_no.as_str(),
            "total_amount": req.amount.to_major_string(),
            "subject": clean_subject(&req.subject),
            "product_code": product_code,
            "time_expire": time_expire,
        });
        if let Some(obj) = biz.as_object_mut() {
            if let Some(id) = self
                .cfg
                .sys_service_provider_id
                .as_deref()
                .filter(|s| !s.is_empty())
            {
                obj.insert(
                    "extend_params".into(),
                    json!({ "sys_service_provider_id": id }),
                );
            }
        }
        Ok(biz)
    }

    /// The signed redirect URL of a page.pay / wap.pay (A.5): `gateway?<urlencoded params>`.
    pub(super) fn redirect(
        &self,
        req: &CreatePayment,
        wap: bool,
    ) -> Result<PaymentAction, PayError> {
        let (method, product_code) = if wap {
            ("alipay.trade.wap.pay", "QUICK_WAP_WAY")
        } else {
            ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY")
        };
        let mut biz = self.create_biz(req, product_code)?;
        if wap {
            if let Some(obj) = biz.as_object_mut() {
                obj.insert("quit_url".into(), Value::String(req.return_url.clone()));
            }
        }
        let params = self.signed_params(
            method,
            &biz,
            &[
                ("notify_url", &req.notify_url),
                ("return_url", &req.return_url),
            ],
            self.clock.now_ms(),
        )?;
        let query = urlencode(&params)?;
        Ok(PaymentAction::Redirect {
            url: format!("{}?{query}", self.cfg.gateway),
        })
    }

    /// One API call: sign, send, read (bounded), verify (A.3). The inner `Err` is an error
    /// the gateway answered authentically (or unsigned, for errors only).
    pub(super) async fn call(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
    ) -> Result<Result<Map<String, Value>, ApiError>, PayError> {
        let params = self.signed_params(method, biz, extra, self.clock.now_ms())?;
        let (body_params, query_params): (Vec<_>, Vec<_>) =
            params.into_iter().partition(|(k, _)| k == "biz_content");
        let query = urlencode(&query_params)?;
        let body = urlencode(&body_params)?;
        let req = self
            .http
            .post(format!("{}?{query}", self.cfg.gateway))
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .timeout(API_TIMEOUT);
        let crate::http::Reply {
            status,
            body: bytes,
            ..
        } = crate::http::send(req).await?;
        if status != 200 {
            return Err(PayError::Gateway {
                code: format!("HTTP_{status}"),
                message: clip(&String::from_utf8_lossy(&bytes), 200),
            });
        }
        self.verify_response(method, &bytes)
    }

    /// Verify a synchronous response body of `method` (A.3) and split success from error.
    pub fn verify_response_body(
        &self,
        method: &str,
        body: &[u8],
    ) -> Result<Map<String, Value>, PayError> {
        self.verify_response(method, body)?
            .map_err(ApiError::into_pay_error)
    }

    pub(super) fn verify_response(
        &self,
        method: &str,
        body: &[u8],
    ) -> Result<Result<Map<String, Value>, ApiError>, PayError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| PayError::Malformed("gateway response is not UTF-8".into()))?;
        let parts = wire::split_response(text, &wire::response_node_name(method))?;
        let node: Map<String, Value> = serde_json::from_str(parts.node_raw)
            .map_err(|_| PayError::Malformed("gateway response node is not an object".into()))?;
        let code = required_str(&node, "code")?;
        let signed = parts.sign.as_deref().is_some_and(|s| !s.is_empty());
        if (code == "10000" || signed)
            && !wire::verify_response_node(
                &self.cfg.alipay_public_key,
                self.cfg.sign_type,
                parts.node_raw,
                parts.sign.as_deref(),
            )
        {
            return Err(PayError::BadResponseSignature);
        }
        if code == "10000" {
            if parts.node_name == wire::ERROR_NODE {
                return Err(PayError::Malformed(
                    "gateway answered success under error_response".into(),
                ));
            }
            return Ok(Ok(node));
        }
        Ok(Err(ApiError {
            code: code.to_owned(),
            msg: str_field(&node, "msg").to_owned(),
            sub_code: str_field(&node, "sub_code").to_owned(),
            sub_msg: str_field(&node, "sub_msg").to_owned(),
        }))
    }

    pub(super) async fn cancel(&self, trade_no: &str) -> Result<TradeState, PayError> {
        let biz = json!({ "out_trade_no": trade_no });
        for _attempt in 0..3 {
            match self.call("alipay.trade.cancel", &biz, &[]).await? {
                Ok(map) => {
                    check_echo(&map, trade_no)?;
                    match (str_field(&map, "action"), str_field(&map, "retry_flag")) {
                        ("refund", _) => return Ok(TradeState::Refunded),
                        (_, "Y") => continue,
                        ("close" | "cancel" | "", _) => return Ok(TradeState::Closed),
                        (other, _) => {
                            return Err(PayError::Malformed(format!(
                                "unknown cancel action {}",
                                clip(other, 32)
                            )))
                        }
                    }
                }
                Err(e) if e.is("ACQ.TRADE_NOT_EXIST") => return Ok(TradeState::NotFound),
                Err(e) if SETTLED_STATE_CODES.iter().any(|c| e.is(c)) => {
                    return self.query_after(trade_no, e).await
                }
                Err(e) => return Err(e.into_pay_error()),
            }
        }
        Err(PayError::Gateway {
            code: "CANCEL_RETRY".into(),
            message: "alipay.trade.cancel still asks to retry".into(),
        })
    }

    /// After close/cancel refused because the trade left WAIT_BUYER_PAY: what is it now?
    pub(super) async fn query_after(
        &self,
        trade_no: &str,
        refusal: ApiError,
    ) -> Result<TradeState, PayError> {
        match self.query(&TradeRef::new(trade_no)).await? {
            // Still payable although close/cancel said otherwise: report the refusal.
            TradeState::Waiting => Err(refusal.into_pay_error()),
            state => Ok(state),
        }
    }
}
