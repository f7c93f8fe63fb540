//! One-time recovery codes: ten per enrolment, shown once, each 80 random bits written as
//! four groups of four base32 letters (`ABCD-EFGH-JKLM-NPQR`). Only their SHA-256 is stored:
//! with 80 bits of entropy a fast hash is enough.

use data_encoding::BASE32_NOPAD;
use kami_core::SecretToken;

pub const COUNT: usize = 10;

/// Fresh codes, as shown to the user.
pub fn generate() -> Vec<String> {
    (0..COUNT)
        .map(|_| {
            let raw = BASE32_NOPAD.encode(&rand::random::<[u8; 10]>());
            raw.as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A code as typed: upper-cased, without dashes and spaces (`abcd efgh-…` is the same code).
pub fn normalize(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .take(64)
        .collect()
}

/// The stored form of a normalized code.
pub fn hash(normalized: &str) -> String {
    SecretToken::from_presented(normalized).hash()
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_distinct_and_normalize_back() {
        let codes = super::generate();
        assert_eq!(codes.len(), 10);
        let mut n: Vec<String> = codes.iter().map(|c| super::normalize(c)).collect();
        assert!(n.iter().all(|c| c.len() == 16));
        n.dedup();
        assert_eq!(n.len(), 10);
        assert_eq!(
            super::normalize(&codes[0].to_lowercase().replace('-', " ")),
            super::normalize(&codes[0])
        );
    }
}
