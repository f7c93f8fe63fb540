//! The PayPal REST API as the simulator answers it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kami_core::{Currency, Money};
use serde_json::{json, Value};

use super::{
    random_id, rfc3339, CaptureMode, NotifyMode, PaypalSim, SimCapture, SimOrder, SimRefund, PREFIX,
};

/// Largest API request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Lifetime of an access token (PayPal: about 9 hours).
const TOKEN_SECS: i64 = 32_400;

fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// PayPal's error shape: `{name, message, debug_id, details[{issue, description}]}`.
fn error(status: StatusCode, name: &str, issue: Option<&str>, description: &str) -> Response {
    let mut body =
        json!({"name": name, "message": description, "debug_id": random_id(13).to_lowercase()});
    if let Some(i) = issue {
        body["details"] = json!([{"issue": i, "description": description}]);
    }
    answer(status, &body)
}

fn money_json(m: Money) -> Value {
    json!({"currency_code": m.currency().code(), "value": m.to_major_string()})
}

impl PaypalSim {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let now = self.clock.now_ms();
        self.lock().tokens.get(token).is_some_and(|exp| *exp > now)
    }

    pub(super) fn capture_json(&self, o: &SimOrder, c: &SimCapture) -> Value {
        let base = format!("{}{PREFIX}", self.cfg.base_url);
        let mut v = json!({
            "id": c.id, "status": c.status, "amount": money_json(c.amount),
            "custom_id": o.custom_id, "invoice_id": o.invoice_id, "final_capture": true,
            "seller_protection": {"status": "ELIGIBLE"},
            "create_time": rfc3339(c.create_time), "update_time": rfc3339(c.update_time),
            "supplementary_data": {"related_ids": {"order_id": o.id}},
            "links": [
                {"href": format!("{base}/v2/payments/captures/{}", c.id), "rel": "self", "method": "GET"},
                {"href": format!("{base}/v2/payments/captures/{}/refund", c.id), "rel": "refund", "method": "POST"},
                {"href": format!("{base}/v2/checkout/orders/{}", o.id), "rel": "up", "method": "GET"}
            ],
        });
        if c.status == "PENDING" {
            v["status_details"] = json!({"reason": "PENDING_REVIEW"});
        }
        v
    }

    pub(super) fn order_json(&self, o: &SimOrder) -> Value {
        let base = format!("{}{PREFIX}", self.cfg.base_url);
        let mut unit = json!({
            "reference_id": "default", "custom_id": o.custom_id, "invoice_id": o.invoice_id,
            "amount": money_json(o.amount),
        });
        if !o.description.is_empty() {
            unit["description"] = Value::String(o.description.clone());
        }
        if let Some(c) = &o.capture {
            unit["payments"] = json!({"captures": [self.capture_json(o, c)]});
        }
        let mut links = vec![
            json!({"href": format!("{base}/v2/checkout/orders/{}", o.id), "rel": "self", "method": "GET"}),
        ];
        if matches!(o.status, "CREATED" | "PAYER_ACTION_REQUIRED") {
            links.push(json!({"href": format!("{base}/checkoutnow?token={}", o.id), "rel": "payer-action", "method": "GET"}));
        }
        let mut v = json!({
            "id": o.id, "intent": "CAPTURE", "status": o.status,
            "payment_source": {"paypal": {}},
            "purchase_units": [unit], "create_time": rfc3339(o.create_time), "links": links,
        });
        if let Some(p) = &o.payer_id {
            v["payer"] = json!({"payer_id": p, "email_address": "buyer@example.com"});
        }
        v
    }

    /// The first answer under `key`, if this request id was seen.
    fn replay(&self, key: &Option<String>) -> Option<Response> {
        let key = key.as_ref()?;
        let (status, body) = self.lock().replays.get(key).cloned()?;
        Some(
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
        )
    }

    fn remember(&self, key: &Option<String>, status: StatusCode, body: &Value) {
        if let Some(k) = key {
            self.lock()
                .replays
                .insert(k.clone(), (status.as_u16(), body.to_string()));
        }
    }
}

fn request_key(route: &str, headers: &HeaderMap) -> Option<String> {
    headers
        .get("paypal-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(|v| format!("{route}:{v}"))
}

fn unauthorized() -> Response {
    answer(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_token", "error_description": "Token signature verification failed"}),
    )
}

pub(super) async fn token(
    State(sim): State<Arc<PaypalSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{}:{}", sim.cfg.client_id, sim.cfg.client_secret);
    if creds.as_deref() != Some(expected.as_str()) {
        return answer(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client", "error_description": "Client Authentication failed"}),
        );
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if !form
        .iter()
        .any(|(k, v)| k == "grant_type" && v == "client_credentials")
    {
        return answer(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}),
        );
    }
    let token = format!("A21AA{}", random_id(40));
    sim.lock()
        .tokens
        .insert(token.clone(), sim.clock.now_ms() + TOKEN_SECS * 1000);
    answer(
        StatusCode::OK,
        &json!({"scope": "https://uri.paypal.com/services/payments/payment", "access_token": token,
                "token_type": "Bearer", "app_id": "APP-80W284485P519543T", "expires_in": TOKEN_SECS,
                "nonce": format!("{}{}", rfc3339(sim.clock.now_ms()), random_id(10))}),
    )
}

/// The order fields the simulator needs from a create request, or the issue refusing it.
fn parse_create(v: &Value) -> Result<(String, String, String, Money, String, String), String> {
    if v["intent"] != "CAPTURE" {
        return Err("INTENT_INVALID".into());
    }
    let units = v["purchase_units"]
        .as_array()
        .ok_or("MISSING_REQUIRED_PARAMETER")?;
    if units.len() != 1 {
        return Err("INVALID_ARRAY_LENGTH".into());
    }
    let u = &units[0];
    let code = u["amount"]["currency_code"]
        .as_str()
        .ok_or("MISSING_REQUIRED_PARAMETER")?;
    let currency = Currency::parse(code).map_err(|_| "CURRENCY_NOT_SUPPORTED")?;
    if currency == Currency::Cny {
        // CNY only for accounts inside China.
        return Err("CURRENCY_NOT_SUPPORTED".into());
    }
    let value = u["amount"]["value"]
        .as_str()
        .ok_or("MISSING_REQUIRED_PARAMETER")?;
    let amount = Money::from_major_str(value, currency)
        .ok()
        .filter(|m| m.minor() > 0)
        .ok_or("DECIMAL_PRECISION")?;
    let text = |k: &str| u[k].as_str().unwrap_or_default().to_owned();
    let ctx = &v["payment_source"]["paypal"]["experience_context"];
    let return_url = ctx["return_url"].as_str().unwrap_or_default().to_owned();
    let cancel_url = ctx["cancel_url"].as_str().unwrap_or_default().to_owned();
    if return_url.is_empty() {
        return Err("MISSING_REQUIRED_PARAMETER".into());
    }
    Ok((
        text("custom_id"),
        text("invoice_id"),
        text("description"),
        amount,
        return_url,
        cancel_url,
    ))
}

pub(super) async fn create_order(
    State(sim): State<Arc<PaypalSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let key = request_key("create", &headers);
    if let Some(r) = sim.replay(&key) {
        return r;
    }
    {
        let mut inner = sim.lock();
        if inner.fail_creates > 0 {
            inner.fail_creates -= 1;
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                None,
                "An internal server error occurred.",
            );
        }
    }
    if body.len() > MAX_BODY {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            None,
            "too large",
        );
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                Some("MALFORMED_REQUEST_JSON"),
                "The request JSON is not well formed.",
            )
        }
    };
    let (custom_id, invoice_id, description, amount, return_url, cancel_url) =
        match parse_create(&v) {
            Ok(f) => f,
            Err(issue) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UNPROCESSABLE_ENTITY",
                    Some(&issue),
                    "The requested action could not be performed.",
                )
            }
        };
    let order = SimOrder {
        id: random_id(17),
        status: "PAYER_ACTION_REQUIRED",
        custom_id,
        invoice_id,
        description,
        amount,
        return_url,
        cancel_url,
        payer_id: None,
        capture: None,
        capture_mode: CaptureMode::Completed,
        notify: NotifyMode::Normal,
        create_time: sim.clock.now_ms(),
    };
    let out = sim.order_json(&order);
    sim.lock().orders.insert(order.id.clone(), order);
    // A replay under the same request id answers 200 with the same order.
    sim.remember(&key, StatusCode::OK, &out);
    answer(StatusCode::CREATED, &out)
}

pub(super) async fn get_order(
    State(sim): State<Arc<PaypalSim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let order = sim.lock().orders.get(&id).cloned();
    match order {
        Some(o) => answer(StatusCode::OK, &sim.order_json(&o)),
        None => not_found(),
    }
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        Some("INVALID_RESOURCE_ID"),
        "Specified resource ID does not exist. Please check the resource ID and try again.",
    )
}

pub(super) async fn capture(
    State(sim): State<Arc<PaypalSim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let key = request_key("capture", &headers);
    if let Some(r) = sim.replay(&key) {
        return r;
    }
    let now = sim.clock.now_ms();
    let (order, event) = {
        let mut inner = sim.lock();
        let Some(o) = inner.orders.get_mut(&id) else {
            return not_found();
        };
        match o.status {
            "APPROVED" => {}
            "COMPLETED" => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UNPROCESSABLE_ENTITY",
                    Some("ORDER_ALREADY_CAPTURED"),
                    "Order already captured.",
                )
            }
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UNPROCESSABLE_ENTITY",
                    Some("ORDER_NOT_APPROVED"),
                    "Payer has not yet approved the Order for payment.",
                )
            }
        }
        let (status, event) = match o.capture_mode {
            CaptureMode::Completed => ("COMPLETED", "PAYMENT.CAPTURE.COMPLETED"),
            CaptureMode::Pending => ("PENDING", "PAYMENT.CAPTURE.PENDING"),
            CaptureMode::Declined => ("DECLINED", "PAYMENT.CAPTURE.DENIED"),
        };
        o.status = "COMPLETED";
        o.capture = Some(SimCapture::new(status, o.amount, now));
        (o.clone(), event)
    };
    let out = sim.order_json(&order);
    sim.remember(&key, StatusCode::CREATED, &out);
    let body = sim.capture_event(event, &order);
    sim.send_event(&order.id, body, order.notify);
    answer(StatusCode::CREATED, &out)
}

pub(super) async fn refund(
    State(sim): State<Arc<PaypalSim>>,
    Path(capture_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let key = request_key("refund", &headers);
    if let Some(r) = sim.replay(&key) {
        return r;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let now = sim.clock.now_ms();
    let unprocessable = |issue: &str, d: &str| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNPROCESSABLE_ENTITY",
            Some(issue),
            d,
        )
    };
    let (order, refund) = {
        let mut inner = sim.lock();
        let Some(o) = inner
            .orders
            .values_mut()
            .find(|o| o.capture.as_ref().is_some_and(|c| c.id == capture_id))
        else {
            return not_found();
        };
        let Some(c) = o.capture.as_mut() else {
            return not_found();
        };
        if !matches!(c.status, "COMPLETED" | "PARTIALLY_REFUNDED") {
            return unprocessable("CAPTURE_FULLY_REFUNDED", "The capture cannot be refunded.");
        }
        let remaining = c.amount.minor() - c.refunded;
        let amount = match v.get("amount") {
            None | Some(Value::Null) => Money::new(remaining, c.amount.currency()).ok(),
            Some(a) => (a["currency_code"].as_str() == Some(c.amount.currency().code()))
                .then(|| a["value"].as_str())
                .flatten()
                .and_then(|s| Money::from_major_str(s, c.amount.currency()).ok()),
        };
        let Some(amount) = amount.filter(|m| m.minor() > 0) else {
            return unprocessable("CURRENCY_MISMATCH", "The refund amount is invalid.");
        };
        if amount.minor() > remaining {
            return unprocessable(
                "REFUND_AMOUNT_EXCEEDED",
                "The refund amount must be less than or equal to the capture amount that has not yet been refunded.",
            );
        }
        c.refunded += amount.minor();
        c.status = if c.refunded == c.amount.minor() {
            "REFUNDED"
        } else {
            "PARTIALLY_REFUNDED"
        };
        c.update_time = now;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let refund = SimRefund {
            id: random_id(17),
            capture_id: capture_id.clone(),
            custom_id: text("custom_id"),
            invoice_id: text("invoice_id"),
            amount,
            time: now,
        };
        let order = o.clone();
        inner.refunds.push(refund.clone());
        (order, refund)
    };
    let base = format!("{}{PREFIX}", sim.cfg.base_url);
    let out = json!({
        "id": refund.id, "status": "COMPLETED", "amount": money_json(refund.amount),
        "invoice_id": refund.invoice_id, "custom_id": refund.custom_id,
        "create_time": rfc3339(now), "update_time": rfc3339(now),
        "links": [{"href": format!("{base}/v2/payments/refunds/{}", refund.id), "rel": "self", "method": "GET"},
                  {"href": format!("{base}/v2/payments/captures/{capture_id}"), "rel": "up", "method": "GET"}],
    });
    sim.remember(&key, StatusCode::CREATED, &out);
    let event = sim.event("PAYMENT.CAPTURE.REFUNDED", "refund", out.clone());
    sim.send_event(&order.id, event, order.notify);
    answer(StatusCode::CREATED, &out)
}

/// Transaction search over what this simulator captured and refunded.
pub(super) async fn search(
    State(sim): State<Arc<PaypalSim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let parse = |k: &str| {
        q.get(k).and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
    };
    let (Some(start), Some(end)) = (parse("start_date"), parse("end_date")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("INVALID_DATE"),
            "start_date and end_date are required (ISO 8601)",
        );
    };
    let (from, to) = (
        start.unix_timestamp() * 1000,
        end.unix_timestamp() * 1000 + 999,
    );
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let size: usize = q
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100)
        .clamp(1, 500);
    let mut items = Vec::new();
    let tampered = {
        let mut inner = sim.lock();
        if inner.search_failure {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                None,
                "An internal server error has occurred.",
            );
        }
        let tampered = std::mem::take(&mut inner.tamper_next_search);
        let mut orders: Vec<&SimOrder> = inner
            .orders
            .values()
            .filter(|o| !inner.hidden.contains(&o.custom_id))
            .collect();
        orders.sort_by_key(|o| o.create_time);
        for o in orders {
            if let Some(c) = o.capture.as_ref().filter(|c| {
                matches!(c.status, "COMPLETED" | "PARTIALLY_REFUNDED" | "REFUNDED")
                    && (from..=to).contains(&c.create_time)
            }) {
                items.push(json!({"transaction_info": {
                    "transaction_id": c.id, "transaction_event_code": "T0006",
                    "transaction_initiation_date": rfc3339(c.create_time),
                    "transaction_updated_date": rfc3339(c.update_time),
                    "transaction_amount": money_json(c.amount), "transaction_status": "S",
                    "invoice_id": o.invoice_id, "custom_field": o.custom_id}}));
            }
        }
        for r in inner
            .refunds
            .iter()
            .filter(|r| (from..=to).contains(&r.time) && !inner.hidden.contains(&r.custom_id))
        {
            items.push(json!({"transaction_info": {
                "transaction_id": r.id, "paypal_reference_id": r.capture_id,
                "paypal_reference_id_type": "TXN", "transaction_event_code": "T1107",
                "transaction_initiation_date": rfc3339(r.time),
                "transaction_amount": {"currency_code": r.amount.currency().code(),
                                       "value": format!("-{}", r.amount.to_major_string())},
                "transaction_status": "S", "invoice_id": r.invoice_id, "custom_field": r.custom_id}}));
        }
        tampered
    };
    let total = items.len() + usize::from(tampered);
    let pages = total.div_ceil(size).max(1);
    let shown: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    answer(
        StatusCode::OK,
        &json!({"transaction_details": shown, "account_number": "SIMACCOUNT01",
                "start_date": q.get("start_date"), "end_date": q.get("end_date"),
                "last_refreshed_datetime": rfc3339(sim.clock.now_ms()),
                "page": page, "total_items": total, "total_pages": pages, "links": []}),
    )
}

/// The signing certificate (no authentication, as PayPal serves it).
pub(super) async fn cert(State(sim): State<Arc<PaypalSim>>, Path(id): Path<String>) -> Response {
    if id != sim.cert_id {
        return not_found();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        sim.cert_pem.clone(),
    )
        .into_response()
}
