//! `pg-deploy status` over a fleet: every target's projects in one table,
//! with the outliers flagged: a version other than the majority's, drift, a
//! failed or unfinished deployment, a project the others have and this
//! target lacks, a target that could not be reached.

use super::report::one_line;
use crate::error::{CliError, EXIT_CANNOT_CONNECT, EXIT_FAILED};
use crate::output::table;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The columns of deploy.status() the fleet view reads (others are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ProjectRow {
    pub project: String,
    pub version: Option<String>,
    pub last_deployment_id: Option<i64>,
    pub last_outcome: Option<String>,
    pub drifted: Option<bool>,
    #[serde(default)]
    pub phase_state: Option<String>,
    #[serde(default)]
    pub phase_error: Option<String>,
}

/// One target's answer: its projects, or why it could not be read.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub target: String,
    pub result: Result<Vec<ProjectRow>, CliError>,
}

/// A line of the fleet's status table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub target: String,
    pub project: Option<String>,
    pub version: Option<String>,
    pub last_deployment_id: Option<i64>,
    pub last_outcome: Option<String>,
    pub drifted: Option<bool>,
    pub phase_state: Option<String>,
    /// What makes this line an outlier; empty when nothing does.
    pub flags: Vec<String>,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub exit_code: i32,
}

/// The most common version of each project, when one version has more
/// targets than any other (a tie has no majority).
pub fn majorities(all: &[TargetStatus]) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for t in all {
        for p in t.result.iter().flatten() {
            let v = p.version.as_deref().unwrap_or("none");
            *counts.entry(&p.project).or_default().entry(v).or_default() += 1;
        }
    }
    let mut out = BTreeMap::new();
    for (project, versions) in counts {
        let mut ranked: Vec<(&str, usize)> = versions.into_iter().collect();
        ranked.sort_by_key(|v| std::cmp::Reverse(v.1));
        let Some(&top) = ranked.first() else { continue };
        if ranked.get(1).is_none_or(|second| second.1 < top.1) {
            out.insert(project.to_string(), top.0.to_string());
        }
    }
    out
}

/// The fleet's lines with their flags, in target order.
pub fn lines(all: &[TargetStatus]) -> Vec<Line> {
    let majority = majorities(all);
    let reachable = all.iter().filter(|t| t.result.is_ok()).count();
    // Projects most reachable targets have: lacking one is an outlier.
    let mut having: BTreeMap<&str, usize> = BTreeMap::new();
    for t in all {
        for p in t.result.iter().flatten() {
            *having.entry(&p.project).or_default() += 1;
        }
    }
    let expected: BTreeSet<&str> = having
        .iter()
        .filter(|(_, n)| **n * 2 > reachable)
        .map(|(p, _)| *p)
        .collect();
    let mut out = Vec::new();
    for t in all {
        let blank = |flags: Vec<String>| Line {
            target: t.target.clone(),
            project: None,
            version: None,
            last_deployment_id: None,
            last_outcome: None,
            drifted: None,
            phase_state: None,
            flags,
            sqlstate: None,
            error: None,
            exit_code: 0,
        };
        let rows = match &t.result {
            Ok(rows) => rows,
            Err(e) => {
                let mut l = blank(vec![if e.exit_code() == EXIT_CANNOT_CONNECT {
                    "unreachable".into()
                } else {
                    "error".into()
                }]);
                l.sqlstate = super::report::sqlstate_of(e);
                l.error = Some(one_line(&e.to_string()));
                l.exit_code = e.exit_code();
                out.push(l);
                continue;
            }
        };
        for p in rows {
            let mut flags = Vec::new();
            let v = p.version.as_deref().unwrap_or("none");
            if let Some(m) = majority.get(&p.project).filter(|m| m.as_str() != v) {
                flags.push(format!("version skew (majority {m})"));
            }
            if p.drifted == Some(true) {
                flags.push("drift".into());
            }
            match (p.phase_state.as_deref(), p.last_outcome.as_deref()) {
                (Some("failed"), _) | (_, Some("phase-failed")) => flags.push(match &p.phase_error {
                    Some(e) => format!("failed deployment ({e})"),
                    None => "failed deployment".into(),
                }),
                (Some("pending" | "running"), _) => flags.push("unfinished deployment".into()),
                _ => {}
            }
            let mut l = blank(flags);
            l.project = Some(p.project.clone());
            l.version = p.version.clone();
            l.last_deployment_id = p.last_deployment_id;
            l.last_outcome = p.last_outcome.clone();
            l.drifted = p.drifted;
            l.phase_state = p.phase_state.clone();
            out.push(l);
        }
        let mine: BTreeSet<&str> = rows.iter().map(|p| p.project.as_str()).collect();
        for missing in expected.difference(&mine) {
            let mut l = blank(vec![format!("project missing (the majority has {missing})")]);
            l.project = Some(missing.to_string());
            out.push(l);
        }
    }
    out
}

/// Exit code: 0 when nothing is flagged; 3 when only unreachable targets are; else 1.
pub fn exit_code(lines: &[Line]) -> i32 {
    let flagged: Vec<&Line> = lines.iter().filter(|l| !l.flags.is_empty()).collect();
    if flagged.is_empty() {
        0
    } else if flagged.iter().all(|l| l.exit_code == EXIT_CANNOT_CONNECT) {
        EXIT_CANNOT_CONNECT
    } else {
        EXIT_FAILED
    }
}

fn dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

pub fn text(lines: &[Line]) -> String {
    let header = [
        "TARGET", "PROJECT", "VERSION", "LAST", "OUTCOME", "DRIFTED", "PHASE", "OUTLIER",
    ];
    let rows = lines
        .iter()
        .map(|l| {
            let mut flags = l.flags.join("; ");
            if let Some(e) = &l.error {
                flags = format!("{flags}: {e}");
            }
            vec![
                l.target.clone(),
                dash(&l.project),
                dash(&l.version),
                l.last_deployment_id.map_or_else(|| "-".into(), |d| format!("#{d}")),
                dash(&l.last_outcome),
                l.drifted
                    .map_or_else(|| "-".into(), |d| if d { "yes" } else { "no" }.into()),
                dash(&l.phase_state),
                flags,
            ]
        })
        .collect();
    let targets: BTreeSet<&str> = lines.iter().map(|l| l.target.as_str()).collect();
    let odd: BTreeSet<&str> = lines
        .iter()
        .filter(|l| !l.flags.is_empty())
        .map(|l| l.target.as_str())
        .collect();
    format!(
        "{}status: {} target(s), {} with outliers\n",
        table(Some(&header), rows, ""),
        targets.len(),
        odd.len()
    )
}

pub fn json(lines: &[Line], majority: &BTreeMap<String, String>) -> Value {
    json!({
        "command": "status",
        "majority": majority,
        "rows": lines,
        "outliers": lines.iter().filter(|l| !l.flags.is_empty()).count(),
        "exit_code": exit_code(lines),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(project: &str, version: &str) -> ProjectRow {
        ProjectRow {
            project: project.into(),
            version: Some(version.into()),
            last_deployment_id: Some(1),
            last_outcome: Some("applied".into()),
            drifted: Some(false),
            phase_state: None,
            phase_error: None,
        }
    }

    fn ok(target: &str, rows: Vec<ProjectRow>) -> TargetStatus {
        TargetStatus {
            target: target.into(),
            result: Ok(rows),
        }
    }

    #[test]
    fn outliers_are_flagged() {
        let mut drifted = p("shop", "0.2.0");
        drifted.drifted = Some(true);
        let mut failed = p("shop", "0.2.0");
        failed.phase_state = Some("failed".into());
        failed.phase_error = Some("3_idx: 23505 dup".into());
        let mut pending = p("shop", "0.2.0");
        pending.phase_state = Some("running".into());
        let all = vec![
            ok("a", vec![p("shop", "0.2.0")]),
            ok("b", vec![p("shop", "0.2.0")]),
            ok("c", vec![p("shop", "0.1.0")]),
            ok("d", vec![drifted]),
            ok("e", vec![failed]),
            ok("f", vec![pending]),
            ok("g", vec![]),
            TargetStatus {
                target: "h".into(),
                result: Err(CliError::Connect {
                    message: "server h:1: connection refused, still after 0s".into(),
                    hint: Some("x".into()),
                }),
            },
        ];
        let l = lines(&all);
        let flags = |t: &str| -> Vec<String> {
            l.iter()
                .filter(|x| x.target == t)
                .flat_map(|x| x.flags.clone())
                .collect()
        };
        assert!(flags("a").is_empty());
        assert_eq!(flags("c"), ["version skew (majority 0.2.0)"]);
        assert_eq!(flags("d"), ["drift"]);
        assert_eq!(flags("e"), ["failed deployment (3_idx: 23505 dup)"]);
        assert_eq!(flags("f"), ["unfinished deployment"]);
        assert_eq!(flags("g"), ["project missing (the majority has shop)"]);
        assert_eq!(flags("h"), ["unreachable"]);
        assert_eq!(exit_code(&l), 1);
        let t = text(&l);
        assert!(t.ends_with("status: 8 target(s), 6 with outliers\n"), "{t}");
        assert!(
            t.contains("unreachable: cannot connect: server h:1: connection refused"),
            "{t}"
        );
        let j = json(&l, &majorities(&all));
        assert_eq!(j["majority"]["shop"], "0.2.0");
        assert_eq!(j["outliers"], 6);
    }

    #[test]
    fn no_majority_in_a_tie_and_clean_fleets_exit_0() {
        let all = vec![ok("a", vec![p("shop", "0.1.0")]), ok("b", vec![p("shop", "0.2.0")])];
        assert!(majorities(&all).is_empty());
        let l = lines(&all);
        assert!(l.iter().all(|x| x.flags.is_empty()));
        assert_eq!(exit_code(&l), 0);
        let down = vec![TargetStatus {
            target: "x".into(),
            result: Err(CliError::Connect {
                message: "down".into(),
                hint: None,
            }),
        }];
        assert_eq!(exit_code(&lines(&down)), 3);
    }
}
