//! `pg-deploy compare A B --project P`: how two databases (a branch and its
//! parent, say) differ for one project: version, last manifest, schema
//! fingerprint, the changes applied (by id and checksum) and the objects
//! (by deploy.object_fingerprints). Exit 1 when they differ, as drift does.

use crate::error::CliError;
use crate::output::table;
use postgres::Client;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What one side holds for the project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Side {
    pub target: String,
    pub version: Option<String>,
    pub manifest_sha256: Option<String>,
    /// sha256 over every managed object's fingerprint, as of now.
    pub schema_fingerprint: Option<String>,
    /// change id → checksum
    #[serde(skip)]
    pub changes: BTreeMap<String, String>,
    /// (kind, name) → sha256
    #[serde(skip)]
    pub objects: BTreeMap<(String, String), String>,
}

/// A difference: what, where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// "only in A", "only in B", "changed"
    pub how: String,
    pub kind: String,
    pub name: String,
}

fn call(e: postgres::Error) -> CliError {
    crate::db::call_error("compare", "deploy.changes", e)
}

/// Reads one side. A project the database does not have is bad input for a comparison.
pub fn read(c: &mut Client, target: &str, project: &str) -> Result<Side, CliError> {
    let head = c
        .query(
            "SELECT p.version, d.manifest_sha256, \
                    (SELECT encode(sha256(convert_to(coalesce(string_agg(f.kind || ' ' || f.name || ' ' || f.sha256, \
                                                     E'\\n' ORDER BY f.kind, f.name), ''), 'UTF8')), 'hex') \
                       FROM deploy.object_fingerprints(p.schemas) f) \
               FROM deploy.projects p LEFT JOIN deploy.deployments d ON d.id = p.last_deployment_id \
              WHERE p.project = $1",
            &[&project],
        )
        .map_err(call)?;
    let Some(h) = head.first() else {
        return Err(CliError::Refused {
            message: format!("compare: {target} has no project \"{project}\""),
            hint: Some("`pg-deploy status` lists a database's projects.".into()),
        });
    };
    let mut side = Side {
        target: target.to_string(),
        version: h.try_get(0).map_err(call)?,
        manifest_sha256: h.try_get(1).map_err(call)?,
        schema_fingerprint: h
            .try_get::<_, Option<String>>(2)
            .map_err(call)?
            .map(|s| format!("sha256:{s}")),
        ..Side::default()
    };
    for r in c
        .query("SELECT change_id, checksum FROM deploy.changes($1)", &[&project])
        .map_err(call)?
    {
        side.changes
            .insert(r.try_get(0).map_err(call)?, r.try_get(1).map_err(call)?);
    }
    for r in c
        .query(
            "SELECT f.kind, f.name, f.sha256 FROM deploy.projects p, deploy.object_fingerprints(p.schemas) f \
              WHERE p.project = $1",
            &[&project],
        )
        .map_err(call)?
    {
        side.objects.insert(
            (r.try_get(0).map_err(call)?, r.try_get(1).map_err(call)?),
            r.try_get(2).map_err(call)?,
        );
    }
    Ok(side)
}

/// The keys only one map has, and those whose values differ, in key order.
pub fn diff<K: Ord + Clone>(a: &BTreeMap<K, String>, b: &BTreeMap<K, String>) -> Vec<(&'static str, K)> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(("only in A", k.clone())),
            Some(w) if w != v => out.push(("changed", k.clone())),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(("only in B", k.clone()));
    }
    out.sort_by(|x, y| x.1.cmp(&y.1));
    out
}

/// The history and schema differences.
pub fn compare(a: &Side, b: &Side) -> (Vec<Diff>, Vec<Diff>) {
    let history = diff(&a.changes, &b.changes)
        .into_iter()
        .map(|(how, id)| Diff {
            how: how.into(),
            kind: "change".into(),
            name: id,
        })
        .collect();
    let schema = diff(&a.objects, &b.objects)
        .into_iter()
        .map(|(how, (kind, name))| Diff {
            how: how.into(),
            kind,
            name,
        })
        .collect();
    (history, schema)
}

pub fn text(project: &str, a: &Side, b: &Side, history: &[Diff], schema: &[Diff]) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let same = |x: &Option<String>, y: &Option<String>| if x == y { "same" } else { "DIFFERENT" };
    let mut out = format!("compare {project}: A = {}, B = {}\n", a.target, b.target);
    out.push_str(&table(
        Some(&["", "A", "B", ""]),
        vec![
            vec![
                "version".into(),
                dash(&a.version),
                dash(&b.version),
                same(&a.version, &b.version).into(),
            ],
            vec![
                "manifest".into(),
                dash(&a.manifest_sha256),
                dash(&b.manifest_sha256),
                same(&a.manifest_sha256, &b.manifest_sha256).into(),
            ],
            vec![
                "schema".into(),
                dash(&a.schema_fingerprint),
                dash(&b.schema_fingerprint),
                same(&a.schema_fingerprint, &b.schema_fingerprint).into(),
            ],
        ],
        "  ",
    ));
    for (what, list) in [("history", history), ("schema", schema)] {
        if list.is_empty() {
            out.push_str(&format!("{what}: same\n"));
        } else {
            out.push_str(&format!("{what}: {} difference(s)\n", list.len()));
            let rows = list
                .iter()
                .map(|d| vec![d.how.clone(), d.kind.clone(), d.name.clone()])
                .collect();
            out.push_str(&table(None, rows, "  "));
        }
    }
    out
}

pub fn json(project: &str, a: &Side, b: &Side, history: &[Diff], schema: &[Diff]) -> Value {
    json!({"project": project, "a": a, "b": b, "history": history, "schema": schema,
           "same": !differs(a, b, history, schema)})
}

/// Whether the two sides differ in anything compared.
pub fn differs(a: &Side, b: &Side, history: &[Diff], schema: &[Diff]) -> bool {
    !history.is_empty()
        || !schema.is_empty()
        || a.version != b.version
        || a.schema_fingerprint != b.schema_fingerprint
        || a.manifest_sha256 != b.manifest_sha256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(target: &str, changes: &[(&str, &str)], objects: &[(&str, &str, &str)]) -> Side {
        Side {
            target: target.into(),
            version: Some("0.2.0".into()),
            manifest_sha256: Some("sha256:m".into()),
            schema_fingerprint: Some("sha256:s".into()),
            changes: changes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            objects: objects
                .iter()
                .map(|(k, n, v)| ((k.to_string(), n.to_string()), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn differences_in_history_and_schema() {
        let a = side(
            "h:1/prod",
            &[("1_a", "x"), ("2_b", "y")],
            &[("table", "s.t", "1"), ("index", "s.i", "2")],
        );
        let mut b = side(
            "h:1/branch",
            &[("1_a", "x"), ("2_b", "y2"), ("3_extra", "z")],
            &[("table", "s.t", "1b"), ("table", "s.extra", "3")],
        );
        b.version = Some("0.3.0".into());
        let (h, s) = compare(&a, &b);
        let hs: Vec<(&str, &str)> = h.iter().map(|d| (d.how.as_str(), d.name.as_str())).collect();
        assert_eq!(hs, [("changed", "2_b"), ("only in B", "3_extra")]);
        let ss: Vec<(&str, &str, &str)> = s
            .iter()
            .map(|d| (d.how.as_str(), d.kind.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(
            ss,
            [
                ("only in A", "index", "s.i"),
                ("only in B", "table", "s.extra"),
                ("changed", "table", "s.t")
            ]
        );
        assert!(differs(&a, &b, &h, &s));
        let t = text("shop", &a, &b, &h, &s);
        assert!(t.starts_with("compare shop: A = h:1/prod, B = h:1/branch\n"), "{t}");
        assert!(t.contains("  version   0.2.0     0.3.0     DIFFERENT\n"), "{t}");
        assert!(
            t.contains("history: 2 difference(s)\n  changed    change  2_b\n"),
            "{t}"
        );
        assert!(t.contains("schema: 3 difference(s)\n"), "{t}");
        assert_eq!(json("shop", &a, &b, &h, &s)["same"], false);
    }

    #[test]
    fn identical_sides_are_the_same() {
        let a = side("a", &[("1_a", "x")], &[("table", "s.t", "1")]);
        let b = side("b", &[("1_a", "x")], &[("table", "s.t", "1")]);
        let (h, s) = compare(&a, &b);
        assert!(h.is_empty() && s.is_empty());
        assert!(!differs(&a, &b, &h, &s));
        let t = text("shop", &a, &b, &h, &s);
        assert!(t.contains("history: same\nschema: same\n"), "{t}");
        assert_eq!(json("shop", &a, &b, &h, &s)["same"], true);
    }
}
