//! The sign string three protocols share (Alipay A.2/A.4, Epay G.4, sandbox): every parameter
//! with a non-empty value that the protocol signs, sorted by key bytewise, joined as `k=v`
//! with `&`, raw (decoded, not re-encoded) values. Only which keys are left out differs, so
//! the caller says that; the bytes are built here once.

use std::collections::HashSet;

/// The sorted `k=v&...` string over the parameters with a non-empty value for which `keep`
/// is true. Keys are unique in every message kami accepts; equal keys are ordered by value.
pub fn sign_string_where<K, V>(params: &[(K, V)], keep: impl Fn(&str, &str) -> bool) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, v)| !v.is_empty() && keep(k, v))
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The sorted `k=v&...` string over every parameter whose key is not in `exclude` and whose
/// value is non-empty.
pub fn sign_string<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)], exclude: &[&str]) -> String {
    sign_string_where(params, |k, _| !exclude.contains(&k))
}

/// The value of the single `sign` parameter, or `None` when it is absent or when any key
/// appears twice (a repeated key is how a tampered message would hide).
pub fn unique_sign<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Option<&str> {
    let mut seen = HashSet::new();
    let mut sig = None;
    for (k, v) in params {
        if !seen.insert(k.as_ref()) {
            return None;
        }
        if k.as_ref() == "sign" {
            sig = Some(v.as_ref());
        }
    }
    sig
}

/// `params` without the keys in `drop` (a previous `sign`, `sign_type`), ready to be signed.
pub fn without(params: Vec<(String, String)>, drop: &[&str]) -> Vec<(String, String)> {
    params
        .into_iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_non_empty_raw_values() {
        let params = [
            ("b", "2"),
            ("sign", "zzz"),
            ("a", "x y&z"),
            ("empty", ""),
            ("B", "upper"),
        ];
        assert_eq!(sign_string(&params, &["sign"]), "B=upper&a=x y&z&b=2");
        assert_eq!(
            sign_string_where(&params, |k, v| k != "sign" && v != "2"),
            "B=upper&a=x y&z"
        );
    }

    #[test]
    fn one_sign_and_no_repeated_key() {
        assert_eq!(unique_sign(&[("a", "1"), ("sign", "s")]), Some("s"));
        assert_eq!(unique_sign(&[("a", "1")]), None);
        assert_eq!(unique_sign(&[("a", "1"), ("sign", "s"), ("a", "2")]), None);
        assert_eq!(unique_sign(&[("sign", "s"), ("sign", "s")]), None);
    }
}
