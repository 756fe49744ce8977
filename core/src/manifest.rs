//! Manifest format 1: the model and its validation.
//!
//! Validation is complete before anything touches the database: every error
//! names the JSON path at fault and carries a stable SQLSTATE.

use crate::checksum::{legacy_checksums, normalise_checksum, sha256_checksum, sql_checksum};
use crate::document::{self, field_path};
use crate::error::ManifestError;
use crate::hazards::{HazardKind, Thresholds, ALL_HAZARDS};
pub use crate::manifest_document::{
    ChangeDocument, DefaultsDocument, ManifestDocument, RequiresDocument, Timeout, WholeNumber,
};
use crate::phases::{PhaseMarks, Repeat, DEFAULT_REPEAT_PAUSE};
use semver::{Version, VersionReq};
use serde_json::Value;
use std::collections::HashMap;

pub const FORMAT: u64 = 1;
/// Largest manifest accepted, measured as canonical JSON.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_CHANGES: usize = 20_000;
/// Longest project name or change id, in characters.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Versioned,
    Repeatable,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Versioned => "versioned",
            ChangeKind::Repeatable => "repeatable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "versioned" => Some(ChangeKind::Versioned),
            "repeatable" => Some(ChangeKind::Repeatable),
            _ => None,
        }
    }
}

/// Session settings a change runs under; unset fields fall back to the
/// manifest's defaults, then to the caller's session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub lock_timeout: Option<String>,
    pub statement_timeout: Option<String>,
    pub search_path: Option<String>,
    /// How often a change that hit its lock_timeout is retried.
    pub lock_retries: Option<u32>,
    /// Hazards accepted for the change(s).
    pub allow: Option<Vec<HazardKind>>,
}

/// pg_deploy's own defaults, used when neither the change nor the manifest
/// (nor, for lock_timeout, the caller's session) sets a value.
pub const DEFAULT_LOCK_TIMEOUT: &str = "1s";
pub const DEFAULT_STATEMENT_TIMEOUT: &str = "15min";
pub const DEFAULT_LOCK_RETRIES: u32 = 5;
pub const MAX_LOCK_RETRIES: u64 = 100;

impl Settings {
    /// These settings with unset fields taken from `defaults`.
    pub fn over(&self, defaults: &Settings) -> Settings {
        let pick = |mine: &Option<String>, theirs: &Option<String>| mine.clone().or_else(|| theirs.clone());
        Settings {
            lock_timeout: pick(&self.lock_timeout, &defaults.lock_timeout),
            statement_timeout: pick(&self.statement_timeout, &defaults.statement_timeout),
            search_path: pick(&self.search_path, &defaults.search_path),
            lock_retries: self.lock_retries.or(defaults.lock_retries),
            allow: self.allow.clone().or_else(|| defaults.allow.clone()),
        }
    }

    /// (GUC name, value) pairs to set, in a fixed order.
    pub fn gucs(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(v) = &self.search_path {
            out.push(("search_path", v.as_str()));
        }
        if let Some(v) = &self.lock_timeout {
            out.push(("lock_timeout", v.as_str()));
        }
        if let Some(v) = &self.statement_timeout {
            out.push(("statement_timeout", v.as_str()));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    pub postgres: Option<VersionReq>,
    pub extensions: Vec<String>,
    pub pg_deploy: Option<VersionReq>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: String,
    pub sql: String,
    /// `sha256:<hex>` of `sql` with CRLF line endings read as LF.
    pub checksum: String,
    pub kind: ChangeKind,
    pub requires: Vec<String>,
    pub settings: Settings,
    /// SQL run right after the change, in the same transaction; must return true.
    pub verify: Option<String>,
    /// SQL that undoes the change, kept in the history for deploy.revert.
    pub revert: Option<String>,
    /// Whether it runs online or starts a new phase (docs/online.md).
    pub phase: PhaseMarks,
}

impl Change {
    /// Whether `recorded` (a checksum in the history) is this change's: its
    /// checksum, or one 0.1.0 may have recorded for the same SQL (exact bytes).
    /// The legacy forms are hashed only on a mismatch: a no-op re-apply of a
    /// large manifest would otherwise hash every change three times.
    pub fn is_recorded_as(&self, recorded: &str) -> bool {
        self.checksum == recorded || legacy_checksums(&self.sql).iter().any(|c| c == recorded)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub project: String,
    pub version: Version,
    pub requires: Requirements,
    pub defaults: Settings,
    pub thresholds: Thresholds,
    /// Schemas whose objects the project manages (drift); None: derived from the changes.
    pub schemas: Option<Vec<String>>,
    pub changes: Vec<Change>,
    /// `sha256:<hex>` of the canonical JSON of the whole manifest.
    pub sha256: String,
    /// Whether the changes' checksums are still to compute (see
    /// [`Manifest::from_read_document_deferring_checksums`]).
    deferred: Option<DeferredChecksums>,
    /// Whether only the head and the changes' ids were read ([`Manifest::elided`]).
    elided: bool,
}

/// The checksums each change declared, as parsed, to check once computed.
#[derive(Debug, Clone, PartialEq)]
struct DeferredChecksums(Vec<Option<String>>);

impl Manifest {
    /// Validates a manifest document completely; the first error found wins.
    ///
    /// Steps, each reporting the first error it finds: the size of the
    /// document; its `format` (a manifest of another format is refused as
    /// such, whatever else it holds); its shape, read into
    /// [`ManifestDocument`] (unknown fields, types, required fields); then the
    /// rules below the types, in the order of the fields (project, version,
    /// requires, defaults, changes, schemas).
    pub fn from_value(value: &Value) -> Result<Manifest, ManifestError> {
        let (sha256, canonical_len) = crate::json::canonical_sha256(value);
        check_canonical_size(canonical_len)?;
        // A manifest of another format is refused as such, whatever else it holds.
        if let Some(format) = value.get("format").filter(|f| !f.is_null()) {
            check_format(format)?;
        }
        let doc: ManifestDocument = document::read(value, "$").map_err(|e| match e {
            ManifestError::WrongType { path, found, .. } if path == "$" => ManifestError::WrongType {
                path,
                expected: "a JSON object (the manifest)",
                found,
            },
            other => other,
        })?;
        Manifest::from_document(doc, sha256, Checksums::Now)
    }

    /// The manifest of a document already read into [`ManifestDocument`]
    /// (the extension reads one straight from its jsonb), given the sha256
    /// and length of its canonical JSON: once its checksums are computed,
    /// the same manifest, or the same error, as [`Manifest::from_value`]
    /// gives for a document that reads.
    ///
    /// The changes' checksums are
    /// left empty until [`Manifest::compute_checksums`]: a manifest whose
    /// sha256 is that of the manifest the project's last deployment applied
    /// was checked then, and a no-op re-apply of it needs none of them (they
    /// were a tenth of a 10,000-change no-op). A declared checksum that does
    /// not match its SQL is then reported when they are computed, after
    /// every other error in the document.
    pub fn from_read_document_deferring_checksums(
        doc: ManifestDocument,
        sha256: String,
        canonical_len: usize,
    ) -> Result<Manifest, ManifestError> {
        check_canonical_size(canonical_len)?;
        Manifest::from_document(doc, sha256, Checksums::Deferred)
    }

    /// A manifest with nothing in it (the settings of a change whose manifest is gone).
    pub fn empty() -> Manifest {
        Manifest {
            project: String::new(),
            version: Version::new(0, 0, 0),
            requires: Requirements {
                postgres: None,
                extensions: Vec::new(),
                pg_deploy: None,
            },
            defaults: Settings::default(),
            thresholds: Thresholds::default(),
            schemas: None,
            changes: Vec::new(),
            sha256: String::new(),
            deferred: None,
            elided: false,
        }
    }

    /// Whether the changes' checksums are still to compute.
    pub fn checksums_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Computes the changes' checksums left for later, each checked against
    /// the checksum it declared; nothing to do when they are computed.
    pub fn compute_checksums(&mut self) -> Result<(), ManifestError> {
        debug_assert!(!self.elided, "an elided manifest has no SQL to take checksums of");
        let Some(DeferredChecksums(declared)) = self.deferred.take() else {
            return Ok(());
        };
        for (i, (change, declared)) in self.changes.iter_mut().zip(declared).enumerate() {
            change.checksum = checked_checksum(&change.sql, declared, || {
                field_path(&format!("changes[{i}]"), "checksum")
            })?;
        }
        Ok(())
    }

    pub fn from_json_str(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: "$".into(),
                what: "the manifest (bytes)",
                size: text.len(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| ManifestError::InvalidValue {
            path: "$".into(),
            reason: format!("not valid JSON: {e}"),
        })?;
        Manifest::from_value(&value)
    }

    /// The rules a document's values must follow beyond their types; `sha256`
    /// is the manifest's hash (see [`Manifest::from_value`]).
    /// Takes the document: the changes' SQL moves into the manifest, not copied.
    fn from_document(mut doc: ManifestDocument, sha256: String, when: Checksums) -> Result<Manifest, ManifestError> {
        let head = Head::of(&doc)?;
        let (changes, declared) = changes(&mut doc.changes, when)?;
        let schemas = schemas(&doc)?;
        Ok(head.with(
            changes,
            schemas,
            sha256,
            match when {
                Checksums::Now => None,
                Checksums::Deferred => Some(DeferredChecksums(declared)),
            },
        ))
    }

    /// A manifest of which only the head (`doc`, read without its changes)
    /// and the changes' ids were read, each checked as [`Manifest::from_value`]
    /// checks it. Its changes have no SQL, checksum or settings, and its
    /// sha256 is empty: it is good for nothing but finding out that the
    /// project's last deployment applied these very bytes, whose sha256 the
    /// caller then sets (a no-op re-apply reads no more of them). Anything
    /// else must read the whole manifest instead.
    pub fn elided(doc: ManifestDocument, ids: Vec<String>) -> Result<Manifest, ManifestError> {
        let head = Head::of(&doc)?;
        let mut changes = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            change_id(&id, || format!("changes[{i}].id"))?;
            changes.push(Change {
                id,
                sql: String::new(),
                checksum: String::new(),
                kind: ChangeKind::Versioned,
                requires: Vec::new(),
                settings: Settings::default(),
                verify: None,
                revert: None,
                phase: PhaseMarks::default(),
            });
        }
        let mut manifest = head.with(changes, schemas(&doc)?, String::new(), None);
        manifest.elided = true;
        Ok(manifest)
    }

    /// Whether only the head and the changes' ids were read ([`Manifest::elided`]).
    pub fn is_elided(&self) -> bool {
        self.elided
    }
}

/// A manifest's fields other than its changes and schemas, checked.
struct Head {
    project: String,
    version: Version,
    requires: Requirements,
    defaults: Settings,
    thresholds: Thresholds,
}

impl Head {
    /// The fields in the order the errors are reported: format, project, version, requires, defaults.
    fn of(doc: &ManifestDocument) -> Result<Head, ManifestError> {
        if let Some(format) = &doc.format {
            check_format(format)?;
        }
        let project = name(&doc.project, "project")?.to_string();
        let version = Version::parse(doc.version.trim()).map_err(|e| ManifestError::InvalidValue {
            path: "version".into(),
            reason: format!("\"{}\" is not a semantic version (MAJOR.MINOR.PATCH): {e}", doc.version),
        })?;
        let requires = match &doc.requires {
            None => Requirements {
                postgres: None,
                extensions: Vec::new(),
                pg_deploy: None,
            },
            Some(r) => requirements(r)?,
        };
        let (defaults, thresholds) = match &doc.defaults {
            None => (Settings::default(), Thresholds::default()),
            Some(d) => {
                let base = Thresholds::default();
                let thresholds = Thresholds {
                    rows: count(d.big_table_rows.as_ref(), "defaults", "big_table_rows", u64::MAX)?
                        .map_or(base.rows, |n| n as f64),
                    bytes: count(
                        d.big_table_bytes.as_ref(),
                        "defaults",
                        "big_table_bytes",
                        i64::MAX as u64,
                    )?
                    .map_or(base.bytes, |n| n as i64),
                };
                (settings(&SettingsFields::of_defaults(d), "defaults")?, thresholds)
            }
        };
        Ok(Head {
            project,
            version,
            requires,
            defaults,
            thresholds,
        })
    }

    fn with(
        self,
        changes: Vec<Change>,
        schemas: Option<Vec<String>>,
        sha256: String,
        deferred: Option<DeferredChecksums>,
    ) -> Manifest {
        Manifest {
            project: self.project,
            version: self.version,
            requires: self.requires,
            defaults: self.defaults,
            thresholds: self.thresholds,
            schemas,
            changes,
            sha256,
            deferred,
            elided: false,
        }
    }
}

/// The managed schemas the manifest lists, checked.
fn schemas(doc: &ManifestDocument) -> Result<Option<Vec<String>>, ManifestError> {
    match &doc.schemas {
        None => Ok(None),
        Some(list) => Ok(Some(managed_schema_list(non_empty_list(list, "schemas")?)?)),
    }
}

/// When a change's checksum is computed: as the manifest is read, or when
/// asked ([`Manifest::compute_checksums`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    Now,
    Deferred,
}

/// The checksum of `sql`, which must match the one it declared (over the
/// SQL as sent, or as pg_deploy reads its line endings).
fn checked_checksum(
    sql: &str,
    declared: Option<String>,
    path: impl FnOnce() -> String,
) -> Result<String, ManifestError> {
    let checksum = sql_checksum(sql);
    if let Some(declared) = declared {
        if declared != checksum && declared != sha256_checksum(sql.as_bytes()) {
            return Err(ManifestError::ChecksumMismatch {
                path: path(),
                declared,
                actual: checksum,
            });
        }
    }
    Ok(checksum)
}

fn check_canonical_size(canonical_len: usize) -> Result<(), ManifestError> {
    if canonical_len > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            path: "$".into(),
            what: "the manifest (bytes of canonical JSON)",
            size: canonical_len,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(())
}

/// Only format 1 exists.
fn check_format(format: &Value) -> Result<(), ManifestError> {
    if format.as_u64() == Some(FORMAT) {
        return Ok(());
    }
    Err(ManifestError::Unsupported {
        path: "format".into(),
        what: format!("manifest format {format}"),
        version: crate::VERSION,
    })
}

/// A list of strings, none of them blank; `path` is the list's.
fn non_empty_list<'a>(items: &'a [String], path: &str) -> Result<Vec<&'a str>, ManifestError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.trim().is_empty() {
                return Err(ManifestError::Empty {
                    path: format!("{path}[{i}]"),
                });
            }
            Ok(s.as_str())
        })
        .collect()
}

/// Schemas that belong to PostgreSQL or to pg_deploy: never managed by a project.
pub fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "information_schema" | "deploy") || schema.starts_with("pg_")
}

/// The manifest's explicit `schemas`: no system schema (pg_catalog, pg_toast,
/// information_schema, deploy …), whose catalogs a project does not own.
fn managed_schema_list(list: Vec<&str>) -> Result<Vec<String>, ManifestError> {
    for (i, schema) in list.iter().enumerate() {
        if is_system_schema(schema) {
            return Err(ManifestError::InvalidValue {
                path: format!("schemas[{i}]"),
                reason: format!("\"{schema}\" is a system schema; a project manages only its own schemas"),
            });
        }
    }
    Ok(list.into_iter().map(str::to_string).collect())
}

/// Unicode's format characters (Cf: bidi controls, zero-width characters,
/// tags) and line and paragraph separators (Zl, Zp): invisible, they make a
/// name or an id read as something it is not in logs and NOTICE lines.
pub fn is_invisible_format(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A name [`name`] accepts, checked without writing its path: printable
/// ASCII, no surrounding space, short enough. Anything else goes through
/// [`name`], which says what is wrong.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_CHARS
        && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

/// A change's id checked as a name; its path is only built for an error
/// (most ids are plain names, and a manifest may have thousands).
fn change_id(id: &str, path: impl FnOnce() -> String) -> Result<(), ManifestError> {
    if plain_name(id) {
        return Ok(());
    }
    name(id, &path()).map(|_| ())
}

/// A project name or change id: non-empty, bounded, no control characters and
/// no surrounding white space, so what is stored is what the user meant.
fn name<'a>(s: &'a str, path: &str) -> Result<&'a str, ManifestError> {
    if s.is_empty() {
        return Err(ManifestError::Empty { path: path.into() });
    }
    let chars = s.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(ManifestError::TooLarge {
            path: path.into(),
            what: "the name (characters)",
            size: chars,
            limit: MAX_NAME_CHARS,
        });
    }
    if s.chars().any(char::is_control) {
        return Err(ManifestError::InvalidValue {
            path: path.into(),
            reason: "must not contain control characters".into(),
        });
    }
    if let Some(c) = s.chars().find(|&c| is_invisible_format(c)) {
        return Err(ManifestError::InvalidValue {
            path: path.into(),
            reason: format!(
                "must not contain invisible format characters (bidi controls, zero-width characters, line or \
                 paragraph separators): U+{:04X}",
                u32::from(c)
            ),
        });
    }
    if s.trim() != s {
        return Err(ManifestError::InvalidValue {
            path: path.into(),
            reason: format!("\"{s}\" has leading or trailing white space"),
        });
    }
    Ok(s)
}

fn version_req(text: Option<&String>, path: &str) -> Result<Option<VersionReq>, ManifestError> {
    let Some(text) = text else {
        return Ok(None);
    };
    VersionReq::parse(text.trim())
        .map(Some)
        .map_err(|e| ManifestError::InvalidValue {
            path: path.into(),
            reason: format!("\"{text}\" is not a version range such as \">=15\" or \">=0.1, <2\": {e}"),
        })
}

fn requirements(doc: &RequiresDocument) -> Result<Requirements, ManifestError> {
    Ok(Requirements {
        postgres: version_req(doc.postgres.as_ref(), "requires.postgres")?,
        extensions: match &doc.extensions {
            None => Vec::new(),
            Some(list) => non_empty_list(list, "requires.extensions")?
                .into_iter()
                .map(str::to_string)
                .collect(),
        },
        pg_deploy: version_req(doc.pg_deploy.as_ref(), "requires.pg_deploy")?,
    })
}

/// A timeout: whole milliseconds as a number, or a string PostgreSQL accepts
/// for a time setting ("500ms", "2s", "15min", "1h").
/// `at` and `field` name it in errors (the path is written only for an error).
fn timeout(value: Option<&Timeout>, at: &str, field: &str) -> Result<Option<String>, ManifestError> {
    let path = || field_path(at, field);
    match value {
        None => Ok(None),
        Some(Timeout::Millis(n)) => match n.as_u64() {
            Some(ms) if ms <= i32::MAX as u64 => Ok(Some(ms.to_string())),
            _ => Err(ManifestError::InvalidValue {
                path: path(),
                reason: format!("{n} is not a whole number of milliseconds between 0 and {}", i32::MAX),
            }),
        },
        Some(Timeout::Text(s)) if is_duration(s) => Ok(Some(s.trim().to_string())),
        Some(Timeout::Text(s)) => Err(ManifestError::InvalidValue {
            path: path(),
            reason: format!("\"{s}\" is not a duration such as \"500ms\", \"2s\", \"15min\" or \"1h\""),
        }),
    }
}

/// A timeout setting in milliseconds, as PostgreSQL reads it (a bare number
/// is milliseconds); None when it is not a duration.
pub fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: f64 = number.parse().ok()?;
    // PostgreSQL allows only ASCII white space between number and unit, rounds
    // a fraction to the next smaller unit, then to whole ms ("0.4ms" is 0: none).
    let (scale, next) = match unit.trim_start_matches(|c: char| c.is_ascii_whitespace()) {
        "" => (1.0, None),
        "us" => (0.001, None),
        "ms" => (1.0, Some(0.001)),
        "s" => (1_000.0, Some(1.0)),
        "min" => (60_000.0, Some(1_000.0)),
        "h" => (3_600_000.0, Some(60_000.0)),
        "d" => (86_400_000.0, Some(3_600_000.0)),
        _ => return None,
    };
    let ms = next.map_or(number * scale, |n| (number * scale / n).round_ties_even() * n);
    Some(ms.round_ties_even())
}

/// Why `timeout` is over an administrator's maximum of `max_ms` (0: none),
/// or None when it is within it. A timeout of 0 means none at all.
pub fn over_maximum(timeout: &str, max_ms: i32) -> Option<String> {
    if max_ms <= 0 {
        return None;
    }
    match duration_ms(timeout) {
        Some(ms) if ms > 0.0 && ms <= f64::from(max_ms) => None,
        Some(0.0) => Some(format!(
            "statement_timeout 0 (none) is over the server's maximum of {max_ms} ms"
        )),
        _ => Some(format!(
            "statement_timeout {timeout} is over the server's maximum of {max_ms} ms"
        )),
    }
}

/// A duration PostgreSQL accepts for a timeout: at most i32::MAX ms.
fn is_duration(s: &str) -> bool {
    duration_ms(s).is_some_and(|ms| ms <= f64::from(i32::MAX))
}

/// The settings fields a change and the defaults share.
struct SettingsFields<'a> {
    lock_timeout: Option<&'a Timeout>,
    statement_timeout: Option<&'a Timeout>,
    search_path: Option<&'a String>,
    lock_retries: Option<&'a WholeNumber>,
    allow: Option<&'a Vec<String>>,
}

impl<'a> SettingsFields<'a> {
    fn of_defaults(d: &'a DefaultsDocument) -> Self {
        SettingsFields {
            lock_timeout: d.lock_timeout.as_ref(),
            statement_timeout: d.statement_timeout.as_ref(),
            search_path: d.search_path.as_ref(),
            lock_retries: d.lock_retries.as_ref(),
            allow: d.allow.as_ref(),
        }
    }

    fn of_change(c: &'a ChangeDocument) -> Self {
        SettingsFields {
            lock_timeout: c.lock_timeout.as_ref(),
            statement_timeout: c.statement_timeout.as_ref(),
            search_path: c.search_path.as_ref(),
            lock_retries: c.lock_retries.as_ref(),
            allow: c.allow.as_ref(),
        }
    }
}

/// The settings of the object at `path` (`defaults` or `changes[N]`).
fn settings(fields: &SettingsFields, path: &str) -> Result<Settings, ManifestError> {
    let search_path = match fields.search_path {
        None => None,
        Some(s) if s.trim().is_empty() => {
            return Err(ManifestError::Empty {
                path: field_path(path, "search_path"),
            })
        }
        Some(s) if s.chars().any(char::is_control) => {
            return Err(ManifestError::InvalidValue {
                path: field_path(path, "search_path"),
                reason: "must not contain control characters".into(),
            })
        }
        Some(s) => Some(s.clone()),
    };
    let allow = match fields.allow {
        None => None,
        Some(list) => {
            let allow_path = field_path(path, "allow");
            let mut kinds = Vec::new();
            for (i, name) in non_empty_list(list, &allow_path)?.into_iter().enumerate() {
                let kind = HazardKind::parse(name).ok_or_else(|| ManifestError::InvalidValue {
                    path: format!("{allow_path}[{i}]"),
                    reason: format!(
                        "unknown hazard \"{name}\"; one of {}",
                        ALL_HAZARDS.map(HazardKind::as_str).join(", ")
                    ),
                })?;
                kinds.push(kind);
            }
            Some(kinds)
        }
    };
    let lock_timeout = timeout(fields.lock_timeout, path, "lock_timeout")?;
    // 0 means no lock timeout at all: a change would wait in the lock queue, in
    // front of the application's queries, for as long as a holder holds.
    if lock_timeout.as_deref().and_then(duration_ms).is_some_and(|ms| ms < 1.0) {
        return Err(ManifestError::InvalidValue {
            path: field_path(path, "lock_timeout"),
            reason: "0 would wait in the lock queue without limit; give at least 1ms (default: 1s)".into(),
        });
    }
    Ok(Settings {
        lock_timeout,
        statement_timeout: timeout(fields.statement_timeout, path, "statement_timeout")?,
        search_path,
        lock_retries: count(fields.lock_retries, path, "lock_retries", MAX_LOCK_RETRIES)?.map(|n| n as u32),
        allow,
    })
}

/// An optional whole number between 0 and `max`.
fn count(value: Option<&WholeNumber>, at: &str, field: &str, max: u64) -> Result<Option<u64>, ManifestError> {
    match value {
        None => Ok(None),
        Some(WholeNumber(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(Some(v)),
            _ => Err(ManifestError::InvalidValue {
                path: field_path(at, field),
                reason: format!("{n} is not a whole number between 0 and {max}"),
            }),
        },
    }
}

/// The changes, and with deferred checksums the checksum each declared.
fn changes(items: &mut [ChangeDocument], when: Checksums) -> Result<(Vec<Change>, Vec<Option<String>>), ManifestError> {
    if items.is_empty() {
        return Err(ManifestError::Empty { path: "changes".into() });
    }
    if items.len() > MAX_CHANGES {
        return Err(ManifestError::TooLarge {
            path: "changes".into(),
            what: "the number of changes",
            size: items.len(),
            limit: MAX_CHANGES,
        });
    }
    // Moved out before the ids are borrowed for the index below.
    let sqls: Vec<(String, Option<String>)> = items
        .iter_mut()
        .map(|item| (std::mem::take(&mut item.sql), item.checksum.take()))
        .collect();
    let mut first_seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(first) = first_seen.insert(&item.id, i) {
            return Err(ManifestError::DuplicateId {
                path: format!("changes[{i}].id"),
                id: item.id.clone(),
                first,
            });
        }
    }
    // Sized up front: collecting Results grows the vector by doubling, which
    // moved 10,000 changes' worth of memory several times over.
    let mut changes = Vec::with_capacity(items.len());
    let mut declared = Vec::with_capacity(if when == Checksums::Deferred { items.len() } else { 0 });
    for (i, (item, (sql, declared_checksum))) in items.iter().zip(sqls).enumerate() {
        let (change, checksum) = change(i, item, (sql, declared_checksum), &first_seen, when)?;
        if when == Checksums::Deferred {
            declared.push(checksum);
        }
        changes.push(change);
    }
    Ok((changes, declared))
}

fn change(
    i: usize,
    doc: &ChangeDocument,
    (sql, declared): (String, Option<String>),
    index_of: &HashMap<&str, usize>,
    when: Checksums,
) -> Result<(Change, Option<String>), ManifestError> {
    let here = format!("changes[{i}]");
    change_id(&doc.id, || field_path(&here, "id"))?;
    let id = doc.id.clone();
    if sql.trim().is_empty() {
        return Err(ManifestError::Empty {
            path: field_path(&here, "sql"),
        });
    }
    let declared = match declared {
        None => None,
        Some(declared) => Some(normalise_checksum(declared, || field_path(&here, "checksum"))?),
    };
    // Deferred: left empty, and the declared one kept to check it against.
    let (checksum, declared) = match when {
        Checksums::Now => (
            checked_checksum(&sql, declared, || field_path(&here, "checksum"))?,
            None,
        ),
        Checksums::Deferred => (String::new(), declared),
    };
    let mut requires = Vec::new();
    if let Some(list) = &doc.requires {
        let requires_path = field_path(&here, "requires");
        for (j, req) in non_empty_list(list, &requires_path)?.into_iter().enumerate() {
            let path = format!("{requires_path}[{j}]");
            match index_of.get(req) {
                None => return Err(ManifestError::UnknownRequirement { path, id: req.into() }),
                Some(&at) if at == i => {
                    return Err(ManifestError::InvalidValue {
                        path,
                        reason: "a change cannot require itself".into(),
                    })
                }
                Some(&at) if at > i => {
                    return Err(ManifestError::ForwardRequirement {
                        path,
                        id: req.into(),
                        at,
                    })
                }
                Some(_) => requires.push(req.to_string()),
            }
        }
    }
    let kind = if doc.repeatable.unwrap_or(false) {
        ChangeKind::Repeatable
    } else {
        ChangeKind::Versioned
    };
    let change = Change {
        id,
        sql,
        checksum,
        kind,
        requires,
        settings: settings(&SettingsFields::of_change(doc), &here)?,
        verify: optional_sql(doc.verify.as_ref(), &here, "verify")?,
        revert: optional_sql(doc.revert.as_ref(), &here, "revert")?,
        phase: phase_marks(doc, &here)?,
    };
    Ok((change, declared))
}

/// `online`, `commit_before`, `repeat_until_no_rows` and `repeat_pause`, which only make sense together as documented.
fn phase_marks(doc: &ChangeDocument, here: &str) -> Result<PhaseMarks, ManifestError> {
    let online = doc.online.unwrap_or(false);
    let commit_before = doc.commit_before.unwrap_or(false);
    let repeat = doc.repeat_until_no_rows.unwrap_or(false);
    let invalid = |field: &str, reason: &str| ManifestError::InvalidValue {
        path: field_path(here, field),
        reason: reason.into(),
    };
    if online && commit_before {
        return Err(invalid(
            "commit_before",
            "an online change already runs after the changes before it commit; set one of \"online\" and \"commit_before\"",
        ));
    }
    if repeat && !online {
        return Err(invalid(
            "repeat_until_no_rows",
            "needs \"online\": true, so that each round commits on its own",
        ));
    }
    if doc.repeat_pause.is_some() && !repeat {
        return Err(invalid("repeat_pause", "needs \"repeat_until_no_rows\": true"));
    }
    let pause = timeout(doc.repeat_pause.as_ref(), here, "repeat_pause")?;
    Ok(PhaseMarks {
        online,
        commit_before,
        repeat: repeat.then(|| Repeat {
            pause: pause.unwrap_or_else(|| DEFAULT_REPEAT_PAUSE.into()),
        }),
    })
}

/// An optional SQL text that must not be blank when given.
fn optional_sql(sql: Option<&String>, at: &str, field: &str) -> Result<Option<String>, ManifestError> {
    match sql {
        Some(sql) if sql.trim().is_empty() => Err(ManifestError::Empty {
            path: field_path(at, field),
        }),
        other => Ok(other.cloned()),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn timeouts_read_as_postgres_reads_them() {
        assert_eq!(duration_ms("15min"), Some(900_000.0));
        assert_eq!(duration_ms("250"), Some(250.0));
        assert_eq!(duration_ms("1.5s"), Some(1_500.0));
        assert_eq!(duration_ms("2 weeks"), None);
    }

    proptest::proptest! {
        #[test]
        fn a_plain_name_is_a_valid_name(s in "\\PC{0,3}[ -~]{0,250}\\PC{0,3}") {
            if plain_name(&s) {
                proptest::prop_assert!(name(&s, "id").is_ok());
            }
        }
    }

    #[test]
    fn plain_names() {
        assert!(plain_name("00001-create users"));
        for s in ["", " a", "a ", "a\tb", "é", "a\u{200B}b"] {
            assert!(!plain_name(s), "{s:?}");
        }
        assert!(!plain_name(&"x".repeat(MAX_NAME_CHARS + 1)));
    }

    #[test]
    fn a_manifest_cannot_raise_the_servers_maximum() {
        assert_eq!(over_maximum("0", 0), None);
        assert_eq!(over_maximum("1h", 3_600_000), None);
        assert!(over_maximum("0", 3_600_000).unwrap().contains("0 (none)"));
        assert!(over_maximum("2h", 3_600_000).unwrap().contains("2h is over"));
    }
}
