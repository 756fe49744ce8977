//! The kernel every entry point shares: taking the jsonb arguments, turning
//! every error into a pg_deploy error, opening the project (internal
//! search_path, lock, claim) and, at the end, recording the deployment and
//! giving the caller's settings back.

use crate::error::DeployError;
use crate::history;
use crate::jsonb_arg::{JsonbArg, StoredJsonb};
use crate::owner::{Owner, Schema};
use crate::ownership;
use crate::project_lock::{self, Claimed, LockWait};
use crate::record::{self, ChangeRecord, Counts, DeploymentRecord, Recorded};
use crate::session::SessionFacts;
use crate::subxact::{from_caught, GucLevel};
use pg_deploy_core::argument::check_depth;
use pg_deploy_core::ManifestError;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::Value;
use std::panic::AssertUnwindSafe;

/// Runs `work`, turning every error into a pg_deploy error report. PostgreSQL
/// errors raised outside a change are re-raised as they came, without pgrx's
/// Rust backtrace in their detail.
pub fn guarded(function: &'static str, work: impl FnOnce() -> Result<Value, DeployError>) -> JsonB {
    let outcome = PgTryBuilder::new(AssertUnwindSafe(work))
        .catch_others(|caught| Err(DeployError::Postgres(from_caught(caught))))
        .execute();
    match outcome {
        Ok(report) => JsonB(report),
        Err(error) => error.raise(function),
    }
}

/// A report as the jsonb value the SQL functions return.
pub fn to_json<T: serde::Serialize>(report: &T) -> Result<Value, DeployError> {
    serde_json::to_value(report).map_err(|e| DeployError::Internal(format!("report: {e}")))
}

/// A jsonb argument as a value (NULL as JSON null), its nesting bounded first.
pub fn argument(arg: Option<JsonbArg>, path: &str) -> Result<Value, ManifestError> {
    match arg {
        None => Ok(Value::Null),
        Some(arg) => {
            let (value, depth) = arg.value();
            check_depth(depth, path)?;
            value.map_err(|reason| ManifestError::InvalidValue {
                path: path.to_string(),
                reason: format!("not JSON: {reason}"),
            })
        }
    }
}

/// The arguments of a call that takes a manifest: parsed, and as sent (for the history).
pub struct Call<O> {
    pub manifest: pg_deploy_core::Manifest,
    /// The manifest argument as sent, stored with the deployment.
    pub manifest_jsonb: Option<StoredJsonb>,
    pub options: O,
    pub options_doc: Value,
}

/// How much of the manifest `with_manifest` reads before `work` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// All of it, the changes' checksums computed (`deploy.baseline`).
    Whole,
    /// All of it but the changes' checksums, which `apply::prepare` computes
    /// unless the project's last deployment applied this very manifest (`deploy.plan`).
    ChecksumsDeferred,
    /// Only its head and the changes' ids when they read (`Manifest::elided`):
    /// `apply::prepare` reads the rest unless the project's last deployment
    /// applied these very bytes (`deploy.apply`). A 10,000-change no-op spent
    /// a third of its time reading the changes.
    ChangesDeferred,
}

/// The body of `deploy.apply`, `deploy.plan` and `deploy.baseline`: parses the
/// manifest (as much of it as `reading` says) and the options, then runs
/// `work` with SPI and returns its report.
pub fn with_manifest<O, R: serde::Serialize>(
    function: &'static str,
    manifest: Option<JsonbArg>,
    options: Option<JsonbArg>,
    reading: Reading,
    parse_options: fn(&Value) -> Result<O, ManifestError>,
    work: impl FnOnce(&mut SpiClient<'_>, Call<O>) -> Result<R, DeployError>,
) -> JsonB {
    guarded(function, || {
        let manifest_jsonb = manifest.as_ref().map(|m| m.datum);
        let (mut manifest, options_doc) = read_arguments(manifest, options, reading == Reading::ChangesDeferred)?;
        if reading == Reading::Whole {
            manifest.compute_checksums().map_err(DeployError::Manifest)?;
        }
        let call = Call {
            manifest,
            options: parse_options(&options_doc).map_err(DeployError::Options)?,
            manifest_jsonb,
            options_doc,
        };
        let report = Spi::connect_mut(|client| work(client, call))?;
        to_json(&report)
    })
}

/// The whole manifest `datum` holds, read and checked as `with_manifest`
/// reads it: for a manifest first read elided.
pub fn read_whole(datum: StoredJsonb) -> Result<pg_deploy_core::Manifest, DeployError> {
    read_arguments(Some(JsonbArg { datum }), None, false).map(|(manifest, _)| manifest)
}

/// The manifest and the options document, each error reported in the same
/// order whichever way the manifest is read: the manifest's nesting and
/// numbers, the options', their encoding, then the manifest's contents.
/// With `elide`, only the manifest's head and ids when they read.
fn read_arguments(
    manifest: Option<JsonbArg>,
    options: Option<JsonbArg>,
    elide: bool,
) -> Result<(pg_deploy_core::Manifest, Value), DeployError> {
    // Straight from the jsonb when it reads (in a UTF-8 database, where the
    // encoding check has nothing to refuse); through a value to say what is wrong.
    let direct = manifest
        .as_ref()
        .filter(|_| crate::encoding::utf8_database())
        .and_then(
            |m| match elide.then(|| crate::jsonb_manifest::read_elided(m.datum)).flatten() {
                Some(elided) => Some(Ok(elided)),
                None => crate::jsonb_manifest::read(m.datum),
            },
        );
    let manifest_doc = match direct {
        Some(_) => None,
        None => Some(argument(manifest, "$").map_err(DeployError::Manifest)?),
    };
    let options_doc = argument(options, "options").map_err(DeployError::Options)?;
    if let Some(doc) = &manifest_doc {
        crate::encoding::check_argument("manifest", doc)?;
    }
    crate::encoding::check_argument("options", &options_doc)?;
    let manifest = match (direct, manifest_doc) {
        (Some(read), _) => read,
        // The document is read into the typed manifest and dropped: a big
        // manifest is held once as text, briefly as a value, then as the manifest.
        (None, doc) => pg_deploy_core::Manifest::from_value(&doc.unwrap_or(Value::Null)),
    }
    .map_err(DeployError::Manifest)?;
    Ok((manifest, options_doc))
}

/// What every call that works on a project's history starts with.
pub struct Opened {
    pub session: SessionFacts,
    /// The GUC level of the internal search_path; restored when the call succeeds.
    internal: GucLevel,
    pub owner: Owner,
    /// Which release's SQL objects this database has.
    pub schema: Schema,
    /// The deployed version before this call.
    pub previous_version: Option<String>,
    /// The role that owns the project (None before 0.2.0, or when only read).
    pub project_owner: Option<String>,
    /// What the project's row said when claimed; None when the call only reads.
    claimed: Option<Claimed>,
}

/// Switches to the internal search_path and, with `lock: Some(wait)`, takes the
/// project's lock and claims its row (apply, baseline, revert); with `None` it
/// only reads (plan).
pub fn open_project(
    client: &mut SpiClient<'_>,
    session: SessionFacts,
    project: &str,
    lock: Option<LockWait>,
) -> Result<Opened, DeployError> {
    let internal = GucLevel::open();
    use_internal_search_path()?;
    let (owner, schema) = Owner::of_extension()?;
    let (previous_version, claimed) = match lock {
        Some(wait) => {
            let caller = session.current_user.as_str();
            let claimed = project_lock::claim_with_wait(client, owner, project, caller, schema, &wait)?;
            if let Some(project_owner) = &claimed.owner {
                ownership::check_member(project, project_owner)?;
            }
            (claimed.version.clone(), Some(claimed))
        }
        None => (owner.run(|| history::deployed_version(client, project))?, None),
    };
    Ok(Opened {
        session,
        internal,
        owner,
        schema,
        previous_version,
        project_owner: claimed.as_ref().and_then(|c| c.owner.clone()),
        claimed,
    })
}

/// Internal queries resolve functions and operators in pg_catalog only.
fn use_internal_search_path() -> Result<(), DeployError> {
    crate::subxact::set_local("search_path", "pg_catalog, pg_temp").map_err(DeployError::Postgres)
}

/// What a finished call records besides its changes.
pub struct Finished<'a> {
    pub project: &'a str,
    pub version: String,
    /// applied, no-op, baseline or revert
    pub outcome: &'static str,
    pub manifest_sha256: Option<&'a str>,
    /// The manifest, stored once per sha256; None when there is none (revert).
    pub manifest: Option<StoredJsonb>,
    /// Changes left as they were (counted, not listed).
    pub skipped: usize,
    pub options: Value,
    pub warnings: Vec<String>,
    pub fingerprint: Option<String>,
}

impl Opened {
    /// The schemas of the project's last fingerprint (None before the first):
    /// as claimed, else read now. Nothing pg_deploy runs before the
    /// fingerprint writes them, and no other role can.
    pub fn recorded_schemas(
        &self,
        client: &mut SpiClient<'_>,
        project: &str,
    ) -> Result<Option<Vec<String>>, DeployError> {
        match &self.claimed {
            Some(claimed) => Ok(claimed.schemas.clone()),
            None => self.owner.run(|| crate::drift::recorded_schemas(client, project)),
        }
    }

    /// False only when the claimed row says no deployment of the project is
    /// recorded: then there is no history or phase to read.
    pub fn deployed_before(&self) -> bool {
        self.claimed.as_ref().is_none_or(|c| c.deployed)
    }

    /// The manifest the project's last deployment applied, as claimed (see
    /// Claimed); None when not claimed.
    pub fn last_applied_manifest(&self) -> Option<&str> {
        self.claimed.as_ref().and_then(|c| c.last_applied_manifest.as_deref())
    }

    /// The digest of that manifest's bytes as sent (see Claimed); None when
    /// not claimed or not recorded.
    pub fn last_applied_jsonb(&self) -> Option<&str> {
        self.claimed.as_ref().and_then(|c| c.last_applied_jsonb.as_deref())
    }

    /// Whether the claimed row holds the schemas of a fingerprint (a no-op
    /// then takes none, and needs no change's SQL to find them).
    pub fn fingerprinted(&self) -> bool {
        self.claimed.as_ref().is_some_and(|c| c.schemas.is_some())
    }

    /// Records the deployment and its changes as the extension's owner, then
    /// gives the caller's search_path back; returns the deployment's id,
    /// duration and hash as recorded.
    pub fn finish(
        self,
        client: &mut SpiClient<'_>,
        f: Finished<'_>,
        changes: Vec<ChangeRecord>,
    ) -> Result<Recorded, DeployError> {
        let counts = Counts::of(&changes, f.skipped);
        let recorded = self.owner.run(|| {
            record::record(
                client,
                DeploymentRecord {
                    project: f.project,
                    version: f.version,
                    previous_version: self.previous_version.clone(),
                    outcome: f.outcome,
                    manifest_sha256: f.manifest_sha256,
                    manifest: f.manifest,
                    session: &self.session,
                    counts,
                    options: f.options,
                    warnings: f.warnings,
                    fingerprint: f.fingerprint,
                    schema: self.schema,
                },
                changes,
            )
        })?;
        self.internal.restore();
        Ok(recorded)
    }

    /// Gives the caller's search_path back without recording (deploy.plan).
    pub fn close(self) {
        self.internal.restore();
    }
}
