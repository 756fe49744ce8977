//! Human-readable renderings of the extension's reports, read into the typed
//! contract of `pg_deploy_core::report`. `--json` prints the server's JSON
//! itself instead.

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
        out.push_str(&format!("  warning: {w}\n"));
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
    let mut out = format!(
        "{} {} (deployed: {}): {}\n",
        r.project,
        r.version,
        or_none(r.previous_version.as_deref()),
        word(serde_json::to_value(r.outcome))
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
            }
        }
        if let Some(o) = &c.objection {
            out.push_str(&format!("          refused: ERROR {}: {}\n", o.sqlstate, o.message));
        }
    }
    if skipped > 0 {
        out.push_str(&format!("  skip    {skipped} change(s) already applied\n"));
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
                match r.drifted {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "none".into(),
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
        .map(|x| vec![x.change.clone(), x.kind.clone(), x.name.clone()])
        .collect();
    out.push_str(&table(Some(&["CHANGE", "KIND", "NAME"]), rows, "  "));
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
mod tests {
    use super::*;
    use serde_json::json;

    fn read_apply(v: Value) -> ApplyReport {
        read("apply", &v, serde_json::from_value::<ApplyReport>).expect("an apply report")
    }

    fn read_plan(v: Value) -> PlanReport {
        read("plan", &v, serde_json::from_value::<PlanReport>).expect("a plan report")
    }

    /// A plan report with nothing to do, to vary.
    fn plan_json() -> Value {
        json!({"project": "p", "version": "0.2.0", "previous_version": "0.1.0", "outcome": "no-op",
            "changes": [], "warnings": [], "execution": {"executed": false, "reason": "nothing to run"},
            "duration_ms": 0.5})
    }

    fn read_drift(v: Value) -> Vec<DriftRow> {
        read("drift", &v, serde_json::from_value::<Vec<DriftRow>>).expect("drift rows")
    }

    fn read_status(v: Value) -> Vec<StatusRow> {
        read("status", &v, serde_json::from_value::<Vec<StatusRow>>).expect("status rows")
    }

    fn read_verify_log(v: Value) -> Vec<VerifyLogRow> {
        read("verify-log", &v, serde_json::from_value::<Vec<VerifyLogRow>>).expect("verify-log rows")
    }

    #[test]
    fn apply_report() {
        let r = read_apply(
            json!({"project": "shop", "version": "1.0.0", "previous_version": null, "outcome": "applied",
            "deployment_id": 1, "manifest_sha256": "sha256:x",
            "applied": [{"id": "a", "kind": "versioned", "statements": 2, "lock_retries": 0, "duration_ms": 0.5}],
            "rerun": [], "skipped": ["b"], "accepted": [], "warnings": ["w"], "duration_ms": 3.1}),
        );
        let text = apply(&r);
        assert!(
            text.starts_with("shop 1.0.0 (was none): applied, deployment 1, 3.1 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("  applied  a  versioned, 2 statement(s), 0.5 ms\n"),
            "{text}"
        );
        assert!(text.contains("  skipped 1 change(s) already applied\n"), "{text}");
        assert!(text.contains("warning: w"));
    }

    #[test]
    fn apply_report_reruns_accepts_and_whole_milliseconds() {
        let r = read_apply(
            json!({"project": "shop", "version": "1.1.0", "previous_version": "1.0.0",
            "outcome": "no-op", "deployment_id": 9, "manifest_sha256": "sha256:y", "applied": [],
            "rerun": [{"id": "R__v", "kind": "repeatable", "statements": 1, "lock_retries": 2, "duration_ms": 4.0}],
            "skipped": [], "accepted": ["c"], "warnings": [], "duration_ms": 2.0}),
        );
        assert_eq!(
            apply(&r),
            "shop 1.1.0 (was 1.0.0): no-op, deployment 9, 2.0 ms\n  re-ran    R__v  4.0 ms\n  accepted  c\n"
        );
    }

    #[test]
    fn plan_report_and_verdict() {
        let r = read_plan(
            json!({"project": "p", "version": "0.2.0", "previous_version": "0.1.0", "outcome": "would apply",
            "changes": [{"id": "a", "kind": "versioned", "action": "skip"},
                        {"id": "b", "kind": "versioned", "action": "apply",
                         "statements": [{"line": 1, "column": 1, "kind": "CREATE TABLE", "locks": [], "hazards": []}], "objection": null}],
            "warnings": [], "execution": {"executed": true, "ok": true, "rolled_back": true, "duration_ms": 1.0},
            "duration_ms": 2.0}),
        );
        let text = plan(&r);
        assert!(text.contains("  apply   b (versioned)"), "{text}");
        assert!(text.contains("skip    1 change(s)"));
        assert!(text.contains("trial run: ok"));
        assert!(!plan_failed(&r));
        let mut refused = plan_json();
        refused["outcome"] = json!("refused");
        assert!(plan_failed(&read_plan(refused)));
        let mut failed = plan_json();
        failed["outcome"] = json!("would apply");
        failed["execution"] = json!({"executed": true, "ok": false});
        assert!(plan_failed(&read_plan(failed)));
    }

    #[test]
    fn plan_report_locks_hazards_objection_and_failed_trial_run() {
        let r = read_plan(
            json!({"project": "p", "version": "0.3.0", "previous_version": null, "outcome": "refused",
            "changes": [{"id": "c", "kind": "versioned", "action": "refuse",
                         "settings": {"search_path": "public", "lock_timeout": "1s", "statement_timeout": "0",
                                      "lock_retries": 0, "allow": []},
                         "statements": [{"line": 3, "column": 5, "kind": "ALTER TABLE",
                                         "locks": [{"table": "public.t", "mode": "AccessExclusiveLock"}],
                                         "hazards": [{"kind": "rewrite", "table": "public.t", "rows": 1e6, "bytes": null,
                                                      "big": true, "allowed": false, "refused": true, "reason": "rewrites t"},
                                                     {"kind": "lock", "table": null, "rows": null, "bytes": null,
                                                      "big": false, "allowed": true, "refused": false, "reason": "waits"}],
                                         "refusal": {"sqlstate": "55000", "reason": "rewrites t", "hint": "allow it"}}],
                         "objection": {"sqlstate": "55000", "message": "change c would rewrite t"}}],
            "warnings": ["careful"],
            "execution": {"executed": true, "ok": false, "rolled_back": true, "change": "c", "sqlstate": "42P01",
                          "message": "relation \"t\" does not exist", "line": 3, "column": 5, "duration_ms": 0.25},
            "duration_ms": 1.5}),
        );
        assert_eq!(
            plan(&r),
            "p 0.3.0 (deployed: none): refused\n\
             \x20 refuse  c (versioned)\n\
             \x20         line 3: ALTER TABLE [AccessExclusiveLock on public.t]\n\
             \x20           hazard rewrite (REFUSED): rewrites t\n\
             \x20           hazard lock (allowed): waits\n\
             \x20         refused: ERROR 55000: change c would rewrite t\n\
             \x20 trial run FAILED: change c: ERROR 42P01: relation \"t\" does not exist\n\
             \x20 warning: careful\n"
        );
        assert!(plan_failed(&r));
        assert!(plan(&read_plan(plan_json())).contains("  trial run: not executed\n"));
    }

    #[test]
    fn an_unexpected_report_is_refused_not_a_panic() {
        // A report of another shape: a field missing, a wrong type, an unknown outcome, NULL.
        for answer in [
            json!({"project": "shop", "version": "1.0.0"}),
            json!({"project": "shop", "version": 1, "previous_version": null, "outcome": "applied"}),
            json!(null),
        ] {
            let e = read("apply", &answer, serde_json::from_value::<ApplyReport>).expect_err("not an apply report");
            assert_eq!(e.exit_code(), crate::error::EXIT_FAILED, "{e}");
            assert_eq!(e.to_json()["error"]["kind"], "refused");
            let text = e.to_string();
            assert!(
                text.starts_with("refused: apply: the server's answer is not the report this pg-deploy reads: "),
                "{text}"
            );
            assert!(text.contains("The apply itself went through"), "{text}");
        }
        let mut odd = plan_json();
        odd["outcome"] = json!("maybe");
        let e = read("plan", &odd, serde_json::from_value::<PlanReport>).expect_err("unknown outcome");
        assert!(e.to_string().contains("unknown variant `maybe`"), "{e}");
        assert!(!e.to_string().contains("went through"), "{e}");
        // Rows where an object was expected, and the other way round.
        assert!(read(
            "status",
            &json!({"project": "p"}),
            serde_json::from_value::<Vec<StatusRow>>
        )
        .is_err());
        assert!(read(
            "drift",
            &json!([{"change": "added"}]),
            serde_json::from_value::<Vec<DriftRow>>
        )
        .is_err());
        assert!(read(
            "verify-log",
            &json!([{"project": "a"}]),
            serde_json::from_value::<Vec<VerifyLogRow>>
        )
        .is_err());
    }

    #[test]
    fn revert_report() {
        let r = read(
            "revert",
            &json!({"project": "shop", "version": "0.1.0", "previous_version": "0.3.0", "outcome": "revert",
                    "deployment_id": 5, "reverted": [{"id": "3_c", "action": "reverted", "duration_ms": 0.1},
                                                     {"id": "R__v", "action": "rerun", "duration_ms": 0.2}],
                    "duration_ms": 1.0}),
            serde_json::from_value::<RevertReport>,
        )
        .expect("a revert report");
        assert_eq!(
            revert(&r),
            "shop: reverted from 0.3.0 to 0.1.0 (2 step(s), 1.0 ms)\n  undid 3_c\n  restored R__v\n"
        );
    }

    #[test]
    fn drift_rows() {
        assert!(drift(&read_drift(json!([]))).starts_with("no drift"));
        assert!(!drift_found(&read_drift(json!([]))));
        let rows = read_drift(json!([{"change": "added", "kind": "table", "name": "shop.extra"}]));
        assert_eq!(
            drift(&rows),
            "drift: 1 object(s) differ from the last deployment\n  CHANGE  KIND   NAME\n  added   table  shop.extra\n"
        );
        assert!(drift_found(&rows));
    }

    #[test]
    fn status_rows() {
        assert_eq!(status(&read_status(json!([]))), "no projects deployed\n");
        let text = status(&read_status(json!([
            {"project": "p", "version": "1.0.0", "changes_applied": 3, "deployments": 1, "last_deployment_id": 1,
             "last_outcome": "applied", "last_deployed_at": "2024-01-01T00:00:00+00:00", "last_deployed_by": "ci",
             "last_duration_ms": 2.5, "drifted": false},
            {"project": "longer-name", "version": "0.12.0", "changes_applied": 12, "deployments": 30,
             "last_deployment_id": 40, "last_outcome": "no-op", "drifted": true}
        ])));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("PROJECT      VERSION  CHANGES  DEPLOYMENTS  LAST"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("p            1.0.0    3        1            #1"),
            "{text}"
        );
        assert!(lines[1].ends_with("ci    2.5   no"), "{text}");
        assert!(lines[2].ends_with("yes"), "{text}");
        assert!(text.lines().all(|l| !l.ends_with(' ')), "no trailing spaces: {text:?}");
    }

    #[test]
    fn a_status_row_as_to_jsonb_writes_it() {
        // Every column present, NULLs included, inet and text[] as JSON.
        let rows = read_status(json!([
            {"project": "shop", "version": "0.4.0", "changes_applied": 4, "deployments": 2, "last_deployment_id": 2,
             "last_outcome": "no-op", "last_deployed_at": "2024-05-01T12:00:00.123456+00:00",
             "last_deployed_by": "deployer", "last_application_name": "pg-deploy", "last_client_addr": "127.0.0.1",
             "last_duration_ms": 1.2, "managed_schemas": ["shop"], "drifted": false},
            {"project": "new", "version": null, "changes_applied": 0, "deployments": 0, "last_deployment_id": null,
             "last_outcome": null, "last_deployed_at": null, "last_deployed_by": null, "last_application_name": null,
             "last_client_addr": null, "last_duration_ms": null, "managed_schemas": null, "drifted": null}
        ]));
        assert_eq!(rows[0].managed_schemas.as_deref(), Some(&["shop".to_string()][..]));
        assert_eq!(rows[0].last_client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            status(&rows),
            "PROJECT  VERSION  CHANGES  DEPLOYMENTS  LAST   OUTCOME  DEPLOYED AT                       BY        MS    DRIFTED\n\
             shop     0.4.0    4        2            #2     no-op    2024-05-01T12:00:00.123456+00:00  deployer  1.2   no\n\
             new      none     0        0            #none  none     none                              none      none  none\n"
        );
    }

    #[test]
    fn verify_log_and_baseline_tables() {
        assert_eq!(verify_log(&read_verify_log(json!([]))), "no deployments\n");
        let rows = read_verify_log(json!([
            {"project": "a", "deployments": 2, "intact": true},
            {"project": "b", "deployments": 3, "intact": false, "first_broken_id": 7, "problem": "row hash"}
        ]));
        let text = verify_log(&rows);
        assert_eq!(
            text,
            "PROJECT  DEPLOYMENTS  LOG\na        2            log intact\nb        3            BROKEN at deployment 7: row hash\n"
        );
        assert!(log_broken(&rows));
        assert!(!log_broken(&rows[..1]));
        let r = read(
            "baseline",
            &json!({"project": "p", "version": "0.2.0", "previous_version": null, "outcome": "baseline",
            "deployment_id": 1, "baselined": ["1_a", "2_b"], "skipped": ["0_z"], "duration_ms": 0.75}),
            serde_json::from_value::<BaselineReport>,
        )
        .expect("a baseline report");
        let text = baseline(&r);
        assert!(text.contains("recorded 2 change(s)"), "{text}");
        assert!(text.contains("  baselined 1_a\n"), "{text}");
        assert!(text.contains("  skipped 1 change(s) already recorded\n"), "{text}");
    }
}
