//! WeChat Pay API v3 messages (B.4): the JSON shapes sent and answered, their translation to
//! kami's [`TradeState`] facts, and one signed, verified API call.

use std::time::Duration;

use kami_core::{Currency, Money};
use serde::{Deserialize, Serialize};

use super::sign::{authorization, nonce_str, signed_headers, verify_signature, SignatureFailure};
use super::{WechatMode, WechatPayChannel, DEFAULT_PAYER_CLIENT_IP, MAX_DESCRIPTION_BYTES};
use crate::{CreatePayment, PayError, PaymentConfirmation, RefundRequest};

/// Per-request timeout for gateway API calls.
const API_TIMEOUT: Duration = Duration::from_secs(15);
const USER_AGENT: &str = concat!("kami/", env!("CARGO_PKG_VERSION"), " (WeChat Pay API v3)");

const CST: time::UtcOffset = time::macros::offset!(+8);

/// Unix seconds as RFC 3339 in China Standard Time: `2018-06-08T10:34:56+08:00` (B.4).
pub fn format_cst(unix_secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()?
        .to_offset(CST);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]+08:00"
    ))
    .ok()
}

/// An RFC 3339 time (any offset) as unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// An RFC 3339 time (any offset, fractions kept) as unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
}

/// `amount` of a transaction (fen).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct TxAmount {
    #[serde(default)]
    pub(super) total: Option<i64>,
    #[serde(default)]
    pub(super) currency: Option<String>,
}

/// The fields of a decrypted `transaction` resource or a query answer kami relies on (B.3).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Transaction {
    #[serde(default)]
    pub(super) mchid: Option<String>,
    #[serde(default)]
    pub(super) appid: Option<String>,
    #[serde(default)]
    pub(super) out_trade_no: Option<String>,
    #[serde(default)]
    pub(super) transaction_id: Option<String>,
    #[serde(default)]
    pub(super) trade_state: Option<String>,
    #[serde(default)]
    pub(super) refund_status: Option<String>,
    #[serde(default)]
    pub(super) amount: Option<TxAmount>,
    /// RFC 3339 pay time (`2018-06-08T10:34:56+08:00`), on paid transactions.
    #[serde(default)]
    pub(super) success_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RefundAnswer {
    pub(super) out_refund_no: String,
    pub(super) status: String,
    #[serde(default)]
    pub(super) amount: Option<RefundAnswerAmount>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RefundAnswerAmount {
    pub(super) refund: i64,
    #[serde(default)]
    pub(super) currency: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AmountReq<'a> {
    pub(super) total: i64,
    pub(super) currency: &'a str,
}

#[derive(Serialize)]
pub(super) struct H5Info {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
}

#[derive(Serialize)]
pub(super) struct SceneInfo<'a> {
    pub(super) payer_client_ip: &'a str,
    h5_info: H5Info,
}

#[derive(Serialize)]
pub(super) struct OrderReq<'a> {
    pub(super) appid: &'a str,
    pub(super) mchid: &'a str,
    pub(super) description: &'a str,
    pub(super) out_trade_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) time_expire: Option<String>,
    pub(super) notify_url: &'a str,
    pub(super) amount: AmountReq<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) scene_info: Option<SceneInfo<'a>>,
    /// JSAPI only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) payer: Option<Payer<'a>>,
}

#[derive(Serialize)]
pub(super) struct Payer<'a> {
    pub(super) openid: &'a str,
}

#[derive(Serialize)]
pub(super) struct RefundAmountReq {
    pub(super) refund: i64,
    pub(super) total: i64,
    pub(super) currency: &'static str,
}

#[derive(Serialize)]
pub(super) struct RefundReq<'a> {
    pub(super) out_trade_no: &'a str,
    pub(super) out_refund_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
    pub(super) amount: RefundAmountReq,
}

/// At most 48 characters of outside text, for error messages.
pub(super) fn clip(s: &str) -> String {
    crate::common::text::clip(s, 48)
}

/// `out_trade_no` rule (B.4): 6–32 of `[0-9A-Za-z_-|*]`.
pub fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

/// `out_refund_no` rule (B.4): 1–64 of `[0-9A-Za-z_-|*@]`.
pub fn valid_out_refund_no(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

pub(super) fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, PayError> {
    serde_json::from_slice(body)
        .map_err(|e| PayError::Malformed(format!("{what}: {}", clip(&e.to_string()))))
}

pub(super) fn parse_amount(total: i64, currency: Option<&str>) -> Result<Money, PayError> {
    let currency = currency.ok_or_else(|| PayError::Malformed("amount.currency missing".into()))?;
    let currency = Currency::parse(currency).map_err(|e| PayError::Malformed(e.to_string()))?;
    Money::new(total, currency).map_err(|e| PayError::Malformed(format!("amount: {e}")))
}

/// A non-2xx answer as an API error (B.4 `{"code","message"}`; not signed-checked).
pub(super) fn api_error(status: u16, bytes: &[u8]) -> PayError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(e) => PayError::Gateway {
            code: clip(&e.code),
            message: e
                .message
                .map(|m| clip(&m))
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
        Err(_) => PayError::Gateway {
            code: format!("HTTP_{status}"),
            message: clip(&String::from_utf8_lossy(bytes)),
        },
    }
}

/// A verified 2xx answer.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

/// `trade_no` if it is a valid WeChat `out_trade_no`.
pub(super) fn checked_trade_no(trade_no: &str) -> Result<&str, PayError> {
    if !valid_out_trade_no(trade_no) {
        return Err(PayError::Malformed(format!(
            "{} is not a valid WeChat out_trade_no",
            clip(trade_no)
        )));
    }
    Ok(trade_no)
}

/// The JSON body of a domestic refund (B.4): reason without control characters, at most 80.
pub(super) fn refund_body(req: &RefundRequest) -> Result<String, PayError> {
    let reason = req
        .reason
        .as_deref()
        .map(|r| {
            r.chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect::<String>()
        })
        .filter(|r| !r.trim().is_empty());
    serde_json::to_string(&RefundReq {
        out_trade_no: &req.trade_no,
        out_refund_no: &req.refund_no,
        reason,
        amount: RefundAmountReq {
            refund: req.amount.minor(),
            total: req.total.minor(),
            currency: "CNY",
        },
    })
    .map_err(|e| PayError::Malformed(e.to_string()))
}

impl WechatPayChannel {
    /// The JSON body of a Native or H5 order (B.4): `description` without control characters
    /// and at most 127 bytes (the trade number when empty), expiry in +08:00.
    pub(super) fn order_body(
        &self,
        req: &CreatePayment,
        trade_no: &str,
        mode: WechatMode,
        payer_openid: Option<&str>,
    ) -> Result<String, PayError> {
        let mut description = String::new();
        for c in req.subject.chars().filter(|c| !c.is_control()) {
            if description.len() + c.len_utf8() > MAX_DESCRIPTION_BYTES {
                break;
            }
            description.push(c);
        }
        if description.trim().is_empty() {
            description = trade_no.to_owned();
        }
        let time_expire = Some(
            format_cst(req.expires_at_ms.div_euclid(1000))
                .ok_or_else(|| PayError::Malformed("expiry time out of range".into()))?,
        );
        let client_ip = req.client_ip_or(DEFAULT_PAYER_CLIENT_IP);
        let scene_info = (mode == WechatMode::H5).then_some(SceneInfo {
            payer_client_ip: &client_ip,
            h5_info: H5Info { kind: "Wap" },
        });
        serde_json::to_string(&OrderReq {
            appid: &self.cfg.appid,
            mchid: &self.cfg.mchid,
            description: &description,
            out_trade_no: trade_no,
            time_expire,
            notify_url: &req.notify_url,
            amount: AmountReq {
                total: req.amount.minor(),
                currency: "CNY",
            },
            scene_info,
            payer: payer_openid.map(|openid| Payer { openid }),
        })
        .map_err(|e| PayError::Malformed(e.to_string()))
    }

    /// The verified facts of a paid transaction (notification or query).
    pub(super) fn confirmation(
        &self,
        tx: &Transaction,
        expect_trade_no: Option<&str>,
    ) -> Result<PaymentConfirmation, PayError> {
        match tx.appid.as_deref() {
            Some(a) if a == self.cfg.appid => {}
            Some(_) => return Err(PayError::WrongMerchant),
            None => return Err(PayError::Malformed("transaction has no appid".into())),
        }
        let trade_no = tx
            .out_trade_no
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::Malformed("transaction has no out_trade_no".into()))?;
        if expect_trade_no.is_some_and(|e| e != trade_no) {
            return Err(PayError::Malformed(
                "gateway answered for another trade".into(),
            ));
        }
        let gateway_trade_no = tx
            .transaction_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::Malformed("transaction has no transaction_id".into()))?;
        let amount = tx
            .amount
            .as_ref()
            .ok_or_else(|| PayError::Malformed("transaction has no amount".into()))?;
        let total = amount
            .total
            .ok_or_else(|| PayError::Malformed("amount.total missing".into()))?;
        let amount = parse_amount(total, amount.currency.as_deref())?;
        Ok(PaymentConfirmation {
            trade_no: trade_no.to_owned(),
            gateway_trade_no: gateway_trade_no.to_owned(),
            amount,
            paid_at: crate::common::pay_time::pay_time(
                "wechatpay",
                "success_time",
                tx.success_time.as_deref(),
                parse_rfc3339_ms,
            ),
            coin_amount: None,
        })
    }

    /// Sign and send one API request; verify a 2xx answer; map errors.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<Answer, PayError> {
        let url = url::Url::parse(&format!("{}{path_and_query}", self.cfg.api_base))
            .map_err(|_| PayError::Config("wechatpay: api_base is not a URL".into()))?;
        let req = self.signed(method, url, body)?.timeout(API_TIMEOUT);
        let crate::http::Reply {
            status,
            headers,
            body: bytes,
        } = crate::http::send(req).await?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        let signed = signed_headers(|name| {
            let mut it = headers.get_all(name).iter();
            let first = it.next();
            if it.next().is_some() {
                return Err(format!("duplicate header {name}"));
            }
            first
                .map(|v| v.to_str().map_err(|_| format!("header {name} is not text")))
                .transpose()
        })
        .map_err(|_| PayError::BadResponseSignature)?;
        match verify_signature(&self.cfg.platform, &signed, &bytes, self.clock.now_secs()) {
            Ok(()) => Ok(Answer {
                status,
                body: bytes,
            }),
            Err(SignatureFailure::Stale) => Err(PayError::Stale),
            Err(_) => Err(PayError::BadResponseSignature),
        }
    }

    /// A request to `url` carrying the B.1 `Authorization` over its path, query and body.
    pub(super) fn signed(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: Option<String>,
    ) -> Result<reqwest::RequestBuilder, PayError> {
        let canonical = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let ts = self.clock.now_secs().to_string();
        let nonce = nonce_str();
        let body = body.unwrap_or_default();
        let auth = authorization(
            &self.cfg.merchant_private_key,
            &self.cfg.mchid,
            &self.cfg.merchant_serial_no,
            method.as_str(),
            &canonical,
            &ts,
            &nonce,
            &body,
        )
        .map_err(|e| PayError::Config(format!("wechatpay: signing failed: {e}")))?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .header("authorization", auth)
            .header("accept", "application/json")
            .header("user-agent", USER_AGENT);
        if method != reqwest::Method::GET {
            req = req.header("content-type", "application/json").body(body);
        }
        Ok(req)
    }

    pub(super) fn trade_path(trade_no: &str) -> Result<String, PayError> {
        let trade_no = checked_trade_no(trade_no)?;
        Ok(format!("/v3/pay/transactions/out-trade-no/{trade_no}"))
    }

    pub(super) async fn refund_status(&self, refund_no: &str) -> Result<RefundAnswer, PayError> {
        let path = format!("/v3/refund/domestic/refunds/{refund_no}");
        let a = self.call(reqwest::Method::GET, &path, None).await?;
        json(&a.body, "refund answer")
    }
}
