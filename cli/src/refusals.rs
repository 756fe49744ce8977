//! Every refusal in one run: the extension's apply stops at the first change
//! it refuses, while its plan lists them all. When apply is refused, the
//! client asks the plan and adds the whole list to the error, so fixing a
//! folder takes one run, not one per file.

use crate::error::CliError;
use pg_deploy_core::report::{PlanOutcome, PlanReport};

/// One line per refused change and statement of a plan (change id, line,
/// reason); empty when the plan refuses nothing.
pub fn list(plan: &PlanReport) -> Vec<String> {
    if plan.outcome != PlanOutcome::Refused {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in &plan.changes {
        let before = out.len();
        for st in c.statements.iter().flatten() {
            for h in st.hazards.iter().filter(|h| h.refused) {
                out.push(format!(
                    "change \"{}\" line {}: {} ({})",
                    c.id, st.line, h.reason, h.kind
                ));
            }
        }
        // The objection repeats a refused hazard when there is one.
        if let Some(o) = c.objection.as_ref().filter(|_| out.len() == before) {
            out.push(format!("change \"{}\": ERROR {}: {}", c.id, o.sqlstate, o.message));
        }
    }
    out
}

/// `e` with the plan's full list in its hint, when there is more than the
/// one apply reported.
pub fn with_all(e: CliError, plan: Option<&PlanReport>) -> CliError {
    let Some(lines) = plan.map(list).filter(|l| l.len() > 1) else {
        return e;
    };
    let CliError::Server { context, mut error } = e else {
        return e;
    };
    let all = format!(
        "apply stops at the first; the plan refuses {} in all:\n  {}",
        lines.len(),
        lines.join("\n  ")
    );
    error.hint = Some(error.hint.map_or(all.clone(), |h| format!("{h}\n{all}")));
    CliError::Server { context, error }
}

/// A failed apply's error, with the plan's list of every refusal when the
/// plan can be had (a lost connection or an older extension: the error as is).
pub fn after_apply(client: &mut postgres::Client, manifest: &str, options: &str, e: CliError) -> CliError {
    let plan = crate::db::plan(client, manifest, options)
        .ok()
        .and_then(|a| crate::output::read("plan", &a, serde_json::from_value::<PlanReport>).ok());
    with_all(e, plan.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServerError;
    use serde_json::json;

    fn plan(outcome: &str) -> PlanReport {
        let hazard = |reason: &str| {
            json!({"kind": "rewrite", "table": "t", "rows": null, "bytes": null, "big": false,
                   "allowed": false, "refused": true, "reason": reason})
        };
        let change = |id: &str, reason: &str| {
            json!({"id": id, "kind": "versioned", "action": "refuse",
                   "statements": [{"line": 2, "column": 1, "kind": "ALTER TABLE", "locks": [], "hazards": [hazard(reason)]}],
                   "objection": {"sqlstate": "55000", "message": format!("change {id}: {reason}")}})
        };
        serde_json::from_value(json!({
            "project": "p", "version": "0.2.0", "previous_version": null, "outcome": outcome,
            "changes": [change("a", "rewrites t"), change("b", "rewrites u"),
                        {"id": "c", "kind": "versioned", "action": "skip"}],
            "warnings": [], "execution": {"executed": false}, "duration_ms": 1.0
        }))
        .expect("plan")
    }

    #[test]
    fn lists_every_refused_change_once() {
        assert_eq!(
            list(&plan("refused")),
            [
                "change \"a\" line 2: rewrites t (rewrite)",
                "change \"b\" line 2: rewrites u (rewrite)"
            ]
        );
        assert!(list(&plan("would apply")).is_empty());
    }

    #[test]
    fn adds_the_list_to_the_error() {
        let e = CliError::Server {
            context: "apply".into(),
            error: ServerError {
                sqlstate: "55000".into(),
                message: "change a would rewrite t".into(),
                detail: None,
                hint: Some("allow it".into()),
            },
        };
        let text = with_all(e.clone(), Some(&plan("refused"))).to_string();
        assert!(
            text.contains("HINT: allow it\napply stops at the first; the plan refuses 2 in all:"),
            "{text}"
        );
        assert!(text.contains("\n  change \"b\" line 2: rewrites u"), "{text}");
        assert_eq!(with_all(e.clone(), None), e);
        assert_eq!(with_all(e.clone(), Some(&plan("would apply"))), e);
    }
}
