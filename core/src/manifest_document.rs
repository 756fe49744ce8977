//! A manifest document as sent (format 1): its fields and their JSON types.
//!
//! These structs are the single description of the format's shape: serde
//! reads manifests through them (`deny_unknown_fields`: a misspelt field is an
//! error, never silently ignored) and schemars derives the JSON Schema in
//! docs/manifest.schema.json from them. The rules a value must follow beyond
//! its type (names, durations, semver, checksums, ids, limits) are checked by
//! [`Manifest::from_value`](crate::Manifest::from_value) afterwards.
//!
//! Fields are declared in the order they are read and suggested for typos
//! ("Did you mean …" takes the first declared field on a tie). A field that is
//! `null` counts as absent.

use crate::document::{EXPECT_DURATION, EXPECT_WHOLE_NUMBER};
use crate::hazards::{HazardKind, ALL_HAZARDS};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

/// The top level of a manifest.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "pg_deploy manifest (format 1)",
    description = "Everything a deployment needs, in one JSON object (docs/manifest.md). The schema checks the \
                   shape: fields, types, required fields, unknown fields and simple limits; pg_deploy also checks \
                   names, semantic versions, ranges, durations, checksums against the SQL, unique ids and \
                   `requires` order."
)]
pub struct ManifestDocument {
    /// Manifest format; only 1 exists.
    #[schemars(with = "Option<FormatOne>")]
    pub format: Option<Value>,
    /// Name of the project: 1-200 characters, no control or invisible characters, no surrounding white space.
    #[schemars(length(min = 1, max = 200))]
    pub project: String,
    /// Semantic version of this release: MAJOR.MINOR.PATCH[-pre][+build].
    #[schemars(regex(pattern = r"[0-9]+\.[0-9]+\.[0-9]+"))]
    pub version: String,
    /// Checked before anything runs.
    pub requires: Option<RequiresDocument>,
    /// Settings every change runs under unless it overrides them.
    pub defaults: Option<DefaultsDocument>,
    /// Schemas whose objects the project manages (drift); not pg_*, information_schema or deploy.
    #[schemars(inner(length(min = 1)))]
    pub schemas: Option<Vec<String>>,
    /// The changes, run in this order.
    #[schemars(length(min = 1, max = 20000))]
    pub changes: Vec<ChangeDocument>,
}

/// What must hold before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Requires")]
pub struct RequiresDocument {
    /// Version range the server must match, in Cargo's syntax, e.g. ">=15" or ">=15, <19".
    pub postgres: Option<String>,
    /// Extensions that must be installed in the database.
    #[schemars(inner(length(min = 1)))]
    pub extensions: Option<Vec<String>>,
    /// Version range pg_deploy must match, e.g. ">=0.1".
    pub pg_deploy: Option<String>,
}

/// Settings every change runs under unless it sets its own, and what a big table is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub struct DefaultsDocument {
    /// How long a statement waits for a lock (default: the caller's lock_timeout if not 0, else "1s").
    pub lock_timeout: Option<Timeout>,
    /// Longest a single statement may run (default "15min").
    pub statement_timeout: Option<Timeout>,
    /// The search_path changes run with (default: the caller's).
    #[schemars(length(min = 1))]
    pub search_path: Option<String>,
    /// How often a change that hit its lock_timeout is retried (default 5).
    #[schemars(range(max = 100))]
    pub lock_retries: Option<WholeNumber>,
    /// Hazards accepted (default none).
    #[schemars(with = "Option<HazardList>")]
    pub allow: Option<Vec<String>>,
    /// A table with at least this many rows is big (default 100000).
    #[schemars(range(max = 18_446_744_073_709_551_615_u64))]
    pub big_table_rows: Option<WholeNumber>,
    /// A table at least this large, in bytes, is big (default 104857600).
    #[schemars(range(max = 9_223_372_036_854_775_807_i64))]
    pub big_table_bytes: Option<WholeNumber>,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Change")]
pub struct ChangeDocument {
    /// Unique within the manifest; the key of the change in the history. Same rules as `project`.
    #[schemars(length(min = 1, max = 200))]
    pub id: String,
    /// One or more SQL statements.
    #[schemars(length(min = 1))]
    pub sql: String,
    /// sha256:<64 hex digits> of the UTF-8 bytes of `sql` (as sent, or with CRLF read as LF).
    #[schemars(regex(pattern = r"^sha256:[0-9a-fA-F]{64}$"))]
    pub checksum: Option<String>,
    /// Ids of changes this one depends on; they must come earlier in the manifest.
    #[schemars(inner(length(min = 1)))]
    pub requires: Option<Vec<String>>,
    /// true: run again whenever its SQL changes; false (default): run once.
    pub repeatable: Option<bool>,
    /// Overrides defaults.lock_timeout.
    pub lock_timeout: Option<Timeout>,
    /// Overrides defaults.statement_timeout.
    pub statement_timeout: Option<Timeout>,
    /// Overrides defaults.search_path.
    #[schemars(length(min = 1))]
    pub search_path: Option<String>,
    /// Overrides defaults.lock_retries.
    #[schemars(range(max = 100))]
    pub lock_retries: Option<WholeNumber>,
    /// Hazards accepted for this change; replaces defaults.allow.
    #[schemars(with = "Option<HazardList>")]
    pub allow: Option<Vec<String>>,
    /// SQL run right after the change; its first column must be true.
    #[schemars(length(min = 1))]
    pub verify: Option<String>,
    /// SQL that undoes the change, for deploy.revert.
    #[schemars(length(min = 1))]
    pub revert: Option<String>,
    /// true: run after the deployment's transaction commits, outside any transaction block, by a background
    /// worker as the deploying role (docs/online.md): one statement, e.g. CREATE INDEX CONCURRENTLY.
    pub online: Option<bool>,
    /// true: the changes before this one commit first; this change starts a new transactional phase, run by a
    /// background worker after the deployment commits (e.g. to use an enum value an earlier change added).
    pub commit_before: Option<bool>,
    /// With online: run the statement (INSERT, UPDATE, DELETE or MERGE) again, each round its own transaction,
    /// until it affects no rows: a batched backfill.
    pub repeat_until_no_rows: Option<bool>,
    /// With repeat_until_no_rows: the pause between rounds (default "100ms").
    pub repeat_pause: Option<Timeout>,
}

/// A timeout as written: whole milliseconds, or a duration such as "500ms", "2s", "15min", "1h".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timeout {
    Millis(Number),
    Text(String),
}

/// A JSON number where a whole number is expected; its range is checked after reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeNumber(pub Number);

fn number_from_f64<E: de::Error>(n: f64, expected: &dyn de::Expected) -> Result<Number, E> {
    Number::from_f64(n).ok_or_else(|| E::invalid_type(Unexpected::Float(n), expected))
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeoutVisitor;

        impl Visitor<'_> for TimeoutVisitor {
            type Value = Timeout;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECT_DURATION)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Timeout, E> {
                Ok(Timeout::Millis(n.into()))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Timeout, E> {
                Ok(Timeout::Millis(n.into()))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Timeout, E> {
                number_from_f64(n, &self).map(Timeout::Millis)
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timeout, E> {
                Ok(Timeout::Text(s.to_string()))
            }
        }

        deserializer.deserialize_any(TimeoutVisitor)
    }
}

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;

        impl Visitor<'_> for NumberVisitor {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECT_WHOLE_NUMBER)
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(n.into()))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(n.into()))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<WholeNumber, E> {
                number_from_f64(n, &self).map(WholeNumber)
            }
        }

        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A duration string as pg_deploy accepts it: a number, then optionally one of
/// the units us, ms, s, min, h, d (white space around either is allowed).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*(us|ms|s|min|h|d)?\s*$";

impl JsonSchema for Timeout {
    fn schema_name() -> Cow<'static, str> {
        "Timeout".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Whole milliseconds, or a duration such as \"500ms\", \"2s\", \"15min\" or \"1h\" (units us, ms, s, min, h, d).",
            "anyOf": [
                { "type": "integer", "minimum": 0, "maximum": i32::MAX },
                { "type": "string", "pattern": DURATION_PATTERN }
            ]
        })
    }
}

impl JsonSchema for WholeNumber {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "WholeNumber".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 0 })
    }
}

/// The schema of `format`: 1.
struct FormatOne;

impl JsonSchema for FormatOne {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "FormatOne".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "const": 1 })
    }
}

/// The schema of `allow`: a list of hazard names.
struct HazardList;

impl JsonSchema for HazardList {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "HazardList".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = ALL_HAZARDS.iter().copied().map(HazardKind::as_str).collect();
        json_schema!({
            "type": "array",
            "items": { "type": "string", "enum": names }
        })
    }
}

/// The JSON Schema of manifest format 1, as committed in docs/manifest.schema.json.
pub fn json_schema() -> Value {
    schemars::schema_for!(ManifestDocument).to_value()
}

/// [`json_schema`] as the text of docs/manifest.schema.json: pretty-printed,
/// keys in the order serde_json keeps them, a final newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}
