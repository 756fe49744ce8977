//! Rendering of each report, checked line by line.
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
    let failed = read_plan(failed);
    assert!(plan_failed(&failed));
    let text = plan(&failed);
    assert!(
        text.starts_with("p 0.2.0 (deployed: 0.1.0): would fail (the trial run failed)\n"),
        "{text}"
    );
    assert!(!text.contains("would apply"), "{text}");
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
fn plan_report_shows_the_way_out_and_the_locks_held_until_commit() {
    let mut v = plan_json();
    v["changes"] = json!([{"id": "check", "kind": "versioned", "action": "refuse",
        "statements": [{"line": 1, "column": 1, "kind": "ALTER TABLE",
                        "locks": [{"table": "public.big", "mode": "ShareUpdateExclusiveLock"}],
                        "hazards": [{"kind": "lock_held_until_commit", "table": "public.big", "rows": 1e6,
                                     "bytes": 1, "big": true, "allowed": false, "refused": true,
                                     "reason": "held", "hint": "set commit_before"}]}]}]);
    v["locks_held"] = json!([
        {"step": 0, "table": "public.big", "mode": "AccessExclusiveLock", "change": "add", "line": 1,
         "held_during": ["check"], "big": true},
        {"step": 0, "table": "public.big2", "mode": "ShareLock", "change": "check", "line": 1,
         "held_during": [], "big": false},
        {"step": 0, "table": "public.users", "mode": "AccessExclusiveLock", "change": "add", "line": 2,
         "held_during": ["check"], "big": false, "busy": "~40 scans and row writes a second"}]);
    let text = plan(&read_plan(v));
    assert!(
        text.contains(
            "            hazard lock_held_until_commit (REFUSED): held\n              way out: set commit_before\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  held until commit (step 0): AccessExclusiveLock on public.big (big) from change add line 1, during check\n"),
        "{text}"
    );
    assert!(!text.contains("public.big2"), "{text}");
    assert!(
        text.contains("on public.users (busy: ~40 scans and row writes a second) from change add line 2"),
        "{text}"
    );
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
        "drift: 1 object(s) differ from the last deployment\n  CHANGE  KIND   NAME        BY            AT\n  added   table  shop.extra  not recorded\n"
    );
    assert!(drift_found(&rows));
    let rows = read_drift(
        json!([{"change": "changed", "kind": "table", "name": "shop.t", "changed_by": "bob",
                                  "application_name": "psql", "changed_at": "2026-12-01T14:09:56+00:00"}]),
    );
    assert!(
        drift(&rows).contains("changed  table  shop.t  bob (psql)  2026-12-01T14:09:56+00:00"),
        "{}",
        drift(&rows)
    );
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
