//! Languages and message catalogues. Every text a page or mail shows comes from
//! `theme/locales/{tag}.toml` (flat or nested keys, `{name}` placeholders); a theme directory
//! may override any message.

use std::collections::HashMap;

/// The shop's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    ZhCn,
    En,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::ZhCn, Locale::En];

    pub fn tag(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }

    /// `zh-CN`, `zh`, `zh-Hans…` → Chinese; `en`, `en-US…` → English.
    pub fn parse(s: &str) -> Option<Locale> {
        let s = s.trim().to_ascii_lowercase();
        let primary = s.split(['-', '_']).next().unwrap_or("");
        match primary {
            "zh" => Some(Locale::ZhCn),
            "en" => Some(Locale::En),
            _ => None,
        }
    }

    /// The best language for an `Accept-Language` header (highest q first, ties in order).
    pub fn negotiate(accept_language: &str) -> Option<Locale> {
        let mut best: Option<(f32, usize, Locale)> = None;
        for (i, part) in accept_language.split(',').take(20).enumerate() {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 || !q.is_finite() {
                continue;
            }
            if let Some(l) = Locale::parse(tag) {
                if best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                    best = Some((q, i, l));
                }
            }
        }
        best.map(|b| b.2)
    }
}

/// One language's messages, flattened to dotted keys.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    messages: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("message catalogue {name}: {message}")]
pub struct CatalogError {
    pub name: String,
    pub message: String,
}

impl Catalog {
    /// Parse TOML text; `name` is for error messages.
    pub fn parse(name: &str, text: &str) -> Result<Catalog, CatalogError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| CatalogError {
            name: name.to_owned(),
            message: e.message().to_owned(),
        })?;
        let mut c = Catalog::default();
        flatten("", &table, &mut c.messages).map_err(|message| CatalogError {
            name: name.to_owned(),
            message,
        })?;
        Ok(c)
    }

    /// Messages of `other` replace these.
    pub fn merge(&mut self, other: Catalog) {
        self.messages.extend(other.messages);
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.messages.get(key).map(String::as_str)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.messages.keys().map(String::as_str)
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut HashMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out)?,
            _ => return Err(format!("`{key}` must be a string")),
        }
    }
    Ok(())
}

/// Replace `{name}` placeholders with `args`; unknown placeholders stay as written.
pub fn fill(template: &str, args: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match args.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_accept_language() {
        assert_eq!(Locale::negotiate("en-US,en;q=0.9"), Some(Locale::En));
        assert_eq!(
            Locale::negotiate("zh-CN,zh;q=0.9,en;q=0.8"),
            Some(Locale::ZhCn)
        );
        assert_eq!(
            Locale::negotiate("fr, en;q=0.5, zh;q=0.7"),
            Some(Locale::ZhCn)
        );
        assert_eq!(Locale::negotiate("de"), None);
        assert_eq!(Locale::negotiate("zh;q=0, en;q=0.1"), Some(Locale::En));
        assert_eq!(Locale::negotiate(""), None);
    }

    #[test]
    fn fills_placeholders() {
        assert_eq!(
            fill(
                "{n} or more: {price} each {x}",
                &[("n", "5".into()), ("price", "¥9".into())]
            ),
            "5 or more: ¥9 each {x}"
        );
        assert_eq!(fill("a { b", &[]), "a { b");
    }

    #[test]
    fn catalogues_flatten_and_reject_non_strings() {
        let c = Catalog::parse("t", "[a]\nb = \"x\"\nc = \"y\"").unwrap();
        assert_eq!(c.get("a.b"), Some("x"));
        assert!(Catalog::parse("t", "a = 1").is_err());
    }
}
