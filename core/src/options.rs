//! Options of `deploy.apply(manifest, options)`.

use crate::document::read;
use crate::error::ManifestError;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Wait for a concurrent apply of the same project (true) or fail at once.
    pub wait: bool,
    /// How long to wait for it at most (a duration; default 5min).
    pub wait_timeout: String,
    /// Apply a manifest whose version is older than the deployed one.
    pub allow_downgrade: bool,
    /// Versioned changes whose applied SQL changed and whose new text is accepted
    /// without running it; recorded in the history.
    pub accept_changed: Vec<String>,
    /// Free text kept with the deployment (why an override was needed).
    pub reason: Option<String>,
    /// What to do when the project's objects changed outside deployments.
    pub drift: DriftPolicy,
    /// What to do when a change drops or retypes something another schema,
    /// a publication or another role depends on (default: warn).
    pub downstream: DriftPolicy,
    /// Where commit boundaries come from: declared in the manifest only, or
    /// also placed by the analysis where one is provably needed.
    pub phases: PhasePlacement,
    /// Apply up to and including this change; later changes wait for another apply.
    pub through: Option<String>,
    /// Wait (up to wait_timeout) for the project's unfinished phase to end
    /// instead of failing with 55006.
    pub wait_for_phase: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhasePlacement {
    /// Only `commit_before` starts a phase; a provable need for one is an error (default).
    Declared,
    /// The analysis also starts a phase where a change needs an earlier one committed.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftPolicy {
    Ignore,
    Warn,
    Refuse,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            wait: true,
            wait_timeout: DEFAULT_WAIT_TIMEOUT.into(),
            allow_downgrade: false,
            accept_changed: Vec::new(),
            reason: None,
            drift: DriftPolicy::Ignore,
            downstream: DriftPolicy::Warn,
            phases: PhasePlacement::Declared,
            through: None,
            wait_for_phase: false,
        }
    }
}

/// The options object of `deploy.apply` as sent; a null field counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyOptionsDocument {
    wait: Option<bool>,
    wait_timeout: Option<String>,
    allow_downgrade: Option<bool>,
    accept_changed: Option<Vec<String>>,
    reason: Option<String>,
    drift: Option<String>,
    downstream: Option<String>,
    phases: Option<String>,
    through: Option<String>,
    wait_for_phase: Option<bool>,
}

/// How long a deployment waits for another one of the same project, unless told.
pub const DEFAULT_WAIT_TIMEOUT: &str = "5min";

/// `options.wait_timeout`: a duration, more than zero (default 5min).
fn wait_timeout(given: Option<String>) -> Result<String, ManifestError> {
    let Some(text) = given else {
        return Ok(DEFAULT_WAIT_TIMEOUT.into());
    };
    match crate::manifest::duration_ms(&text) {
        Some(ms) if ms >= 1.0 && ms <= f64::from(i32::MAX) => Ok(text.trim().to_string()),
        _ => Err(ManifestError::InvalidValue {
            path: "options.wait_timeout".into(),
            reason: format!("\"{text}\" is not a duration of at least 1ms such as \"30s\" or \"10min\""),
        }),
    }
}

/// The strings of an optional list, none of them blank; `path` is the list's.
fn non_empty(list: Option<Vec<String>>, path: &str) -> Result<Vec<String>, ManifestError> {
    let list = list.unwrap_or_default();
    if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
        return Err(ManifestError::Empty {
            path: format!("{path}[{i}]"),
        });
    }
    Ok(list)
}

/// "ignore", "warn" or "refuse" (absent: `default`).
fn policy(given: Option<String>, default: DriftPolicy, path: &str) -> Result<DriftPolicy, ManifestError> {
    match given.as_deref() {
        None => Ok(default),
        Some("ignore") => Ok(DriftPolicy::Ignore),
        Some("warn") => Ok(DriftPolicy::Warn),
        Some("refuse") => Ok(DriftPolicy::Refuse),
        Some(other) => Err(ManifestError::InvalidValue {
            path: path.into(),
            reason: format!("\"{other}\" is not one of \"ignore\", \"warn\", \"refuse\""),
        }),
    }
}

impl ApplyOptions {
    pub fn from_value(value: &Value) -> Result<ApplyOptions, ManifestError> {
        if value.is_null() {
            return Ok(ApplyOptions::default());
        }
        let doc: ApplyOptionsDocument = read(value, "options")?;
        let defaults = ApplyOptions::default();
        Ok(ApplyOptions {
            wait: doc.wait.unwrap_or(defaults.wait),
            wait_timeout: wait_timeout(doc.wait_timeout)?,
            allow_downgrade: doc.allow_downgrade.unwrap_or(defaults.allow_downgrade),
            accept_changed: non_empty(doc.accept_changed, "options.accept_changed")?,
            reason: doc.reason,
            drift: policy(doc.drift, defaults.drift, "options.drift")?,
            downstream: policy(doc.downstream, defaults.downstream, "options.downstream")?,
            phases: match doc.phases.as_deref() {
                None | Some("declared") => PhasePlacement::Declared,
                Some("auto") => PhasePlacement::Auto,
                Some(other) => {
                    return Err(ManifestError::InvalidValue {
                        path: "options.phases".into(),
                        reason: format!("\"{other}\" is not one of \"declared\", \"auto\""),
                    })
                }
            },
            wait_for_phase: doc.wait_for_phase.unwrap_or(defaults.wait_for_phase),
            through: match doc.through {
                Some(id) if id.trim().is_empty() => {
                    return Err(ManifestError::Empty {
                        path: "options.through".into(),
                    })
                }
                other => other,
            },
        })
    }
}

/// Options of `deploy.plan(manifest, options)`: apply's, plus `execute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub apply: ApplyOptions,
    /// Run the pending changes in a subtransaction that is rolled back, as proof
    /// that they run (default false: the plan alone has no effect; skipped when
    /// anything is refused or acts outside the transaction).
    pub execute: bool,
}

impl PlanOptions {
    pub fn from_value(value: &Value) -> Result<PlanOptions, ManifestError> {
        let mut rest = value.clone();
        let execute = match rest.as_object_mut().and_then(|o| o.remove("execute")) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(ManifestError::WrongType {
                    path: "options.execute".into(),
                    expected: "a boolean",
                    found: crate::json::type_name(&other),
                })
            }
        };
        Ok(PlanOptions {
            apply: ApplyOptions::from_value(&rest)?,
            execute,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_object_gives_defaults() {
        assert_eq!(ApplyOptions::from_value(&json!({})).unwrap(), ApplyOptions::default());
        assert_eq!(ApplyOptions::from_value(&Value::Null).unwrap(), ApplyOptions::default());
    }

    #[test]
    fn reads_every_option() {
        let o = ApplyOptions::from_value(&json!({
            "wait": false, "allow_downgrade": true, "accept_changed": ["a"], "reason": "typo"
        }))
        .unwrap();
        assert!(!o.wait && o.allow_downgrade);
        assert_eq!(o.accept_changed, vec!["a".to_string()]);
        assert_eq!(o.reason.as_deref(), Some("typo"));
    }

    #[test]
    fn plan_options_add_execute() {
        let o = PlanOptions::from_value(&json!({"execute": false, "allow_downgrade": true})).unwrap();
        assert!(!o.execute && o.apply.allow_downgrade);
        assert!(
            !PlanOptions::from_value(&json!({})).unwrap().execute,
            "the trial run is asked for"
        );
        assert_eq!(
            PlanOptions::from_value(&json!({"execute": 1})).unwrap_err().path(),
            "options.execute"
        );
        assert_eq!(
            PlanOptions::from_value(&json!({"exectue": true})).unwrap_err().path(),
            "options.exectue"
        );
    }

    #[test]
    fn baseline_options_resolve_to_indexes() {
        let m = crate::Manifest::from_value(&json!({"project": "p", "version": "1.0.0", "changes": [
            {"id": "a", "sql": "SELECT 1"}, {"id": "b", "sql": "SELECT 2"}, {"id": "c", "sql": "SELECT 3"}]}))
        .unwrap();
        let (_, through) = BaselineOptions::from_value(&json!({"through": "b"}), &m).unwrap();
        assert_eq!(through, vec![0, 1]);
        let (o, listed) = BaselineOptions::from_value(&json!({"changes": ["c", "a", "c"], "reason": "x"}), &m).unwrap();
        assert_eq!(listed, vec![0, 2]);
        assert_eq!(o.reason.as_deref(), Some("x"));
        let e = BaselineOptions::from_value(&json!({"through": "z"}), &m).unwrap_err();
        assert_eq!((e.path(), e.sqlstate().code()), ("options.through", "22023"));
        let e = BaselineOptions::from_value(&json!({"changes": ["a", "q"]}), &m).unwrap_err();
        assert_eq!(e.path(), "options.changes[1]");
        assert!(BaselineOptions::from_value(&json!({}), &m).is_err());
        assert!(BaselineOptions::from_value(&json!({"through": "a", "changes": ["a"]}), &m).is_err());
    }

    #[test]
    fn errors_name_the_option_at_fault() {
        let message = |v: Value| ApplyOptions::from_value(&v).unwrap_err().to_string();
        assert_eq!(
            message(json!({"wait": "yes"})),
            "options.wait: expected a boolean, found a string"
        );
        assert_eq!(
            message(json!({"accept_changed": ["a", " "]})),
            "options.accept_changed[1]: must not be empty"
        );
        assert_eq!(
            message(json!({"drift": "sometimes"})),
            "options.drift: \"sometimes\" is not one of \"ignore\", \"warn\", \"refuse\""
        );
        assert_eq!(message(json!([])), "options: expected an object, found an array");
        assert_eq!(
            message(json!({"phases": "always"})),
            "options.phases: \"always\" is not one of \"declared\", \"auto\""
        );
        assert_eq!(message(json!({"through": " "})), "options.through: must not be empty");
        assert_eq!(
            message(json!({"wait_for_phase": 1})),
            "options.wait_for_phase: expected a boolean, found a number"
        );
        let o = ApplyOptions::from_value(&json!({"phases": "auto", "through": "x", "wait_for_phase": true})).unwrap();
        assert_eq!(
            (o.phases, o.through.as_deref(), o.wait_for_phase),
            (PhasePlacement::Auto, Some("x"), true)
        );
        assert_eq!(
            ApplyOptions::from_value(&json!({"wait": null, "drift": "refuse"}))
                .unwrap()
                .drift,
            DriftPolicy::Refuse
        );
        let e = RevertOptions::from_value(&json!({"allow": ["data_loss", "x"]})).unwrap_err();
        assert_eq!(e.to_string(), "options.allow[1]: unknown hazard \"x\"");
        let e = RevertOptions::from_value(&json!({"alow": []})).unwrap_err();
        assert_eq!(e.hint().as_deref(), Some("Did you mean \"allow\"?"));
    }

    #[test]
    fn the_wait_for_another_deployment_is_bounded() {
        assert_eq!(ApplyOptions::from_value(&json!({})).unwrap().wait_timeout, "5min");
        assert_eq!(
            ApplyOptions::from_value(&json!({"wait_timeout": "30s"}))
                .unwrap()
                .wait_timeout,
            "30s"
        );
        for bad in ["0", "forever", "-1s"] {
            let e = ApplyOptions::from_value(&json!({"wait_timeout": bad})).unwrap_err();
            assert_eq!(e.path(), "options.wait_timeout", "{bad}");
        }
    }

    #[test]
    fn rejects_typos_with_a_suggestion() {
        let err = ApplyOptions::from_value(&json!({"wiat": false})).unwrap_err();
        assert_eq!(err.path(), "options.wiat");
        assert_eq!(err.hint().as_deref(), Some("Did you mean \"wait\"?"));
    }
}

/// Options of `deploy.baseline(manifest, options)`: which changes to record
/// as applied without running them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineSelection {
    /// Every change up to and including this id.
    Through(String),
    /// Exactly these ids.
    Changes(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineOptions {
    pub selection: BaselineSelection,
    pub reason: Option<String>,
}

/// The options object of `deploy.baseline` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineOptionsDocument {
    through: Option<String>,
    changes: Option<Vec<String>>,
    reason: Option<String>,
}

impl BaselineOptions {
    /// Reads the options and resolves them to manifest indexes.
    pub fn from_value(
        value: &Value,
        manifest: &crate::Manifest,
    ) -> Result<(BaselineOptions, Vec<usize>), ManifestError> {
        let doc: BaselineOptionsDocument = read(value, "options")?;
        let index_of = |id: &str, path: String| {
            manifest
                .changes
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| ManifestError::InvalidValue {
                    path,
                    reason: format!("\"{id}\" is not a change of this manifest"),
                })
        };
        let (selection, indexes) = match (doc.through, doc.changes) {
            (Some(through), None) => {
                let last = index_of(&through, "options.through".into())?;
                (BaselineSelection::Through(through), (0..=last).collect())
            }
            (None, Some(ids)) => {
                let ids = non_empty(Some(ids), "options.changes")?;
                let mut indexes = Vec::with_capacity(ids.len());
                for (i, id) in ids.iter().enumerate() {
                    indexes.push(index_of(id, format!("options.changes[{i}]"))?);
                }
                indexes.sort_unstable();
                indexes.dedup();
                (BaselineSelection::Changes(ids), indexes)
            }
            _ => {
                return Err(ManifestError::InvalidValue {
                    path: "options".into(),
                    reason: "give exactly one of \"through\" (a change id) or \"changes\" (a list of ids)".into(),
                })
            }
        };
        Ok((
            BaselineOptions {
                selection,
                reason: doc.reason,
            },
            indexes,
        ))
    }
}

/// Options of `deploy.revert(project, to_version, options)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevertOptions {
    pub wait: Option<bool>,
    /// How long to wait for a concurrent deployment of the project (default 5min).
    pub wait_timeout: Option<String>,
    /// Hazards the revert SQL may have (reverts usually drop things).
    pub allow: Vec<crate::hazards::HazardKind>,
    pub reason: Option<String>,
}

/// The options object of `deploy.revert` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevertOptionsDocument {
    wait: Option<bool>,
    wait_timeout: Option<String>,
    allow: Option<Vec<String>>,
    reason: Option<String>,
}

impl RevertOptions {
    pub fn from_value(value: &Value) -> Result<RevertOptions, ManifestError> {
        if value.is_null() {
            return Ok(RevertOptions::default());
        }
        let doc: RevertOptionsDocument = read(value, "options")?;
        let mut allow = Vec::new();
        for (i, name) in non_empty(doc.allow, "options.allow")?.iter().enumerate() {
            allow.push(
                crate::hazards::HazardKind::parse(name).ok_or_else(|| ManifestError::InvalidValue {
                    path: format!("options.allow[{i}]"),
                    reason: format!("unknown hazard \"{name}\""),
                })?,
            );
        }
        Ok(RevertOptions {
            wait: doc.wait,
            wait_timeout: doc.wait_timeout.map(|t| wait_timeout(Some(t))).transpose()?,
            allow,
            reason: doc.reason,
        })
    }
}
