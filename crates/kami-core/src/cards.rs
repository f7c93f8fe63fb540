//! Card keys: the import format (one key per line) and a key's stock status.

use std::collections::HashSet;
use std::fmt;

mod stream;
pub use stream::{KeyStream, KeyStreamError, MAX_LINE_LEN};

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

/// Where a (non-loop) key stands. A loop key stays `Available` forever: it is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardStatus {
    /// In stock.
    Available,
    /// Held for a pending order.
    Reserved,
    /// Delivered to a buyer; never changes again.
    Sold,
}

/// Something that happens to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardEvent {
    /// A new order holds it.
    Reserve,
    /// Its order was paid: the key is the buyer's.
    Sell,
    /// Its order expired (or could not take it): back to stock.
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("card in status {from} cannot take event {event:?}")]
pub struct CardTransitionError {
    pub from: CardStatus,
    pub event: CardEvent,
}

impl CardStatus {
    pub const ALL: [CardStatus; 3] = [
        CardStatus::Available,
        CardStatus::Reserved,
        CardStatus::Sold,
    ];

    pub fn on(self, event: CardEvent) -> Result<CardStatus, CardTransitionError> {
        match (self, event) {
            (CardStatus::Available, CardEvent::Reserve) => Ok(CardStatus::Reserved),
            (CardStatus::Reserved, CardEvent::Sell) => Ok(CardStatus::Sold),
            (CardStatus::Reserved, CardEvent::Release) => Ok(CardStatus::Available),
            (from, event) => Err(CardTransitionError { from, event }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Available => "available",
            CardStatus::Reserved => "reserved",
            CardStatus::Sold => "sold",
        }
    }

    pub fn parse(s: &str) -> Option<CardStatus> {
        CardStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl CardEvent {
    /// The one status this event applies to (what a compare-and-set matches on).
    pub fn from_status(self) -> CardStatus {
        match self {
            CardEvent::Reserve => CardStatus::Available,
            CardEvent::Sell | CardEvent::Release => CardStatus::Reserved,
        }
    }
}

impl fmt::Display for CardStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [CardEvent; 3] = [CardEvent::Reserve, CardEvent::Sell, CardEvent::Release];

    #[test]
    fn card_statuses() {
        for s in CardStatus::ALL {
            assert_eq!(CardStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CardStatus::parse("SOLD"), None);
        // Each event applies from exactly the status it names, and nowhere else.
        for e in EVENTS {
            for s in CardStatus::ALL {
                assert_eq!(s.on(e).is_ok(), s == e.from_status(), "{s} {e:?}");
            }
        }
        assert_eq!(
            CardStatus::Available
                .on(CardEvent::Reserve)
                .and_then(|s| s.on(CardEvent::Sell)),
            Ok(CardStatus::Sold)
        );
    }

    proptest! {
        /// A key is sold at most once, only after being reserved, and a sold key stays sold.
        #[test]
        fn a_key_is_sold_at_most_once(events in proptest::collection::vec(0usize..3, 0..30)) {
            let mut s = CardStatus::Available;
            let mut sold = 0;
            for i in events {
                let e = EVENTS[i];
                match s.on(e) {
                    Ok(next) => {
                        prop_assert_ne!(s, CardStatus::Sold);
                        if next == CardStatus::Sold {
                            prop_assert_eq!(s, CardStatus::Reserved);
                            sold += 1;
                        }
                        s = next;
                    }
                    Err(err) => prop_assert_eq!(err.from, s),
                }
            }
            prop_assert!(sold <= 1);
        }
    }

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
