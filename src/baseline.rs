//! `deploy.baseline(manifest, options)`: record changes as applied without
//! running them, to adopt a database another tool (or a person) already built.

use crate::deployment::{open_project, with_manifest, Call, Finished, Reading};
use crate::error::DeployError;
use crate::history;
use crate::jsonb_arg::JsonbArg;
use crate::project_lock::LockWait;
use crate::record::ChangeRecord;
use crate::session::session_facts;
use pg_deploy_core::report::{round_ms, BaselineReport};
use pg_deploy_core::BaselineOptions;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::Value;
use std::time::Instant;

/// Records the chosen changes of `manifest` as applied, without running them.
/// Options: `{"through": "id"}` or `{"changes": ["id", ...]}`, and `reason`.
#[pg_extern(volatile, parallel_unsafe)]
fn baseline(manifest: Option<JsonbArg>, options: default!(Option<JsonbArg>, "'{}'")) -> JsonB {
    // Which changes the options choose depends on the manifest: parsed below.
    with_manifest(
        "deploy.baseline",
        manifest,
        options,
        Reading::Whole,
        |v| Ok(v.clone()),
        record_baseline,
    )
}

fn record_baseline(client: &mut SpiClient<'_>, call: Call<Value>) -> Result<BaselineReport, DeployError> {
    let started = Instant::now();
    let manifest = &call.manifest;
    let (_, chosen) = BaselineOptions::from_value(&call.options, manifest).map_err(DeployError::Options)?;
    let project = manifest.project.as_str();
    let session = session_facts()?;
    let opened = open_project(client, session, project, Some(LockWait::new(true, None)))?;
    let applied = opened.owner.run(|| history::applied_changes(client, project))?;

    let (mut baselined, mut skipped, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for &i in &chosen {
        let change = &manifest.changes[i];
        if applied.contains_key(&change.id) {
            skipped.push(change.id.clone());
            continue;
        }
        baselined.push(change.id.clone());
        records.push(ChangeRecord::of(i, change, "baseline"));
    }
    let recorded = opened.finish(
        client,
        Finished {
            project,
            version: manifest.version.to_string(),
            outcome: "baseline",
            manifest_sha256: Some(&manifest.sha256),
            manifest: call.manifest_jsonb,
            skipped: skipped.len(),
            options: call.options_doc,
            warnings: Vec::new(),
            fingerprint: None,
        },
        records,
    )?;
    Ok(BaselineReport {
        project: project.to_string(),
        version: manifest.version.to_string(),
        previous_version: recorded.previous_version,
        outcome: "baseline".into(),
        deployment_id: recorded.id,
        chain_head: Some(recorded.row_hash),
        baselined,
        skipped,
        duration_ms: round_ms(started.elapsed().as_secs_f64() * 1000.0),
    })
}
