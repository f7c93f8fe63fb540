//! Where values come from: the TOML file, then `KAMI__SECTION__KEY` environment variables,
//! layered by figment.
//!
//! Figment merges tables key by key but replaces arrays whole, so arrays of tables
//! (`[[channels]]`) enter as tables keyed by index (`channels.0`) and leave as arrays again:
//! that is what lets `KAMI__CHANNELS__0__APP_ID` change one key of the first channel and
//! `KAMI__CHANNELS__1__ID` append a second one. Every value keeps the tag of its provider, so
//! an error can name the environment variable that set the key.
//!
//! Environment values enter as strings and are read as numbers, booleans or arrays only
//! where the key wants one ([`Typed`]); `KAMI__CHANNELS__0__APP_ID=2021000000000000` and
//! `KAMI__SMTP__PASSWORD=0123` stay exactly as written.

use std::fmt;

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

use super::{ConfigError, ENV_PREFIX};

/// The layered configuration: the merged tree and which provider set each value.
pub(super) struct Origins {
    figment: Figment,
    root: Value,
    /// The file's name and text, to give the line of a value.
    file: Option<(String, String)>,
}

impl Origins {
    /// Parses `text` (syntax errors name `file`, line and column) and layers the `KAMI__…`
    /// entries of `env` over it. With `lines`, [`Origins::of`] gives a value's line in `file`.
    pub(super) fn layer(
        text: Option<&str>,
        file: &str,
        lines: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Origins, ConfigError> {
        let table = match text {
            Some(text) => parse_toml(text, file)?,
            None => toml::Table::new(),
        };
        let overrides = env_overrides(env)?;
        check_env_paths(&table, &overrides)?;

        let mut figment = Figment::new();
        if let Some(text) = text {
            figment = figment.merge(TablesByIndex(Toml::string(text)));
        }
        for o in overrides {
            figment = figment.merge(o);
        }
        let mut data = figment.data().map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            line: None,
            column: None,
            message: one_line(&e.to_string()),
        })?;
        let dict = data.remove(&Profile::Default).unwrap_or_default();
        let mut root = Value::Dict(Tag::Default, dict);
        tables_to_arrays(&mut root);
        let file = text
            .filter(|_| lines)
            .map(|text| (file.to_owned(), text.to_owned()));
        Ok(Origins {
            figment,
            root,
            file,
        })
    }

    pub(super) fn root(&self) -> &Value {
        &self.root
    }

    /// Where the value of `key` (`server.listen`, `channels[0].app_id`) came from, when
    /// known: "set by environment variable `KAMI__…`", or "FILE, line N" for a file loaded
    /// with `lines`.
    pub(super) fn of(&self, key: &str) -> Option<String> {
        let segs = parse_display_path(key);
        let mut cur = &self.root;
        for seg in &segs {
            cur = match (seg, cur) {
                (Seg::Key(k), Value::Dict(_, d)) => d.get(k)?,
                (Seg::Index(i), Value::Array(_, a)) => a.get(*i)?,
                _ => return None,
            };
        }
        if let Some(var) = self.env_var(cur.tag()) {
            return Some(format!("set by environment variable `{var}`"));
        }
        let (file, text) = self.file.as_ref()?;
        line_of(text, &segs).map(|line| format!("{file}, line {line}"))
    }

    fn env_var(&self, tag: Tag) -> Option<String> {
        match &self.figment.get_metadata(tag)?.source {
            Some(Source::Custom(var)) => Some(var.clone()),
            _ => None,
        }
    }

    /// Deserializes `seed` from `value` (found at `prefix`), reporting ignored keys through
    /// `ignored` (paths relative to `value`).
    pub(super) fn extract<'de, S: DeserializeSeed<'de>>(
        &self,
        value: &Value,
        seed: S,
        mut ignored: impl FnMut(String),
    ) -> Result<S::Value, Failure> {
        let mut track = serde_path_to_error::Track::new();
        let typed = Typed {
            value,
            origins: self,
        };
        let tracked = serde_path_to_error::Deserializer::new(typed, &mut track);
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored(ignored_path(&path));
        let result = seed.deserialize(serde_ignored::Deserializer::new(tracked, &mut on_ignored));
        result.map_err(|e| {
            let path = track.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Failure { path, kind: e.kind }
        })
    }
}

/// A deserialization failure: where (relative to the value extracted) and what.
pub(super) struct Failure {
    pub path: String,
    pub kind: Kind,
}

impl Failure {
    /// The message, with the value left out when `secret`.
    pub(super) fn message(&self, secret: bool) -> String {
        if secret {
            return "invalid type; expected a string (value not shown: this key holds a secret)"
                .to_owned();
        }
        match &self.kind {
            Kind::InvalidType(actual, expected) => {
                format!("invalid type: {actual}, expected {expected}")
            }
            Kind::InvalidValue(actual, expected) => {
                format!("invalid value: {actual}, expected {expected}")
            }
            other => one_line(&other.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The TOML file
// ---------------------------------------------------------------------------------------------

fn parse_toml(text: &str, file: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: one_line(e.message()),
        }
    })
}

/// toml's messages span lines (`invalid table header\nexpected ...`); keep errors on one.
pub(super) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The line (1-based) where `key = ...` or the table `key` is written, for the plain
/// layouts (`[table]`, `[[array]]`, `key = value`); `None` for others (inline tables, dotted
/// keys).
fn line_of(text: &str, target: &[Seg]) -> Option<usize> {
    let target: Vec<String> = target.iter().map(Seg::as_table_key).collect();
    let mut table: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let path = if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let count = counts.entry(name.clone()).or_insert(0);
            table = name.split('.').map(|s| s.trim().to_owned()).collect();
            table.push(count.to_string());
            *count += 1;
            table.clone()
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = name.split('.').map(|s| s.trim().to_owned()).collect();
            table.clone()
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches('"').to_owned();
            let mut path = table.clone();
            path.push(key);
            path
        } else {
            continue;
        };
        if path == target {
            return Some(n + 1);
        }
    }
    None
}

/// A provider whose arrays of tables are handed to figment as tables keyed by index.
struct TablesByIndex<P>(P);

impl<P: Provider> Provider for TablesByIndex<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            dict.values_mut().for_each(arrays_to_tables);
        }
        Ok(data)
    }
}

fn arrays_to_tables(v: &mut Value) {
    match v {
        Value::Array(tag, items)
            if !items.is_empty() && items.iter().all(|i| i.as_dict().is_some()) =>
        {
            let mut dict = Dict::new();
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                arrays_to_tables(&mut item);
                dict.insert(i.to_string(), item);
            }
            *v = Value::Dict(*tag, dict);
        }
        Value::Dict(_, d) => d.values_mut().for_each(arrays_to_tables),
        _ => {}
    }
}

/// Undoes [`arrays_to_tables`] after merging: a table whose keys are all indices is an array.
fn tables_to_arrays(v: &mut Value) {
    match v {
        Value::Dict(tag, d) => {
            d.values_mut().for_each(tables_to_arrays);
            let indexed: Option<Vec<usize>> = d.keys().map(|k| index(k)).collect();
            if let Some(mut order) = indexed.filter(|o| !o.is_empty()) {
                order.sort_unstable();
                let mut items = Vec::with_capacity(order.len());
                for i in order {
                    if let Some(item) = d.remove(&i.to_string()) {
                        items.push(item);
                    }
                }
                *v = Value::Array(*tag, items);
            }
        }
        Value::Array(_, items) => items.iter_mut().for_each(tables_to_arrays),
        _ => {}
    }
}

fn index(s: &str) -> Option<usize> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

// ---------------------------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Index(usize),
    Key(String),
}

impl Seg {
    fn as_table_key(&self) -> String {
        match self {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        }
    }
}

/// `server.listen`, `channels[0].app_id`: the form serde_path_to_error prints.
fn display_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

fn parse_display_path(key: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in key.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segs.push(Seg::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                if let Some(i) = index(&inner[..close]) {
                    segs.push(Seg::Index(i));
                }
                rest = &inner[close + 1..];
            }
        } else if !part.is_empty() {
            segs.push(Seg::Key(part.to_owned()));
        }
    }
    segs
}

/// One `KAMI__…` variable: a figment provider of the single key it sets.
#[derive(Debug)]
struct EnvVar {
    var: String,
    path: Vec<Seg>,
    raw: String,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::from("environment variable", Source::Custom(self.var.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // A value written as a quoted TOML string is that string.
        let text = match parse_bare_toml(&self.raw) {
            Some(toml::Value::String(s)) => s,
            _ => self.raw.clone(),
        };
        let mut value = Value::from(text);
        for seg in self.path.iter().rev() {
            let mut dict = Dict::new();
            dict.insert(seg.as_table_key(), value);
            value = Value::from(dict);
        }
        let dict = value.into_dict().unwrap_or_default();
        Ok(Map::from([(Profile::Default, dict)]))
    }
}

fn parse_env_path(rest: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in rest.split("__") {
        if part.is_empty() {
            return Err(format!(
                "empty path segment; expected {ENV_PREFIX}SECTION__KEY (double underscores between parts)"
            ));
        }
        let part = part.to_lowercase();
        if part.bytes().all(|b| b.is_ascii_digit()) {
            let index = part
                .parse::<usize>()
                .map_err(|_| format!("array index `{part}` is too large"))?;
            segs.push(Seg::Index(index));
        } else {
            segs.push(Seg::Key(part));
        }
    }
    Ok(segs)
}

/// The `KAMI__…` variables, sorted so that shorter paths apply first and `channels[1]` is
/// appended before `channels[2]`; two spellings of one key are an error.
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvVar>, ConfigError> {
    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path = parse_env_path(rest).map_err(|reason| ConfigError::Env {
            var: var.clone(),
            reason,
        })?;
        overrides.push(EnvVar { var, path, raw });
    }
    overrides.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.var.cmp(&b.var)));
    for pair in overrides.windows(2) {
        if let [a, b] = pair {
            if a.path == b.path {
                return Err(ConfigError::Env {
                    var: b.var.clone(),
                    reason: format!(
                        "sets `{}`, which `{}` also sets; remove one of them",
                        display_path(&a.path),
                        a.var
                    ),
                });
            }
        }
    }
    Ok(overrides)
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Checks every override's path against the file before figment merges it: a key cannot go
/// below a plain value, an array takes only indices, and an index may append at most one
/// element past the end.
fn check_env_paths(file: &toml::Table, overrides: &[EnvVar]) -> Result<(), ConfigError> {
    // Lengths of arrays as overrides (in order) append to them.
    let mut lengths: std::collections::HashMap<String, usize> = Default::default();
    let root = toml::Value::Table(file.clone());
    for o in overrides {
        let fail = |reason: String| ConfigError::Env {
            var: o.var.clone(),
            reason,
        };
        let mut cur = Some(&root);
        for (depth, seg) in o.path.iter().enumerate() {
            let here = display_path(&o.path[..depth]);
            cur = match (cur, seg) {
                (Some(toml::Value::Table(t)), seg) => t.get(&seg.as_table_key()),
                (Some(toml::Value::Array(items)), Seg::Index(i)) => {
                    let len = lengths.entry(here.clone()).or_insert(items.len());
                    check_index(*i, len, &here).map_err(fail)?;
                    items.get(*i)
                }
                (Some(toml::Value::Array(_)), Seg::Key(k)) => {
                    return Err(fail(format!(
                        "`{here}` is an array; expected a numeric index after it, found `{k}`"
                    )))
                }
                (Some(other), _) => {
                    return Err(fail(format!(
                        "`{here}` is {}, not a table or array, so `{}` cannot be set",
                        type_name(other),
                        display_path(&o.path)
                    )))
                }
                (None, Seg::Index(i)) => {
                    let len = lengths.entry(here.clone()).or_insert(0);
                    check_index(*i, len, &here).map_err(fail)?;
                    None
                }
                (None, Seg::Key(_)) => None,
            };
        }
    }
    Ok(())
}

/// `index` into an array of `len` elements: an existing one, or appending one.
fn check_index(index: usize, len: &mut usize, here: &str) -> Result<(), String> {
    if index > *len {
        return Err(format!(
            "index {index} is out of range: `{here}` has {len} element(s) \
             (use index {len} to append one)"
        ));
    }
    if index == *len {
        *len += 1;
    }
    Ok(())
}

/// A bare TOML value (`15`, `true`, `["alipay"]`, `"quoted"`), if `raw` is exactly one.
fn parse_bare_toml(raw: &str) -> Option<toml::Value> {
    let mut table: toml::Table = format!("v = {raw}").parse().ok()?;
    if table.len() != 1 {
        return None;
    }
    table.remove("v")
}

fn from_toml(v: toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) => Value::from(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::from(b),
        toml::Value::Array(items) => Value::from(
            items
                .into_iter()
                .map(from_toml)
                .collect::<Option<Vec<_>>>()?,
        ),
        toml::Value::Datetime(_) | toml::Value::Table(_) => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Deserializing the merged tree
// ---------------------------------------------------------------------------------------------

/// A figment value as a serde deserializer that reads an environment string as the number,
/// boolean or array its key asks for.
#[derive(Clone, Copy)]
struct Typed<'a> {
    value: &'a Value,
    origins: &'a Origins,
}

impl Typed<'_> {
    /// The value an environment string stands for when the key wants a non-string.
    fn env_value(&self) -> Option<Value> {
        match self.value {
            Value::String(tag, s) if self.origins.env_var(*tag).is_some() => {
                parse_bare_toml(s).and_then(from_toml)
            }
            _ => None,
        }
    }
}

impl<'de> IntoDeserializer<'de, figment::Error> for Typed<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! read_env_as_asked {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, figment::Error> {
            match self.env_value() {
                Some(v) => Typed { value: &v, origins: self.origins }.deserialize_any(visitor),
                None => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Typed<'_> {
    type Error = figment::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, figment::Error> {
        let origins = self.origins;
        match self.value {
            Value::Dict(_, d) => visitor.visit_map(MapDeserializer::new(
                d.iter()
                    .map(|(k, value)| (k.as_str(), Typed { value, origins })),
            )),
            Value::Array(_, items) => visitor.visit_seq(SeqDeserializer::new(
                items.iter().map(|value| Typed { value, origins }),
            )),
            Value::Num(_, n) => n.deserialize_any(visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, figment::Error> {
        match self.value {
            Value::Empty(..) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        self.value.deserialize_enum(name, variants, visitor)
    }

    read_env_as_asked! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_seq
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map
        struct identifier ignored_any
    }
}

impl fmt::Debug for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Origins")
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn lines_of_keys() {
        let text = "a = 1\n[server]\nlisten = \"x\"\n[[channels]]\nid = \"a\"\n\n[[channels]]\nid = \"b\"\n";
        let line = |key: &str| line_of(text, &parse_display_path(key));
        assert_eq!(line("a"), Some(1));
        assert_eq!(line("server.listen"), Some(3));
        assert_eq!(line("channels[0].id"), Some(5));
        assert_eq!(line("channels[1]"), Some(7));
        assert_eq!(line("channels[1].id"), Some(8));
        assert_eq!(line("channels[1].mode"), None);
    }

    #[test]
    fn display_paths_round_trip() {
        for p in [
            "server.listen",
            "channels[0].app_id",
            "channels[12]",
            "a.b[1][2].c",
        ] {
            assert_eq!(display_path(&parse_display_path(p)), p);
        }
    }
}
