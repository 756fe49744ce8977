//! Human-readable renderings of the extension's JSON reports. `--json` prints
//! the reports themselves instead.

use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.get("id").map_or_else(|| s(x), s)).collect())
        .unwrap_or_default()
}

fn count(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn warnings(r: &Value, out: &mut String) {
    for w in r["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  warning: {}\n",
            w.as_str().map_or_else(|| w.to_string(), str::to_string)
        ));
    }
}

/// deploy.apply's report.
pub fn apply(r: &Value) -> String {
    let mut out = format!(
        "{} {} (was {}): {}, deployment {}, {} ms\n",
        s(&r["project"]),
        s(&r["version"]),
        s(&r["previous_version"]),
        s(&r["outcome"]),
        s(&r["deployment_id"]),
        s(&r["duration_ms"])
    );
    for c in r["applied"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  applied  {} ({}, {} statement(s), {} ms)\n",
            s(&c["id"]),
            s(&c["kind"]),
            s(&c["statements"]),
            s(&c["duration_ms"])
        ));
    }
    for c in r["rerun"].as_array().into_iter().flatten() {
        out.push_str(&format!("  re-ran   {} ({} ms)\n", s(&c["id"]), s(&c["duration_ms"])));
    }
    for id in ids(&r["accepted"]) {
        out.push_str(&format!("  accepted {id}\n"));
    }
    let skipped = count(&r["skipped"]);
    if skipped > 0 {
        out.push_str(&format!("  skipped  {skipped} change(s) already applied\n"));
    }
    warnings(r, &mut out);
    out
}

/// deploy.plan's report.
pub fn plan(r: &Value) -> String {
    let mut out = format!(
        "{} {} (deployed: {}): {}\n",
        s(&r["project"]),
        s(&r["version"]),
        s(&r["previous_version"]),
        s(&r["outcome"])
    );
    let mut skipped = 0;
    for c in r["changes"].as_array().into_iter().flatten() {
        let action = s(&c["action"]);
        if action == "skip" {
            skipped += 1;
            continue;
        }
        out.push_str(&format!("  {action:<7} {} ({})\n", s(&c["id"]), s(&c["kind"])));
        for st in c["statements"].as_array().into_iter().flatten() {
            let locks: Vec<String> = st["locks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| format!("{} on {}", s(&l["mode"]), s(&l["table"])))
                .collect();
            out.push_str(&format!("          line {}: {}", s(&st["line"]), s(&st["kind"])));
            if !locks.is_empty() {
                out.push_str(&format!(" [{}]", locks.join(", ")));
            }
            out.push('\n');
            for h in st["hazards"].as_array().into_iter().flatten() {
                let verdict = if h["refused"] == Value::Bool(true) {
                    "REFUSED"
                } else if h["allowed"] == Value::Bool(true) {
                    "allowed"
                } else {
                    "ok"
                };
                out.push_str(&format!(
                    "            hazard {} ({verdict}): {}\n",
                    s(&h["kind"]),
                    s(&h["reason"])
                ));
            }
        }
        if let Some(o) = c["objection"].as_object() {
            out.push_str(&format!(
                "          refused: ERROR {}: {}\n",
                o.get("sqlstate").map_or_else(String::new, s),
                o.get("message").map_or_else(String::new, s)
            ));
        }
    }
    if skipped > 0 {
        out.push_str(&format!("  skip    {skipped} change(s) already applied\n"));
    }
    let e = &r["execution"];
    if e.is_object() {
        if e["executed"] == Value::Bool(true) {
            if e["ok"] == Value::Bool(true) {
                out.push_str(&format!("  trial run: ok, rolled back ({} ms)\n", s(&e["duration_ms"])));
            } else {
                out.push_str(&format!(
                    "  trial run FAILED: change {}: ERROR {}: {}\n",
                    s(&e["change"]),
                    s(&e["sqlstate"]),
                    s(&e["message"])
                ));
            }
        } else {
            out.push_str("  trial run: not executed\n");
        }
    }
    warnings(r, &mut out);
    out
}

/// Whether a plan says apply would not go through (exit 1).
pub fn plan_failed(r: &Value) -> bool {
    r["outcome"] == "refused" || r["execution"]["ok"] == Value::Bool(false)
}

/// deploy.status() rows.
pub fn status(rows: &Value) -> String {
    let Some(rows) = rows.as_array().filter(|a| !a.is_empty()) else {
        return "no projects deployed\n".into();
    };
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!(
            "{} {}: {} change(s) applied, {} deployment(s); last #{} {} at {} by {} ({} ms)\n",
            s(&r["project"]),
            s(&r["version"]),
            s(&r["changes_applied"]),
            s(&r["deployments"]),
            s(&r["last_deployment_id"]),
            s(&r["last_outcome"]),
            s(&r["last_deployed_at"]),
            s(&r["last_deployed_by"]),
            s(&r["last_duration_ms"])
        ));
    }
    out
}

/// deploy.baseline's report.
pub fn baseline(r: &Value) -> String {
    let mut out = format!(
        "{} {} (was {}): baseline, deployment {}: recorded {} change(s) as applied without running them\n",
        s(&r["project"]),
        s(&r["version"]),
        s(&r["previous_version"]),
        s(&r["deployment_id"]),
        count(&r["baselined"])
    );
    for id in ids(&r["baselined"]) {
        out.push_str(&format!("  baselined {id}\n"));
    }
    let skipped = count(&r["skipped"]);
    if skipped > 0 {
        out.push_str(&format!("  skipped   {skipped} change(s) already recorded\n"));
    }
    out
}

/// deploy.drift(project) rows `{change, kind, name}`: objects added, removed
/// or changed since the project's last deployment. Other shapes: pretty JSON.
pub fn drift(r: &Value) -> String {
    let Some(rows) = r.as_array() else {
        return generic(r);
    };
    if rows.is_empty() {
        return "no drift: the objects match the last deployment\n".into();
    }
    if !rows
        .iter()
        .all(|x| x.get("change").is_some() && x.get("name").is_some())
    {
        return generic(r);
    }
    let mut out = format!("drift: {} object(s) differ from the last deployment\n", rows.len());
    for x in rows {
        out.push_str(&format!(
            "  {:<8} {} {}\n",
            s(&x["change"]),
            s(&x["kind"]),
            s(&x["name"])
        ));
    }
    out
}

/// Whether drift was found (exit 1).
pub fn drift_found(r: &Value) -> bool {
    match r {
        Value::Array(rows) => !rows.is_empty(),
        Value::Object(o) => o.get("drifted") == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// deploy.revert's report.
pub fn revert(r: &Value) -> String {
    let steps: Vec<String> = r["reverted"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let verb = if s(&e["action"]) == "rerun" {
                "restored"
            } else {
                "undid"
            };
            format!("  {verb} {}\n", s(&e["id"]))
        })
        .collect();
    format!(
        "{}: reverted from {} to {} ({} step(s), {} ms)\n{}",
        s(&r["project"]),
        s(&r["previous_version"]),
        s(&r["version"]),
        steps.len(),
        r["duration_ms"],
        steps.concat()
    )
}

/// deploy.verify_log() rows.
pub fn verify_log(rows: &Value) -> String {
    let mut out = String::new();
    for row in rows.as_array().into_iter().flatten() {
        if row["intact"] == Value::Bool(true) {
            out.push_str(&format!(
                "{}: {} deployment(s), log intact\n",
                s(&row["project"]),
                row["deployments"]
            ));
        } else {
            out.push_str(&format!(
                "{}: BROKEN at deployment {}: {}\n",
                s(&row["project"]),
                row["first_broken_id"],
                s(&row["problem"])
            ));
        }
    }
    if out.is_empty() {
        out.push_str("no deployments\n");
    }
    out
}

/// Whether any project's log is broken.
pub fn log_broken(rows: &Value) -> bool {
    rows.as_array()
        .into_iter()
        .flatten()
        .any(|row| row["intact"] != Value::Bool(true))
}

/// Any other report: pretty JSON.
pub fn generic(r: &Value) -> String {
    serde_json::to_string_pretty(r).map_or_else(|_| r.to_string(), |t| t + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_report() {
        let r = json!({"project": "shop", "version": "1.0.0", "previous_version": null, "outcome": "applied",
            "deployment_id": 1, "applied": [{"id": "a", "kind": "versioned", "statements": 2, "duration_ms": 0.5}],
            "rerun": [], "skipped": ["b"], "accepted": [], "warnings": ["w"], "duration_ms": 3.1});
        let text = apply(&r);
        assert!(
            text.starts_with("shop 1.0.0 (was none): applied, deployment 1, 3.1 ms\n"),
            "{text}"
        );
        assert!(text.contains("  applied  a (versioned, 2 statement(s), 0.5 ms)\n"));
        assert!(text.contains("skipped  1 change(s)"));
        assert!(text.contains("warning: w"));
    }

    #[test]
    fn plan_report_and_verdict() {
        let r = json!({"project": "p", "version": "0.2.0", "previous_version": "0.1.0", "outcome": "would apply",
            "changes": [{"id": "a", "kind": "versioned", "action": "skip"},
                        {"id": "b", "kind": "versioned", "action": "apply",
                         "statements": [{"line": 1, "kind": "CREATE TABLE", "locks": [], "hazards": []}], "objection": null}],
            "warnings": [], "execution": {"executed": true, "ok": true, "rolled_back": true, "duration_ms": 1.0}});
        let text = plan(&r);
        assert!(text.contains("  apply   b (versioned)"), "{text}");
        assert!(text.contains("skip    1 change(s)"));
        assert!(text.contains("trial run: ok"));
        assert!(!plan_failed(&r));
        assert!(plan_failed(&json!({"outcome": "refused"})));
        assert!(plan_failed(
            &json!({"outcome": "would apply", "execution": {"ok": false}})
        ));
    }

    #[test]
    fn drift_rows() {
        assert!(drift(&json!([])).starts_with("no drift"));
        assert!(!drift_found(&json!([])));
        let rows = json!([{"change": "added", "kind": "table", "name": "shop.extra"}]);
        assert_eq!(
            drift(&rows),
            "drift: 1 object(s) differ from the last deployment\n  added    table shop.extra\n"
        );
        assert!(drift_found(&rows));
    }

    #[test]
    fn status_rows() {
        assert_eq!(status(&json!([])), "no projects deployed\n");
        let text = status(&json!([{"project": "p", "version": "1.0.0", "changes_applied": 3, "deployments": 1}]));
        assert!(
            text.starts_with("p 1.0.0: 3 change(s) applied, 1 deployment(s)"),
            "{text}"
        );
    }
}
