//! `deploy.apply(manifest, options)`: validate, lock, plan, analyse, run, record, report.

use crate::analyze::{analyse_pending, ChangeAnalysis};
use crate::catalog::{schemas_of, SchemaCache, SpiCatalog};
use crate::deployment::{open_project, read_whole, with_manifest, Call, Finished, Opened, Reading};
use crate::drift;
use crate::error::{ChangeLocation, DeployError};
use crate::execute::{run_change, ChangeFailure, ChangeWork};
use crate::history;
use crate::jsonb_arg::{JsonbArg, StoredJsonb};
use crate::jsonb_manifest::digest;
use crate::owner::Schema;
use crate::phases::launch::{launch_after_commit, LaunchTarget};
use crate::phases::plan::{place, Phased};
use crate::phases::queue::{self, Latest};
use crate::project_lock::{lock_holders, LockWait};
use crate::record::ChangeRecord;
use crate::session::session_facts;
use crate::session_state;
use crate::sqlstate::Coded;
use pg_deploy_core::hazards::Catalog;
use pg_deploy_core::plan::{check_requirements, plan, postgres_version, ServerFacts};
use pg_deploy_core::report::{round_ms, ApplyOutcome, ApplyReport, ChangeRun};
use pg_deploy_core::{Action, ApplyOptions, Change, DriftPolicy, History, Manifest, Plan};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode;
use std::time::Instant;

/// Applies every pending change of `manifest` in the caller's transaction and
/// returns a report. See docs/manifest.md and docs/errors.md.
#[pg_extern(volatile, parallel_unsafe)]
fn apply(manifest: Option<JsonbArg>, options: default!(Option<JsonbArg>, "'{}'")) -> JsonB {
    with_manifest(
        "deploy.apply",
        manifest,
        options,
        Reading::ChangesDeferred,
        ApplyOptions::from_value,
        deploy,
    )
}

/// What both apply and plan need before deciding anything.
pub struct Prepared {
    pub opened: Opened,
    pub plan: Plan,
    pub analyses: Vec<Option<ChangeAnalysis>>,
    /// The phases of the pending changes.
    pub phased: Phased,
    /// The project's latest queued phase, if any.
    pub latest_phase: Option<Latest>,
    /// The locks the largest transaction needs and the lock table, when counted.
    pub lock_budget: Option<(u64, pg_deploy_core::capacity::LockTable)>,
}

/// Whether the project's last deployment applied this very manifest, with
/// no phase of it failed since: then every change of the manifest is applied
/// as it stands, and re-applying it is a no-op without reading the history.
/// Every deployment (a revert, a baseline, a phase step, a transfer) moves
/// the project's last_deployment_id, and a failed phase step records one.
fn applied_by_last_deployment(manifest: &Manifest, opened: &Opened, latest_phase: Option<&queue::Latest>) -> bool {
    opened.last_applied_manifest() == Some(manifest.sha256.as_str())
        && latest_phase.is_none_or(|l| l.state.unfinished())
}

/// Checks requirements, switches to the internal search_path, optionally
/// locks and claims the project, reads the history, plans and analyses.
/// `manifest_jsonb`: the manifest argument, from which an elided manifest
/// is read whole when it is not the one the last deployment applied.
pub fn prepare(
    client: &mut SpiClient<'_>,
    manifest: &mut Manifest,
    manifest_jsonb: Option<StoredJsonb>,
    options: &ApplyOptions,
    lock: bool,
) -> Result<Prepared, DeployError> {
    let session = session_facts()?;
    let facts = ServerFacts {
        postgres: postgres_version(session.server_version_num),
        installed_extensions: session.extensions.clone(),
        pg_deploy: semver::Version::parse(pg_deploy_core::VERSION).map_err(|e| DeployError::Internal(e.to_string()))?,
    };
    check_requirements(manifest, &facts)?;

    // Owned: the manifest's checksums are computed below.
    let project_name = manifest.project.clone();
    let project = project_name.as_str();
    let opened = open_project(
        client,
        session,
        project,
        lock.then(|| LockWait::new(options.wait, Some(&options.wait_timeout))),
    )?;
    let owner = opened.owner;
    let mut drift_warnings = Vec::new();
    if options.drift != DriftPolicy::Ignore {
        if let Some(message) = owner.run(|| drift::summary(client, project))? {
            if options.drift == DriftPolicy::Refuse {
                return Err(DeployError::Drifted {
                    project: project.to_string(),
                    message,
                });
            }
            drift_warnings.push(message);
        }
    }
    let deployed_version = match &opened.previous_version {
        None => None,
        Some(v) => Some(semver::Version::parse(v).map_err(|e| {
            DeployError::Internal(format!("deployed version \"{v}\" of \"{project}\" is not semver: {e}"))
        })?),
    };
    // A project's first deployment has no history or phase to read (a new
    // backend would parse, plan and open two more tables for nothing).
    let latest_phase = match opened.schema {
        Schema::V0_2 if opened.deployed_before() => owner.run(|| queue::latest(client, project))?,
        _ => None,
    };
    if manifest.is_elided() {
        // The same bytes as the manifest the last deployment applied are that
        // manifest: its sha256 is the one recorded, and nothing more is read.
        let recorded = opened
            .last_applied_manifest()
            .zip(opened.last_applied_jsonb())
            .filter(|(_, bytes)| opened.fingerprinted() && manifest_jsonb.is_some_and(|m| digest(m) == *bytes));
        if let Some((sha256, _)) = recorded {
            manifest.sha256 = sha256.to_string();
        }
    }
    let mut manifest_applied =
        opened.deployed_before() && applied_by_last_deployment(manifest, &opened, latest_phase.as_ref());
    if manifest.is_elided() && !manifest_applied {
        let datum =
            manifest_jsonb.ok_or_else(|| DeployError::Internal("an elided manifest without its jsonb".into()))?;
        *manifest = read_whole(datum)?;
        manifest_applied =
            opened.deployed_before() && applied_by_last_deployment(manifest, &opened, latest_phase.as_ref());
    }
    // Checked when that deployment read the manifest; any other manifest is checked now.
    if !manifest_applied {
        manifest.compute_checksums().map_err(DeployError::Manifest)?;
    }
    let manifest = &*manifest;
    let mut history = History {
        deployed_version,
        applied: if !opened.deployed_before() || manifest_applied {
            Default::default()
        } else {
            owner.run(|| history::applied_changes(client, project))?
        },
        manifest_applied,
    };
    // Changes an unfinished phase will still run count as applied: they are on their way.
    if let Some(latest) = latest_phase.as_ref().filter(|l| l.state.unfinished()) {
        history.applied.extend(latest.waiting.iter().cloned());
    }
    let mut plan = plan(manifest, &history, options)?;
    let runs: Vec<bool> = plan.actions.iter().map(|a| a.runs()).collect();
    let mut analyses = analyse_pending(client, manifest, &runs, &opened.session)?;
    plan.warnings.extend(drift_warnings);
    if options.downstream != DriftPolicy::Ignore {
        let managed = match &manifest.schemas {
            Some(schemas) => schemas.clone(),
            None => opened.recorded_schemas(client, project)?.unwrap_or_default(),
        };
        let found = crate::lineage::downstream::warnings(client, manifest, &analyses, &managed)?;
        if options.downstream == DriftPolicy::Refuse && !found.is_empty() {
            return Err(DeployError::Downstream {
                project: project.to_string(),
                message: found.join("; "),
            });
        }
        plan.warnings.extend(found);
    }
    let phased = place(manifest, &analyses, options.phases)?;
    let lock_budget = crate::lock_capacity::check(client, project, &phased.steps, &analyses)?;
    let ids = |i: usize| manifest.changes.get(i).map_or_else(String::new, |c| c.id.clone());
    crate::analyze::add_held_lock_hazards(&ids, &phased.steps, &mut analyses);
    plan.warnings.extend(phased.warnings.iter().cloned());
    Ok(Prepared {
        opened,
        plan,
        analyses,
        phased,
        latest_phase,
        lock_budget,
    })
}

/// {"wait_for_phase": true}: before taking the project, wait for its
/// unfinished phase to end (the worker records into the project's row, which
/// this deployment would hold).
fn wait_for_phase(client: &mut SpiClient<'_>, project: &str, timeout: &str) -> Result<(), DeployError> {
    let ms = pg_deploy_core::manifest::duration_ms(timeout).unwrap_or(300_000.0);
    let report =
        crate::phases::wait::until_finished(client, project, std::time::Duration::from_millis(ms.max(0.0) as u64));
    match report {
        Ok(_) => Ok(()),
        // Queued by this very transaction: apply's own check says what to do.
        Err(DeployError::Postgres(e)) if e.is(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A project whose phase is still running takes no other changes until it ends.
fn check_phase_finished(
    client: &mut SpiClient<'_>,
    project: &str,
    latest: Option<&Latest>,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let Some(latest) = latest.filter(|l| l.state.unfinished()) else {
        return Ok(());
    };
    // A phase nobody runs (its worker died, the server restarted) is resumed.
    let worker = crate::phases::wait::resume(client, project)?;
    if let Some(worker) = worker.filter(|w| w == "started") {
        pgrx::notice!(
            "pg_deploy: {project}: the unfinished phase of deployment {}: worker {worker}",
            latest.deployment_id
        );
    }
    if plan.is_noop() {
        plan.warnings.push(format!(
            "the phase of deployment {} is still {}: see deploy.phase_status('{project}')",
            latest.deployment_id,
            latest.state.as_str()
        ));
        return Ok(());
    }
    Err(DeployError::Postgres(crate::subxact::PgError {
        sqlstate: crate::sqlstate::sqlstate(PgSqlErrorCode::ERRCODE_OBJECT_IN_USE),
        message: format!(
            "project \"{project}\" has an unfinished phase (deployment {}, {}); it must end before other changes deploy",
            latest.deployment_id,
            latest.state.as_str()
        ),
        detail: None,
        hint: Some(format!(
            "Wait for it with SELECT deploy.wait('{}') (or pg-deploy wait), then apply again; or pass \
             {{\"wait_for_phase\": true}} to have apply wait for it.",
            project.replace('\'', "''")
        )),
    }))
}

fn deploy(client: &mut SpiClient<'_>, mut call: Call<ApplyOptions>) -> Result<ApplyReport, DeployError> {
    let started = Instant::now();
    let _lineage = crate::lineage::deploying(&call.manifest.project);
    if call.options.wait_for_phase {
        wait_for_phase(client, &call.manifest.project, &call.options.wait_timeout)?;
    }
    let Prepared {
        opened,
        mut plan,
        analyses,
        phased,
        latest_phase,
        lock_budget,
    } = prepare(client, &mut call.manifest, call.manifest_jsonb, &call.options, true)?;
    let manifest = &call.manifest;
    let project = manifest.project.as_str();
    check_phase_finished(client, project, latest_phase.as_ref(), &mut plan)?;
    if let Some(failed) = latest_phase.as_ref().filter(|l| l.state == queue::PhaseState::Failed) {
        // What the failed phase left undone is planned again from the history.
        let owner = opened.owner;
        owner.run(|| queue::supersede(client, failed.deployment_id))?;
    }
    for warning in &plan.warnings {
        pgrx::warning!("pg_deploy: {project}: {warning}");
    }
    // Refusals and hazards stop the deployment before anything runs.
    for (change, analysis) in manifest.changes.iter().zip(&analyses) {
        if let Some(objection) = analysis.as_ref().and_then(|a| a.first_objection(project, change)) {
            return Err(objection);
        }
    }

    let mut records = Vec::new();
    let (mut applied, mut rerun, mut skipped, mut accepted) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Runs of plain DDL changes, each run in one subtransaction ahead of the loop
    // below, which then takes their results (see group.rs).
    let statements_of: Vec<Vec<_>> = analyses
        .iter()
        .map(|a| a.as_ref().map(|a| a.plain_statements()).unwrap_or_default())
        .collect();
    let runs_now = |ordinal: usize| {
        matches!(plan.actions[ordinal], Action::Apply | Action::Rerun)
            && phased.step_of[ordinal].is_none_or(|step| step == 0)
    };
    if (0..manifest.changes.len()).any(runs_now) {
        crate::catalog_locks::hold(lock_budget);
    }
    let grouped = |ordinal: usize| {
        runs_now(ordinal)
            && analyses[ordinal].as_ref().is_some_and(|a| {
                crate::group::groupable(
                    &ChangeWork::of(&manifest.changes[ordinal], &statements_of[ordinal]),
                    &a.settings,
                )
            })
    };
    let mut group_runs: std::collections::HashMap<usize, crate::execute::ChangeRun> = Default::default();
    // After a group that failed, its changes run one by one.
    let mut no_group_before = 0;
    // No change may leave a session-level advisory lock behind.
    let changes_run = (0..manifest.changes.len()).any(runs_now);
    session_state::guard_advisory_locks_if(changes_run, client, |client| {
        for (ordinal, ((change, action), analysis)) in
            manifest.changes.iter().zip(&plan.actions).zip(&analyses).enumerate()
        {
            if ordinal >= no_group_before
                && !group_runs.contains_key(&ordinal)
                && grouped(ordinal)
                && ordinal + 1 < manifest.changes.len()
                && grouped(ordinal + 1)
            {
                let members: Vec<usize> = (ordinal..manifest.changes.len())
                    .take_while(|&i| grouped(i))
                    .take(crate::group::group_size(ordinal))
                    .collect();
                let works: Vec<_> = members
                    .iter()
                    .filter_map(|&i| {
                        let settings = &analyses[i].as_ref()?.settings;
                        Some((ChangeWork::of(&manifest.changes[i], &statements_of[i]), settings))
                    })
                    .collect();
                let end = ordinal + members.len();
                match crate::group::run_group(client, &works) {
                    Some(runs) => group_runs.extend(members.into_iter().zip(runs)),
                    None => no_group_before = end,
                }
            }
            if phased.step_of[ordinal].is_some_and(|step| step > 0) {
                // Queued: runs after the deployment commits.
                continue;
            }
            if *action == Action::Skip {
                skipped.push(change.id.clone());
                continue;
            }
            let mut record = ChangeRecord::of(ordinal, change, action.as_str());
            match (action, analysis) {
                (Action::Skip, _) => continue,
                (Action::Accept, _) => accepted.push(change.id.clone()),
                (Action::Apply | Action::Rerun, Some(analysis)) => {
                    let statements = &statements_of[ordinal];
                    let run = match group_runs.remove(&ordinal) {
                        Some(run) => run,
                        None => run_change(client, &ChangeWork::of(change, statements), &analysis.settings)
                            .map_err(|failure| change_failed(client, manifest, change, analysis, failure))?,
                    };
                    let ms = run.duration.as_secs_f64() * 1000.0;
                    record.statements = statements.len() as i32;
                    record.retries = run.retries as i32;
                    record.duration_ms = ms;
                    let verb = if *action == Action::Apply { "applied" } else { "re-ran" };
                    pgrx::notice!(
                        "pg_deploy: {project}: {verb} \"{}\" ({} statement(s), {:.1} ms)",
                        change.id,
                        statements.len(),
                        ms
                    );
                    let entry = ChangeRun {
                        id: change.id.clone(),
                        kind: change.kind.as_str().to_string(),
                        statements: statements.len(),
                        lock_retries: run.retries,
                        duration_ms: round_ms(ms),
                    };
                    if *action == Action::Apply {
                        applied.push(entry)
                    } else {
                        rerun.push(entry)
                    }
                }
                (Action::Apply | Action::Rerun, None) => {
                    return Err(DeployError::Internal(format!(
                        "change \"{}\" was not analysed",
                        change.id
                    )))
                }
            }
            record.finished_after_ms = started.elapsed().as_secs_f64() * 1000.0;
            records.push(record);
        }
        Ok(())
    })?;

    let outcome = if plan.is_noop() {
        ApplyOutcome::NoOp
    } else {
        ApplyOutcome::Applied
    };
    // Fingerprint what the project manages after every deployment that changed
    // something (and the first time), so later drift shows.
    let owner = opened.owner;
    let before = opened.recorded_schemas(client, project)?;
    let fingerprint = if !plan.is_noop() || before.is_none() {
        let mut schemas = SchemaCache::default();
        let managed = drift::managed_schemas(client, &mut schemas, manifest, &analyses, before)?;
        let schema = opened.schema;
        Some(owner.run(|| drift::fingerprint(client, project, &managed, schema))?)
    } else {
        None
    };
    // A no-op that leaves the version as it was records no deployment: the
    // project only notes when it was last checked (a race of appliers leaves
    // one deployment, not one per applier).
    let version = manifest.version.to_string();
    if outcome == ApplyOutcome::NoOp
        && fingerprint.is_none()
        && opened.schema == Schema::V0_2
        && opened.previous_version.as_deref() == Some(version.as_str())
    {
        let (deployment_id, chain_head) = owner.run(|| checked(client, project))?;
        let previous_version = opened.previous_version.clone();
        opened.close();
        return Ok(ApplyReport {
            project: project.to_string(),
            version,
            previous_version,
            outcome,
            deployment_id,
            manifest_sha256: manifest.sha256.clone(),
            chain_head,
            applied,
            rerun,
            skipped,
            accepted,
            warnings: plan.warnings,
            duration_ms: round_ms(started.elapsed().as_secs_f64() * 1000.0),
            phases: None,
        });
    }
    let opened_user = opened.session.current_user.clone();
    let lineage_schema = opened.schema;
    let recorded = opened.finish(
        client,
        Finished {
            project,
            version: manifest.version.to_string(),
            outcome: if outcome == ApplyOutcome::NoOp {
                "no-op"
            } else {
                "applied"
            },
            manifest_sha256: Some(&manifest.sha256),
            manifest: call.manifest_jsonb,
            skipped: skipped.len(),
            options: call.options_doc,
            warnings: plan.warnings.clone(),
            fingerprint,
        },
        records,
    )?;
    if lineage_schema == Schema::V0_2 {
        crate::lineage::attach(client, owner, project, recorded.id)?;
    }
    let phases = if phased.has_later_steps() {
        let deployment_id = recorded.id;
        let actions: Vec<&'static str> = plan.actions.iter().map(|a| a.as_str()).collect();
        let settings: Vec<_> = analyses.iter().map(|a| a.as_ref().map(|a| &a.settings)).collect();
        let queued = queue::queued(&phased.steps, &manifest.changes, &actions, &settings);
        let login = login_role(client)?;
        owner.run(|| {
            queue::enqueue(
                client,
                deployment_id,
                project,
                &queued,
                &phased.steps,
                &opened_user,
                &login.1,
            )
        })?;
        launch_after_commit(LaunchTarget {
            // SAFETY: reads this backend's database and user ids.
            database: unsafe { pgrx::pg_sys::MyDatabaseId },
            login: login.0,
            run_as: unsafe { pgrx::pg_sys::GetUserId() },
            deployment_id,
        });
        pgrx::notice!(
            "pg_deploy: {project}: {} step(s) run after this transaction commits; see deploy.wait('{}')",
            phased.steps.len() - 1,
            project.replace('\'', "''")
        );
        Some(serde_json::json!({
            "deployment_id": deployment_id,
            "steps": queue::report_steps(&phased.steps, &manifest.changes),
        }))
    } else {
        None
    };
    Ok(ApplyReport {
        project: project.to_string(),
        version: manifest.version.to_string(),
        previous_version: recorded.previous_version,
        outcome,
        deployment_id: recorded.id,
        manifest_sha256: manifest.sha256.clone(),
        chain_head: Some(recorded.row_hash),
        applied,
        rerun,
        skipped,
        accepted,
        warnings: plan.warnings,
        duration_ms: round_ms(recorded.duration_ms),
        phases,
    })
}

/// Notes that the project was checked and found up to date; returns the
/// deployment in place and its hash (the chain's head).
fn checked(client: &mut SpiClient<'_>, project: &str) -> Result<(i64, Option<String>), DeployError> {
    let row = client
        .update(
            "UPDATE deploy.projects p SET last_checked_at = pg_catalog.clock_timestamp()
              WHERE p.project = $1
             RETURNING p.last_deployment_id,
                       (SELECT d.row_hash FROM deploy.deployments d WHERE d.id = p.last_deployment_id)",
            Some(1),
            &[project.into()],
        )?
        .first();
    Ok((row.get::<i64>(1)?.unwrap_or_default(), row.get::<String>(2)?))
}

/// The role this session authenticated as (a role that may log in), by oid and name.
fn login_role(client: &mut SpiClient<'_>) -> Result<(pgrx::pg_sys::Oid, String), DeployError> {
    // SAFETY: reads the session's authenticated user id.
    let oid = unsafe { pgrx::pg_sys::GetAuthenticatedUserId() };
    let name = client
        .update(
            "SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE oid = $1",
            Some(1),
            &[oid.into()],
        )?
        .first()
        .get_one::<String>()?
        .unwrap_or_default();
    Ok((oid, name))
}

/// The error for a change that failed, with what explains it: who holds the
/// lock it waited for, or which change added the enum value it used.
fn change_failed(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    change: &Change,
    analysis: &ChangeAnalysis,
    mut failure: ChangeFailure,
) -> DeployError {
    let statements = analysis.plain_statements();
    let project = manifest.project.as_str();
    let location = match failure.statement {
        Some(i) => ChangeLocation::of_statement(project, change, &statements, i, failure.at),
        None => ChangeLocation::new(project, &change.id, &change.sql, failure.at),
    };
    let statement = failure.statement.and_then(|i| statements.get(i));
    let mut extra = None;
    if failure.error.is(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE) {
        if let Some((table, mode)) = statement.and_then(|s| s.lock.as_ref()) {
            let holders = schemas_of(client, &analysis.settings.search_path)
                .ok()
                .and_then(|path| SpiCatalog::new(client, path).table(table))
                .and_then(|t| lock_holders(client, t.oid).ok().flatten());
            extra = Some(format!(
                "Waited for {mode} on {table} (lock_timeout {}, {} retries); held by: {}.",
                analysis.settings.lock_timeout,
                failure.retries,
                holders.unwrap_or_else(|| "nobody now".into())
            ));
        }
        failure.error.hint.get_or_insert_with(|| {
            "Deploy when the table is quieter, or raise lock_timeout / lock_retries for this change.".into()
        });
    }
    if failure.error.is(PgSqlErrorCode::ERRCODE_UNSAFE_NEW_ENUM_VALUE_USAGE) {
        failure.error.hint = Some(
            "An enum value added by ALTER TYPE … ADD VALUE cannot be used before that transaction commits: \
             split the release in two, the new value in the first."
                .into(),
        );
    }
    if let Some(extra) = extra {
        failure.error.detail = Some(match failure.error.detail.take() {
            Some(d) => format!("{d}\n{extra}"),
            None => extra,
        });
    }
    DeployError::ChangeFailed {
        location,
        error: failure.error,
    }
}
