//! `deploy.baseline(manifest, options)`: record changes as applied without
//! running them, to adopt a database another tool (or a person) already built.

use crate::apply::{guarded, round};
use crate::error::DeployError;
use crate::history::{self, ChangeRecord, Counts, DeploymentRecord};
use pg_deploy_core::{BaselineOptions, Manifest};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::{json, Value};
use std::time::Instant;

/// Records the chosen changes of `manifest` as applied, without running them.
/// Options: `{"through": "id"}` or `{"changes": ["id", ...]}`, and `reason`.
#[pg_extern(volatile, parallel_unsafe)]
fn baseline(manifest: Option<JsonB>, options: default!(Option<JsonB>, "'{}'")) -> JsonB {
    let manifest_doc = manifest.map_or(Value::Null, |m| m.0);
    let options_doc = options.map_or(Value::Null, |o| o.0);
    guarded("deploy.baseline", || {
        let manifest = Manifest::from_value(&manifest_doc).map_err(DeployError::Manifest)?;
        let (_, chosen) = BaselineOptions::from_value(&options_doc, &manifest).map_err(DeployError::Options)?;
        Spi::connect_mut(|client| record_baseline(client, &manifest, manifest_doc, &chosen, options_doc))
    })
}

fn record_baseline(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    manifest_doc: Value,
    chosen: &[usize],
    options_doc: Value,
) -> Result<Value, DeployError> {
    let started = Instant::now();
    let project = manifest.project.as_str();
    let session = history::session_facts(client)?;
    let history::Opened {
        session,
        internal,
        owner,
        previous_version,
    } = history::open_project(client, session, project, Some(true))?;
    let applied = owner.run(|| history::applied_changes(client, project))?;

    let (mut baselined, mut skipped, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for &i in chosen {
        let change = &manifest.changes[i];
        if applied.contains_key(&change.id) {
            skipped.push(json!(change.id));
            continue;
        }
        baselined.push(json!(change.id));
        records.push(ChangeRecord {
            ordinal: i as i32,
            id: change.id.clone(),
            kind: change.kind.as_str(),
            action: "baseline",
            checksum: change.checksum.clone(),
            statements: 0,
            retries: 0,
            duration_ms: 0.0,
            finished_after_ms: 0.0,
            revert_sql: change.revert.clone(),
        });
    }
    let counts = Counts {
        skipped: skipped.len() as i32,
        baselined: baselined.len() as i32,
        ..Counts::default()
    };
    let (deployment_id, _) = owner.run(|| {
        history::record(
            client,
            DeploymentRecord {
                project,
                version: manifest.version.to_string(),
                previous_version: previous_version.clone(),
                outcome: "baseline",
                manifest_sha256: Some(&manifest.sha256),
                manifest: Some(manifest_doc),
                session: &session,
                counts,
                options: options_doc,
                warnings: Vec::new(),
                fingerprint: None,
            },
            records,
        )
    })?;
    internal.restore();
    Ok(json!({
        "project": project,
        "version": manifest.version.to_string(),
        "previous_version": previous_version,
        "outcome": "baseline",
        "deployment_id": deployment_id,
        "baselined": baselined,
        "skipped": skipped,
        "duration_ms": round(started.elapsed().as_secs_f64() * 1000.0),
    }))
}
