//! The reports pg_deploy returns, as one typed contract: the extension builds
//! them and serialises them to jsonb; the client reads them back into the same
//! types. A field added here is added for both sides at once.

use serde::{Deserialize, Serialize};

/// `deploy.apply`: what ran, what was skipped, what it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub project: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub outcome: ApplyOutcome,
    pub deployment_id: i64,
    pub manifest_sha256: String,
    /// The row_hash of this deployment: the head of the project's hash chain,
    /// to keep outside the database and give to deploy.verify_log later.
    #[serde(default)]
    pub chain_head: Option<String>,
    pub applied: Vec<ChangeRun>,
    pub rerun: Vec<ChangeRun>,
    pub skipped: Vec<String>,
    pub accepted: Vec<String>,
    pub warnings: Vec<String>,
    pub duration_ms: f64,
    /// The steps that run after the deployment commits (docs/online.md): the
    /// deployment id and each step's kind and changes; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    #[serde(rename = "applied")]
    Applied,
    #[serde(rename = "no-op")]
    NoOp,
}

/// One change that ran in a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRun {
    pub id: String,
    pub kind: String,
    pub statements: usize,
    pub lock_retries: u32,
    pub duration_ms: f64,
}

/// `deploy.plan`: what apply would do, change by change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    pub project: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub outcome: PlanOutcome,
    pub changes: Vec<PlannedChange>,
    pub warnings: Vec<String>,
    #[serde(default)]
    pub locks_held: Vec<PlannedHeldLock>,
    pub execution: TrialRun,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanOutcome {
    #[serde(rename = "would apply")]
    WouldApply,
    #[serde(rename = "no-op")]
    NoOp,
    #[serde(rename = "refused")]
    Refused,
}

/// One change of a plan; `settings` and `statements` only for changes that would run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub id: String,
    pub kind: String,
    /// apply, rerun, skip, accept or refuse
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<PlannedSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<Vec<PlannedStatement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objection: Option<Objection>,
    /// The step it would run in: 0 in the deployment's transaction, 1, 2, …
    /// after it commits (docs/online.md); absent for changes that do not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSettings {
    pub search_path: String,
    pub lock_timeout: String,
    pub statement_timeout: String,
    pub lock_retries: u32,
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStatement {
    pub line: usize,
    pub column: usize,
    pub kind: String,
    pub locks: Vec<PlannedLock>,
    pub hazards: Vec<PlannedHazard>,
    pub refusal: Option<PlannedRefusal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedLock {
    pub table: String,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedHazard {
    pub kind: String,
    pub table: Option<String>,
    pub rows: Option<f64>,
    pub bytes: Option<i64>,
    pub big: bool,
    pub allowed: bool,
    pub refused: bool,
    pub reason: String,
    /// The safe way to do it, in phases.
    #[serde(default)]
    pub hint: String,
}

/// Per step and table, the strongest lock the step takes, the change that
/// takes it, and the later changes that run while it is held (until commit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedHeldLock {
    pub step: usize,
    pub table: String,
    pub mode: String,
    pub change: String,
    pub line: usize,
    pub held_during: Vec<String>,
    pub big: bool,
    /// How other sessions use the table, when they use it much.
    #[serde(default)]
    pub busy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRefusal {
    pub sqlstate: String,
    pub reason: String,
    pub hint: String,
}

/// Why apply would refuse a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objection {
    pub sqlstate: String,
    pub message: String,
}

/// The plan's trial run: not executed (and why), or executed and rolled back.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrialRun {
    pub executed: bool,
    /// Why it did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    /// The change that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

impl TrialRun {
    pub fn skipped(reason: &str) -> TrialRun {
        TrialRun {
            executed: false,
            reason: Some(reason.to_string()),
            ..TrialRun::default()
        }
    }

    pub fn failed(&self) -> bool {
        self.ok == Some(false)
    }
}

/// `deploy.revert`: what was undone or restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertReport {
    pub project: String,
    pub version: String,
    pub previous_version: String,
    /// Always "revert".
    pub outcome: String,
    pub deployment_id: i64,
    #[serde(default)]
    pub chain_head: Option<String>,
    pub reverted: Vec<RevertedChange>,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertedChange {
    pub id: String,
    /// reverted (its revert SQL ran) or rerun (a repeatable change's earlier SQL ran)
    pub action: String,
    pub duration_ms: f64,
}

/// `deploy.baseline`: what was recorded as applied without running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineReport {
    pub project: String,
    pub version: String,
    pub previous_version: Option<String>,
    /// Always "baseline".
    pub outcome: String,
    pub deployment_id: i64,
    #[serde(default)]
    pub chain_head: Option<String>,
    pub baselined: Vec<String>,
    pub skipped: Vec<String>,
    pub duration_ms: f64,
}

/// `deploy.transfer_project`: a project handed to another owner role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    pub project: String,
    pub version: String,
    /// Always "transfer".
    pub outcome: String,
    pub previous_owner: Option<String>,
    pub owner: String,
    pub deployment_id: i64,
    #[serde(default)]
    pub chain_head: Option<String>,
    pub duration_ms: f64,
}

/// Milliseconds to three decimals, so reports stay readable.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// One row of `deploy.status()`, as `to_jsonb` writes it: a project, its
/// deployed version and its last deployment. The `last_*` columns are NULL
/// when the log has no row for that deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    pub project: String,
    pub version: Option<String>,
    pub changes_applied: i64,
    pub deployments: i64,
    pub last_deployment_id: Option<i64>,
    pub last_outcome: Option<String>,
    /// timestamptz as jsonb writes it, e.g. `2024-05-01T12:00:00.123456+00:00`.
    pub last_deployed_at: Option<String>,
    pub last_deployed_by: Option<String>,
    pub last_application_name: Option<String>,
    /// inet as text.
    pub last_client_addr: Option<String>,
    pub last_duration_ms: Option<f64>,
    pub managed_schemas: Option<Vec<String>>,
    /// NULL when the project has no schemas to fingerprint.
    pub drifted: Option<bool>,
    /// The roles (and applications) of the recorded commands behind the
    /// drift (docs/lineage.md); absent without them or from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted_by: Option<String>,
}

/// One row of `deploy.drift(project)`: an object added, removed or changed
/// since the project's last deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRow {
    /// added, removed or changed
    pub change: String,
    pub kind: String,
    pub name: String,
    /// The last recorded command on it outside the project's deployments
    /// (docs/lineage.md): its role, application and time; absent when the
    /// lineage log has none (or the server predates lineage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
}

/// One row of `deploy.verify_log()`: whether a project's hash chain holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyLogRow {
    pub project: String,
    pub deployments: i64,
    pub intact: bool,
    /// The first deployment whose row or link no longer matches; NULL when intact.
    pub first_broken_id: Option<i64>,
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_read_and_write_as_their_report_words() {
        assert_eq!(serde_json::to_value(ApplyOutcome::NoOp).unwrap(), json!("no-op"));
        assert_eq!(
            serde_json::to_value(PlanOutcome::WouldApply).unwrap(),
            json!("would apply")
        );
        let back: PlanOutcome = serde_json::from_value(json!("refused")).unwrap();
        assert_eq!(back, PlanOutcome::Refused);
    }

    #[test]
    fn a_skipped_trial_run_says_only_why() {
        assert_eq!(
            serde_json::to_value(TrialRun::skipped("nothing to run")).unwrap(),
            json!({"executed": false, "reason": "nothing to run"})
        );
    }

    #[test]
    fn an_apply_report_round_trips() {
        let report = ApplyReport {
            project: "shop".into(),
            version: "1.0.0".into(),
            previous_version: None,
            outcome: ApplyOutcome::Applied,
            deployment_id: 7,
            manifest_sha256: "sha256:x".into(),
            chain_head: Some("sha256:y".into()),
            applied: vec![ChangeRun {
                id: "a".into(),
                kind: "versioned".into(),
                statements: 2,
                lock_retries: 0,
                duration_ms: 1.5,
            }],
            rerun: vec![],
            skipped: vec!["b".into()],
            accepted: vec![],
            warnings: vec![],
            phases: Some(json!({"deployment_id": 7, "steps": [{"step": 1, "kind": "online", "changes": ["i"]}]})),
            duration_ms: 3.25,
        };
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(value["applied"][0]["lock_retries"], json!(0));
        assert_eq!(value["outcome"], json!("applied"));
        assert_eq!(serde_json::from_value::<ApplyReport>(value).unwrap(), report);
    }
}
