//! Before anything runs: every pending change is parsed, each statement
//! classified, refused when it cannot work in a deployment, and checked for
//! hazards against the catalogs. Shared by `deploy.apply` and `deploy.plan`.

use crate::catalog::{SchemaCache, SpiCatalog};
use crate::error::{ChangeLocation, DeployError};
use crate::guc;
use crate::session::SessionFacts;
use crate::sqlstate::sqlstate;
use crate::statements::{self, Statement};
use crate::subxact::PgError;
use pg_deploy_core::analysis::{refusal, refusal_from_catalog, Facts, Refusal};
use pg_deploy_core::hazards::{hazards, Earlier, Hazard, HazardKind, Thresholds};
use pg_deploy_core::locks::{held_across, long_work, statement_locks, Locking, TableLock};
use pg_deploy_core::manifest::{over_maximum, DEFAULT_LOCK_RETRIES, DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT};
use pg_deploy_core::phases::{Step, StepKind};
use pg_deploy_core::{Change, Manifest, Settings};
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;

/// The settings a change runs under, every default resolved.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub search_path: String,
    pub lock_timeout: String,
    pub statement_timeout: String,
    pub lock_retries: u32,
    pub allow: Vec<HazardKind>,
}

impl RunSettings {
    /// Change, then manifest defaults, then (search_path, lock_timeout) the
    /// caller's session, then pg_deploy's defaults.
    pub fn resolve(change: &Change, manifest: &Manifest, session: &SessionFacts) -> RunSettings {
        let s: Settings = change.settings.over(&manifest.defaults);
        let caller_lock_timeout = (session.lock_timeout != "0").then(|| session.lock_timeout.clone());
        RunSettings {
            search_path: s.search_path.unwrap_or_else(|| session.search_path.clone()),
            lock_timeout: s
                .lock_timeout
                .or(caller_lock_timeout)
                .unwrap_or_else(|| DEFAULT_LOCK_TIMEOUT.into()),
            statement_timeout: s.statement_timeout.unwrap_or_else(|| DEFAULT_STATEMENT_TIMEOUT.into()),
            lock_retries: s.lock_retries.unwrap_or(DEFAULT_LOCK_RETRIES),
            allow: s.allow.unwrap_or_default(),
        }
    }

    /// (GUC, value) pairs set for the change.
    pub fn gucs(&self) -> [(&'static str, &str); 3] {
        [
            ("search_path", &self.search_path),
            ("lock_timeout", &self.lock_timeout),
            ("statement_timeout", &self.statement_timeout),
        ]
    }
}

/// One statement with what pg_deploy found out about it.
#[derive(Debug, Clone)]
pub struct AnalysedStatement {
    pub statement: Statement,
    pub refusal: Option<Refusal>,
    pub hazards: Vec<Hazard>,
    /// The locks it takes on existing tables, resolved in the catalogs.
    pub locks: Vec<TableLock>,
    /// What makes it long on a big table, if anything.
    pub long: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ChangeAnalysis {
    pub statements: Vec<AnalysedStatement>,
    pub settings: RunSettings,
}

impl ChangeAnalysis {
    pub fn plain_statements(&self) -> Vec<Statement> {
        self.statements.iter().map(|s| s.statement.clone()).collect()
    }

    /// The first reason this change must not run: a refused statement or a
    /// hazard that is not allowed.
    pub fn first_objection(&self, project: &str, change: &Change) -> Option<DeployError> {
        for (i, s) in self.statements.iter().enumerate() {
            let location = || ChangeLocation::of_statement(project, change, &self.plain_statements(), i, None);
            if let Some(refusal) = &s.refusal {
                let outside_transaction = refusal.sqlstate == pg_deploy_core::SqlState::ActiveSqlTransaction;
                if outside_transaction && change.phase.online {
                    // Runs after commit, top level: exactly what it needs.
                    continue;
                }
                let mut refusal = refusal.clone();
                if outside_transaction {
                    refusal.hint = format!(
                        "Set \"online\": true on change \"{}\": it then runs after the deployment commits, top \
                         level, outside any transaction block (docs/online.md). It must be the change's only statement.",
                        change.id
                    );
                }
                return Some(DeployError::Refused {
                    location: location(),
                    refusal,
                });
            }
            if let Some(hazard) = s.hazards.iter().find(|h| h.refused(&self.settings.allow)) {
                return Some(DeployError::Hazard {
                    location: location(),
                    hazard: hazard.clone(),
                });
            }
        }
        None
    }
}

pub fn analyse_change(
    client: &mut SpiClient<'_>,
    schemas: &mut SchemaCache,
    project: &str,
    change: &Change,
    settings: RunSettings,
    thresholds: &Thresholds,
    earlier: &mut Earlier,
) -> Result<ChangeAnalysis, DeployError> {
    if let Some(reason) = over_maximum(&settings.statement_timeout, guc::MAX_STATEMENT_TIMEOUT.get()) {
        return Err(DeployError::Postgres(PgError {
            sqlstate: sqlstate(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE),
            message: format!(
                "change \"{}\" of project \"{project}\": {reason} (pg_deploy.max_statement_timeout)",
                change.id
            ),
            detail: None,
            hint: Some(
                "Ask for a statement_timeout within the maximum in the change or in the manifest's defaults; \
                 the administrator sets the maximum."
                    .into(),
            ),
        }));
    }
    let parsed = statements::split(&change.sql).map_err(|failure| DeployError::Syntax {
        location: ChangeLocation::new(project, &change.id, &change.sql, failure.at),
        error: failure.error,
    })?;
    let needs_catalog = parsed
        .iter()
        .any(|s| !matches!(s.facts, Facts::Other) || s.lock.is_some());
    let path = if needs_catalog {
        schemas.get(client, &settings.search_path)?
    } else {
        Vec::new()
    };
    let mut catalog = SpiCatalog::new(client, path);
    let mut statements = Vec::with_capacity(parsed.len());
    for statement in parsed {
        let refusal =
            refusal(&statement.kind, &statement.facts).or_else(|| refusal_from_catalog(&statement.facts, &mut catalog));
        let lock = statement.lock.as_ref().map(|(table, mode)| (table, *mode));
        let (found, locks) = if refusal.is_none() {
            (
                hazards(&statement.facts, lock, &mut catalog, thresholds, earlier),
                statement_locks(&statement.facts, lock, &mut catalog, thresholds),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let long = long_work(&statement.facts, &found, &locks);
        statements.push(AnalysedStatement {
            statement,
            refusal,
            hazards: found,
            locks,
            long,
        });
    }
    if let Some(error) = catalog.error.take() {
        return Err(error);
    }
    Ok(ChangeAnalysis { statements, settings })
}

/// Changes that add an enum value, and later statements (in the same change
/// or a later one) whose parse tree uses it as a string constant: the value
/// cannot be used before the transaction that added it commits (55P04).
pub fn enum_value_uses(changes: &[(&Change, &ChangeAnalysis)]) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for (i, (adder, analysis)) in changes.iter().enumerate() {
        for (j, s) in analysis.statements.iter().enumerate() {
            let Facts::AddEnumValue { type_name, value } = &s.statement.facts else {
                continue;
            };
            // Quoted once per value: asked of every later statement.
            let literal = format!("'{}'", value.replace('\'', "''"));
            let what = format!("{type_name} value {literal}");
            let unqualified = type_name.name.as_str();
            let uses = |statements: &[AnalysedStatement]| {
                statements
                    .iter()
                    .any(|u| u.statement.tree.uses_string(value, &literal, unqualified))
            };
            if uses(&analysis.statements[j + 1..]) {
                found.push((adder.id.clone(), adder.id.clone(), what.clone()));
            }
            for (user, user_analysis) in &changes[i + 1..] {
                if uses(&user_analysis.statements) {
                    found.push((adder.id.clone(), user.id.clone(), what.clone()));
                }
            }
        }
    }
    found
}

/// Analyses every change that will run (`runs[i]`), in manifest order.
pub fn analyse_pending(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    runs: &[bool],
    session: &SessionFacts,
) -> Result<Vec<Option<ChangeAnalysis>>, DeployError> {
    let mut schemas = SchemaCache::default();
    let mut earlier = Earlier::default();
    let mut out = Vec::with_capacity(manifest.changes.len());
    for (change, &runs) in manifest.changes.iter().zip(runs) {
        if !runs {
            out.push(None);
            continue;
        }
        let settings = RunSettings::resolve(change, manifest, session);
        out.push(Some(crate::memory::scoped("pg_deploy analysis", || {
            analyse_change(
                client,
                &mut schemas,
                &manifest.project,
                change,
                settings,
                &manifest.thresholds,
                &mut earlier,
            )
        })?));
    }
    Ok(out)
}

/// The statements of one transactional step, in the order they run, with
/// the locks they take (online steps hold nothing across statements).
pub fn step_locking(step: &Step, analyses: &[Option<ChangeAnalysis>]) -> Vec<Locking> {
    if step.kind != StepKind::Transaction {
        return Vec::new();
    }
    step.changes
        .iter()
        .filter_map(|&c| Some((c, analyses.get(c)?.as_ref()?)))
        .flat_map(|(c, a)| {
            a.statements.iter().enumerate().map(move |(i, s)| Locking {
                change: c,
                statement: i,
                locks: s.locks.clone(),
                long: s.long.clone(),
            })
        })
        .collect()
}

/// Adds the hazard of a long statement run under an earlier statement's lock
/// (held until its step commits) to the long statement.
/// `ids` names the changes by index.
pub fn add_held_lock_hazards(ids: &dyn Fn(usize) -> String, steps: &[Step], analyses: &mut [Option<ChangeAnalysis>]) {
    for step in steps {
        let locking = step_locking(step, analyses);
        for found in held_across(&locking, ids) {
            let at = &locking[found.long];
            if let Some(Some(analysis)) = analyses.get_mut(at.change) {
                if let Some(s) = analysis.statements.get_mut(at.statement) {
                    s.hazards.push(found.hazard);
                }
            }
        }
    }
}
