//! Test controls the simulators share: creation failures and delays, held notifications
//! released in or out of order, and reading the pay forms' control fields (a delay, a
//! different amount). How a notification is sent — normal, dropped, duplicated, delayed,
//! held, reordered — is [`super::notify::NotifyMode`].

use std::time::Duration;

use kami_core::{Currency, Money};

/// Faults of order creation: fail every creation with a message, fail the next N, answer
/// only after a delay.
#[derive(Debug, Default, Clone)]
pub struct CreationFaults {
    /// Every creation fails with this message while set.
    pub fail_always: Option<String>,
    /// The next this-many creations fail.
    pub fail_next: u32,
    /// Every creation answers only after this delay.
    pub delay: Duration,
}

/// What happens to the creation now starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creation {
    pub delay: Duration,
    /// It fails, with this message.
    pub failure: Option<String>,
}

impl CreationFaults {
    /// The fault of the next creation (consuming one of `fail_next`, whose failures say
    /// `counted_message`).
    pub fn next(&mut self, counted_message: &str) -> Creation {
        let failure = match &self.fail_always {
            Some(m) => Some(m.clone()),
            None if self.fail_next > 0 => {
                self.fail_next -= 1;
                Some(counted_message.to_owned())
            }
            None => None,
        };
        Creation {
            delay: self.delay,
            failure,
        }
    }
}

impl Creation {
    /// Wait the delay, then `Err(message)` if the creation is to fail.
    pub async fn apply(self) -> Result<(), String> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.failure {
            Some(m) => Err(m),
            None => Ok(()),
        }
    }
}

/// The order held notifications go out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// In payment order.
    InOrder,
    /// Newest first (reordering notifications across trades).
    Reversed,
}

/// Notifications kept back by [`super::notify::NotifyMode::Hold`].
#[derive(Debug)]
pub struct Held<T>(Vec<T>);

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held(Vec::new())
    }
}

impl<T> Held<T> {
    pub fn hold(&mut self, item: T) {
        self.0.push(item);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything held, in the order it is to be delivered.
    pub fn release(&mut self, order: Release) -> Vec<T> {
        let mut all = std::mem::take(&mut self.0);
        if order == Release::Reversed {
            all.reverse();
        }
        all
    }
}

/// A control field that does not parse (the caller says what it should be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadField;

/// A form field, trimmed; `None` when absent or blank.
pub fn form_value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A whole number of milliseconds at most `max_ms` (`Ok(None)` when blank).
pub fn form_millis(
    form: &[(String, String)],
    key: &str,
    max_ms: u64,
) -> Result<Option<Duration>, BadField> {
    match form_value(form, key).map(str::parse::<u64>) {
        None => Ok(None),
        Some(Ok(ms)) if ms <= max_ms => Ok(Some(Duration::from_millis(ms))),
        Some(_) => Err(BadField),
    }
}

/// "Pay a different amount": a positive yuan amount like `12.30` (`Ok(None)` when blank).
pub fn form_yuan(form: &[(String, String)], key: &str) -> Result<Option<Money>, BadField> {
    match form_value(form, key).map(|a| Money::from_major_str(a, Currency::Cny)) {
        None => Ok(None),
        Some(Ok(m)) if m.minor() > 0 => Ok(Some(m)),
        Some(_) => Err(BadField),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn creation_faults_count_down_and_persist() {
        let mut f = CreationFaults {
            fail_next: 1,
            delay: Duration::from_millis(3),
            ..CreationFaults::default()
        };
        let c = f.next("busy");
        assert_eq!(c.failure.as_deref(), Some("busy"));
        assert_eq!(c.delay, Duration::from_millis(3));
        assert_eq!(f.next("busy").failure, None);
        f.fail_always = Some("down".into());
        assert_eq!(f.next("busy").failure.as_deref(), Some("down"));
        assert_eq!(f.next("busy").failure.as_deref(), Some("down"));
    }

    #[test]
    fn held_releases_in_either_order() {
        let mut h = Held::default();
        h.hold(1);
        h.hold(2);
        assert_eq!(h.len(), 2);
        assert_eq!(h.release(Release::Reversed), vec![2, 1]);
        assert!(h.is_empty());
        h.hold(3);
        h.hold(4);
        assert_eq!(h.release(Release::InOrder), vec![3, 4]);
    }

    #[test]
    fn form_controls_parse_or_refuse() {
        let f = form(&[
            ("delay_ms", " 250 "),
            ("amount", "1.50"),
            ("bad", "x"),
            ("zero", "0"),
        ]);
        assert_eq!(
            form_millis(&f, "delay_ms", 1000),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(form_millis(&f, "delay_ms", 100), Err(BadField));
        assert_eq!(form_millis(&f, "missing", 100), Ok(None));
        assert_eq!(form_yuan(&f, "amount").unwrap().unwrap().minor(), 150);
        assert_eq!(form_yuan(&f, "bad"), Err(BadField));
        assert_eq!(form_yuan(&f, "zero"), Err(BadField));
    }
}
