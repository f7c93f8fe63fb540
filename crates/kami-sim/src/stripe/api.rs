//! The simulated Stripe API: authentication, idempotency and the Checkout Session and Refund
//! endpoints kami calls, with Stripe's error bodies and statuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kami_core::{Currency, Money};
use kami_pay::form::parse_form;
use serde_json::{json, Value};

use super::{
    object_id, RefundRec, SessionRec, Status, Stored, StripeSim, Txn, IDEMPOTENCY_TTL_SECS,
};
use kami_pay::stripe::{MAX_EXPIRY_SECS, MIN_EXPIRY_SECS};

type Form = Vec<(String, String)>;

/// A Stripe error answer.
pub(super) fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> (StatusCode, String) {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    (status, json!({ "error": e }).to_string())
}

fn invalid(code: Option<&str>, message: &str, param: Option<&str>) -> (StatusCode, String) {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        message,
        param,
    )
}

fn respond((status, body): (StatusCode, String), replayed: bool) -> Response {
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("request-id"), "req_sim"),
        ],
        body,
    )
        .into_response();
    if replayed {
        r.headers_mut().insert(
            header::HeaderName::from_static("idempotent-replayed"),
            header::HeaderValue::from_static("true"),
        );
    }
    r
}

fn ok(v: &Value) -> (StatusCode, String) {
    (StatusCode::OK, v.to_string())
}

impl StripeSim {
    /// The secret key from `Authorization: Bearer …` or as the Basic user name.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                if let Some(k) = v.strip_prefix("Bearer ") {
                    return Some(k.trim().to_owned());
                }
                let b = v.strip_prefix("Basic ")?;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()?;
                let text = String::from_utf8(raw).ok()?;
                Some(text.split(':').next().unwrap_or("").to_owned())
            });
        match presented {
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth.",
                None,
            )),
            Some(k) if kami_pay::crypto::ct_eq(k.as_bytes(), self.cfg.secret_key.as_bytes()) => {
                Ok(())
            }
            Some(k) => {
                let tail: String = k.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
                Err(error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    None,
                    &format!("Invalid API Key provided: sk_****{tail}"),
                    None,
                ))
            }
        }
    }

    /// Runs `handler` under Stripe's idempotency rules for `key` on `path` with `params`.
    fn idempotent(
        &self,
        headers: &HeaderMap,
        path: &str,
        params: &Form,
        handler: impl FnOnce() -> Result<(StatusCode, String), (StatusCode, String)>,
    ) -> Response {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let now = self.clock.now_secs();
        let mut sorted = params.clone();
        sorted.sort();
        if let Some(k) = &key {
            if k.is_empty() || k.len() > 255 {
                return respond(
                    invalid(None, "Idempotency keys must be 1 to 255 characters.", None),
                    false,
                );
            }
            let mut st = self.lock();
            st.idempotency
                .retain(|_, s| now - s.at < IDEMPOTENCY_TTL_SECS);
            if let Some(s) = st.idempotency.get(k) {
                if s.path != path {
                    return respond(error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        None,
                        &format!("Keys for idempotent requests can only be used for the same endpoint they were first used for ('{path}' vs '{}'). Try using a key other than '{k}' if you meant to execute a different request.", s.path),
                        None,
                    ), false);
                }
                if s.params != sorted {
                    return respond(error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        None,
                        &format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."),
                        None,
                    ), false);
                }
                let status = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
                return respond((status, s.body.clone()), true);
            }
        }
        match handler() {
            Ok((status, body)) => {
                if let Some(k) = key {
                    self.lock().idempotency.insert(
                        k,
                        Stored {
                            path: path.to_owned(),
                            params: sorted,
                            status: status.as_u16(),
                            body: body.clone(),
                            at: now,
                        },
                    );
                }
                respond((status, body), false)
            }
            // Refused for its parameters: nothing is stored (Stripe saves only requests that
            // started executing).
            Err(e) => respond(e, false),
        }
    }

    fn create(
        &self,
        form: &Form,
        origin: String,
    ) -> Result<(StatusCode, String), (StatusCode, String)> {
        let mut metadata = BTreeMap::new();
        let mut pi_metadata = BTreeMap::new();
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in form {
            if let Some(m) = k
                .strip_prefix("metadata[")
                .and_then(|r| r.strip_suffix(']'))
            {
                metadata_entry(&mut metadata, m, v, k)?;
            } else if let Some(m) = k
                .strip_prefix("payment_intent_data[metadata][")
                .and_then(|r| r.strip_suffix(']'))
            {
                metadata_entry(&mut pi_metadata, m, v, k)?;
            } else if matches!(
                k.as_str(),
                "mode"
                    | "success_url"
                    | "cancel_url"
                    | "client_reference_id"
                    | "expires_at"
                    | "customer_email"
                    | "locale"
                    | "payment_method_types[0]"
                    | "line_items[0][price_data][currency]"
                    | "line_items[0][price_data][unit_amount]"
                    | "line_items[0][price_data][product_data][name]"
                    | "line_items[0][quantity]"
            ) {
                fields.insert(k.as_str(), v.as_str());
            } else {
                return Err(invalid(
                    Some("parameter_unknown"),
                    &format!("Received unknown parameter: {k}"),
                    Some(k),
                ));
            }
        }
        let need = |k: &'static str| {
            fields
                .get(k)
                .copied()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    invalid(
                        Some("parameter_missing"),
                        &format!("Missing required param: {k}."),
                        Some(k),
                    )
                })
        };
        if need("mode")? != "payment" {
            return Err(invalid(
                None,
                "This simulator supports only `mode=payment`.",
                Some("mode"),
            ));
        }
        if let Some(t) = fields.get("payment_method_types[0]") {
            if *t != "card" {
                return Err(invalid(
                    None,
                    &format!("The payment method type provided: {t} is invalid."),
                    Some("payment_method_types[0]"),
                ));
            }
        }
        let success_url = need("success_url")?;
        for (k, u) in [
            ("success_url", Some(success_url)),
            ("cancel_url", fields.get("cancel_url").copied()),
        ] {
            if let Some(u) = u {
                if reqwest::Url::parse(u).map_or(true, |p| !matches!(p.scheme(), "http" | "https"))
                {
                    return Err(invalid(Some("url_invalid"), "Not a valid URL", Some(k)));
                }
            }
        }
        let cur_param = "line_items[0][price_data][currency]";
        let code = need(cur_param)?;
        let currency = (code.bytes().all(|b| b.is_ascii_lowercase()))
            .then(|| Currency::parse(&code.to_ascii_uppercase()).ok())
            .flatten()
            .filter(|c| self.takes(*c))
            .ok_or_else(|| invalid(None, &format!("Invalid currency: {code}."), Some(cur_param)))?;
        let amount_param = "line_items[0][price_data][unit_amount]";
        let unit: i64 = need(amount_param)?
            .parse()
            .ok()
            .filter(|a| (1..=99_999_999).contains(a))
            .ok_or_else(|| {
                invalid(
                    None,
                    "Invalid integer: unit_amount must be 1 to 99999999.",
                    Some(amount_param),
                )
            })?;
        let qty: i64 = need("line_items[0][quantity]")?
            .parse()
            .ok()
            .filter(|q| *q >= 1)
            .ok_or_else(|| invalid(None, "Invalid integer", Some("line_items[0][quantity]")))?;
        let name = need("line_items[0][price_data][product_data][name]")?;
        let amount = unit
            .checked_mul(qty)
            .and_then(|m| Money::new(m, currency).ok())
            .ok_or_else(|| invalid(None, "Amount too large", Some(amount_param)))?;
        let now = self.clock.now_secs();
        let expires_at = match fields.get("expires_at") {
            None => now + MAX_EXPIRY_SECS,
            Some(t) => {
                let t: i64 = t
                    .parse()
                    .map_err(|_| invalid(None, "Invalid timestamp", Some("expires_at")))?;
                if t < now + MIN_EXPIRY_SECS || t > now + MAX_EXPIRY_SECS {
                    return Err(invalid(
                        None,
                        "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
                        Some("expires_at"),
                    ));
                }
                t
            }
        };
        let client_reference_id = fields.get("client_reference_id").map(|s| (*s).to_owned());
        if client_reference_id
            .as_ref()
            .is_some_and(|c| c.chars().count() > 200)
        {
            return Err(invalid(
                None,
                "client_reference_id is too long (200 characters at most).",
                Some("client_reference_id"),
            ));
        }
        let id = object_id("cs_test_", 40);
        let rec = SessionRec {
            id: id.clone(),
            origin,
            client_reference_id,
            metadata,
            pi_metadata,
            amount,
            product_name: name.to_owned(),
            success_url: success_url.to_owned(),
            cancel_url: fields
                .get("cancel_url")
                .map(|s| (*s).to_owned())
                .unwrap_or_default(),
            created: now,
            expires_at,
            status: Status::Open,
            paid: false,
            payment_intent: None,
            outcome: None,
            reported: None,
            refunds: Vec::new(),
            stats: Default::default(),
            charged: None,
        };
        let v = self.session_json(&rec);
        self.lock().sessions.insert(id, rec);
        Ok(ok(&v))
    }

    fn missing_session(id: &str) -> (StatusCode, String) {
        error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such checkout.session: '{id}'"),
            Some("session"),
        )
    }

    fn refund(&self, form: &Form) -> Result<(StatusCode, String), (StatusCode, String)> {
        let mut metadata = BTreeMap::new();
        let mut pi = None;
        let mut amount = None;
        let mut reason = None;
        for (k, v) in form {
            if let Some(m) = k
                .strip_prefix("metadata[")
                .and_then(|r| r.strip_suffix(']'))
            {
                metadata_entry(&mut metadata, m, v, k)?;
                continue;
            }
            match k.as_str() {
                "payment_intent" => pi = Some(v.clone()),
                "amount" => {
                    amount =
                        Some(v.parse::<i64>().ok().filter(|a| *a > 0).ok_or_else(|| {
                            invalid(None, "Invalid positive integer", Some("amount"))
                        })?)
                }
                "reason" => {
                    if !matches!(
                        v.as_str(),
                        "duplicate" | "fraudulent" | "requested_by_customer"
                    ) {
                        return Err(invalid(
                            None,
                            "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                            Some("reason"),
                        ));
                    }
                    reason = Some(v.clone());
                }
                _ => {
                    return Err(invalid(
                        Some("parameter_unknown"),
                        &format!("Received unknown parameter: {k}"),
                        Some(k),
                    ))
                }
            }
        }
        let pi = pi.ok_or_else(|| {
            invalid(
                Some("parameter_missing"),
                "Missing required param: payment_intent.",
                Some("payment_intent"),
            )
        })?;
        let mut st = self.lock();
        let Some(sid) = st.by_pi.get(&pi).cloned() else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such payment_intent: '{pi}'"),
                Some("payment_intent"),
            ));
        };
        let now = self.clock.now_secs();
        let Some(s) = st.sessions.get_mut(&sid) else {
            return Err(invalid(None, "lost session", None));
        };
        if !s.paid {
            return Err(invalid(
                None,
                &format!("This PaymentIntent ({pi}) does not have a successful charge to refund."),
                Some("payment_intent"),
            ));
        }
        let left = s.amount.minor() - s.refunded();
        if left <= 0 {
            return Err(invalid(
                Some("charge_already_refunded"),
                &format!("Charge for {pi} has already been refunded."),
                None,
            ));
        }
        let amount = amount.unwrap_or(left);
        if amount > left {
            return Err(invalid(
                None,
                &format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
                ),
                Some("amount"),
            ));
        }
        let r = RefundRec {
            id: object_id("re_3", 23),
            amount,
            created: now,
            metadata,
            reason,
        };
        s.refunds.push(r.clone());
        let index = s.refunds.len() - 1;
        let v = self.refund_json(s, &r);
        st.txns.push(super::Txn {
            id: object_id("txn_3", 23),
            created: now,
            session: sid,
            refund: Some(index),
        });
        Ok(ok(&v))
    }
}

fn metadata_entry(
    map: &mut BTreeMap<String, String>,
    key: &str,
    value: &str,
    param: &str,
) -> Result<(), (StatusCode, String)> {
    if key.is_empty() || key.chars().count() > 40 || value.chars().count() > 500 || map.len() >= 50
    {
        return Err(invalid(
            None,
            "Metadata keys are 1-40 characters, values at most 500, at most 50 keys.",
            Some(param),
        ));
    }
    map.insert(key.to_owned(), value.to_owned());
    Ok(())
}

fn form_or_400(body: &[u8]) -> Result<Form, Box<Response>> {
    parse_form(body).map_err(|e| {
        Box::new(respond(
            invalid(None, &format!("Invalid request body: {e}"), None),
            false,
        ))
    })
}

pub(super) async fn create_session(
    State(sim): State<Arc<StripeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    let form = match form_or_400(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let creation = sim.lock().controls.creation.next("simulated outage");
    if let Err(m) = creation.apply().await {
        return respond(
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                &m,
                None,
            ),
            false,
        );
    }
    let origin = crate::common::html::origin(&headers);
    sim.idempotent(&headers, "/v1/checkout/sessions", &form, || {
        sim.create(&form, origin)
    })
}

pub(super) async fn retrieve_session(
    State(sim): State<Arc<StripeSim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    sim.expire_due(&id);
    let st = sim.lock();
    match st.sessions.get(&id) {
        Some(s) => respond(ok(&sim.session_json(s)), false),
        None => respond(StripeSim::missing_session(&id), false),
    }
}

pub(super) async fn expire_session(
    State(sim): State<Arc<StripeSim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    let form = match form_or_400(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Some((k, _)) = form.first() {
        return respond(
            invalid(
                Some("parameter_unknown"),
                &format!("Received unknown parameter: {k}"),
                Some(k),
            ),
            false,
        );
    }
    sim.expire_due(&id);
    let path = format!("/v1/checkout/sessions/{id}/expire");
    let mut expired = false;
    let r = sim.idempotent(&headers, &path, &form, || {
        let mut st = sim.lock();
        let Some(s) = st.sessions.get_mut(&id) else {
            return Err(StripeSim::missing_session(&id));
        };
        if s.status != Status::Open {
            return Err(invalid(
                None,
                &format!(
                    "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of {}.",
                    s.status.name()
                ),
                None,
            ));
        }
        s.status = Status::Expired;
        expired = true;
        Ok(ok(&sim.session_json(s)))
    });
    if expired {
        sim.resend(&id, "checkout.session.expired");
    }
    r
}

pub(super) async fn create_refund(
    State(sim): State<Arc<StripeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    let form = match form_or_400(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    sim.idempotent(&headers, "/v1/refunds", &form, || sim.refund(&form))
}

pub(super) async fn list_refunds(
    State(sim): State<Arc<StripeSim>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    let q = match form_or_400(query.unwrap_or_default().as_bytes()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let st = sim.lock();
    let mut data = Vec::new();
    for s in st.sessions.values() {
        if get("payment_intent").is_some_and(|pi| s.payment_intent.as_deref() != Some(pi.as_str()))
        {
            continue;
        }
        for r in s.refunds.iter().rev() {
            data.push((r.created, sim.refund_json(s, r)));
        }
    }
    data.sort_by_key(|d| std::cmp::Reverse(d.0));
    let has_more = data.len() > limit;
    let data: Vec<Value> = data.into_iter().take(limit).map(|(_, v)| v).collect();
    respond(
        ok(&json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/refunds"})),
        false,
    )
}

pub(super) async fn list_sessions(
    State(sim): State<Arc<StripeSim>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    let q = match form_or_400(query.unwrap_or_default().as_bytes()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let st = sim.lock();
    let mut all: Vec<&SessionRec> = st
        .sessions
        .values()
        .filter(|s| {
            get("payment_intent").is_none_or(|pi| s.payment_intent.as_deref() == Some(pi.as_str()))
        })
        .collect();
    all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let has_more = all.len() > limit;
    let data: Vec<Value> = all
        .into_iter()
        .take(limit)
        .map(|s| sim.session_json(s))
        .collect();
    respond(
        ok(
            &json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/checkout/sessions"}),
        ),
        false,
    )
}

/// `GET /v1/balance_transactions`: newest first, `created[gte]` / `created[lt]`, `limit`,
/// `starting_after`, and `expand[]=data.source` / `data.source.payment_intent`.
pub(super) async fn balance_transactions(
    State(sim): State<Arc<StripeSim>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = sim.authenticate(&headers) {
        return respond(e, false);
    }
    let q: Form = match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return respond(invalid(None, &format!("Invalid query: {e}"), None), false),
    };
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    let expands: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "expand[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let expand_pi = expands.contains(&"data.source.payment_intent");
    let expand_source = expand_pi || expands.contains(&"data.source");
    let limit = num("limit").unwrap_or(10).clamp(1, 100) as usize;
    let (gte, lt) = (
        num("created[gte]").unwrap_or(i64::MIN),
        num("created[lt]").unwrap_or(i64::MAX),
    );
    let mut st = sim.lock();
    if st.controls.balance_failure {
        return respond(
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unknown error occurred",
                None,
            ),
            false,
        );
    }
    let tamper = std::mem::take(&mut st.controls.tamper_next_page);
    let limit = match st.controls.page_cap {
        0 => limit,
        cap => limit.min(cap),
    };
    let mut list: Vec<&Txn> = st
        .txns
        .iter()
        .filter(|t| t.created >= gte && t.created < lt)
        .filter(|t| !st.controls.hidden.contains(&t.session))
        .collect();
    list.reverse();
    if let Some(after) = get("starting_after") {
        match list.iter().position(|t| t.id == after) {
            Some(i) => list.drain(..=i).for_each(drop),
            None => {
                return respond(
                    error(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        Some("resource_missing"),
                        &format!("No such balance transaction: '{after}'"),
                        Some("starting_after"),
                    ),
                    false,
                )
            }
        }
    }
    let has_more = list.len() > limit;
    let mut data = Vec::new();
    for t in list.into_iter().take(limit) {
        let Some(s) = st.sessions.get(&t.session) else {
            continue;
        };
        let currency = kami_pay::stripe::currency_param(s.amount.currency());
        let (kind, amount, source) = match t.refund.and_then(|i| s.refunds.get(i)) {
            Some(r) => {
                let mut obj = sim.refund_json(s, r);
                obj["payment_intent"] = sim.pi_value(s, expand_pi);
                (
                    "refund",
                    -r.amount,
                    if expand_source { obj } else { json!(r.id) },
                )
            }
            None => {
                let mut obj = sim.charge_json(s, expand_pi);
                if tamper && data.is_empty() {
                    obj["amount"] = json!(0);
                }
                let id = obj["id"].clone();
                (
                    "charge",
                    s.amount.minor(),
                    if expand_source { obj } else { id },
                )
            }
        };
        data.push(json!({
            "id": t.id, "object": "balance_transaction", "amount": amount,
            "currency": currency, "created": t.created, "fee": 0, "net": amount,
            "reporting_category": kind, "source": source, "status": "available", "type": kind,
        }));
    }
    respond(
        ok(
            &json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/balance_transactions"}),
        ),
        false,
    )
}
