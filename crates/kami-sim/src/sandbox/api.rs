//! The sandbox gateway's signed merchant API: `GET api/query`, `POST api/close`, `POST
//! api/refund`. Requests are signed forms; answers are signed JSON objects of strings
//! (unsigned only when the request's own signature or encoding is bad).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kami_core::Money;
use kami_pay::sandbox::{field, parse_form, signed, verify};

use super::{parse_money, required, RefundEntry, SandboxSim, Status, Trade};

/// An unsigned API error (bad signature or unparseable request).
pub(super) fn unsigned_error(status: StatusCode, code: &str, message: Option<&str>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), code.into());
    if let Some(m) = message {
        body.insert("message".into(), m.into());
    }
    (status, Json(serde_json::Value::Object(body))).into_response()
}

impl SandboxSim {
    fn signed_json(&self, status: StatusCode, fields: Vec<(String, String)>) -> Response {
        let map: serde_json::Map<String, serde_json::Value> = signed(&self.secret, fields)
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        (status, Json(serde_json::Value::Object(map))).into_response()
    }

    pub(super) fn signed_error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        self.signed_json(
            status,
            vec![
                ("error".into(), code.into()),
                ("message".into(), message.into()),
            ],
        )
    }

    /// Parse and verify a signed API request; `Err` is the response to send.
    pub(super) fn api_request(
        &self,
        raw: &[u8],
        fields: &[&str],
    ) -> Result<Vec<(String, String)>, Box<Response>> {
        let params = parse_form(raw).map_err(|e| {
            Box::new(unsigned_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                Some(&e.to_string()),
            ))
        })?;
        if !verify(&self.secret, &params) {
            return Err(Box::new(unsigned_error(
                StatusCode::BAD_REQUEST,
                "BAD_SIGNATURE",
                None,
            )));
        }
        for f in fields {
            if let Err(m) = required(&params, f) {
                return Err(Box::new(self.signed_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    &m,
                )));
            }
        }
        Ok(params)
    }
}

fn state_fields(trade_no: &str, trade: Option<&Trade>) -> Vec<(String, String)> {
    let mut fields = vec![
        ("trade_no".to_owned(), trade_no.to_owned()),
        (
            "status".to_owned(),
            trade.map_or("NOT_FOUND", |t| t.status.api()).to_owned(),
        ),
    ];
    if let Some(p) = trade.and_then(|t| t.payment.as_ref()) {
        fields.push(("gateway_trade_no".into(), p.gateway_trade_no.clone()));
        fields.push(("amount".into(), p.amount.to_major_string()));
        fields.push(("currency".into(), p.amount.currency().code().to_owned()));
        fields.push(("paid_at".into(), p.paid_at.to_string()));
    }
    fields
}

pub(super) async fn query(
    State(sim): State<Arc<SandboxSim>>,
    RawQuery(query): RawQuery,
) -> Response {
    if sim.faults().fail_queries {
        return unsigned_error(StatusCode::SERVICE_UNAVAILABLE, "SYSTEM_BUSY", None);
    }
    let query = query.unwrap_or_default();
    let params = match sim.api_request(query.as_bytes(), &["trade_no", "nonce"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let trade_no = field(&params, "trade_no").unwrap_or_default();
    let fields = state_fields(trade_no, sim.lock().get(trade_no));
    sim.signed_json(StatusCode::OK, fields)
}

pub(super) async fn close(State(sim): State<Arc<SandboxSim>>, body: Bytes) -> Response {
    let params = match sim.api_request(&body, &["trade_no", "nonce"]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let trade_no = field(&params, "trade_no").unwrap_or_default();
    let fields = {
        let mut trades = sim.lock();
        let trade = trades
            .entry(trade_no.to_owned())
            .or_insert_with(|| Trade::new(Status::Closed, None));
        if trade.status == Status::Waiting {
            trade.status = Status::Closed;
        }
        state_fields(trade_no, Some(trade))
    };
    sim.signed_json(StatusCode::OK, fields)
}

pub(super) async fn refund(State(sim): State<Arc<SandboxSim>>, body: Bytes) -> Response {
    let params = match sim.api_request(
        &body,
        &["trade_no", "refund_no", "amount", "currency", "nonce"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let get = |k: &str| field(&params, k).unwrap_or_default();
    let (trade_no, refund_no) = (get("trade_no"), get("refund_no"));
    let amount = match parse_money(get("amount"), get("currency")) {
        Ok(m) if m.minor() > 0 => m,
        Ok(_) => {
            return sim.signed_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "refund amount must be positive",
            )
        }
        Err(e) => return sim.signed_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &e),
    };
    let success = |m: Money| {
        vec![
            ("refund_no".to_owned(), refund_no.to_owned()),
            ("amount".to_owned(), m.to_major_string()),
            ("currency".to_owned(), m.currency().code().to_owned()),
            ("status".to_owned(), "SUCCESS".to_owned()),
        ]
    };
    let now = sim.now_ms();
    let outcome = {
        let mut trades = sim.lock();
        match trades.get_mut(trade_no) {
            Some(t) if t.refunds.contains_key(refund_no) => {
                Ok(t.refunds.get(refund_no).copied().map(success))
            }
            Some(t) if matches!(t.status, Status::Paid | Status::Refunded) => {
                match t.payment.as_ref().map(|p| p.amount) {
                    Some(total) if total.currency() != amount.currency() => Err((
                        "CURRENCY_MISMATCH",
                        "refund currency differs from the trade's",
                    )),
                    Some(total) if t.refunded_minor + amount.minor() > total.minor() => {
                        Err(("EXCEEDS_TOTAL", "refunds would exceed the paid amount"))
                    }
                    Some(total) => {
                        t.refunded_minor += amount.minor();
                        t.refunds.insert(refund_no.to_owned(), amount);
                        t.refund_log.push(RefundEntry {
                            refund_no: refund_no.to_owned(),
                            amount,
                            at: now,
                        });
                        if t.refunded_minor == total.minor() {
                            t.status = Status::Refunded;
                        }
                        Ok(Some(success(amount)))
                    }
                    None => Err(("NOT_PAID", "the trade is not paid")),
                }
            }
            _ => Err(("NOT_PAID", "the trade is not paid")),
        }
    };
    match outcome {
        Ok(Some(fields)) => sim.signed_json(StatusCode::OK, fields),
        Ok(None) => sim.signed_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "lost refund"),
        Err((code, message)) => sim.signed_error(StatusCode::CONFLICT, code, message),
    }
}
