//! Card-key import format: one key per line.

use std::collections::HashSet;

/// Longest key kami stores (bytes). Longer lines are refused, not truncated.
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedKeys {
    /// Distinct keys in file order.
    pub keys: Vec<String>,
    /// Lines repeating a key earlier in the same file.
    pub duplicates_in_file: u64,
    /// Lines refused (too long or containing control characters).
    pub rejected: u64,
}

/// Split an import file into keys: one per line, surrounding whitespace trimmed, empty
/// lines skipped, a UTF-8 byte-order mark ignored, CRLF accepted.
pub fn parse_keys(text: &str) -> ParsedKeys {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut seen = HashSet::new();
    let mut out = ParsedKeys::default();
    for line in text.lines() {
        let key = line.trim();
        if key.is_empty() {
            continue;
        }
        if key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
            out.rejected += 1;
            continue;
        }
        if seen.insert(key) {
            out.keys.push(key.to_owned());
        } else {
            out.duplicates_in_file += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let p = parse_keys("\u{feff}AAA\r\n  BBB  \n\nAAA\nC\u{7}D\n");
        assert_eq!(p.keys, vec!["AAA", "BBB"]);
        assert_eq!(p.duplicates_in_file, 1);
        assert_eq!(p.rejected, 1);
        let long = "x".repeat(MAX_KEY_LEN + 1);
        assert_eq!(parse_keys(&long).rejected, 1);
        assert_eq!(parse_keys("").keys.len(), 0);
    }
}
