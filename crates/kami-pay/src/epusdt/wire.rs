//! epusdt / BEpusdt messages ↔ kami's domain: the create request and its answer, the
//! notification, BEpusdt's `check-status` answer. Amounts cross here exactly: the fiat amount
//! goes out as the JSON number of its major-unit text (`28.8`) and comes back through Go's
//! shortest formatting to `Money` (at most two decimals, else refused); coin amounts stay
//! text ([`CoinAmount`]).

use kami_core::{CoinAmount, Currency, Money};
use serde_json::{Map, Number, Value};

use super::sign::go_f;
use crate::common::text::clip;
use crate::PayError;

/// `status` of a notification and of `check-status` (A.3: 1 waiting, 2 paid, 3 expired;
/// BEpusdt adds 4 cancelled and 5 confirming on chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    Waiting,
    Paid,
    Expired,
    Cancelled,
    Confirming,
}

impl TradeStatus {
    pub fn from_code(code: i64) -> Option<TradeStatus> {
        Some(match code {
            1 => TradeStatus::Waiting,
            2 => TradeStatus::Paid,
            3 => TradeStatus::Expired,
            4 => TradeStatus::Cancelled,
            5 => TradeStatus::Confirming,
            _ => return None,
        })
    }

    pub fn code(self) -> i64 {
        match self {
            TradeStatus::Waiting => 1,
            TradeStatus::Paid => 2,
            TradeStatus::Expired => 3,
            TradeStatus::Cancelled => 4,
            TradeStatus::Confirming => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TradeStatus::Waiting => "1 waiting",
            TradeStatus::Paid => "2 paid",
            TradeStatus::Expired => "3 expired",
            TradeStatus::Cancelled => "4 cancelled",
            TradeStatus::Confirming => "5 confirming",
        }
    }
}

/// A BEpusdt `trade_type` (`usdt.trc20`, `tron.trx`, `usdc.polygon`): coin, a dot, network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeType(String);

impl TradeType {
    pub fn parse(s: &str) -> Result<TradeType, String> {
        let s = s.trim();
        let ok = s.split_once('.').is_some_and(|(coin, net)| {
            [coin, net].iter().all(|p| {
                !p.is_empty()
                    && p.len() <= 16
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
        });
        if ok {
            Ok(TradeType(s.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a BEpusdt trade type like `usdt.trc20`",
                clip(s, 32)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The coin the buyer pays (`usdt.trc20` → `USDT`, `tron.trx` → `TRX`).
    pub fn unit(&self) -> String {
        match self.0.split_once('.') {
            Some(("tron", net)) => net.to_ascii_uppercase(),
            Some((coin, _)) => coin.to_ascii_uppercase(),
            None => self.0.to_ascii_uppercase(),
        }
    }
}

/// The JSON number kami sends for a fiat amount: the f64 nearest its major-unit text, which
/// Go reads back as the same float and formats as that text without trailing zeros.
pub fn amount_number(amount: Money) -> Result<Value, PayError> {
    amount
        .to_major_string()
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| PayError::Malformed("amount out of range".into()))
}

/// A fiat amount as the gateway sent it (a number, or BEpusdt's answers' string), exactly.
pub fn fiat(value: Option<&Value>, what: &str) -> Result<Money, PayError> {
    let text = match value {
        Some(Value::Number(n)) => n.as_f64().map(go_f),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .ok_or_else(|| PayError::Malformed(format!("`{what}` missing or not a number")))?;
    Money::from_major_str(&text, Currency::Cny).map_err(|_| {
        PayError::Malformed(format!(
            "`{what}` = `{}` is not a CNY amount with at most two decimals",
            clip(&text, 24)
        ))
    })
}

/// A coin amount (epusdt: a number; BEpusdt: a string).
pub fn coin(value: Option<&Value>, unit: &str, what: &str) -> Result<CoinAmount, PayError> {
    let text = match value {
        Some(Value::Number(n)) => n.as_f64().filter(|f| *f > 0.0).map(go_f),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .ok_or_else(|| PayError::Malformed(format!("`{what}` missing or not a positive number")))?;
    CoinAmount::parse(&text, unit).map_err(|e| PayError::Malformed(format!("`{what}`: {e}")))
}

/// A string field.
pub fn text<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, PayError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(PayError::Malformed(format!(
            "`{key}` missing or not a string"
        ))),
    }
}

/// An integer field (a JSON number; BEpusdt's answers may quote it).
pub fn int(obj: &Map<String, Value>, key: &str) -> Result<i64, PayError> {
    match obj.get(key) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| PayError::Malformed(format!("`{key}` missing or not an integer")))
}

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, PayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(PayError::Malformed("body is not a JSON object".into())),
        Err(e) => Err(PayError::Malformed(format!("body is not JSON: {e}"))),
    }
}

/// What a successful `create-transaction` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAnswer {
    pub trade_id: String,
    pub coin: CoinAmount,
    pub payment_url: String,
}

/// Reads a `create-transaction` answer (`status_code` 200 and `data`), checking that it is
/// for our order and amount.
pub fn create_answer(
    http_status: u16,
    body: &[u8],
    order_id: &str,
    amount: Money,
    unit: &str,
) -> Result<CreateAnswer, PayError> {
    let obj = object(body).map_err(|e| match http_status {
        200 => e,
        s => PayError::Gateway {
            code: format!("HTTP {s}"),
            message: "the gateway answered without JSON".into(),
        },
    })?;
    let code = int(&obj, "status_code").unwrap_or(i64::from(http_status));
    if code != 200 {
        let message = obj
            .get("message")
            .and_then(Value::as_str)
            .map(|m| clip(m, 200))
            .unwrap_or_default();
        return Err(PayError::Gateway {
            code: code.to_string(),
            message,
        });
    }
    let Some(Value::Object(data)) = obj.get("data") else {
        return Err(PayError::Malformed("answer without `data`".into()));
    };
    if text(data, "order_id")? != order_id {
        return Err(PayError::Malformed(
            "the answer is for another order".into(),
        ));
    }
    if fiat(data.get("amount"), "amount")? != amount {
        return Err(PayError::Malformed(
            "the answer is for another amount".into(),
        ));
    }
    let payment_url = text(data, "payment_url")?;
    if !(payment_url.starts_with("https://") || payment_url.starts_with("http://")) {
        return Err(PayError::Malformed("`payment_url` is not a web URL".into()));
    }
    Ok(CreateAnswer {
        trade_id: crate::common::coin_ref::gateway_id(text(data, "trade_id")?)?,
        coin: coin(data.get("actual_amount"), unit, "actual_amount")?,
        payment_url: payment_url.to_owned(),
    })
}
