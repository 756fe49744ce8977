//! Placeholders in migration files, filled in before the manifest is built
//! (docs/cli.md#placeholders):
//! - Flyway's `${name}`: in Flyway and Liquibase folders always (both tools
//!   fill in changelog properties; a real Liquibase history, `${dbName}` in
//!   `grant connect on database`, would otherwise reach the server as is),
//!   in the other layouts once any value is given, so folders that never
//!   used them are read as before;
//! - Go templates as gobuffalo pop renders them, `{{ index .Options "Name" }}`
//!   (supabase/auth's `Namespace`): in pop folders.
//!
//! Values come from `--placeholder name=value`, then `PG_DEPLOY_PLACEHOLDER_<name>`,
//! then Flyway's `FLYWAY_PLACEHOLDERS_<NAME>` (Flyway lowercases the name). A
//! placeholder without a value is bad input naming the file and line; every
//! one is listed in one error.

use crate::error::CliError;
use crate::layout::{read_text, Layout, Migration};
use std::collections::BTreeMap;

pub const ENV_PREFIX: &str = "PG_DEPLOY_PLACEHOLDER_";
pub const FLYWAY_ENV_PREFIX: &str = "FLYWAY_PLACEHOLDERS_";

/// Placeholder values by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    values: BTreeMap<String, String>,
}

impl Placeholders {
    /// From `--placeholder name=value` flags and the environment's variables;
    /// a flag wins over `PG_DEPLOY_PLACEHOLDER_`, which wins over Flyway's.
    pub fn new(flags: &[String], env: impl IntoIterator<Item = (String, String)>) -> Result<Self, CliError> {
        let mut values = BTreeMap::new();
        let mut flyway = BTreeMap::new();
        for (k, v) in env {
            if let Some(name) = k.strip_prefix(ENV_PREFIX).filter(|n| !n.is_empty()) {
                values.insert(name.to_string(), v);
            } else if let Some(name) = k.strip_prefix(FLYWAY_ENV_PREFIX).filter(|n| !n.is_empty()) {
                flyway.insert(name.to_ascii_lowercase(), v);
            }
        }
        for (k, v) in flyway {
            values.entry(k).or_insert(v);
        }
        for f in flags {
            let Some((name, value)) = f.split_once('=').filter(|(n, _)| !n.trim().is_empty()) else {
                return Err(CliError::input_hint(
                    format!("--placeholder {f}: expected NAME=VALUE"),
                    "For example --placeholder Namespace=auth.",
                ));
            };
            values.insert(name.trim().to_string(), value.to_string());
        }
        Ok(Placeholders { values })
    }

    /// A value by name; Flyway's names match regardless of case.
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).or_else(|| {
            self.values
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    }

    /// Fills in every migration's SQL, revert and verify; one error lists
    /// every placeholder left without a value.
    pub fn render(&self, layout: Layout, migrations: &mut [Migration]) -> Result<Vec<String>, CliError> {
        let dollar = matches!(layout, Layout::Flyway | Layout::Liquibase) || !self.values.is_empty();
        let go = layout == Layout::Pop;
        if !dollar && !go {
            return Ok(Vec::new());
        }
        let mut unfilled: Vec<String> = Vec::new();
        for m in migrations.iter_mut() {
            let mut missing: Vec<String> = Vec::new();
            for text in [Some(&mut m.sql), m.revert.as_mut(), m.verify.as_mut()]
                .into_iter()
                .flatten()
            {
                *text = self.fill(text, dollar, go, &mut missing);
            }
            if missing.is_empty() {
                continue;
            }
            // Lines are counted in the file itself (a section's lines would mislead).
            let file = read_text(&m.source).unwrap_or_default();
            for token in missing {
                let line = file.lines().position(|l| l.contains(&token)).map_or(0, |i| i + 1);
                let entry = format!("{}:{line}: {token} has no value", m.source.display());
                if !unfilled.contains(&entry) {
                    unfilled.push(entry);
                }
            }
        }
        if unfilled.is_empty() {
            return Ok(Vec::new());
        }
        Err(CliError::input_hint(
            format!("placeholders without a value:\n  {}", unfilled.join("\n  ")),
            format!(
                "Give each a value with --placeholder NAME=VALUE or the environment variable {ENV_PREFIX}NAME \
                 (Flyway's {FLYWAY_ENV_PREFIX}NAME is read too)."
            ),
        ))
    }

    /// `text` with its placeholders replaced; the ones without a value are
    /// left as they are and pushed to `missing`.
    fn fill(&self, text: &str, dollar: bool, go: bool, missing: &mut Vec<String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        loop {
            let next_dollar = if dollar { rest.find("${") } else { None };
            let next_go = if go { rest.find("{{") } else { None };
            let (at, close) = match (next_dollar, next_go) {
                (Some(d), Some(g)) if g < d => (g, "}}"),
                (Some(d), _) => (d, "}"),
                (None, Some(g)) => (g, "}}"),
                (None, None) => break,
            };
            out.push_str(&rest[..at]);
            let Some(len) = rest[at..].find(close) else {
                out.push_str(&rest[at..]);
                return out;
            };
            let token = &rest[at..at + len + close.len()];
            let name = if close == "}" {
                Some(token[2..token.len() - 1].trim())
            } else {
                go_option(token)
            };
            match name.and_then(|n| self.get(n)) {
                Some(value) => out.push_str(value),
                None => {
                    missing.push(token.to_string());
                    out.push_str(token);
                }
            }
            rest = &rest[at + token.len()..];
        }
        out.push_str(rest);
        out
    }
}

/// The option name of `{{ index .Options "Name" }}` (the one template form
/// pop migrations are known to use); None for any other template.
pub fn go_option(token: &str) -> Option<&str> {
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let inner = inner.trim_start_matches('-').trim_end_matches('-').trim();
    let rest = inner.strip_prefix("index")?.trim_start();
    let rest = rest.strip_prefix(".Options")?.trim_start();
    let name = rest.strip_prefix('"')?.strip_suffix('"')?;
    (!name.is_empty() && !name.contains('"')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_from_flags_and_environment() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (&["schema=app"], &[], "schema", Some("app")),
            (&[], &[("PG_DEPLOY_PLACEHOLDER_schema", "env")], "schema", Some("env")),
            (&[], &[("FLYWAY_PLACEHOLDERS_SCHEMA", "fly")], "schema", Some("fly")),
            (&[], &[("FLYWAY_PLACEHOLDERS_SCHEMA", "fly")], "Schema", Some("fly")),
            (
                &["schema=flag"],
                &[
                    ("PG_DEPLOY_PLACEHOLDER_schema", "env"),
                    ("FLYWAY_PLACEHOLDERS_SCHEMA", "fly"),
                ],
                "schema",
                Some("flag"),
            ),
            (
                &[],
                &[
                    ("PG_DEPLOY_PLACEHOLDER_schema", "env"),
                    ("FLYWAY_PLACEHOLDERS_SCHEMA", "fly"),
                ],
                "schema",
                Some("env"),
            ),
            (&["eq=a=b"], &[], "eq", Some("a=b")),
            (&[], &[("HOME", "/root")], "HOME", None),
        ];
        for (flags, vars, name, want) in cases {
            let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
            let p = Placeholders::new(&flags, env(vars)).expect("new");
            assert_eq!(p.get(name), *want, "{flags:?} {vars:?}");
        }
        let e = Placeholders::new(&["novalue".into()], env(&[])).expect_err("bad flag");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn fills_both_forms() {
        let p = Placeholders::new(&["Namespace=auth".into(), "owner=admin".into()], env(&[])).expect("new");
        let cases = [
            ("CREATE SCHEMA ${owner};", true, false, "CREATE SCHEMA admin;"),
            (
                "ALTER TABLE {{ index .Options \"Namespace\" }}.users",
                false,
                true,
                "ALTER TABLE auth.users",
            ),
            ("{{index .Options \"Namespace\" }}.x", false, true, "auth.x"),
            (
                "SELECT '${owner}' -- {{ index .Options \"Namespace\" }}",
                true,
                true,
                "SELECT 'admin' -- auth",
            ),
            ("SELECT $$ ${owner} $$", false, false, "SELECT $$ ${owner} $$"),
            ("SELECT '${unclosed'", true, false, "SELECT '${unclosed'"),
        ];
        for (text, dollar, go, want) in cases {
            let mut missing = Vec::new();
            assert_eq!(p.fill(text, dollar, go, &mut missing), want, "{text}");
            assert!(missing.is_empty(), "{text}: {missing:?}");
        }
        let mut missing = Vec::new();
        p.fill("${nope} {{ .Other }}", true, true, &mut missing);
        assert_eq!(missing, ["${nope}", "{{ .Other }}"]);
    }

    #[test]
    fn unfilled_placeholders_name_file_and_line() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[
                ("V1__a.sql", "CREATE SCHEMA s;\nCREATE TABLE ${schema}.t ();\n"),
                ("V2__b.sql", "-- ${ok}\nSELECT '${also_missing}';\n"),
            ],
        );
        let p = Placeholders::new(&["ok=1".into()], env(&[])).expect("new");
        let e = crate::layout::read_folder_with(tmp.path(), None, &p).expect_err("unfilled");
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains("V1__a.sql:2: ${schema} has no value"), "{text}");
        assert!(text.contains("V2__b.sql:2: ${also_missing} has no value"), "{text}");
        assert!(text.contains("PG_DEPLOY_PLACEHOLDER_NAME"), "{text}");
        let p = Placeholders::new(&["schema=s".into(), "also_missing=x".into(), "ok=1".into()], env(&[])).expect("new");
        let f = crate::layout::read_folder_with(tmp.path(), None, &p).expect("filled");
        assert_eq!(f.migrations[0].sql, "CREATE SCHEMA s;\nCREATE TABLE s.t ();\n");
    }

    #[test]
    fn other_layouts_keep_dollar_braces_unless_a_value_is_given() {
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(tmp.path(), &[("1_a.sql", "SELECT '${x}';\n")]);
        let f = crate::layout::read_folder(tmp.path(), None).expect("read");
        assert_eq!(f.migrations[0].sql, "SELECT '${x}';\n");
        let p = Placeholders::new(&["x=1".into()], env(&[])).expect("new");
        let f = crate::layout::read_folder_with(tmp.path(), None, &p).expect("read");
        assert_eq!(f.migrations[0].sql, "SELECT '1';\n");
    }

    #[test]
    fn liquibase_properties_are_always_placeholders() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file =
            "--liquibase formatted sql\n--changeset p:grant\ngrant connect on database ${dbName} to ${appRole};\n";
        testdir::write(tmp.path(), &[("registry/00030_grant.sql", file)]);
        let e = crate::layout::read_folder(tmp.path(), None).expect_err("unfilled");
        let text = e.to_string();
        assert!(text.contains("00030_grant.sql:3: ${dbName} has no value"), "{text}");
        assert!(text.contains("00030_grant.sql:3: ${appRole} has no value"), "{text}");
        let p = Placeholders::new(&["dbName=app".into(), "appRole=app_user".into()], env(&[])).expect("new");
        let f = crate::layout::read_folder_with(tmp.path(), None, &p).expect("filled");
        assert_eq!(f.migrations[0].sql, "grant connect on database app to app_user;\n");
    }

    #[test]
    fn go_options() {
        assert_eq!(go_option("{{ index .Options \"Namespace\" }}"), Some("Namespace"));
        assert_eq!(go_option("{{- index .Options \"N\" -}}"), Some("N"));
        assert_eq!(go_option("{{ .Namespace }}"), None);
        assert_eq!(go_option("{{ index .Options \"\" }}"), None);
    }
}
