//! Sqitch: `sqitch.plan` lists the changes in order, with dependencies in
//! brackets; `deploy/<change>.sql` is the change, `revert/<change>.sql` its
//! revert, `verify/<change>.sql` its verify script. Sqitch's templates wrap
//! scripts in `BEGIN;` … `COMMIT;` (or `ROLLBACK;`), which are removed since
//! pg_deploy runs each change in its own subtransaction.
//!
//! Ids are the change names; the history key is the change name too.

use super::problems::Problems;
use super::{read_text, strip_transaction_wrapper, Migration};
use crate::error::CliError;
use std::path::Path;

/// One change line of a plan: name and the changes it requires.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanChange {
    pub name: String,
    pub requires: Vec<String>,
    pub line: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub project: Option<String>,
    pub changes: Vec<PlanChange>,
}

/// Parses the text of a sqitch.plan; every bad line is reported at once.
pub fn parse_plan(text: &str) -> Result<Plan, CliError> {
    let mut project = None;
    let mut changes: Vec<PlanChange> = Vec::new();
    let mut problems = Problems::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue; // blank, comment, tag
        }
        if let Some(pragma) = line.strip_prefix('%') {
            if let Some((k, v)) = pragma.split_once('=') {
                if k.trim() == "project" {
                    project = Some(v.trim().to_string());
                }
            }
            continue;
        }
        if let Some(change) = problems.keep(plan_line(i + 1, line, &changes)) {
            changes.push(change);
        }
    }
    problems.finish(Plan { project, changes })
}

/// One change line: "name [deps] timestamp planner <email> # note".
fn plan_line(line_no: usize, line: &str, earlier: &[PlanChange]) -> Result<PlanChange, CliError> {
    let bad = |why: &str| CliError::input(format!("sqitch.plan line {line_no}: {why}: {line}"));
    let body = line.split_once(" #").map_or(line, |(b, _)| b).trim();
    let mut name = body.split_whitespace().next().ok_or_else(|| bad("no change name"))?;
    if let Some(n) = name.strip_prefix('+') {
        name = n;
    } else if name.starts_with('-') {
        return Err(bad("revert entries (-change) are not supported"));
    }
    if name.is_empty() {
        return Err(bad("no change name"));
    }
    // deploy/<name>.sql and the like must stay inside the folder (Sqitch
    // itself refuses such names): no "..", no root, no backslash.
    let inside = Path::new(name)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside || name.contains('\\') {
        return Err(bad(
            "a change name must be a path inside the folder (no \"..\", \"/\" at the start or \"\\\")",
        ));
    }
    let mut requires = Vec::new();
    if let Some(open) = body.find('[') {
        let close = body[open..].find(']').ok_or_else(|| bad("unclosed ["))? + open;
        for dep in body[open + 1..close].split_whitespace() {
            if dep.starts_with('!') {
                continue; // a conflict, not a dependency
            }
            if dep.contains(':') {
                return Err(bad("dependencies on other projects are not supported"));
            }
            let dep = dep.split_once('@').map_or(dep, |(d, _)| d);
            requires.push(dep.to_string());
        }
    }
    if earlier.iter().any(|c| c.name == name) {
        return Err(CliError::input_hint(
            format!("sqitch.plan line {line_no}: change \"{name}\" appears twice (a reworked change)"),
            "Reworked Sqitch changes are not supported; give the new version its own change name.",
        ));
    }
    Ok(PlanChange {
        name: name.to_string(),
        requires,
        line: line_no,
    })
}

/// A Sqitch verify script fails by raising an error; pg_deploy's verify must
/// return true. Running the script and then `SELECT true` gives Sqitch's meaning.
pub fn verify_query(script: &str) -> String {
    format!("{}\n;\nSELECT true;\n", script.trim_end())
}

pub fn read(dir: &Path) -> Result<(Vec<Migration>, Option<String>), CliError> {
    let plan = parse_plan(&read_text(&dir.join("sqitch.plan"))?)?;
    let missing: Vec<CliError> = plan
        .changes
        .iter()
        .map(|c| (c, dir.join("deploy").join(format!("{}.sql", c.name))))
        .filter(|(_, deploy)| !deploy.is_file())
        .map(|(c, deploy)| {
            CliError::input(format!(
                "sqitch.plan line {} lists \"{}\" but {} does not exist",
                c.line,
                c.name,
                deploy.display()
            ))
        })
        .collect();
    if let Some(e) = CliError::all_inputs(missing) {
        return Err(e);
    }
    let mut out = Vec::with_capacity(plan.changes.len());
    for c in &plan.changes {
        let deploy = dir.join("deploy").join(format!("{}.sql", c.name));
        let sql = strip_transaction_wrapper(&read_text(&deploy)?);
        let optional = |sub: &str| -> Result<Option<String>, CliError> {
            let p = dir.join(sub).join(format!("{}.sql", c.name));
            if !p.is_file() {
                return Ok(None);
            }
            let text = strip_transaction_wrapper(&read_text(&p)?);
            Ok((!text.trim().is_empty()).then_some(text))
        };
        out.push(Migration {
            revert: optional("revert")?,
            verify: optional("verify")?.map(|v| verify_query(&v)),
            requires: c.requires.clone(),
            ..Migration::versioned(c.name.clone(), sql, c.name.clone(), deploy)
        });
    }
    Ok((out, plan.project))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    const PLAN: &str = "%syntax-version=1.0.0\n%project=flipr\n%uri=https://example.com/flipr/\n\n\
appschema 2013-12-30T23:49:00Z Marge <marge@example.com> # App schema\n\
users [appschema] 2013-12-31T00:26:59Z Marge <marge@example.com> # Users\n\
@v1.0 2013-12-31T00:30:00Z Marge <marge@example.com> # Tag\n\
flips [appschema users@v1.0 !oldflips] 2014-01-01T00:00:00Z Marge <marge@example.com> # note [not deps]\n";

    #[test]
    fn parses_plan() {
        let p = parse_plan(PLAN).expect("plan");
        assert_eq!(p.project.as_deref(), Some("flipr"));
        let names: Vec<&str> = p.changes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["appschema", "users", "flips"]);
        assert_eq!(p.changes[1].requires, ["appschema"]);
        assert_eq!(p.changes[2].requires, ["appschema", "users"]);
    }

    #[test]
    fn every_bad_plan_line_at_once() {
        let e = parse_plan(
            "%project=p\n-gone 2014-01-01T00:00:00Z M <m@x>\nok 2014-01-01T00:00:00Z M <m@x>\n\
             ../up 2014-01-01T00:00:00Z M <m@x>\nx [other:dep] 2014-01-01T00:00:00Z M <m@x>\n",
        )
        .expect_err("three bad lines");
        let text = e.to_string();
        assert!(text.starts_with("bad input: 3 problems:"), "{text}");
        for line in ["sqitch.plan line 2:", "sqitch.plan line 4:", "sqitch.plan line 5:"] {
            assert!(text.contains(line), "{text}");
        }
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn reworked_changes_are_refused() {
        let e = parse_plan(
            "a 2014-01-01T00:00:00Z M <m@x>\n@t 2014-01-01T00:00:00Z M <m@x>\na 2014-01-02T00:00:00Z M <m@x>\n",
        )
        .expect_err("rework");
        assert!(e.to_string().contains("appears twice"));
    }

    #[test]
    fn reads_scripts_without_transaction_wrappers() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("sqitch.plan", PLAN),
                (
                    "deploy/appschema.sql",
                    "-- Deploy flipr:appschema to pg\n\nBEGIN;\n\nCREATE SCHEMA flipr;\n\nCOMMIT;\n",
                ),
                ("revert/appschema.sql", "BEGIN;\nDROP SCHEMA flipr;\nCOMMIT;\n"),
                (
                    "verify/appschema.sql",
                    "BEGIN;\nSELECT pg_catalog.has_schema_privilege('flipr', 'usage');\nROLLBACK;\n",
                ),
                ("deploy/users.sql", "CREATE TABLE flipr.users (n text);"),
                ("deploy/flips.sql", "CREATE TABLE flipr.flips (n text);"),
            ],
        );
        let (m, project) = read(tmp.path()).expect("read");
        assert_eq!(project.as_deref(), Some("flipr"));
        assert_eq!(
            m[0].sql,
            "-- Deploy flipr:appschema to pg\n\n\nCREATE SCHEMA flipr;\n\n"
        );
        assert_eq!(m[0].revert.as_deref(), Some("DROP SCHEMA flipr;\n"));
        assert_eq!(
            m[0].verify.as_deref(),
            Some("SELECT pg_catalog.has_schema_privilege('flipr', 'usage');\n;\nSELECT true;\n")
        );
        assert_eq!(m[1].revert, None);
        assert_eq!(m[2].requires, ["appschema", "users"]);
    }

    #[test]
    fn change_names_that_leave_the_folder_are_refused() {
        // Found by the fuzz harness (layout/fuzz.rs): these read deploy/../x.sql,
        // /tmp/x.sql and so on, outside the migrations folder.
        for name in ["../x", "a/../../b", "/tmp/x", "./a", "a\\..\\b", ".."] {
            let e = parse_plan(&format!("{name} 2014-01-01T00:00:00Z M <m@x>\n")).expect_err(name);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("a path inside the folder"), "{e}");
        }
        let p = parse_plan("schemas/users 2014-01-01T00:00:00Z M <m@x>\n").expect("a sub-folder is fine");
        assert_eq!(p.changes[0].name, "schemas/users");
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("m/sqitch.plan", "../outside 2014-01-01T00:00:00Z M <m@x>\n"),
                ("m/deploy/x.sql", "SELECT 1;"),
                ("outside.sql", "SELECT 'outside';"),
            ],
        );
        assert!(read(&tmp.path().join("m")).is_err());
    }

    #[test]
    fn missing_deploy_script_is_bad_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("sqitch.plan", "a 2014-01-01T00:00:00Z M <m@x>\n")]);
        assert!(read(tmp.path())
            .expect_err("missing")
            .to_string()
            .contains("does not exist"));
    }
}
