//! Errors raised before anything runs: bad manifests, bad options, plans that cannot go ahead.
//!
//! Every variant carries a stable SQLSTATE so callers can branch on it; the
//! extension turns these into PostgreSQL errors unchanged (see docs/errors.md).

use thiserror::Error;

/// A PostgreSQL error as data: the one representation of "an error with a
/// SQLSTATE" that the extension (errors caught in a subtransaction, re-raised
/// with context), the core (its errors' SQLSTATEs) and the client (what the
/// server said) share. Printed as `ERROR <sqlstate>: <message>`, then DETAIL
/// and HINT lines when present.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("ERROR {sqlstate}: {message}{}{}", line("DETAIL", .detail), line("HINT", .hint))]
pub struct PgError {
    /// The five-character SQLSTATE, e.g. `42P01`.
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub fn new(sqlstate: impl Into<String>, message: impl Into<String>) -> PgError {
        PgError {
            sqlstate: sqlstate.into(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> PgError {
        self.hint = Some(hint.into());
        self
    }
}

/// `\n<LABEL>: <text>` when there is a text, else nothing.
fn line(label: &str, text: &Option<String>) -> String {
    text.as_ref().map_or_else(String::new, |t| format!("\n{label}: {t}"))
}

/// A stable SQLSTATE, as the five-character code PostgreSQL reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlState {
    /// 22023 invalid_parameter_value
    InvalidParameterValue,
    /// 22000 data_exception: a declared checksum does not match the SQL it guards
    DataException,
    /// 23505 unique_violation
    UniqueViolation,
    /// 23503 foreign_key_violation
    ForeignKeyViolation,
    /// 23000 integrity_constraint_violation: manifest and recorded history disagree
    IntegrityConstraintViolation,
    /// 54000 program_limit_exceeded
    ProgramLimitExceeded,
    /// 0A000 feature_not_supported
    FeatureNotSupported,
    /// 55000 object_not_in_prerequisite_state
    ObjectNotInPrerequisiteState,
    /// 2D000 invalid_transaction_termination
    InvalidTransactionTermination,
    /// 25001 active_sql_transaction: cannot run inside a transaction block
    ActiveSqlTransaction,
    /// 55P04 unsafe_new_enum_value_usage: an enum value used before the transaction that added it commits
    UnsafeNewEnumValueUsage,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::InvalidParameterValue => "22023",
            SqlState::DataException => "22000",
            SqlState::UniqueViolation => "23505",
            SqlState::ForeignKeyViolation => "23503",
            SqlState::IntegrityConstraintViolation => "23000",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::InvalidTransactionTermination => "2D000",
            SqlState::ActiveSqlTransaction => "25001",
            SqlState::UnsafeNewEnumValueUsage => "55P04",
        }
    }
}

/// A manifest or options document that cannot be accepted. `path` is the JSON
/// path at fault, e.g. `changes[3].id`; `$` is the document itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path}: required field is missing")]
    Missing { path: String },
    #[error("{path}: must not be empty")]
    Empty { path: String },
    #[error("{path}: unknown field")]
    UnknownField {
        path: String,
        field: String,
        suggestion: Option<&'static str>,
    },
    #[error("{path}: {reason}")]
    InvalidValue { path: String, reason: String },
    #[error("{path}: duplicate change id \"{id}\" (first defined at changes[{first}])")]
    DuplicateId { path: String, id: String, first: usize },
    #[error("{path}: requires \"{id}\", which is not a change in this manifest")]
    UnknownRequirement { path: String, id: String },
    #[error("{path}: requires \"{id}\", which comes later in the manifest (changes[{at}])")]
    ForwardRequirement { path: String, id: String, at: usize },
    #[error("{path}: checksum {declared} does not match the SQL, whose checksum is {actual}")]
    ChecksumMismatch {
        path: String,
        declared: String,
        actual: String,
    },
    #[error("{path}: {what} is {size}, over the limit of {limit}")]
    TooLarge {
        path: String,
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{path}: {what} is not supported by pg_deploy {version}")]
    Unsupported {
        path: String,
        what: String,
        version: &'static str,
    },
}

impl ManifestError {
    /// This error as PostgreSQL reports it.
    pub fn to_pg_error(&self, prefix: &str) -> PgError {
        PgError {
            sqlstate: self.sqlstate().code().into(),
            message: format!("{prefix}{self}"),
            detail: None,
            hint: self.hint(),
        }
    }

    pub fn sqlstate(&self) -> SqlState {
        match self {
            ManifestError::WrongType { .. }
            | ManifestError::Missing { .. }
            | ManifestError::Empty { .. }
            | ManifestError::UnknownField { .. }
            | ManifestError::InvalidValue { .. } => SqlState::InvalidParameterValue,
            ManifestError::DuplicateId { .. } => SqlState::UniqueViolation,
            ManifestError::UnknownRequirement { .. } | ManifestError::ForwardRequirement { .. } => {
                SqlState::ForeignKeyViolation
            }
            ManifestError::ChecksumMismatch { .. } => SqlState::DataException,
            ManifestError::TooLarge { .. } => SqlState::ProgramLimitExceeded,
            ManifestError::Unsupported { .. } => SqlState::FeatureNotSupported,
        }
    }

    /// The JSON path at fault.
    pub fn path(&self) -> &str {
        match self {
            ManifestError::WrongType { path, .. }
            | ManifestError::Missing { path }
            | ManifestError::Empty { path }
            | ManifestError::UnknownField { path, .. }
            | ManifestError::InvalidValue { path, .. }
            | ManifestError::DuplicateId { path, .. }
            | ManifestError::UnknownRequirement { path, .. }
            | ManifestError::ForwardRequirement { path, .. }
            | ManifestError::ChecksumMismatch { path, .. }
            | ManifestError::TooLarge { path, .. }
            | ManifestError::Unsupported { path, .. } => path,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ManifestError::UnknownField {
                suggestion: Some(s), ..
            } => Some(format!("Did you mean \"{s}\"?")),
            ManifestError::UnknownField { .. } => {
                Some("See docs/manifest.md for the fields of manifest format 1.".into())
            }
            ManifestError::ForwardRequirement { .. } => {
                Some("Changes run in manifest order; move the required change before this one.".into())
            }
            ManifestError::ChecksumMismatch { .. } => {
                Some("The checksum is sha256 over the exact bytes of \"sql\"; recompute it or drop the field.".into())
            }
            ManifestError::TooLarge { .. } => Some("Split the deployment into several manifests or projects.".into()),
            _ => None,
        }
    }
}

/// A plan that cannot go ahead: the manifest is valid but does not fit the
/// database and its recorded history.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("project \"{project}\": {count} applied change(s) no longer match the manifest: {details}")]
    AppliedChangeModified {
        project: String,
        count: usize,
        details: String,
    },
    #[error("project \"{project}\": change \"{id}\" was applied as {was} but the manifest now declares it {now}")]
    KindChanged {
        project: String,
        id: String,
        was: &'static str,
        now: &'static str,
    },
    #[error("project \"{project}\": manifest version {version} is older than the deployed version {deployed}")]
    OlderVersion {
        project: String,
        version: String,
        deployed: String,
    },
    #[error("project \"{project}\": requires.{what} {requirement} is not met: {found}")]
    RequirementNotMet {
        project: String,
        what: &'static str,
        requirement: String,
        found: String,
    },
    #[error("project \"{project}\": options.through names \"{id}\", which is not a change in this manifest")]
    UnknownThrough { project: String, id: String },
}

impl PlanError {
    pub fn sqlstate(&self) -> SqlState {
        match self {
            PlanError::AppliedChangeModified { .. } | PlanError::KindChanged { .. } => {
                SqlState::IntegrityConstraintViolation
            }
            PlanError::OlderVersion { .. } | PlanError::RequirementNotMet { .. } => {
                SqlState::ObjectNotInPrerequisiteState
            }
            PlanError::UnknownThrough { .. } => SqlState::InvalidParameterValue,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::AppliedChangeModified { .. } => Some(
                "Applied changes are immutable: put the fix in a new change, or accept the new text with \
                 options {\"accept_changed\": [ids], \"reason\": \"...\"} (recorded in the history)."
                    .into(),
            ),
            PlanError::KindChanged { .. } => Some("Give the change a new id instead of changing its kind.".into()),
            PlanError::OlderVersion { .. } => {
                Some("Pass options {\"allow_downgrade\": true} to apply an older manifest on purpose.".into())
            }
            PlanError::RequirementNotMet { .. } => None,
            PlanError::UnknownThrough { .. } => Some("Give the id of a change in the manifest.".into()),
        }
    }
}
