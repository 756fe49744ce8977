//! Reading a JSON document (a manifest, an options object) into
//! `#[derive(Deserialize)]` structs, with errors that name the JSON path at
//! fault and say what was expected and what was found.
//!
//! The structs do the structural checks (`deny_unknown_fields`, field types,
//! required fields); the rules a value must follow beyond its type are a
//! validation pass over the structs (see `manifest.rs`, `options.rs`).
//!
//! Documents are read from a `serde_json::Value` through [`ValueReader`], a
//! small deserializer whose error type is structured, so no error is ever
//! recovered by parsing a message. It follows three rules of pg_deploy's
//! documents:
//!
//! - a field whose value is `null` is read as absent (`Option` gives `None`,
//!   a required field is reported missing);
//! - the fields of an object are read with unknown fields first, then the
//!   declared ones in declaration order, so a typo is reported before the
//!   type errors it may cause and errors come in a fixed order whatever the
//!   order of the keys;
//! - wrong types are reported as `expected a string, found a number`.
//!
//! `serde_path_to_error` tracks the path; [`read`] writes it as pg_deploy
//! does: `changes[3].id`, `defaults.lock_timeout`, `$` for the document.

use crate::error::ManifestError;
use crate::json::type_name;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, Deserialize, DeserializeSeed, Expected, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::Value;
use std::fmt;

/// What a custom field type expects, for `expected …, found …` messages.
/// Every `expecting` text of a visitor in this crate must be listed in
/// [`EXPECTED`] (a unit test checks the ones defined here).
pub(crate) const EXPECT_STRING: &str = "a string";
pub(crate) const EXPECT_BOOLEAN: &str = "a boolean";
pub(crate) const EXPECT_ARRAY: &str = "an array";
pub(crate) const EXPECT_OBJECT: &str = "an object";
pub(crate) const EXPECT_WHOLE_NUMBER: &str = "a whole number";
pub(crate) const EXPECT_DURATION: &str = "a duration string or milliseconds";

const EXPECTED: &[&str] = &[
    EXPECT_STRING,
    EXPECT_BOOLEAN,
    EXPECT_ARRAY,
    EXPECT_OBJECT,
    EXPECT_WHOLE_NUMBER,
    EXPECT_DURATION,
];

/// Reads `value` as a `T`. Error paths are written below `root`: `"$"` for a
/// manifest (`changes[3].id`, `$` for the document), `"options"` for options
/// (`options.accept_changed[1]`, `options`).
pub fn read<'de, T: Deserialize<'de>>(value: &'de Value, root: &str) -> Result<T, ManifestError> {
    // Tracking the path costs an allocation per field read; a document that
    // reads is read without it, and only one that fails is read again to say where.
    if let Ok(read) = T::deserialize(ValueReader(value)) {
        return Ok(read);
    }
    serde_path_to_error::deserialize(ValueReader(value)).map_err(|err| {
        let path = path_text(root, err.path());
        err.into_inner().into_manifest_error(path)
    })
}

/// The path of field `name` of the object at `parent`: `name` at the top of
/// a manifest (`$`), else `parent.name`.
pub fn field_path(parent: &str, name: &str) -> String {
    if parent == "$" {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn path_text(root: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = if root == "$" { String::new() } else { root.to_string() };
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                if out.is_empty() {
                    out.push('$');
                }
                out.push_str(&format!("[{index}]"));
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    if out.is_empty() {
        out.push('$');
    }
    out
}

/// A structural error, before its path is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    /// A required field is absent (or null); the path is its object's.
    Missing {
        field: &'static str,
    },
    /// A field the struct does not declare; the path ends with it.
    UnknownField {
        field: String,
        suggestion: Option<&'static str>,
    },
    Other(String),
}

impl ReadError {
    fn into_manifest_error(self, path: String) -> ManifestError {
        match self {
            ReadError::WrongType { expected, found } => ManifestError::WrongType { path, expected, found },
            ReadError::Missing { field } => ManifestError::Missing {
                path: field_path(&path, field),
            },
            ReadError::UnknownField { field, suggestion } => ManifestError::UnknownField {
                path,
                field,
                suggestion,
            },
            ReadError::Other(reason) => ManifestError::InvalidValue { path, reason },
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            ReadError::Missing { field } => write!(f, "{field}: required field is missing"),
            ReadError::UnknownField { field, .. } => write!(f, "{field}: unknown field"),
            ReadError::Other(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ReadError::Other(msg.to_string())
    }

    fn invalid_type(unexpected: Unexpected, expected: &dyn Expected) -> Self {
        let text = expected.to_string();
        ReadError::WrongType {
            expected: EXPECTED.iter().copied().find(|e| *e == text).unwrap_or("another type"),
            found: found_text(&unexpected),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ReadError::Missing { field }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        ReadError::UnknownField {
            field: field.to_string(),
            suggestion: suggestion(field, expected),
        }
    }
}

/// The known field nearest to a misspelt one (Levenshtein distance at most 2;
/// the first declared on a tie), for "Did you mean" hints.
pub fn suggestion(field: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .copied()
        .map(|k| (k, strsim::levenshtein(k, field)))
        .filter(|&(_, distance)| distance <= 2)
        .min_by_key(|&(_, distance)| distance)
        .map(|(k, _)| k)
}

fn found_text(unexpected: &Unexpected) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Seq => "an array",
        Unexpected::Map => "an object",
        _ => "another type",
    }
}

fn wrong<T>(expected: &'static str, found: &Value) -> Result<T, ReadError> {
    Err(ReadError::WrongType {
        expected,
        found: type_name(found),
    })
}

/// A deserializer over a borrowed `serde_json::Value` (see the module docs).
#[derive(Clone, Copy)]
pub struct ValueReader<'de>(pub &'de Value);

impl<'de> de::Deserializer<'de> for ValueReader<'de> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Object(map) => visitor.visit_map(Entries::new(map.iter().collect())),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => wrong(EXPECT_BOOLEAN, other),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Value::String(s) => visitor.visit_borrowed_str(s),
            other => wrong(EXPECT_STRING, other),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            other => wrong(EXPECT_ARRAY, other),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(map.iter().collect())),
            other => wrong(EXPECT_OBJECT, other),
        }
    }

    /// Unknown fields first, then the declared fields that are present and
    /// not null, in declaration order.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        let Value::Object(map) = self.0 else {
            return wrong(EXPECT_OBJECT, self.0);
        };
        let unknown = map.iter().filter(|(key, _)| !fields.contains(&key.as_str()));
        let declared = fields
            .iter()
            .filter_map(|field| map.get_key_value(*field))
            .filter(|(_, value)| !value.is_null());
        visitor.visit_map(Entries::new(unknown.chain(declared).collect()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct enum identifier
    }
}

struct Items<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, ReadError> {
        match self.0.next() {
            Some(item) => seed.deserialize(ValueReader(item)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    entries: std::vec::IntoIter<(&'de String, &'de Value)>,
    value: Option<&'de Value>,
}

impl<'de> Entries<'de> {
    fn new(entries: Vec<(&'de String, &'de Value)>) -> Self {
        Entries {
            entries: entries.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ReadError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        match self.value.take() {
            Some(value) => seed.deserialize(ValueReader(value)),
            None => Err(ReadError::Other("a value was read before its key".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        flag: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
        size: Option<u64>,
    }

    fn error(v: Value, root: &str) -> ManifestError {
        read::<Outer>(&v, root).unwrap_err()
    }

    #[test]
    fn paths_are_written_as_pg_deploy_writes_them() {
        let e = error(json!({"items": [{"name": "a"}, {"name": 1}]}), "$");
        assert_eq!(e.to_string(), "items[1].name: expected a string, found a number");
        let e = error(json!({"items": [{"name": "a", "flga": true}]}), "options");
        assert_eq!(e.path(), "options.items[0].flga");
        assert_eq!(e.hint().as_deref(), Some("Did you mean \"flag\"?"));
        assert_eq!(
            error(json!([]), "$").to_string(),
            "$: expected an object, found an array"
        );
        assert_eq!(error(json!(null), "options").path(), "options");
    }

    #[test]
    fn null_is_absent_and_a_missing_field_is_named() {
        let e = error(json!({"items": [{"name": null}]}), "$");
        assert_eq!(e.to_string(), "items[0].name: required field is missing");
        let e = error(json!({"items": null}), "options");
        assert_eq!(e.to_string(), "options.items: required field is missing");
        assert!(read::<Outer>(&json!({"items": [], "size": null}), "$").is_ok());
    }

    #[test]
    fn unknown_fields_come_before_type_errors() {
        let e = error(json!({"items": 5, "zzz": 1}), "$");
        assert_eq!(e.path(), "zzz");
        assert_eq!(
            e.hint().as_deref(),
            Some("See docs/manifest.md for the fields of manifest format 1.")
        );
    }

    #[test]
    fn suggestions_take_the_nearest_then_the_first_declared() {
        assert_eq!(suggestion("chnages", &["changes", "schemas"]), Some("changes"));
        assert_eq!(suggestion("sq", &["id", "sql"]), Some("sql"));
        assert_eq!(suggestion("ab", &["ax", "ay"]), Some("ax"));
        assert_eq!(suggestion("completely", &["id", "sql"]), None);
    }

    #[test]
    fn every_expected_text_is_static() {
        use serde::de::Error;
        for text in EXPECTED {
            let e = ReadError::invalid_type(Unexpected::Bool(true), text);
            assert_eq!(
                e,
                ReadError::WrongType {
                    expected: text,
                    found: "a boolean"
                }
            );
        }
    }
}
