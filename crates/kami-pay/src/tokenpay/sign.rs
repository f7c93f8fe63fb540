//! TokenPay's signature (A.5, `Wiki/docs.md`, `HomeController.VerifySignature`): the
//! parameters but `Signature` whose value is non-empty, sorted by key (ASCII; the keys
//! TokenPay uses sort the same under .NET's culture comparer), `k=v` joined with `&`, the
//! notify secret (`ApiToken`) appended, lower-case hex MD5. Values are signed as their text:
//! a fiat amount as the decimal kami put in the JSON (`28.80` — .NET's `decimal` keeps the
//! scale it was read with), strings as they are, integers in decimal.

use serde_json::{Map, Value};

use crate::crypto::{ct_eq, md5_hex};

/// The sorted `k=v&…` string of `pairs` (empty values and `Signature` left out).
pub fn sign_string<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    crate::common::sign::sign_string(pairs, &["Signature"])
}

/// `md5(sign_string + secret)`, lower-case hex.
pub fn signature<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], secret: &str) -> String {
    md5_hex(format!("{}{secret}", sign_string(pairs)).as_bytes())
}

/// The `k=v` pairs of a notification's JSON object, signed over whatever keys arrive (the
/// document's advice: fields vary by version). `None` when a value cannot be signed.
pub fn json_pairs(obj: &Map<String, Value>) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        let text = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.to_string(),
                None => format!("{}", n.as_f64()?),
            },
            // .NET's `bool.ToString()`.
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Array(_) | Value::Object(_) => return None,
        };
        pairs.push((k.clone(), text));
    }
    Some(pairs)
}

/// Whether the object's `Signature` is the secret's signature of its other fields (constant
/// time, hex in either case).
pub fn verify(obj: &Map<String, Value>, secret: &str) -> bool {
    let Some(Value::String(sig)) = obj.get("Signature") else {
        return false;
    };
    let Some(pairs) = json_pairs(obj) else {
        return false;
    };
    ct_eq(
        signature(&pairs, secret).as_bytes(),
        sig.to_ascii_lowercase().as_bytes(),
    )
}
