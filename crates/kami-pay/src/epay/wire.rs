//! Epay messages both versions share: the create parameters, JSON replies flattened the way
//! PHP hosts sign them, reply binding checks, order states, and safe payment URLs.

use std::time::Duration;

use kami_core::{Currency, Method, Money};

use super::{EpayChannel, Version, MAX_NAME_BYTES};
use crate::common::form::{clip, field, required};
use crate::common::text::{owned, urlencode};
use crate::{CreatePayment, Device, PayError, PaymentConfirmation, RefundRequest, TradeState};

/// `clientip` sent to `mapi.php` / `api/pay/create` when the buyer's IP is unknown.
pub const DEFAULT_CLIENT_IP: &str = "127.0.0.1";
/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Parse `money` as CNY, exactly (G.2; DESIGN invariant 6).
pub fn parse_money(money: &str) -> Result<Money, PayError> {
    Money::from_major_str(money, Currency::Cny).map_err(|e| PayError::Malformed(e.to_string()))
}

/// The Epay `type` for a buyer-facing method (G.2).
pub fn pay_type(method: Method) -> Result<&'static str, PayError> {
    match method {
        Method::Alipay => Ok("alipay"),
        Method::Wxpay => Ok("wxpay"),
        Method::Qqpay => Ok("qqpay"),
        Method::Usdt | Method::Card | Method::Paypal | Method::Sandbox => {
            Err(PayError::Unsupported("epay serves alipay, wxpay and qqpay"))
        }
    }
}

/// The `device` of `mapi.php` (G.2): `pc`, or on mobile the in-app browser when the
/// User-Agent reveals it (`wechat`, `qq`, `alipay`), else `mobile`.
pub fn device_param(device: Device, user_agent: Option<&str>) -> &'static str {
    if device == Device::Pc {
        return "pc";
    }
    let ua = user_agent.unwrap_or("");
    if ua.contains("MicroMessenger") {
        "wechat"
    } else if ua.contains("AlipayClient") {
        "alipay"
    } else if ua.contains(" QQ/") {
        "qq"
    } else {
        "mobile"
    }
}

pub(super) fn truncate_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_owned();
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The buyer's `clientip` and `device` of a server-to-server create (`mapi.php`,
/// `api/pay/create`), appended in that order.
pub(super) fn push_client(params: &mut Vec<(String, String)>, req: &CreatePayment) {
    params.push(("clientip".into(), req.client_ip_or(DEFAULT_CLIENT_IP)));
    params.push((
        "device".into(),
        device_param(req.device, req.user_agent.as_deref()).into(),
    ));
}

/// Schemes a payment redirect may never use.
pub(super) fn is_safe_redirect(url: &str, web_only: bool) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    if lower.is_empty() || lower.chars().any(char::is_control) {
        return false;
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return true;
    }
    if web_only {
        return false;
    }
    let Some((scheme, _)) = lower.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !matches!(scheme, "javascript" | "data" | "vbscript" | "file" | "blob")
}

// ---------------------------------------------------------------------------------------
// JSON replies
// ---------------------------------------------------------------------------------------

/// A JSON reply flattened to string fields the way PHP hosts sign them: strings as they are,
/// integers in decimal, `true` → `"1"`, `false`/`null` → `""`; arrays and objects skipped
/// (G.5 "skip arrays").
pub(super) fn flatten_json(body: &[u8]) -> Option<Vec<(String, String)>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let serde_json::Value::Object(map) = serde_json::from_slice::<serde_json::Value>(body).ok()?
    else {
        return None;
    };
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(true) => "1".into(),
            serde_json::Value::Bool(false) | serde_json::Value::Null => String::new(),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => continue,
        };
        fields.push((k, s));
    }
    Some(fields)
}

pub(super) fn is_not_found(msg: &str) -> bool {
    let lower = msg.to_ascii_lowercase();
    msg.contains("不存在") || lower.contains("not exist") || lower.contains("not found")
}

pub(super) fn gateway_error(fields: &[(String, String)]) -> PayError {
    PayError::Gateway {
        code: clip(field(fields, "code").unwrap_or("")),
        message: clip(field(fields, "msg").unwrap_or("")),
    }
}

impl EpayChannel {
    /// Send a request; the reply's HTTP status and flattened JSON fields.
    pub(super) async fn call(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<(String, String)>, PayError> {
        // Transport errors never carry the URL: v1 URLs carry the merchant key.
        let crate::http::Reply { status, body, .. } =
            crate::http::send(req.timeout(API_TIMEOUT)).await?;
        match flatten_json(&body) {
            Some(fields) => Ok(fields),
            None => Err(PayError::Gateway {
                code: format!("HTTP_{status}"),
                message: clip(&String::from_utf8_lossy(&body)),
            }),
        }
    }

    pub(super) fn post_form(
        &self,
        url: String,
        params: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, PayError> {
        Ok(self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencode(params)?))
    }

    pub(super) fn check_reply_binding(
        &self,
        fields: &[(String, String)],
        trade_no: &str,
    ) -> Result<(), PayError> {
        if let Some(pid) = field(fields, "pid").filter(|p| !p.is_empty()) {
            if pid != self.pid {
                return Err(PayError::WrongMerchant);
            }
        }
        if let Some(got) = field(fields, "out_trade_no").filter(|p| !p.is_empty()) {
            if got != trade_no {
                return Err(PayError::Malformed(
                    "gateway answered for another trade".into(),
                ));
            }
        }
        Ok(())
    }

    /// Map an order reply (v1 `act=order`, v2 `api/pay/query`) to a [`TradeState`].
    pub(super) fn trade_state(
        &self,
        trade_no: &str,
        fields: &[(String, String)],
    ) -> Result<TradeState, PayError> {
        self.check_reply_binding(fields, trade_no)?;
        match required(fields, "status")? {
            "0" => Ok(TradeState::Waiting),
            "1" => {
                let gateway_trade_no = required(fields, "trade_no")?;
                let amount = parse_money(required(fields, "money")?)?;
                Ok(TradeState::Paid(PaymentConfirmation {
                    trade_no: trade_no.to_owned(),
                    gateway_trade_no: gateway_trade_no.to_owned(),
                    amount,
                    // G.3 `endtime`: when the host recorded the payment, China time.
                    paid_at: crate::common::pay_time::pay_time(
                        "epay",
                        "endtime",
                        field(fields, "endtime"),
                        crate::common::pay_time::parse_china_time,
                    ),
                }))
            }
            "2" => Ok(TradeState::Refunded),
            other => Err(PayError::Gateway {
                code: format!("STATUS_{}", clip(other)),
                message: "unknown epay order status".into(),
            }),
        }
    }

    pub(super) fn create_params(
        &self,
        req: &CreatePayment,
    ) -> Result<Vec<(String, String)>, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("epay settles in CNY only"));
        }
        let money = req.amount.to_major_string();
        Ok(owned(&[
            ("pid", &self.pid),
            ("type", pay_type(req.method)?),
            ("out_trade_no", req.trade_no.as_str()),
            ("notify_url", &req.notify_url),
            ("return_url", &req.return_url),
            ("name", &truncate_name(&req.subject)),
            ("money", &money),
        ]))
    }

    /// The page-jump URL (G.1 `submit.php`; v2 `api/pay/submit`).
    pub(super) fn submit_url(&self, req: &CreatePayment) -> Result<String, PayError> {
        let path = match self.version() {
            Version::V1 => "submit.php",
            Version::V2 => "api/pay/submit",
        };
        let params = self.sign_request(self.create_params(req)?)?;
        Ok(format!("{}?{}", self.url(path)?, urlencode(&params)?))
    }

    pub(super) fn refund_money(req: &RefundRequest) -> Result<String, PayError> {
        if req.amount.currency() != Currency::Cny {
            return Err(PayError::Unsupported("epay settles in CNY only"));
        }
        if req.amount.minor() <= 0 {
            return Err(PayError::Malformed("refund amount must be positive".into()));
        }
        Ok(req.amount.to_major_string())
    }
}
