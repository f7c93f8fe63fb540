//! Small text helpers for building requests and error messages from outside data.

use crate::PayError;

/// At most `max` characters of `s`, control characters replaced by `?`, `…` when cut: for
/// error messages built from outside data.
pub fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// Borrowed pairs as the owned parameter list every signer takes.
pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `application/x-www-form-urlencoded` of `params` (query strings and form bodies).
pub fn urlencode(params: &[(String, String)]) -> Result<String, PayError> {
    serde_urlencoded::to_string(params).map_err(|e| PayError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_by_characters_and_hides_controls() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("月卡月卡", 2), "月卡…");
        assert_eq!(clip("a\nb", 8), "a?b");
    }
}
