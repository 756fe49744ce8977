//! Human-readable renderings of the extension's reports, read into the typed
//! contract of `pg_deploy_core::report`. `--json` prints the server's JSON
//! itself instead.

pub mod lineage;

use crate::error::CliError;
use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use pg_deploy_core::report::{
    ApplyReport, BaselineReport, DriftRow, PlanOutcome, PlanReport, RevertReport, StatusRow, VerifyLogRow,
};
use serde_json::Value;
use std::fmt::Display;

/// Reads the server's answer into the type this client renders (`parse` is
/// e.g. `serde_json::from_value::<ApplyReport>`). An answer of another shape
/// (an extension of another release, say) is refused (exit 1), never a panic.
pub fn read<T>(
    context: &str,
    answer: &Value,
    parse: impl FnOnce(Value) -> serde_json::Result<T>,
) -> Result<T, CliError> {
    parse(answer.clone()).map_err(|e| {
        let done = if matches!(context, "apply" | "baseline" | "revert") {
            format!("The {context} itself went through; `pg-deploy status` shows the result. ")
        } else {
            String::new()
        };
        CliError::Refused {
            message: format!("{context}: the server's answer is not the report this pg-deploy reads: {e}"),
            hint: Some(format!(
                "{done}pg-deploy {} and the pg_deploy installed in this database may be different releases \
                 (SELECT extversion FROM pg_extension WHERE extname = 'pg_deploy'); use the same release of both.",
                env!("CARGO_PKG_VERSION")
            )),
        }
    })
}

/// A table without borders: columns two spaces apart, an optional header
/// row, no trailing spaces, every line indented by `indent`.
pub fn table(header: Option<&[&str]>, rows: Vec<Vec<String>>, indent: &str) -> String {
    if rows.is_empty() && header.is_none() {
        return String::new();
    }
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if let Some(h) = header {
        t.set_header(h.to_vec());
    }
    for row in rows {
        t.add_row(row);
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t.trim_fmt().lines().map(|l| format!("{indent}{l}\n")).collect()
}

/// A number as the JSON report writes it (`1.0`, `3.25`), so the text and
/// `--json` agree.
fn num(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| x.to_string(), |n| n.to_string())
}

/// A value, or `none` for NULL.
fn or_none<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".into(), |x| x.to_string())
}

/// A milliseconds value, or `none` for NULL.
fn ms_or_none(v: Option<f64>) -> String {
    v.map_or_else(|| "none".into(), num)
}

/// An outcome as its report word (`no-op`, `would apply`, …).
fn word(v: serde_json::Result<Value>) -> String {
    match v {
        Ok(Value::String(t)) => t,
        Ok(other) => other.to_string(),
        Err(e) => e.to_string(),
    }
}

fn warnings(list: &[String], out: &mut String) {
    for w in list {
        out.push_str(&format!("  warning: {}\n", crate::hints::in_client_terms(w)));
    }
}

/// deploy.apply's report.
pub fn apply(r: &ApplyReport) -> String {
    let mut out = format!(
        "{} {} (was {}): {}, deployment {}, {} ms\n",
        r.project,
        r.version,
        or_none(r.previous_version.as_deref()),
        word(serde_json::to_value(r.outcome)),
        r.deployment_id,
        num(r.duration_ms)
    );
    let mut rows = Vec::new();
    for c in &r.applied {
        rows.push(vec![
            "applied".into(),
            c.id.clone(),
            format!("{}, {} statement(s), {} ms", c.kind, c.statements, num(c.duration_ms)),
        ]);
    }
    for c in &r.rerun {
        rows.push(vec![
            "re-ran".into(),
            c.id.clone(),
            format!("{} ms", num(c.duration_ms)),
        ]);
    }
    for id in &r.accepted {
        rows.push(vec!["accepted".into(), id.clone(), String::new()]);
    }
    out.push_str(&table(None, rows, "  "));
    if !r.skipped.is_empty() {
        out.push_str(&format!("  skipped {} change(s) already applied\n", r.skipped.len()));
    }
    warnings(&r.warnings, &mut out);
    out
}

/// deploy.plan's report.
pub fn plan(r: &PlanReport) -> String {
    // A plan whose trial run failed would not apply, whatever the static plan says.
    let outcome = if r.execution.failed() && r.outcome != PlanOutcome::Refused {
        "would fail (the trial run failed)".to_string()
    } else {
        word(serde_json::to_value(r.outcome))
    };
    let mut out = format!(
        "{} {} (deployed: {}): {outcome}\n",
        r.project,
        r.version,
        or_none(r.previous_version.as_deref()),
    );
    let mut skipped = 0;
    for c in &r.changes {
        let action = &c.action;
        if action == "skip" {
            skipped += 1;
            continue;
        }
        out.push_str(&format!("  {action:<7} {} ({})\n", c.id, c.kind));
        for st in c.statements.iter().flatten() {
            let locks: Vec<String> = st.locks.iter().map(|l| format!("{} on {}", l.mode, l.table)).collect();
            out.push_str(&format!("          line {}: {}", st.line, st.kind));
            if !locks.is_empty() {
                out.push_str(&format!(" [{}]", locks.join(", ")));
            }
            out.push('\n');
            for h in &st.hazards {
                let verdict = if h.refused {
                    "REFUSED"
                } else if h.allowed {
                    "allowed"
                } else {
                    "ok"
                };
                out.push_str(&format!("            hazard {} ({verdict}): {}\n", h.kind, h.reason));
                if h.refused && !h.hint.is_empty() {
                    out.push_str(&format!("              way out: {}\n", h.hint));
                }
            }
        }
        if let Some(o) = &c.objection {
            out.push_str(&format!("          refused: ERROR {}: {}\n", o.sqlstate, o.message));
        }
    }
    if skipped > 0 {
        out.push_str(&format!("  skip    {skipped} change(s) already applied\n"));
    }
    // Only the locks other changes run under: the rest end with their statement's work.
    for held in r.locks_held.iter().filter(|h| !h.held_during.is_empty()) {
        out.push_str(&format!(
            "  held until commit (step {}): {} on {}{} from change {} line {}, during {}\n",
            held.step,
            held.mode,
            held.table,
            match (&held.busy, held.big) {
                (Some(busy), _) => format!(" (busy: {busy})"),
                (None, true) => " (big)".to_string(),
                (None, false) => String::new(),
            },
            held.change,
            held.line,
            held.held_during.join(", ")
        ));
    }
    let e = &r.execution;
    if e.executed {
        if e.ok == Some(true) {
            out.push_str(&format!(
                "  trial run: ok, rolled back ({} ms)\n",
                ms_or_none(e.duration_ms)
            ));
        } else {
            out.push_str(&format!(
                "  trial run FAILED: change {}: ERROR {}: {}\n",
                or_none(e.change.as_deref()),
                or_none(e.sqlstate.as_deref()),
                or_none(e.message.as_deref())
            ));
        }
    } else {
        out.push_str("  trial run: not executed\n");
    }
    warnings(&r.warnings, &mut out);
    out
}

/// Whether a plan says apply would not go through (exit 1).
pub fn plan_failed(r: &PlanReport) -> bool {
    r.outcome == PlanOutcome::Refused || r.execution.failed()
}

/// deploy.status() rows.
pub fn status(rows: &[StatusRow]) -> String {
    if rows.is_empty() {
        return "no projects deployed\n".into();
    }
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                r.project.clone(),
                or_none(r.version.as_deref()),
                r.changes_applied.to_string(),
                r.deployments.to_string(),
                format!("#{}", or_none(r.last_deployment_id)),
                or_none(r.last_outcome.as_deref()),
                or_none(r.last_deployed_at.as_deref()),
                or_none(r.last_deployed_by.as_deref()),
                ms_or_none(r.last_duration_ms),
                match (r.drifted, &r.drifted_by) {
                    (Some(true), Some(by)) => format!("yes, by {by}"),
                    (Some(true), None) => "yes".into(),
                    (Some(false), _) => "no".into(),
                    (None, _) => "none".into(),
                },
            ]
        })
        .collect();
    table(Some(&STATUS_HEADER), rows, "")
}

/// The columns of `pg-deploy status`.
const STATUS_HEADER: [&str; 10] = [
    "PROJECT",
    "VERSION",
    "CHANGES",
    "DEPLOYMENTS",
    "LAST",
    "OUTCOME",
    "DEPLOYED AT",
    "BY",
    "MS",
    "DRIFTED",
];

/// deploy.baseline's report.
pub fn baseline(r: &BaselineReport) -> String {
    let mut out = format!(
        "{} {} (was {}): baseline, deployment {}: recorded {} change(s) as applied without running them\n",
        r.project,
        r.version,
        or_none(r.previous_version.as_deref()),
        r.deployment_id,
        r.baselined.len()
    );
    for id in &r.baselined {
        out.push_str(&format!("  baselined {id}\n"));
    }
    if !r.skipped.is_empty() {
        out.push_str(&format!("  skipped {} change(s) already recorded\n", r.skipped.len()));
    }
    out
}

/// deploy.drift(project) rows: objects added, removed or changed since the
/// project's last deployment.
pub fn drift(rows: &[DriftRow]) -> String {
    if rows.is_empty() {
        return "no drift: the objects match the last deployment\n".into();
    }
    let mut out = format!("drift: {} object(s) differ from the last deployment\n", rows.len());
    let rows = rows
        .iter()
        .map(|x| {
            let by = match (&x.changed_by, &x.application_name) {
                (None, _) => "not recorded".to_string(),
                (Some(role), Some(app)) if !app.is_empty() => format!("{role} ({app})"),
                (Some(role), _) => role.clone(),
            };
            vec![
                x.change.clone(),
                x.kind.clone(),
                x.name.clone(),
                by,
                x.changed_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(Some(&["CHANGE", "KIND", "NAME", "BY", "AT"]), rows, "  "));
    out
}

/// Whether drift was found (exit 1).
pub fn drift_found(rows: &[DriftRow]) -> bool {
    !rows.is_empty()
}

/// deploy.revert's report.
pub fn revert(r: &RevertReport) -> String {
    let steps: Vec<String> = r
        .reverted
        .iter()
        .map(|e| {
            let verb = if e.action == "rerun" { "restored" } else { "undid" };
            format!("  {verb} {}\n", e.id)
        })
        .collect();
    format!(
        "{}: reverted from {} to {} ({} step(s), {} ms)\n{}",
        r.project,
        r.previous_version,
        r.version,
        steps.len(),
        num(r.duration_ms),
        steps.concat()
    )
}

/// deploy.verify_log() rows.
pub fn verify_log(rows: &[VerifyLogRow]) -> String {
    if rows.is_empty() {
        return "no deployments\n".into();
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let verdict = if row.intact {
                "log intact".to_string()
            } else {
                format!(
                    "BROKEN at deployment {}: {}",
                    or_none(row.first_broken_id),
                    or_none(row.problem.as_deref())
                )
            };
            vec![row.project.clone(), row.deployments.to_string(), verdict]
        })
        .collect();
    table(Some(&["PROJECT", "DEPLOYMENTS", "LOG"]), rows, "")
}

/// Whether any project's log is broken.
pub fn log_broken(rows: &[VerifyLogRow]) -> bool {
    rows.iter().any(|row| !row.intact)
}

#[cfg(test)]
mod tests;
