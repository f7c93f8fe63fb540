//! TokenPay messages ↔ kami's domain (A.5): the PascalCase create request and its answer,
//! the notification, the `/Query` answer (the order row in camelCase, its `status` a name).
//! The fiat amount goes out as a JSON number written with exactly its two decimals (the text
//! it is signed with); amounts come back as strings (`"15"`, `"34.9100"`) or numbers, read
//! exactly ([`Money`], [`CoinAmount`]).

use kami_core::{CoinAmount, Currency, Money};
use serde_json::{Map, Value};

use crate::common::text::clip;
use crate::PayError;

/// A TokenPay `Currency` (`USDT_TRC20`, `TRX`, `EVM_BSC_USDT_BEP20`, `EVM_ETH_ETH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinCurrency(String);

impl CoinCurrency {
    pub fn parse(s: &str) -> Result<CoinCurrency, String> {
        let s = s.trim();
        if !s.is_empty()
            && s.len() <= 48
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && !s.starts_with('_')
            && !s.ends_with('_')
        {
            Ok(CoinCurrency(s.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a TokenPay currency like `USDT_TRC20`",
                clip(s, 48)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The coin paid: `USDT_TRC20` → `USDT`, `TRX` → `TRX`, `EVM_BSC_USDT_BEP20` → `USDT`,
    /// `EVM_BSC_BNB` → `BNB` (TokenPay's `EVM_[chain]_[coin]…` names).
    pub fn unit(&self) -> String {
        let rest = match self.0.strip_prefix("EVM_") {
            Some(r) => r.split_once('_').map_or(r, |(_, coin)| coin),
            None => &self.0,
        };
        rest.split('_').next().unwrap_or(rest).to_owned()
    }
}

/// A field's text: a string as it is, a number as its decimal.
pub fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{}", n.as_f64()?),
        }),
        _ => None,
    }
}

pub fn fiat(v: Option<&Value>, currency: Currency, what: &str) -> Result<Money, PayError> {
    let text = text_of(v).ok_or_else(|| PayError::Malformed(format!("`{what}` missing")))?;
    Money::from_major_str(&text, currency).map_err(|_| {
        PayError::Malformed(format!(
            "`{what}` = `{}` is not an amount in {} with at most its decimals",
            clip(&text, 24),
            currency.code()
        ))
    })
}

pub fn coin(v: Option<&Value>, unit: &str, what: &str) -> Result<CoinAmount, PayError> {
    let text = text_of(v).ok_or_else(|| PayError::Malformed(format!("`{what}` missing")))?;
    CoinAmount::parse(&text, unit).map_err(|e| PayError::Malformed(format!("`{what}`: {e}")))
}

pub fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, PayError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(PayError::Malformed(format!(
            "`{key}` missing or not a string"
        ))),
    }
}

pub fn object(body: &[u8]) -> Result<Map<String, Value>, PayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(PayError::Malformed("body is not a JSON object".into())),
        Err(e) => Err(PayError::Malformed(format!("body is not JSON: {e}"))),
    }
}

/// The create request's fields as signed: `ActualAmount` is the amount's major-unit text.
pub fn create_fields(
    out_order_id: &str,
    amount: Money,
    currency: &CoinCurrency,
    notify_url: &str,
    redirect_url: &str,
) -> Vec<(String, String)> {
    vec![
        ("OutOrderId".into(), out_order_id.to_owned()),
        // A new receiving address per order, as the document advises when each order
        // should stand alone.
        ("OrderUserKey".into(), out_order_id.to_owned()),
        ("ActualAmount".into(), amount.to_major_string()),
        ("Currency".into(), currency.as_str().to_owned()),
        ("NotifyUrl".into(), notify_url.to_owned()),
        ("RedirectUrl".into(), redirect_url.to_owned()),
    ]
}

/// The JSON body of `fields` plus `Signature`, `ActualAmount` as a bare number written with
/// the exact text that was signed (serde would print `28.8`).
pub fn create_json(fields: &[(String, String)], signature: &str) -> String {
    let mut out = String::from("{");
    for (k, v) in fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("Signature", signature)])
    {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String(k.to_owned()).to_string());
        out.push(':');
        if k == "ActualAmount" {
            out.push_str(v);
        } else {
            out.push_str(&Value::String(v.to_owned()).to_string());
        }
    }
    out.push('}');
    out
}

/// What a successful `CreateOrder` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAnswer {
    pub id: String,
    pub coin: CoinAmount,
    pub pay_url: String,
}

/// Reads `{success, message, data: <pay page URL>, info{Id, OutOrderId, ActualAmount,
/// Amount, …}}`, checking that it is for our order and amount.
pub fn create_answer(
    http_status: u16,
    body: &[u8],
    out_order_id: &str,
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
    if obj.get("success") != Some(&Value::Bool(true)) {
        return Err(PayError::Gateway {
            code: "refused".into(),
            message: obj
                .get("message")
                .and_then(Value::as_str)
                .map(|m| clip(m, 200))
                .unwrap_or_default(),
        });
    }
    let pay_url = string(&obj, "data")?;
    if !(pay_url.starts_with("https://") || pay_url.starts_with("http://")) {
        return Err(PayError::Malformed("`data` is not a web URL".into()));
    }
    let Some(Value::Object(info)) = obj.get("info") else {
        return Err(PayError::Malformed("answer without `info`".into()));
    };
    if string(info, "OutOrderId")? != out_order_id {
        return Err(PayError::Malformed(
            "the answer is for another order".into(),
        ));
    }
    if fiat(info.get("ActualAmount"), amount.currency(), "ActualAmount")? != amount {
        return Err(PayError::Malformed(
            "the answer is for another amount".into(),
        ));
    }
    Ok(CreateAnswer {
        id: crate::common::coin_ref::gateway_id(string(info, "Id")?)?,
        coin: coin(info.get("Amount"), unit, "Amount")?,
        pay_url: pay_url.to_owned(),
    })
}

/// The order status of a `/Query` answer: TokenPay serializes its enum by name
/// (`JsonStringEnumConverter`); older builds send the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Paid,
    Expired,
}

impl OrderStatus {
    pub fn read(v: Option<&Value>) -> Option<OrderStatus> {
        match v? {
            Value::String(s) => match s.as_str() {
                "Pending" => Some(OrderStatus::Pending),
                "Paid" => Some(OrderStatus::Paid),
                "Expired" => Some(OrderStatus::Expired),
                _ => None,
            },
            Value::Number(n) => match n.as_i64()? {
                0 => Some(OrderStatus::Pending),
                1 => Some(OrderStatus::Paid),
                2 => Some(OrderStatus::Expired),
                _ => None,
            },
            _ => None,
        }
    }
}
