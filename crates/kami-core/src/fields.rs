//! What a product asks the buyer when ordering (a game account for a top-up, a note): the
//! seller's field definitions, parsed once into [`InputFields`], and the buyer's answers
//! checked against them ([`InputFields::check`]). Patterns are regular expressions matched
//! against the whole answer, compiled with bounded size so a seller's (or an attacker's with a
//! stolen admin token) pattern cannot make every order slow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// At most this many fields per product.
pub const MAX_FIELDS: usize = 10;
/// Longest field name (an identifier), label and pattern, in characters.
pub const MAX_NAME_CHARS: usize = 32;
pub const MAX_LABEL_CHARS: usize = 60;
pub const MAX_PATTERN_CHARS: usize = 200;
/// Longest answer, in characters.
pub const MAX_VALUE_CHARS: usize = 500;
/// Compiled size limit of a pattern (the `regex` crate's `size_limit` / `dfa_size_limit`).
const PATTERN_SIZE_LIMIT: usize = 64 * 1024;

/// One field as the seller defines it (and as it is stored, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("at most {MAX_FIELDS} input fields")]
    TooMany,
    #[error("field name {0:?} must be an identifier (a letter or _, then letters, digits or _; at most {MAX_NAME_CHARS})")]
    BadName(String),
    #[error("field name {0:?} appears twice")]
    DuplicateName(String),
    #[error("field {0:?}: the label must be 1 to {MAX_LABEL_CHARS} characters")]
    BadLabel(String),
    #[error("field {name:?}: the pattern is not a usable regular expression (at most {MAX_PATTERN_CHARS} characters, bounded compiled size): {problem}")]
    BadPattern { name: String, problem: String },
    #[error("{0} is required")]
    Missing(String),
    #[error("{0} does not match the expected format")]
    NoMatch(String),
    #[error("{0} is longer than {MAX_VALUE_CHARS} characters")]
    TooLong(String),
    #[error("this product has no input field {0:?}")]
    Unknown(String),
}

/// A product's validated input fields: names unique identifiers, patterns compiled.
#[derive(Debug, Clone, Default)]
pub struct InputFields {
    specs: Vec<FieldSpec>,
    patterns: Vec<Option<regex::Regex>>,
}

impl PartialEq for InputFields {
    fn eq(&self, other: &Self) -> bool {
        self.specs == other.specs
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= MAX_NAME_CHARS
}

fn compile(name: &str, pattern: &str) -> Result<regex::Regex, FieldsError> {
    let bad = |problem: String| FieldsError::BadPattern {
        name: name.to_owned(),
        problem,
    };
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(bad(format!("longer than {MAX_PATTERN_CHARS} characters")));
    }
    // The whole answer must match, not a part of it.
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| bad(e.to_string()))
}

impl InputFields {
    pub fn new(specs: Vec<FieldSpec>) -> Result<InputFields, FieldsError> {
        if specs.len() > MAX_FIELDS {
            return Err(FieldsError::TooMany);
        }
        let mut patterns = Vec::with_capacity(specs.len());
        let mut specs = specs;
        for s in specs.iter_mut() {
            if !is_identifier(&s.name) {
                return Err(FieldsError::BadName(s.name.clone()));
            }
            s.label = s.label.trim().to_owned();
            if s.label.is_empty() || s.label.chars().count() > MAX_LABEL_CHARS {
                return Err(FieldsError::BadLabel(s.name.clone()));
            }
            if s.pattern.as_deref() == Some("") {
                s.pattern = None;
            }
            patterns.push(
                s.pattern
                    .as_deref()
                    .map(|p| compile(&s.name, p))
                    .transpose()?,
            );
        }
        for (i, s) in specs.iter().enumerate() {
            if specs[..i].iter().any(|e| e.name == s.name) {
                return Err(FieldsError::DuplicateName(s.name.clone()));
            }
        }
        Ok(InputFields { specs, patterns })
    }

    /// Parse the stored (or sent) JSON array of field definitions.
    pub fn from_json(json: &str) -> Result<InputFields, String> {
        let specs: Vec<FieldSpec> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        InputFields::new(specs).map_err(|e| e.to_string())
    }

    /// The JSON array stored for these fields.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.specs).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn specs(&self) -> &[FieldSpec] {
        &self.specs
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The buyer's answers, checked: every name is a field of this product, required ones are
    /// there and not blank, each at most [`MAX_VALUE_CHARS`] and matching its pattern (blank
    /// optional answers are dropped). Returns what is kept, trimmed.
    pub fn check(
        &self,
        answers: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, FieldsError> {
        if let Some(unknown) = answers
            .keys()
            .find(|k| !self.specs.iter().any(|s| &s.name == *k))
        {
            return Err(FieldsError::Unknown(unknown.chars().take(40).collect()));
        }
        let mut kept = BTreeMap::new();
        for (spec, pattern) in self.specs.iter().zip(&self.patterns) {
            let value = answers.get(&spec.name).map_or("", |v| v.trim());
            if value.is_empty() {
                if spec.required {
                    return Err(FieldsError::Missing(spec.label.clone()));
                }
                continue;
            }
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(FieldsError::TooLong(spec.label.clone()));
            }
            if pattern.as_ref().is_some_and(|p| !p.is_match(value)) {
                return Err(FieldsError::NoMatch(spec.label.clone()));
            }
            kept.insert(spec.name.clone(), value.to_owned());
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(name: &str, required: bool, pattern: Option<&str>) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            label: format!("Label {name}"),
            required,
            pattern: pattern.map(Into::into),
        }
    }

    fn answers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn definitions_are_validated() {
        assert!(InputFields::new(vec![spec("account", true, Some("[0-9]{5,12}"))]).is_ok());
        for bad in ["", "1abc", "a-b", "名字", &"a".repeat(33)] {
            assert_eq!(
                InputFields::new(vec![spec(bad, false, None)]),
                Err(FieldsError::BadName(bad.into()))
            );
        }
        assert_eq!(
            InputFields::new(vec![spec("a", false, None), spec("a", true, None)]),
            Err(FieldsError::DuplicateName("a".into()))
        );
        let mut blank = spec("a", false, None);
        blank.label = "  ".into();
        assert_eq!(
            InputFields::new(vec![blank]),
            Err(FieldsError::BadLabel("a".into()))
        );
        assert!(matches!(
            InputFields::new(vec![spec("a", false, Some("(unclosed"))]),
            Err(FieldsError::BadPattern { .. })
        ));
        // Compiles to far more than the size limit.
        assert!(matches!(
            InputFields::new(vec![spec("a", false, Some(r"\w{1000}\w{1000}"))]),
            Err(FieldsError::BadPattern { .. })
        ));
        assert_eq!(
            InputFields::new(
                (0..11)
                    .map(|i| spec(&format!("f{i}"), false, None))
                    .collect()
            ),
            Err(FieldsError::TooMany)
        );
    }

    #[test]
    fn answers_are_checked_against_the_fields() {
        let f = InputFields::new(vec![
            spec("account", true, Some("[0-9]{5,12}")),
            spec("note", false, None),
        ])
        .unwrap();
        assert_eq!(
            f.check(&answers(&[("account", " 123456 "), ("note", "")])),
            Ok(answers(&[("account", "123456")]))
        );
        assert_eq!(
            f.check(&answers(&[("note", "hi")])),
            Err(FieldsError::Missing("Label account".into()))
        );
        // The pattern must match the whole answer.
        assert_eq!(
            f.check(&answers(&[("account", "12345x")])),
            Err(FieldsError::NoMatch("Label account".into()))
        );
        assert_eq!(
            f.check(&answers(&[
                ("account", "12345"),
                ("note", &"n".repeat(501))
            ])),
            Err(FieldsError::TooLong("Label note".into()))
        );
        assert_eq!(
            f.check(&answers(&[("account", "12345"), ("other", "x")])),
            Err(FieldsError::Unknown("other".into()))
        );
        assert_eq!(
            InputFields::default().check(&answers(&[])),
            Ok(BTreeMap::new())
        );
    }

    #[test]
    fn stored_form_round_trips() {
        let f = InputFields::new(vec![spec("account", true, Some("[0-9]+"))]).unwrap();
        assert_eq!(InputFields::from_json(&f.to_json()).unwrap(), f);
        assert_eq!(
            InputFields::from_json("[]").unwrap(),
            InputFields::default()
        );
        assert!(InputFields::from_json(r#"[{"name":"a","label":"A","x":1}]"#).is_err());
    }
}
