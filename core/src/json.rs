//! Typed reads from a `serde_json::Value` that name the JSON path at fault.

use crate::error::ManifestError;
use serde_json::{Map, Value};

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object being read, with its path and the fields it may hold.
pub struct Obj<'a> {
    pub path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub fn new(value: &'a Value, path: impl Into<String>) -> Result<Self, ManifestError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Obj { path, map }),
            other => Err(ManifestError::WrongType {
                path,
                expected: "an object",
                found: type_name(other),
            }),
        }
    }

    pub fn field_path(&self, name: &str) -> String {
        if self.path == "$" {
            name.to_string()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    /// Refuses fields outside `known`, suggesting the nearest known name for a typo,
    /// and fields that are reserved for later versions.
    pub fn check_fields(&self, known: &[&'static str], reserved: &[&'static str]) -> Result<(), ManifestError> {
        for key in self.map.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let path = self.field_path(key);
            if reserved.contains(&key.as_str()) {
                return Err(ManifestError::Unsupported {
                    path,
                    what: format!("field \"{key}\""),
                    version: crate::VERSION,
                });
            }
            let suggestion = known
                .iter()
                .copied()
                .filter(|k| edit_distance(k, key) <= 2)
                .min_by_key(|k| edit_distance(k, key));
            return Err(ManifestError::UnknownField {
                path,
                field: key.clone(),
                suggestion,
            });
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn require(&self, name: &str) -> Result<&'a Value, ManifestError> {
        self.get(name).ok_or_else(|| ManifestError::Missing {
            path: self.field_path(name),
        })
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, ManifestError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => as_str(v, &self.field_path(name)).map(Some),
        }
    }

    pub fn req_str(&self, name: &str) -> Result<&'a str, ManifestError> {
        as_str(self.require(name)?, &self.field_path(name))
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ManifestError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ManifestError::WrongType {
                path: self.field_path(name),
                expected: "a boolean",
                found: type_name(other),
            }),
        }
    }

    pub fn opt_array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, ManifestError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(ManifestError::WrongType {
                path: self.field_path(name),
                expected: "an array",
                found: type_name(other),
            }),
        }
    }

    /// An optional array of non-empty strings.
    pub fn opt_str_list(&self, name: &str) -> Result<Vec<&'a str>, ManifestError> {
        let Some(items) = self.opt_array(name)? else {
            return Ok(Vec::new());
        };
        let base = self.field_path(name);
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{base}[{i}]");
                let s = as_str(v, &path)?;
                if s.trim().is_empty() {
                    return Err(ManifestError::Empty { path });
                }
                Ok(s)
            })
            .collect()
    }
}

pub fn as_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, ManifestError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(ManifestError::WrongType {
            path: path.to_string(),
            expected: "a string",
            found: type_name(other),
        }),
    }
}

/// Levenshtein distance, for "did you mean" hints on short field names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Canonical JSON text: object keys sorted bytewise, no insignificant white space.
/// The manifest's sha256 is taken over these bytes, so it does not depend on how
/// the client formatted the document.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_finds_typos() {
        assert_eq!(edit_distance("changes", "chnages"), 2);
        assert_eq!(edit_distance("sql", "sq"), 1);
        assert_eq!(edit_distance("id", "id"), 0);
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v: Value = serde_json::from_str(r#"{"b": [1, {"z": 1, "a": "x"}], "a": null}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":null,"b":[1,{"a":"x","z":1}]}"#);
    }
}
