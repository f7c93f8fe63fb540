//! The buyer-facing and test-control pages of the Alipay simulator: the page/wap cashier,
//! the QR "scan" page, the Pay button, the index and the fault form. Every echoed value is
//! HTML-escaped.

use super::*;

pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · kami Alipay simulator</title>\
         <style>body{{font-family:sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}\
         .amount{{font-size:2rem;font-weight:bold}}button{{font-size:1.2rem;padding:.5rem 2rem}}\
         fieldset{{margin:1rem 0}}table{{border-collapse:collapse}}td,th{{padding:.2rem .5rem;\
         border:1px solid #ccc}}</style></head><body><h1>{t}</h1>\n{body}\n<p><small>kami \
         Alipay gateway simulator — test payments only, no real money moves.</small></p>\
         </body></html>\n",
        t = escape(title)
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_page(title, body),
    )
        .into_response()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// A gateway error shown to the buyer's browser (page/wap requests).
pub(super) fn gateway_error(e: &ApiErr) -> Response {
    let body = format!(
        "<p>The payment request was refused.</p><p><code>{}</code> {}<br><code>{}</code> {}</p>",
        escape(&e.code),
        escape(&e.msg),
        escape(&e.sub_code),
        escape(&e.sub_msg)
    );
    page(StatusCode::BAD_REQUEST, "Payment request error", &body)
}

/// What a cashier page shows.
struct View {
    out_trade_no: String,
    trade_no: String,
    subject: String,
    amount: Money,
    token: String,
    method: String,
    return_link: Option<String>,
}

impl AlipaySim {
    fn view(&self, t: &Trade) -> View {
        View {
            out_trade_no: t.out_trade_no.clone(),
            trade_no: t.trade_no.clone(),
            subject: t.subject.clone(),
            amount: t.paid.unwrap_or(t.total),
            token: t.token.clone(),
            method: t.method.clone(),
            return_link: self.return_link(t),
        }
    }

    /// The signed browser return URL of a paid page/wap trade (A.4; never proof of payment).
    fn return_link(&self, t: &Trade) -> Option<String> {
        let url = t.return_url.as_deref()?;
        if t.paid.is_none() || !(url.starts_with("http://") || url.starts_with("https://")) {
            return None;
        }
        let params = vec![
            ("charset".to_owned(), "utf-8".to_owned()),
            ("out_trade_no".to_owned(), t.out_trade_no.clone()),
            ("method".to_owned(), format!("{}.return", t.method)),
            (
                "total_amount".to_owned(),
                t.paid.unwrap_or(t.total).to_major_string(),
            ),
            ("trade_no".to_owned(), t.trade_no.clone()),
            ("auth_app_id".to_owned(), self.cfg.app_id.clone()),
            ("version".to_owned(), "1.0".to_owned()),
            ("app_id".to_owned(), self.cfg.app_id.clone()),
            ("seller_id".to_owned(), self.cfg.seller_id.clone()),
            ("timestamp".to_owned(), bj(now_ms())),
        ];
        let signed = signed_notify(&self.cfg.gateway_key, t.sign_type, params).ok()?;
        let query = serde_urlencoded::to_string(signed).ok()?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Some(format!("{url}{sep}{query}"))
    }

    /// `alipay.trade.page.pay` / `wap.pay` reaching the gateway in the buyer's browser: the
    /// trade is created (or found) and shown with the Pay button. Opening the cashier counts
    /// as the buyer logging in, so the trade is visible to query from now on.
    pub(super) fn cashier(
        &self,
        method: &str,
        params: &[(String, String)],
        biz: &serde_json::Map<String, Value>,
        headers: &HeaderMap,
    ) -> Response {
        let want = if method == "alipay.trade.page.pay" {
            "FAST_INSTANT_TRADE_PAY"
        } else {
            "QUICK_WAP_WAY"
        };
        if biz_str(biz, "product_code").is_some_and(|p| p != want) {
            return gateway_error(&invalid("product_code"));
        }
        let mut out = Vec::new();
        let result = {
            let mut st = self.lock();
            match self.upsert_trade(&mut st, method, biz, params, &mut out) {
                Ok(t) => {
                    t.visible = true;
                    Ok(self.view(t))
                }
                Err(e) => {
                    let paid = biz_str(biz, "out_trade_no")
                        .and_then(|o| st.trades.get(o))
                        .filter(|t| t.paid.is_some())
                        .map(|t| self.view(t));
                    Err((e, paid))
                }
            }
        };
        for o in out {
            self.spawn_delivery(o);
        }
        let json = wants_json(headers);
        match result {
            Ok(v) if json => json_view(StatusCode::OK, &v, "WAIT_BUYER_PAY"),
            Ok(v) => cashier_page(&v),
            Err((_, Some(v))) => already_paid(&v, json),
            Err((e, None)) if e.sub_code == "ACQ.TRADE_HAS_CLOSE" => closed(json),
            Err((e, None)) if json => json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"code": e.code, "sub_code": e.sub_code, "sub_msg": e.sub_msg}),
            ),
            Err((e, None)) => gateway_error(&e),
        }
    }
}

fn json_view(status: StatusCode, v: &View, trade_status: &str) -> Response {
    json_response(
        status,
        serde_json::json!({
            "out_trade_no": v.out_trade_no,
            "trade_no": v.trade_no,
            "status": trade_status,
            "total_amount": v.amount.to_major_string(),
            "pay_url": format!("/sim/alipay/pay/{}", v.token),
            "return_url": v.return_link,
        }),
    )
}

fn summary(v: &View) -> String {
    format!(
        "<p>{}</p>\n<p class=\"amount\">¥ {}</p>\n<p>Order <code>{}</code> · Alipay trade \
         <code>{}</code> · <code>{}</code></p>",
        escape(&v.subject),
        escape(&v.amount.to_major_string()),
        escape(&v.out_trade_no),
        escape(&v.trade_no),
        escape(&v.method),
    )
}

fn fault_form() -> String {
    let methods: String = METHODS
        .iter()
        .map(|m| format!("<option value=\"{m}\">{m}</option>"))
        .collect();
    format!(
        "<form method=\"post\" action=\"/sim/alipay/control\"><fieldset><legend>Test control: \
         gateway faults</legend>\
         <label>Method <select name=\"method\">{methods}</select></label><br>\
         <label>Fault <select name=\"fault\">\
         <option value=\"system_error\">20000 ACQ.SYSTEM_ERROR</option>\
         <option value=\"sleep\">sleep, then answer</option>\
         <option value=\"lose_response\">process, answer 20000 (result unknown)</option>\
         <option value=\"forge_signature\">process, forge the response signature</option>\
         <option value=\"unsigned\">process, answer unsigned</option>\
         <option value=\"retry_later\">cancel: retry_flag=Y</option>\
         <option value=\"error\">error (code, sub_code below)</option>\
         </select></label><br>\
         <label>Sleep ms <input name=\"sleep_ms\" value=\"3000\" size=\"6\"></label> \
         <label>Code <input name=\"code\" value=\"40004\" size=\"5\"></label> \
         <label>Sub code <input name=\"sub_code\" value=\"ACQ.SYSTEM_ERROR\"></label><br>\
         <label>Times <input name=\"times\" value=\"1\" size=\"3\"></label> \
         <button type=\"submit\">Queue fault</button></fieldset></form>"
    )
}

fn cashier_page(v: &View) -> Response {
    let body = format!(
        "{}\n<form method=\"post\" action=\"/sim/alipay/pay/{}\">\n\
         <fieldset><legend>Test controls</legend>\
         <label>Notification <select name=\"notify\">\
         <option value=\"normal\" selected>normal</option>\
         <option value=\"drop\">drop (paid, never notified)</option>\
         <option value=\"duplicate\">duplicate (each attempt twice)</option>\
         <option value=\"delay\">delay (by the ms below)</option>\
         <option value=\"reorder\">reorder (stale WAIT_BUYER_PAY after TRADE_SUCCESS)</option>\
         </select></label><br>\
         <label>Delay ms <input name=\"delay_ms\" value=\"3000\" size=\"6\"></label><br>\
         <label>Pay a different amount (yuan) <input name=\"amount\" placeholder=\"{}\" \
         size=\"10\"></label></fieldset>\n<p><button type=\"submit\">Pay</button></p>\n</form>\n{}",
        summary(v),
        escape(&v.token),
        escape(&v.amount.to_major_string()),
        fault_form()
    );
    page(StatusCode::OK, "Alipay cashier (simulated)", &body)
}

fn return_html(v: &View) -> String {
    match &v.return_link {
        Some(url) => format!("<p><a href=\"{}\">Return to the shop</a></p>", escape(url)),
        None => String::new(),
    }
}

fn already_paid(v: &View, json: bool) -> Response {
    if json {
        return json_view(StatusCode::OK, v, "TRADE_SUCCESS");
    }
    let body = format!(
        "{}\n<p>This trade is already paid.</p>{}",
        summary(v),
        return_html(v)
    );
    page(StatusCode::OK, "Already paid", &body)
}

fn closed(json: bool) -> Response {
    if json {
        return json_response(
            StatusCode::CONFLICT,
            serde_json::json!({"code": "40004", "sub_code": "ACQ.TRADE_HAS_CLOSE"}),
        );
    }
    page(
        StatusCode::CONFLICT,
        "Trade closed",
        "<p>The trade is closed and can no longer be paid.</p>",
    )
}

fn refused(status: StatusCode, code: &str, message: &str, json: bool) -> Response {
    if json {
        return json_response(
            status,
            serde_json::json!({"error": code, "message": message}),
        );
    }
    page(
        status,
        "Payment refused",
        &format!("<p>{}</p>", escape(message)),
    )
}

/// `GET /sim/alipay/qr/{token}`: the buyer scans the QR code.
pub(super) async fn qr_page(
    State(sim): State<Arc<AlipaySim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    let mut out = Vec::new();
    let result = {
        let mut st = sim.lock();
        let key = st.tokens.get(&token).cloned();
        match key.and_then(|k| st.trades.get_mut(&k)) {
            None => Err(None),
            Some(t) => {
                out.extend(sim.expire_locked(t, now_ms()));
                match t.status {
                    Status::WaitBuyerPay => {
                        t.visible = true;
                        Ok(sim.view(t))
                    }
                    Status::Closed => Err(Some(None)),
                    Status::Success | Status::Finished => Err(Some(Some(sim.view(t)))),
                }
            }
        }
    };
    for o in out {
        sim.spawn_delivery(o);
    }
    match result {
        Ok(v) if json => json_view(StatusCode::OK, &v, "WAIT_BUYER_PAY"),
        Ok(v) => cashier_page(&v),
        Err(None) => refused(
            StatusCode::NOT_FOUND,
            "UNKNOWN_QR",
            "This QR code is unknown.",
            json,
        ),
        Err(Some(None)) => closed(json),
        Err(Some(Some(v))) => already_paid(&v, json),
    }
}

/// `POST /sim/alipay/pay/{token}`: the Pay button, with the test controls.
pub(super) async fn pay_submit(
    State(sim): State<Arc<AlipaySim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let bad = |m: &str| refused(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m, json);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return bad(&e.to_string()),
    };
    let get = |k: &str| field(&form, k).map(str::trim).filter(|v| !v.is_empty());
    let amount = match get("amount").map(|a| Money::from_major_str(a, Currency::Cny)) {
        None => None,
        Some(Ok(m)) if m.minor() > 0 => Some(m),
        Some(_) => return bad("amount must be a positive yuan amount like 12.30"),
    };
    let delay_ms = match get("delay_ms").map(str::parse::<u64>) {
        None => None,
        Some(Ok(ms)) if ms <= 3_600_000 => Some(ms),
        Some(_) => return bad("delay_ms must be a number of milliseconds (at most an hour)"),
    };
    let Some(notify) = NotifyMode::parse(get("notify").unwrap_or(""), delay_ms) else {
        return bad("notify must be normal, drop, duplicate, delay or reorder");
    };
    let opts = PayOptions { amount, notify };
    let result = {
        let mut st = sim.lock();
        let key = st.tokens.get(&token).cloned();
        match key.and_then(|k| st.trades.get_mut(&k)) {
            None => Err((SimError::UnknownTrade, None)),
            Some(t) => match sim.pay_locked(t, opts) {
                Ok((_, o)) => Ok((sim.view(t), o)),
                Err(SimError::AlreadyPaid) => Err((SimError::AlreadyPaid, Some(sim.view(t)))),
                Err(e) => Err((e, None)),
            },
        }
    };
    match result {
        Ok((v, outgoing)) => {
            if let Some(o) = outgoing {
                sim.spawn_delivery(o);
            }
            if json {
                return json_view(StatusCode::OK, &v, "TRADE_SUCCESS");
            }
            let body = format!("{}\n<p>Payment done.</p>{}", summary(&v), return_html(&v));
            page(StatusCode::OK, "Payment done", &body)
        }
        Err((SimError::AlreadyPaid, Some(v))) => already_paid(&v, json),
        Err((SimError::Closed, _)) => closed(json),
        Err((SimError::Expired, _)) => refused(
            StatusCode::GONE,
            "EXPIRED",
            "The trade has expired and was closed.",
            json,
        ),
        Err(_) => refused(
            StatusCode::NOT_FOUND,
            "UNKNOWN_TRADE",
            "This payment is unknown.",
            json,
        ),
    }
}

/// `GET /sim/alipay/`: the trades and the fault form.
pub(super) async fn index_page(State(sim): State<Arc<AlipaySim>>) -> Response {
    let rows: String = sim
        .trades()
        .iter()
        .take(200)
        .map(|t| {
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                escape(&t.out_trade_no),
                escape(&t.method),
                escape(&t.total.to_major_string()),
                escape(t.status),
                if t.visible { "yes" } else { "no" },
                if t.status == "WAIT_BUYER_PAY" {
                    format!(
                        "<a href=\"/sim/alipay/qr/{}\">open</a>",
                        escape(&t.qr_token)
                    )
                } else {
                    String::new()
                },
            )
        })
        .collect();
    let body = format!(
        "<table><tr><th>out_trade_no</th><th>method</th><th>total</th><th>status</th>\
         <th>visible</th><th></th></tr>{rows}</table>\n{}",
        fault_form()
    );
    page(StatusCode::OK, "Alipay simulator", &body)
}

/// `POST /sim/alipay/control`: queue a gateway fault.
pub(super) async fn control(
    State(sim): State<Arc<AlipaySim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let bad = |m: &str| refused(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m, json);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return bad(&e.to_string()),
    };
    let get = |k: &str| field(&form, k).map(str::trim).filter(|v| !v.is_empty());
    let Some(method) = get("method").filter(|m| METHODS.contains(m)) else {
        return bad("method must be one of the simulated alipay.trade.* methods");
    };
    let times = match get("times").map(str::parse::<u32>) {
        None => 1,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return bad("times must be 1..100"),
    };
    let fault = match get("fault").unwrap_or("") {
        "system_error" => Fault::system_error(),
        "sleep" => match get("sleep_ms").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms <= 600_000 => Fault::Sleep(Duration::from_millis(ms)),
            _ => return bad("sleep_ms must be a number of milliseconds (at most 10 minutes)"),
        },
        "lose_response" => Fault::LoseResponse,
        "forge_signature" => Fault::ForgeSignature,
        "unsigned" => Fault::Unsigned,
        "retry_later" => Fault::RetryLater,
        "error" => {
            let code = get("code").unwrap_or("40004");
            let sub_code = get("sub_code").unwrap_or("ACQ.SYSTEM_ERROR");
            Fault::Error {
                code: wire::clip(code, 8),
                msg: String::new(),
                sub_code: wire::clip(sub_code, 64),
                sub_msg: wire::clip(get("sub_msg").unwrap_or(sub_code), 128),
            }
        }
        _ => return bad("unknown fault"),
    };
    sim.inject_fault(method, fault, times);
    if json {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"method": method, "queued": times}),
        );
    }
    page(
        StatusCode::OK,
        "Fault queued",
        &format!(
            "<p>Queued for the next {times} call(s) of <code>{}</code>.</p>\
             <p><a href=\"/sim/alipay/\">Back</a></p>",
            escape(method)
        ),
    )
}
