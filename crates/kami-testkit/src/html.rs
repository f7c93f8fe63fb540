//! Reading HTML as a browser would, for tests: entity decoding and attribute values.

/// Undo HTML escaping: the named entities and the numeric ones the templates and the
/// simulators write (`&#x2f;`, `&#x27;`, `&#39;`).
pub fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The unescaped value of `name="..."` in one start tag's text (after `<input`, say).
pub fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

#[cfg(test)]
mod tests {
    use super::{attribute, unescape};

    #[test]
    fn entities_and_attributes() {
        assert_eq!(unescape("a&amp;lt;&#x2f;&#39;&quot;"), "a&lt;/'\"");
        let tag = r#" type="hidden" name="sign" value="a&amp;b=&quot;c&quot;">"#;
        assert_eq!(attribute(tag, "value").as_deref(), Some("a&b=\"c\""));
        assert_eq!(attribute(tag, "name").as_deref(), Some("sign"));
        assert_eq!(attribute(tag, "id"), None);
    }
}
