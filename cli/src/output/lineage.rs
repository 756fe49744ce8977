//! `pg-deploy lineage`: deploy.lineage(project) rows, where each object of the
//! project's schemas came from (docs/lineage.md).

use super::table;
use serde::Deserialize;

/// One row of `deploy.lineage(project)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LineageRow {
    pub kind: String,
    pub name: String,
    /// deployment, outside, not recorded
    pub origin: String,
    pub dropped: bool,
    pub created_by_change: Option<String>,
    pub created_in_deployment: Option<i64>,
    pub last_change_id: Option<String>,
    pub last_deployment_id: Option<i64>,
    pub outside_at: Option<String>,
    pub outside_role: Option<String>,
    pub outside_application: Option<String>,
    pub outside_command: Option<String>,
}

/// What `pg-deploy lineage` reads: deploy.lineage_recording() and the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LineageReport {
    pub recording: String,
    pub objects: Vec<LineageRow>,
}

/// "0002-items (#1)", or "-".
fn change_in(change: Option<&str>, deployment: Option<i64>) -> String {
    match (change, deployment) {
        (Some(c), Some(d)) => format!("{c} (#{d})"),
        (Some(c), None) => c.to_string(),
        _ => "-".into(),
    }
}

/// The lineage of a project as a table, under whether it is recorded.
pub fn lineage(report: &LineageReport) -> String {
    let mut out = format!("lineage: {}\n", report.recording);
    let rows = &report.objects;
    if rows.is_empty() {
        out.push_str("  no objects recorded in the project's schemas\n");
        return out;
    }
    let rows = rows
        .iter()
        .map(|r| {
            let outside = match (&r.outside_role, &r.outside_command) {
                (Some(role), Some(command)) => format!(
                    "{command} by {role}{} at {}",
                    r.outside_application
                        .as_deref()
                        .filter(|a| !a.is_empty())
                        .map_or(String::new(), |a| format!(" ({a})")),
                    r.outside_at.as_deref().unwrap_or("?")
                ),
                _ => "-".into(),
            };
            let origin = if r.dropped {
                format!("{} (dropped)", r.origin)
            } else {
                r.origin.clone()
            };
            vec![
                r.kind.clone(),
                r.name.clone(),
                origin,
                change_in(r.created_by_change.as_deref(), r.created_in_deployment),
                change_in(r.last_change_id.as_deref(), r.last_deployment_id),
                outside,
            ]
        })
        .collect();
    out.push_str(&table(
        Some(&["KIND", "NAME", "ORIGIN", "CREATED BY", "LAST CHANGE", "LAST OUTSIDE"]),
        rows,
        "  ",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(recording: &str, objects: serde_json::Value) -> LineageReport {
        serde_json::from_value(json!({"recording": recording, "objects": objects})).expect("report")
    }

    #[test]
    fn rows_as_a_table() {
        let report = read(
            "recorded",
            json!([
            {"kind": "table", "name": "app.items", "origin": "deployment", "dropped": false,
             "created_by_change": "0002-items", "created_in_deployment": 1, "last_change_id": "0004-price",
             "last_deployment_id": 2, "outside_role": "bob", "outside_application": "psql",
             "outside_command": "ALTER TABLE", "outside_at": "2026-12-01T14:00:00+00:00"},
            {"kind": "table", "name": "app.old", "origin": "outside", "dropped": true},
            {"kind": "view", "name": "app.v", "origin": "not recorded", "dropped": false}
            ]),
        );
        let text = lineage(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "lineage: recorded");
        assert!(lines[1].trim_start().starts_with("KIND"), "{text}");
        assert!(
            lines[2].contains("0002-items (#1)")
                && lines[2].contains("0004-price (#2)")
                && lines[2].contains("ALTER TABLE by bob (psql) at 2026-12-01T14:00:00+00:00"),
            "{text}"
        );
        assert!(lines[3].contains("outside (dropped)"), "{text}");
        assert!(lines[4].contains("not recorded"), "{text}");
    }

    #[test]
    fn nothing_recorded_says_so() {
        let text = lineage(&read("not recorded: the event triggers do not exist", json!([])));
        assert!(text.starts_with("lineage: not recorded"), "{text}");
    }
}
