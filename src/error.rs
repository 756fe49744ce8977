//! Every error pg_deploy raises, each with a stable SQLSTATE (docs/errors.md).

use crate::author::NotAuthor;
use crate::sqlstate::{sqlstate, Coded};
use crate::statements::Statement;
use crate::subxact::PgError;
use pg_deploy_core::analysis::Refusal;
use pg_deploy_core::hazards::Hazard;
use pg_deploy_core::position::{line_col, skip_blank};
use pg_deploy_core::{Change, ManifestError, PlanError, SqlState};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Where in a change an error happened, for the message and the detail.
#[derive(Debug, Clone)]
pub struct ChangeLocation {
    pub project: String,
    pub change: String,
    /// (index, count, command tag, text) of the statement at fault.
    pub statement: Option<(usize, usize, String, String)>,
    pub line_col: Option<(usize, usize)>,
}

impl ChangeLocation {
    pub fn new(project: &str, change: &str, sql: &str, at: Option<usize>) -> Self {
        ChangeLocation {
            project: project.to_string(),
            change: change.to_string(),
            statement: None,
            line_col: at.map(|b| line_col(sql, b)),
        }
    }

    /// The location of statement `index` of `statements`: at `at` (a byte offset
    /// in the change's SQL) when known, else at the statement's first word.
    pub fn of_statement(
        project: &str,
        change: &Change,
        statements: &[Statement],
        index: usize,
        at: Option<usize>,
    ) -> Self {
        let s = &statements[index];
        let at = at.unwrap_or_else(|| skip_blank(&change.sql, s.start));
        let mut location = ChangeLocation::new(project, &change.id, &change.sql, Some(at));
        location.statement = Some((
            index,
            statements.len(),
            s.kind.clone(),
            change.sql[s.start..s.end].to_string(),
        ));
        location
    }

    fn where_(&self) -> String {
        match self.line_col {
            Some((line, column)) => format!(" at line {line}, column {column}"),
            None => String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    #[error("invalid manifest: {0}")]
    Manifest(ManifestError),
    #[error("invalid options: {0}")]
    Options(ManifestError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("project \"{project}\" is being deployed by another session")]
    Locked {
        project: String,
        /// Who holds it, when it could be found.
        holder: Option<String>,
        /// How long this call waited (None: it did not wait).
        waited: Option<String>,
    },
    #[error("change \"{}\" of project \"{}\" has a syntax error{}: {}", .location.change, .location.project, .location.where_(), .error.message)]
    Syntax { location: ChangeLocation, error: PgError },
    #[error("change \"{}\" of project \"{}\" failed{}: {}", .location.change, .location.project, .location.where_(), .error.message)]
    ChangeFailed { location: ChangeLocation, error: PgError },
    #[error("change \"{}\" of project \"{}\" cannot run{}: {}", .location.change, .location.project, .location.where_(), .refusal.reason)]
    Refused { location: ChangeLocation, refusal: Refusal },
    #[error("change \"{}\" of project \"{}\" has the hazard {}{}: {}: {}", .location.change, .location.project, .hazard.kind.as_str(), .location.where_(), .hazard.reason, .hazard.evidence())]
    Hazard { location: ChangeLocation, hazard: Hazard },
    #[error("project \"{project}\" has drifted: {message}")]
    Drifted { project: String, message: String },
    /// `{"downstream": "refuse"}` and a change breaks something outside the project.
    #[error("project \"{project}\": {message}")]
    Downstream { project: String, message: String },
    /// A revert that cannot go ahead: `missing_reverts` when changes lack revert SQL.
    #[error("{message}")]
    Revert { message: String, missing_reverts: bool },
    /// Stored SQL recorded by another role that the caller may not run as.
    #[error("project \"{project}\": the stored SQL of change \"{change}\" was recorded by role \"{author}\", {}", match .reason {
        NotAuthor::Dropped => "which no longer exists".to_string(),
        NotAuthor::NotMember { caller } => format!("and current_user \"{caller}\" does not have its privileges"),
    })]
    NotAuthor {
        project: String,
        change: String,
        author: String,
        reason: NotAuthor,
    },
    /// A PostgreSQL error outside any change (e.g. permission denied on the
    /// history), passed on as it was raised.
    #[error("{}", .0.message)]
    Postgres(PgError),
    #[error("pg_deploy internal query failed: {0}")]
    Internal(String),
    /// Non-ASCII text in an argument, in a database whose text is not UTF-8.
    #[error("the {argument} has non-ASCII text at {path}, and this database's encoding is {encoding}: pg_deploy reads non-ASCII text only in UTF-8 databases")]
    Encoding {
        argument: &'static str,
        path: String,
        encoding: String,
    },
}

impl From<pgrx::spi::Error> for DeployError {
    fn from(e: pgrx::spi::Error) -> Self {
        DeployError::Internal(e.to_string())
    }
}

fn code_of(state: SqlState) -> PgSqlErrorCode {
    crate::sqlstate::code(state.code())
}

/// A string as an SQL literal, quoted by PostgreSQL's own quote_literal.
fn quote_literal(text: &str) -> String {
    let Ok(c) = std::ffi::CString::new(text) else {
        return "''".into();
    };
    // SAFETY: `c` is a valid C string; quote_literal_cstr returns a palloc'd one.
    unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::quote_literal_cstr(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

const STATEMENT_SHOWN: usize = 300;

fn statement_detail(location: &ChangeLocation) -> Option<String> {
    let (index, count, kind, text) = location.statement.as_ref()?;
    let text = text.trim();
    let shown: String = text.chars().take(STATEMENT_SHOWN).collect();
    let more = if shown.len() < text.len() { " ..." } else { "" };
    Some(format!("Statement {} of {count} ({kind}): {shown}{more}", index + 1))
}

fn join(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
        (a, b) => a.or(b),
    }
}

impl DeployError {
    pub fn code(&self) -> PgSqlErrorCode {
        match self {
            DeployError::Manifest(e) | DeployError::Options(e) => code_of(e.sqlstate()),
            DeployError::Plan(e) => code_of(e.sqlstate()),
            DeployError::Locked { .. } => PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            DeployError::Syntax { error, .. } | DeployError::ChangeFailed { error, .. } => error.code(),
            DeployError::Postgres(error) => error.code(),
            DeployError::Refused { refusal, .. } => code_of(refusal.sqlstate),
            DeployError::Hazard { .. } | DeployError::Revert { .. } | DeployError::Drifted { .. } => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            DeployError::NotAuthor {
                reason: NotAuthor::Dropped,
                ..
            } => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            DeployError::NotAuthor { .. } => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            DeployError::Downstream { .. } => PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            DeployError::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            DeployError::Encoding { .. } => PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            DeployError::Syntax { location, error } | DeployError::ChangeFailed { location, error } => {
                join(error.detail.clone(), statement_detail(location))
            }
            DeployError::Postgres(error) => error.detail.clone(),
            DeployError::Refused { location, .. } | DeployError::Hazard { location, .. } => statement_detail(location),
            DeployError::Locked { holder, waited, .. } => Some(format!(
                "{}Held by {}.",
                waited
                    .as_ref()
                    .map_or(String::new(), |w| format!("Waited {w} (options.wait_timeout). ")),
                holder
                    .as_deref()
                    .unwrap_or("a session that is creating the project, or has just ended")
            )),
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DeployError::Manifest(e) | DeployError::Options(e) => e.hint(),
            DeployError::Plan(e) => e.hint(),
            DeployError::Locked { waited: None, .. } => {
                Some("Retry later, or leave out {\"wait\": false} to wait for the other deployment.".into())
            }
            DeployError::Locked { waited: Some(_), .. } => {
                Some("Retry when that deployment has ended, or wait longer with {\"wait_timeout\": \"15min\"}.".into())
            }
            DeployError::Refused { refusal, .. } => Some(refusal.hint.clone()),
            DeployError::Revert {
                missing_reverts: false, ..
            } => None,
            DeployError::Encoding { .. } => Some(
                "Deploy to a database created with ENCODING 'UTF8', or write those characters as escapes the \
                 server decodes: U&\"caf\\00E9\" in an identifier, E'caf\\u00e9' in a string."
                    .into(),
            ),
            DeployError::Downstream { .. } => Some(
                "Change the dependants first (drop the column from the publication, update the view, function or \
                 foreign key, or agree with the owner), or pass {\"downstream\": \"warn\"} to deploy anyway."
                    .into(),
            ),
            DeployError::Drifted { project, .. } => Some(format!(
                "See SELECT * FROM deploy.drift({}); put the change in a deployment, undo it, or pass \
                 {{\"drift\": \"warn\"}} or {{\"drift\": \"ignore\"}}.",
                quote_literal(project)
            )),
            DeployError::Revert {
                missing_reverts: true, ..
            } => Some(
                "Give those changes \"revert\" SQL in the manifest and apply it, or revert to a later version.".into(),
            ),
            DeployError::Hazard { hazard, .. } => Some(format!(
                "{} If this is intended, allow it with \"allow\": [\"{}\"] on the change (or in \"defaults\"); \
                 big tables are those over defaults.big_table_rows / big_table_bytes.",
                hazard.hint,
                hazard.kind.as_str()
            )),
            DeployError::Postgres(error)
                if error.is(PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE) && error.hint.is_none() =>
            {
                Some(
                    "Another deployment of this project committed after this transaction's snapshot was taken; \
                     retry the transaction."
                        .into(),
                )
            }
            DeployError::Syntax { error, .. }
            | DeployError::ChangeFailed { error, .. }
            | DeployError::Postgres(error) => error.hint.clone(),
            DeployError::NotAuthor {
                author,
                reason: NotAuthor::NotMember { caller },
                ..
            } => Some(format!(
                "Stored SQL runs only as the role that recorded it, never with more rights: run deploy.revert as \
                 \"{author}\" or as a member of it (GRANT \"{author}\" TO \"{caller}\")."
            )),
            DeployError::NotAuthor {
                reason: NotAuthor::Dropped,
                ..
            } => Some(
                "Stored SQL runs only as the role that recorded it: undo those changes by hand and record the result \
                 with deploy.baseline, or revert to a later version."
                    .into(),
            ),
            DeployError::Internal(_) => Some("Please report this as a pg_deploy bug.".into()),
        }
    }

    /// The SQLSTATE as its five characters.
    pub fn code_text(&self) -> String {
        sqlstate(self.code())
    }

    /// Raises this error in PostgreSQL; the caller's transaction is aborted.
    pub fn raise(self, function: &'static str) -> ! {
        let mut report = ErrorReport::new(self.code(), self.to_string(), function);
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}
