//! WeChat Pay v3 wire work of the simulator: B.2 answer signatures (with the injectable
//! [`ResponseFault`]s), B.1 request authentication, B.3 notification bodies, and the JSON
//! shapes of transactions and refunds.

use axum::http::{header, HeaderMap, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kami_pay::crypto::{aes256gcm_encrypt, RsaHash};
use kami_pay::wechatpay::{
    format_cst, request_message, response_message, AuthorizationParams, MAX_CLOCK_SKEW_SECS,
    RESOURCE_ALGORITHM, SIGNATURE_SCHEME, SIGNTEST_PREFIX,
};
use serde_json::{json, Value};

use super::{random_alnum, Refund, ResponseFault, Trade, WechatSim, B64, MAX_REQUEST_BYTES};
use crate::common::html::origin;

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl WechatSim {
    /// The B.2 signature headers for `body` at `ts` (a probe signature when `probe`).
    pub fn sign_headers(&self, body: &[u8], ts: i64, probe: bool) -> Vec<(&'static str, String)> {
        let nonce = random_alnum(32);
        let ts = ts.to_string();
        let signature = if probe {
            format!(
                "{SIGNTEST_PREFIX}{}",
                B64.encode(rand::random::<[u8; 32]>())
            )
        } else {
            self.cfg
                .platform_key
                .sign_base64(RsaHash::Sha256, &response_message(&ts, &nonce, body))
                .unwrap_or_default()
        };
        vec![
            ("wechatpay-timestamp", ts),
            ("wechatpay-nonce", nonce),
            ("wechatpay-serial", self.cfg.platform_key_id.clone()),
            ("wechatpay-signature-type", SIGNATURE_SCHEME.to_owned()),
            ("wechatpay-signature", signature),
            ("request-id", hex::encode_upper(rand::random::<[u8; 16]>())),
        ]
    }

    /// A B.3 notification body around `plaintext` (encrypted with the APIv3 key).
    pub fn notification_body(
        &self,
        event_type: &str,
        summary: &str,
        plaintext: &Value,
    ) -> Result<String, String> {
        let nonce = random_alnum(12);
        let ct = aes256gcm_encrypt(
            &self.cfg.apiv3_key,
            nonce.as_bytes(),
            b"transaction",
            plaintext.to_string().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        // Field order as WeChat sends it (serde_json's map keeps insertion order only with
        // `preserve_order`, so build the text directly).
        let resource = format!(
            r#"{{"original_type":"transaction","algorithm":{},"ciphertext":{},"associated_data":"transaction","nonce":{}}}"#,
            Value::from(RESOURCE_ALGORITHM),
            Value::from(B64.encode(ct)),
            Value::from(nonce),
        );
        let id = format!(
            "{}-{}-{}-{}-{}",
            hex::encode(rand::random::<[u8; 4]>()),
            hex::encode(rand::random::<[u8; 2]>()),
            hex::encode(rand::random::<[u8; 2]>()),
            hex::encode(rand::random::<[u8; 2]>()),
            hex::encode(rand::random::<[u8; 6]>())
        );
        Ok(format!(
            r#"{{"id":{},"create_time":{},"resource_type":"encrypt-resource","event_type":{},"summary":{},"resource":{resource}}}"#,
            Value::from(id),
            Value::from(format_cst(self.clock.now_secs()).unwrap_or_default()),
            Value::from(event_type),
            Value::from(summary),
        ))
    }

    pub(super) fn transaction_json(&self, t: &Trade) -> Value {
        let mut v = json!({
            "appid": self.cfg.appid,
            "mchid": self.cfg.mchid,
            "out_trade_no": t.out_trade_no,
            "trade_type": t.kind.trade_type(),
            "trade_state": t.state,
            "trade_state_desc": trade_state_desc(t.state),
            "attach": "",
        });
        match &t.paid {
            Some(p) => {
                v["transaction_id"] = json!(p.transaction_id);
                v["bank_type"] = json!("OTHERS");
                v["success_time"] = json!(format_cst(p.success_time).unwrap_or_default());
                v["payer"] = json!({ "openid": p.openid });
                v["amount"] = json!({
                    "total": p.total, "payer_total": p.total,
                    "currency": "CNY", "payer_currency": "CNY"
                });
            }
            None => {
                v["amount"] =
                    json!({ "total": t.total, "currency": "CNY", "payer_currency": "CNY" });
            }
        }
        v
    }

    pub(super) fn refund_json(&self, r: &Refund, trade: Option<&Trade>) -> Value {
        let (transaction_id, total) = trade
            .and_then(|t| t.paid.as_ref())
            .map_or((String::new(), 0), |p| (p.transaction_id.clone(), p.total));
        let mut v = json!({
            "refund_id": r.refund_id,
            "out_refund_no": r.out_refund_no,
            "transaction_id": transaction_id,
            "out_trade_no": r.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": format_cst(r.create_time).unwrap_or_default(),
            "status": r.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": total, "refund": r.amount, "payer_total": total,
                "payer_refund": r.amount, "settlement_total": total,
                "settlement_refund": r.amount, "discount_refund": 0,
                "currency": "CNY", "refund_fee": 0, "from": []
            },
            "promotion_detail": []
        });
        if let Some(t) = r.success_time {
            v["success_time"] = json!(format_cst(t).unwrap_or_default());
        }
        v
    }

    /// A signed API answer (fault injection applies).
    pub(super) fn answer(&self, status: StatusCode, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let fault = self.controls().response_fault;
        let now = self.clock.now_secs();
        let mut headers = match fault {
            ResponseFault::Unsigned => {
                vec![("request-id", hex::encode_upper(rand::random::<[u8; 16]>()))]
            }
            ResponseFault::SignTest => self.sign_headers(&bytes, now, true),
            ResponseFault::Stale => self.sign_headers(&bytes, now - 600, false),
            ResponseFault::BadSignature => self.sign_headers(b"something else", now, false),
            ResponseFault::WrongSerial | ResponseFault::None => {
                self.sign_headers(&bytes, now, false)
            }
        };
        if fault == ResponseFault::WrongSerial {
            for h in &mut headers {
                if h.0 == "wechatpay-serial" {
                    h.1 = "PUB_KEY_ID_0000000000000000000000000000000000".into();
                }
            }
        }
        let mut resp = if body.is_some() {
            (status, bytes).into_response()
        } else {
            status.into_response()
        };
        let hm = resp.headers_mut();
        if body.is_some() {
            hm.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                hm.insert(k, v);
            }
        }
        resp
    }

    pub(super) fn error(&self, status: StatusCode, code: &str, message: &str) -> Box<Response> {
        Box::new(self.answer(status, Some(&json!({"code": code, "message": message}))))
    }

    /// Check the B.1 `Authorization` of an API request.
    pub(super) fn authenticate(
        &self,
        method: &HttpMethod,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Box<Response>> {
        let sign_error = |m: &str| self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", m);
        if body.len() > MAX_REQUEST_BYTES {
            return Err(self.error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PARAM_ERROR",
                "body too large",
            ));
        }
        let value = header_str(headers, "authorization")
            .ok_or_else(|| sign_error("Authorization header is missing"))?;
        let auth = AuthorizationParams::parse(value)
            .map_err(|e| sign_error(&format!("Authorization is malformed: {e}")))?;
        if auth.mchid != self.cfg.mchid {
            return Err(sign_error("mchid in Authorization is not this merchant"));
        }
        if !auth
            .serial_no
            .eq_ignore_ascii_case(&self.cfg.merchant_serial_no)
        {
            return Err(sign_error(
                "serial_no is not the merchant certificate's serial",
            ));
        }
        let ts: i64 = (auth.timestamp.len() <= 12
            && auth.timestamp.bytes().all(|b| b.is_ascii_digit()))
        .then(|| auth.timestamp.parse().ok())
        .flatten()
        .ok_or_else(|| sign_error("timestamp is not a unix time"))?;
        if ts.abs_diff(self.clock.now_secs()) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
            return Err(sign_error("timestamp is outside the accepted window"));
        }
        let canonical = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let head = request_message(
            method.as_str(),
            &canonical,
            &auth.timestamp,
            &auth.nonce_str,
            "",
        );
        // `head` ends with "\n" + "" + "\n": splice the raw body bytes in before the last "\n".
        let mut message = head.into_bytes();
        message.pop();
        message.extend_from_slice(body);
        message.push(b'\n');
        if !self
            .cfg
            .merchant_public_key
            .verify_base64(RsaHash::Sha256, &message, &auth.signature)
        {
            return Err(sign_error("signature does not verify"));
        }
        Ok(())
    }

    pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
    ) -> Result<T, Box<Response>> {
        serde_json::from_slice(body).map_err(|e| {
            self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                &format!("body is not valid JSON for this API: {e}"),
            )
        })
    }

    pub(super) fn check_mchid(&self, got: Option<&str>) -> Result<(), Box<Response>> {
        match got {
            Some(m) if m == self.cfg.mchid => Ok(()),
            Some(_) => Err(self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "mchid does not match the Authorization merchant",
            )),
            None => Err(self.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "mchid is missing")),
        }
    }

    pub(super) fn public_base(&self, headers: &HeaderMap) -> String {
        match &self.controls().public_base {
            Some(b) => b.clone(),
            None => origin(headers),
        }
    }
}

pub(super) fn trade_state_desc(state: &str) -> &'static str {
    match state {
        "SUCCESS" => "支付成功",
        "REFUND" => "转入退款",
        "NOTPAY" => "未支付",
        "CLOSED" => "已关闭",
        "REVOKED" => "已撤销",
        "USERPAYING" => "用户支付中",
        "PAYERROR" => "支付失败",
        _ => "",
    }
}
