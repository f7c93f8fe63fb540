//! Sandbox API messages: signed forms out, signed JSON answers in (every field a string),
//! and their translation to [`TradeState`] and [`Money`].

use std::time::Duration;

use kami_core::{Currency, Money};

use super::{bill, signed, verify, SandboxChannel};
use crate::common::form::{clip, field, required};
use crate::common::text::urlencode;
use crate::{PayError, PaymentConfirmation, TradeState};

/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn parse_money(amount: &str, currency: &str) -> Result<Money, PayError> {
    let currency = Currency::parse(currency).map_err(|e| PayError::Malformed(e.to_string()))?;
    Money::from_major_str(amount, currency).map_err(|e| PayError::Malformed(e.to_string()))
}

/// A fresh API nonce: 32 lower-case hex characters.
pub(crate) fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl SandboxChannel {
    pub(crate) fn api_url(&self, op: &str) -> String {
        format!("{}/sim/sandbox/api/{op}", self.gateway)
    }

    /// Send an API request and return the verified fields of a successful answer.
    pub(crate) async fn call(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<(String, String)>, PayError> {
        let crate::http::Reply { status, body, .. } =
            crate::http::send(req.timeout(API_TIMEOUT)).await?;
        let http_error = || PayError::Gateway {
            code: format!("HTTP_{status}"),
            message: clip(&String::from_utf8_lossy(&body)),
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&body)
        else {
            return Err(http_error());
        };
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => fields.push((k, s)),
                _ => {
                    return Err(PayError::Malformed(format!(
                        "gateway field {} is not a string",
                        clip(&k)
                    )))
                }
            }
        }
        let gateway_error = |fields: &[(String, String)]| {
            field(fields, "error").map(|code| PayError::Gateway {
                code: clip(code),
                message: field(fields, "message")
                    .map(clip)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            })
        };
        if field(&fields, "sign").is_none() {
            // Unsigned answers can only be errors (e.g. BAD_SIGNATURE); never trusted as facts.
            return Err(gateway_error(&fields).unwrap_or(PayError::BadResponseSignature));
        }
        if !verify(&self.secret, &fields) {
            return Err(PayError::BadResponseSignature);
        }
        if let Some(e) = gateway_error(&fields) {
            return Err(e);
        }
        if !(200..300).contains(&status) {
            return Err(http_error());
        }
        Ok(fields)
    }

    /// POST a signed form to an API operation and return the verified answer.
    pub(crate) async fn post(
        &self,
        op: &str,
        params: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, PayError> {
        let req = self
            .http
            .post(self.api_url(op))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(self.signed_form(params)?);
        self.call(req).await
    }

    pub(crate) fn trade_state(
        &self,
        trade_no: &str,
        fields: &[(String, String)],
    ) -> Result<TradeState, PayError> {
        let got = required(fields, "trade_no")?;
        if got != trade_no {
            return Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            ));
        }
        match required(fields, "status")? {
            "NOT_FOUND" => Ok(TradeState::NotFound),
            "WAITING" => Ok(TradeState::Waiting),
            "CLOSED" => Ok(TradeState::Closed),
            "REFUNDED" => Ok(TradeState::Refunded),
            "PAID" => {
                let gateway_trade_no = required(fields, "gateway_trade_no")?;
                let amount =
                    parse_money(required(fields, "amount")?, required(fields, "currency")?)?;
                Ok(TradeState::Paid(PaymentConfirmation {
                    trade_no: got.to_owned(),
                    gateway_trade_no: gateway_trade_no.to_owned(),
                    amount,
                    paid_at: paid_at(fields),
                    coin_amount: None,
                }))
            }
            other => Err(PayError::Malformed(format!(
                "unknown trade status {}",
                clip(other)
            ))),
        }
    }

    /// Download a bill: a signed text body on 200 (its signature in [`bill::SIGN_HEADER`]),
    /// otherwise the API's error.
    pub(crate) async fn fetch_bill(
        &self,
        day: crate::BillDay,
        req: reqwest::RequestBuilder,
    ) -> Result<crate::Bill, PayError> {
        let crate::http::Reply {
            status,
            headers,
            body,
        } = crate::http::send(req.timeout(API_TIMEOUT)).await?;
        if status != 200 {
            let message = clip(&String::from_utf8_lossy(&body));
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(clip))
                .unwrap_or_else(|| format!("HTTP_{status}"));
            return Err(PayError::Gateway { code, message });
        }
        let sig = headers
            .get(bill::SIGN_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(PayError::BadResponseSignature)?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| PayError::Malformed("sandbox bill: not UTF-8".into()))?;
        if !verify(&self.secret, &[("bill", text), ("sign", sig)]) {
            return Err(PayError::BadResponseSignature);
        }
        bill::parse(day, &body)
    }

    pub(crate) fn signed_form(&self, params: Vec<(String, String)>) -> Result<String, PayError> {
        urlencode(&signed(&self.secret, params))
    }
}

/// The optional `paid_at` (unix ms) of a notification or a query answer.
pub(crate) fn paid_at(fields: &[(String, String)]) -> Option<i64> {
    crate::common::pay_time::pay_time("sandbox", "paid_at", field(fields, "paid_at"), |s| {
        s.parse::<i64>().ok().filter(|ms| *ms > 0)
    })
}
