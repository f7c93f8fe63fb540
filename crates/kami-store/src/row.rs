//! Column values and typed row mapping by column name: parameters and results are
//! [`Value`]s; a [`Row`] keeps its columns' names next to the values, and
//! `row.get::<T>("column")` converts through [`FromValue`]. A value that does not fit its
//! type (a bad status string, text where a number belongs) is [`StoreError::Corrupt`] naming
//! the column and what is wrong with the value. Queries alias every computed column
//! (`AS name`) so both backends report the same names.

use std::sync::Arc;

use kami_core::{
    CardStatus, ChannelId, Currency, Email, Method, Money, OrderNo, OrderStatus, PaymentStatus,
    RefundStatus, Slug,
};

use crate::error::{Result, StoreError};
use crate::model::Delivery;

/// A column value. Integers carry every number, flag and timestamp kami stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
/// Statuses are stored as their `as_str` names.
macro_rules! status_values {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Text(v.as_str().to_owned())
            }
        }
    )*};
}
status_values!(OrderStatus, PaymentStatus, RefundStatus, CardStatus);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row: the statement's column names (shared by all its rows) and the values.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Row {
        Row { columns, values }
    }

    fn value(&self, column: &str) -> Result<&Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("the result has no column {column}")))
    }

    /// The value of `column` as a `T`.
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T> {
        T::from_value(self.value(column)?)
            .map_err(|problem| StoreError::Corrupt(format!("column {column}: {problem}")))
    }

    /// An amount stored as minor units plus a currency code, in two columns.
    pub fn money(&self, amount: &str, currency: &str) -> Result<Money> {
        let minor: i64 = self.get(amount)?;
        let currency: Currency = self.get(currency)?;
        Money::new(minor, currency)
            .map_err(|e| StoreError::Corrupt(format!("columns {amount}/{currency}: {e}")))
    }

    /// [`Row::money`] of two nullable columns: `None` when either is NULL.
    pub fn opt_money(&self, amount: &str, currency: &str) -> Result<Option<Money>> {
        match (
            self.get::<Option<i64>>(amount)?,
            self.get::<Option<Currency>>(currency)?,
        ) {
            (Some(minor), Some(c)) => Money::new(minor, c)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("columns {amount}/{currency}: {e}"))),
            _ => Ok(None),
        }
    }
}

/// A Rust type a column value converts into; the error describes the value's problem.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {got:?}")
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(expected("an integer", other)),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(expected("text", other)),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.clone().into_bytes()),
            other => Err(expected("bytes", other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// Text columns holding a parsed kami-core value.
macro_rules! from_text {
    ($($t:ty => $parse:expr),* $(,)?) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                let Value::Text(s) = v else { return Err(expected("text", v)) };
                #[allow(clippy::redundant_closure_call)]
                ($parse)(s.as_str()).ok_or_else(|| format!("{s:?} is not a valid {}", stringify!($t)))
            }
        }
    )*};
}

from_text! {
    OrderNo => |s| OrderNo::parse(s).ok(),
    Email => |s| Email::parse(s).ok(),
    Slug => |s| Slug::parse(s).ok(),
    ChannelId => |s| ChannelId::parse(s).ok(),
    Method => |s| Method::parse(s).ok(),
    Currency => |s| Currency::parse(s).ok(),
    OrderStatus => OrderStatus::parse,
    PaymentStatus => PaymentStatus::parse,
    RefundStatus => RefundStatus::parse,
    CardStatus => CardStatus::parse,
    Delivery => Delivery::parse,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, Value)]) -> Row {
        Row::new(
            cells.iter().map(|(c, _)| (*c).to_owned()).collect(),
            cells.iter().map(|(_, v)| v.clone()).collect(),
        )
    }

    #[test]
    fn reads_by_name() {
        let r = row(&[
            ("id", Value::Int(7)),
            ("status", Value::Text("delivered".into())),
            ("note", Value::Null),
            ("amount", Value::Int(1250)),
            ("currency", Value::Text("CNY".into())),
        ]);
        assert_eq!(r.get::<i64>("id").unwrap(), 7);
        assert!(r.get::<bool>("id").unwrap());
        assert_eq!(
            r.get::<OrderStatus>("status").unwrap(),
            OrderStatus::Delivered
        );
        assert_eq!(r.get::<Option<String>>("note").unwrap(), None);
        assert_eq!(r.get::<Option<i64>>("id").unwrap(), Some(7));
        assert_eq!(r.money("amount", "currency").unwrap().minor(), 1250);
    }

    #[test]
    fn bad_values_name_the_column_and_the_problem() {
        let r = row(&[
            ("status", Value::Text("shipped".into())),
            ("quantity", Value::Text("3".into())),
            ("note", Value::Null),
        ]);
        let msg = |e: StoreError| match e {
            StoreError::Corrupt(m) => m,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        let e = msg(r.get::<OrderStatus>("status").unwrap_err());
        assert!(
            e.contains("column status") && e.contains("\"shipped\""),
            "{e}"
        );
        let e = msg(r.get::<i64>("quantity").unwrap_err());
        assert!(
            e.contains("column quantity") && e.contains("integer"),
            "{e}"
        );
        let e = msg(r.get::<String>("note").unwrap_err());
        assert!(e.contains("column note") && e.contains("Null"), "{e}");
        let e = msg(r.get::<i64>("missing").unwrap_err());
        assert!(e.contains("no column missing"), "{e}");
    }
}
