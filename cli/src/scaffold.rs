//! `pg-deploy new NAME [DIR]`: the files of a new migration, named and
//! numbered the way the folder's layout does it (docs/cli.md#new-migrations).
//!
//! Files are created, never overwritten. Their SQL is left empty; a
//! migration nobody filled in is read as an empty change with a warning
//! naming the file (see `layout::record_empty`).

use crate::error::CliError;
use crate::layout::{self, file_name, flyway, golang_migrate, list, sqitch, Layout};
use crate::order::{cmp_digits, leading_digits, FlywayVersion};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

mod tools;

/// What `new` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub layout: Layout,
    /// The files created, in the order written (sqitch.plan, appended to, last).
    pub files: Vec<PathBuf>,
}

/// What to write: new files with their text, and for Sqitch a plan line.
struct Scaffold {
    files: Vec<(PathBuf, String)>,
    plan_line: Option<(PathBuf, String)>,
}

/// Creates the new migration `name` in `dir`, in `layout` or the one detected.
/// `now` is the current time in seconds since 1970 (UTC), for timestamps.
pub fn new_migration(dir: &Path, name: &str, layout: Option<Layout>, now: u64) -> Result<Created, CliError> {
    check_name(name)?;
    let layout = match layout {
        Some(l) => l,
        None if dir.is_dir() => layout::detect(dir)?,
        None => {
            return Err(CliError::input_hint(
                format!("{} does not exist", dir.display()),
                format!(
                    "Pass --layout ({}) to create it with its first migration.",
                    Layout::names()
                ),
            ))
        }
    };
    let existing = |keep: &dyn Fn(&Path) -> Option<String>| -> Result<Vec<String>, CliError> {
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        Ok(list(dir)?.iter().filter_map(|p| keep(p)).collect())
    };
    let sql_files = |p: &Path| p.is_file() && file_name(p).ends_with(".sql");
    let scaffold = match layout {
        Layout::Flyway => {
            let mut versions = Vec::new();
            flyway_versions(dir, &mut versions)?;
            let newest = versions.into_iter().max_by(|a, b| a.0.cmp(&b.0)).map(|(_, raw)| raw);
            let version = newest.map_or_else(|| "1".to_string(), |v| bump(&v, now));
            one_file(dir.join(format!("V{version}__{name}.sql")), "")
        }
        Layout::GolangMigrate => {
            let versions = existing(&|p| {
                sql_files(p)
                    .then(|| golang_migrate::parse_name(&file_name(p)).map(|(v, _, _)| v))
                    .flatten()
            })?;
            let version = newest(versions).map_or_else(|| "000001".to_string(), |v| bump(&v, now));
            Scaffold {
                files: vec![
                    (dir.join(format!("{version}_{name}.up.sql")), String::new()),
                    (dir.join(format!("{version}_{name}.down.sql")), String::new()),
                ],
                plan_line: None,
            }
        }
        Layout::Dbmate => {
            let versions = existing(&|p| sql_files(p).then(|| digits_of(p)).flatten())?;
            let version = timestamp_after(newest(versions).as_deref(), now);
            one_file(
                dir.join(format!("{version}_{name}.sql")),
                "-- migrate:up\n\n-- migrate:down\n",
            )
        }
        Layout::Prisma => {
            let versions = existing(&|p| p.is_dir().then(|| digits_of(p)).flatten())?;
            let version = timestamp_after(newest(versions).as_deref(), now);
            one_file(dir.join(format!("{version}_{name}")).join("migration.sql"), "")
        }
        Layout::Plain => {
            let versions = existing(&|p| sql_files(p).then(|| digits_of(p)).flatten())?;
            let version = newest(versions).map_or_else(|| "0001".to_string(), |v| bump(&v, now));
            one_file(dir.join(format!("{version}_{name}.sql")), "")
        }
        Layout::Sqitch => sqitch_change(dir, name, now)?,
        other => match tools::scaffold(other, dir, name, now)? {
            Some(s) => s,
            None => {
                return Err(CliError::input(format!(
                    "pg-deploy new does not write {} migrations",
                    other.name()
                )))
            }
        },
    };
    if !matches!(layout, Layout::Sqitch | Layout::Liquibase | Layout::Versioned) {
        refuse_same_name(dir, name, layout)?;
    }
    write(layout, scaffold)
}

/// A second migration with the same name under another version is almost
/// always the same command run twice: refuse it.
fn refuse_same_name(dir: &Path, name: &str, layout: Layout) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Ok(());
    }
    for p in list(dir)? {
        let file = file_name(&p);
        let stem = file
            .strip_suffix(".up.sql")
            .or_else(|| file.strip_suffix(".down.sql"))
            .or_else(|| file.strip_suffix(".sql"))
            .unwrap_or(&file);
        // pop's dialect and autocommit parts are not part of the name.
        let stem = match layout {
            Layout::Pop => stem.split('.').next().unwrap_or(stem),
            _ => stem,
        };
        let rest = match layout {
            Layout::Flyway => stem.split_once("__").map_or("", |(_, r)| r),
            Layout::Diesel => stem.split_once('_').map_or("", |(_, r)| r),
            _ => stem[leading_digits(stem).len()..].strip_prefix('_').unwrap_or(""),
        };
        if rest == name {
            return Err(CliError::input_hint(
                format!(
                    "{} already has a migration called \"{name}\": {}",
                    dir.display(),
                    p.display()
                ),
                "Pick another name.",
            ));
        }
    }
    Ok(())
}

/// Names become parts of file names in every layout: keep them plain.
fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CliError::input_hint(
            format!("\"{name}\" cannot be a migration name"),
            "Use letters, digits, '_' and '-' (for example add_users); it becomes part of the file name.",
        ))
    }
}

fn one_file(path: PathBuf, text: &str) -> Scaffold {
    Scaffold {
        files: vec![(path, text.to_string())],
        plan_line: None,
    }
}

/// The leading digits of a file or folder name, if any.
fn digits_of(p: &Path) -> Option<String> {
    let name = file_name(p);
    let d = leading_digits(&name);
    (!d.is_empty()).then(|| d.to_string())
}

/// The largest of some digit strings, compared as numbers.
fn newest(versions: Vec<String>) -> Option<String> {
    versions.into_iter().max_by(|a, b| cmp_digits(a, b))
}

/// Every Flyway versioned migration's version under `dir` (sub-folders too), parsed and as written.
fn flyway_versions(dir: &Path, out: &mut Vec<(FlywayVersion, String)>) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Ok(());
    }
    for p in list(dir)? {
        if p.is_dir() {
            flyway_versions(&p, out)?;
        } else if let Some(flyway::Name::Versioned { version, .. }) = flyway::parse_name(&file_name(&p)) {
            if let Some(v) = FlywayVersion::parse(&version) {
                out.push((v, version));
            }
        }
    }
    Ok(())
}

/// The version after `newest`: a 14-digit timestamp is followed by the
/// current time; anything else by its last number plus one, keeping its
/// width (`0009` → `0010`, `1.2` → `1.3`, `1_9` → `1_10`).
fn bump(newest: &str, now: u64) -> String {
    if newest.len() == 14 && newest.bytes().all(|b| b.is_ascii_digit()) {
        return timestamp_after(Some(newest), now);
    }
    let end = newest.rfind(|c: char| c.is_ascii_digit()).map_or(0, |i| i + 1);
    let start = newest[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    format!(
        "{}{}{}",
        &newest[..start],
        increment(&newest[start..end]),
        &newest[end..]
    )
}

/// A digit string plus one, keeping its width unless it overflows (`99` → `100`).
fn increment(digits: &str) -> String {
    let mut b: Vec<u8> = digits.bytes().collect();
    let mut i = b.len();
    loop {
        if i == 0 {
            b.insert(0, b'1');
            break;
        }
        i -= 1;
        if b[i] == b'9' {
            b[i] = b'0';
        } else {
            b[i] += 1;
            break;
        }
    }
    String::from_utf8(b).unwrap_or_default()
}

/// The current UTC time as YYYYMMDDHHMMSS, or `newest` plus one if the
/// clock is not past it (so the new migration still sorts last).
fn timestamp_after(newest: Option<&str>, now: u64) -> String {
    let (y, mo, d, h, mi, s) = utc(now);
    let ts = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
    match newest {
        Some(n) if !cmp_digits(&ts, n).is_gt() => increment(n),
        _ => ts,
    }
}

/// Seconds since 1970 as UTC (year, month, day, hour, minute, second).
fn utc(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Sqitch: a line at the end of sqitch.plan and deploy/, revert/ and verify/
/// scripts in Sqitch's BEGIN/COMMIT wrapper (which the client strips again).
fn sqitch_change(dir: &Path, name: &str, now: u64) -> Result<Scaffold, CliError> {
    let plan_path = dir.join("sqitch.plan");
    if !plan_path.is_file() {
        return Err(CliError::input_hint(
            format!("{} does not exist", plan_path.display()),
            "Start the project with `sqitch init PROJECT --engine pg` first.",
        ));
    }
    let plan_text = layout::read_text(&plan_path)?;
    let plan = sqitch::parse_plan(&plan_text)?;
    if plan.changes.iter().any(|c| c.name == name) {
        return Err(CliError::input_hint(
            format!("sqitch.plan already has a change \"{name}\""),
            "Pick another name; reworked changes are not supported.",
        ));
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let user = env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "pg-deploy".into());
    let planner = env("SQITCH_FULLNAME").unwrap_or_else(|| user.clone());
    let email = env("SQITCH_EMAIL")
        .unwrap_or_else(|| format!("{user}@{}", env("HOSTNAME").unwrap_or_else(|| "localhost".into())));
    let (y, mo, d, h, mi, s) = utc(now);
    let separator = if plan_text.is_empty() || plan_text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let line = format!("{separator}{name} {y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z {planner} <{email}>\n");
    let script = |sub: &str, end: &str| (dir.join(sub).join(format!("{name}.sql")), format!("BEGIN;\n\n{end};\n"));
    Ok(Scaffold {
        files: vec![
            script("deploy", "COMMIT"),
            script("revert", "COMMIT"),
            script("verify", "ROLLBACK"),
        ],
        plan_line: Some((plan_path, line)),
    })
}

/// Writes the scaffold: nothing at all if any file exists already.
fn write(layout: Layout, scaffold: Scaffold) -> Result<Created, CliError> {
    for (p, _) in &scaffold.files {
        // A Prisma, diesel or versioned migration is its folder: an existing folder is taken.
        let what = match p.parent() {
            Some(folder) if matches!(layout, Layout::Prisma | Layout::Diesel | Layout::Versioned) => folder,
            _ => p.as_path(),
        };
        if what.exists() {
            return Err(CliError::input_hint(
                format!("{} already exists", what.display()),
                "pg-deploy new never overwrites a file; pick another name.",
            ));
        }
    }
    let mut created = Vec::new();
    for (p, text) in &scaffold.files {
        let fail = |e: std::io::Error| CliError::input(format!("cannot create {}: {e}", p.display()));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(fail)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        created.push(p.clone());
    }
    if let Some((plan, line)) = &scaffold.plan_line {
        let fail = |e: std::io::Error| CliError::input(format!("cannot append to {}: {e}", plan.display()));
        let mut f = fs::OpenOptions::new().append(true).open(plan).map_err(fail)?;
        f.write_all(line.as_bytes()).map_err(fail)?;
        created.push(plan.clone());
    }
    Ok(Created { layout, files: created })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{read_folder, testdir};

    /// 2024-01-01T12:00:00Z
    pub(super) const NOON: u64 = 1_704_110_400;

    pub(super) fn names(c: &Created, dir: &Path) -> Vec<String> {
        c.files
            .iter()
            .map(|p| p.strip_prefix(dir).expect("inside").display().to_string())
            .collect()
    }

    /// An unfilled scaffold is read with a warning; once filled in, the layout reads it as the newest migration.
    pub(super) fn fill_and_read(dir: &Path, sql_file: &Path, layout: Layout, id: &str) {
        let f = read_folder(dir, Some(layout)).expect("unfilled");
        assert!(f.warnings.iter().any(|w| w.contains("is empty")), "{:?}", f.warnings);
        let text = fs::read_to_string(sql_file).expect("read");
        let filled = if text.is_empty() {
            "SELECT 1;\n".to_string()
        } else {
            text.replacen("\n\n", "\nSELECT 1;\n", 1)
        };
        fs::write(sql_file, filled).expect("write");
        let folder = read_folder(dir, Some(layout)).expect("read");
        assert_eq!(folder.migrations.last().map(|m| m.id.as_str()), Some(id));
    }

    #[test]
    fn flyway_next_version() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(
            dir,
            &[
                ("V1__a.sql", "SELECT 1;"),
                ("sub/V2__b.sql", "SELECT 2;"),
                ("R__v.sql", "SELECT 3;"),
            ],
        );
        let c = new_migration(dir, "add_users", None, NOON).expect("new");
        assert_eq!(c.layout, Layout::Flyway);
        assert_eq!(names(&c, dir), ["V3__add_users.sql"]);
        fill_and_read(dir, &c.files[0], Layout::Flyway, "R__v");
        let c = new_migration(dir, "add_orders", None, NOON).expect("next");
        assert_eq!(names(&c, dir), ["V4__add_orders.sql"]);
        assert!(new_migration(dir, "add_users", None, NOON).is_err(), "same name twice");
        let tmp = tempfile::tempdir().expect("tmp");
        testdir::write(
            tmp.path(),
            &[("V1.9__a.sql", "SELECT 1;"), ("V1.10__b.sql", "SELECT 1;")],
        );
        let c = new_migration(tmp.path(), "c", None, NOON).expect("new");
        assert_eq!(names(&c, tmp.path()), ["V1.11__c.sql"]);
        let tmp = tempfile::tempdir().expect("tmp");
        let c = new_migration(&tmp.path().join("db"), "init", Some(Layout::Flyway), NOON).expect("new");
        assert_eq!(names(&c, &tmp.path().join("db")), ["V1__init.sql"]);
    }

    #[test]
    fn golang_migrate_up_and_down_with_the_same_width() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(
            dir,
            &[
                ("000009_a.up.sql", "SELECT 1;"),
                ("000009_a.down.sql", ""),
                ("000002_b.up.sql", "SELECT 1;"),
            ],
        );
        let c = new_migration(dir, "users", None, NOON).expect("new");
        assert_eq!(names(&c, dir), ["000010_users.up.sql", "000010_users.down.sql"]);
        fill_and_read(dir, &c.files[0], Layout::GolangMigrate, "000010_users");
        let tmp = tempfile::tempdir().expect("tmp");
        let c = new_migration(tmp.path(), "init", Some(Layout::GolangMigrate), NOON).expect("new");
        assert_eq!(names(&c, tmp.path()), ["000001_init.up.sql", "000001_init.down.sql"]);
    }

    #[test]
    fn dbmate_timestamp_with_sections() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(dir, &[("20230101000000_a.sql", "-- migrate:up\nSELECT 1;\n")]);
        let c = new_migration(dir, "accounts", None, NOON).expect("new");
        assert_eq!(names(&c, dir), ["20240101120000_accounts.sql"]);
        let text = fs::read_to_string(&c.files[0]).expect("read");
        assert_eq!(text, "-- migrate:up\n\n-- migrate:down\n");
        fill_and_read(dir, &c.files[0], Layout::Dbmate, "20240101120000_accounts");
        // A clock behind the newest migration still sorts the new one last.
        let c = new_migration(dir, "later", None, NOON - 3600).expect("new");
        assert_eq!(names(&c, dir), ["20240101120001_later.sql"]);
    }

    #[test]
    fn sqitch_plan_line_and_scripts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(
            dir,
            &[
                (
                    "sqitch.plan",
                    "%syntax-version=1.0.0\n%project=flipr\n\nappschema 2013-12-30T23:49:00Z M <m@x>",
                ),
                ("deploy/appschema.sql", "CREATE SCHEMA flipr;"),
            ],
        );
        let c = new_migration(dir, "users", None, NOON).expect("new");
        assert_eq!(
            names(&c, dir),
            [
                "deploy/users.sql",
                "revert/users.sql",
                "verify/users.sql",
                "sqitch.plan"
            ]
        );
        let plan = fs::read_to_string(dir.join("sqitch.plan")).expect("plan");
        let last = plan.lines().last().expect("line");
        assert!(last.starts_with("users 2024-01-01T12:00:00Z "), "{plan}");
        assert!(plan.contains("M <m@x>\nusers "), "{plan}");
        assert_eq!(
            fs::read_to_string(dir.join("verify/users.sql")).expect("verify"),
            "BEGIN;\n\nROLLBACK;\n"
        );
        fill_and_read(dir, &c.files[0], Layout::Sqitch, "users");
        let e = new_migration(dir, "users", None, NOON).expect_err("twice");
        assert!(e.to_string().contains("already has a change \"users\""), "{e}");
        let e =
            new_migration(tmp.path().join("deploy").as_path(), "x", Some(Layout::Sqitch), NOON).expect_err("no plan");
        assert!(e.to_string().contains("sqitch.plan does not exist"), "{e}");
    }

    #[test]
    fn prisma_folder_with_migration_sql() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(
            dir,
            &[
                ("20240101000000_init/migration.sql", "SELECT 1;"),
                ("migration_lock.toml", "x"),
            ],
        );
        let c = new_migration(dir, "posts", None, NOON).expect("new");
        assert_eq!(names(&c, dir), ["20240101120000_posts/migration.sql"]);
        fill_and_read(dir, &c.files[0], Layout::Prisma, "20240101120000_posts");
        let c = new_migration(dir, "comments", None, NOON).expect("same second");
        assert_eq!(names(&c, dir), ["20240101120001_comments/migration.sql"]);
        let e = new_migration(dir, "posts", None, NOON + 60).expect_err("same name");
        assert!(
            e.to_string().contains("already has a migration called \"posts\""),
            "{e}"
        );
    }

    #[test]
    fn plain_next_number_keeps_its_width() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        testdir::write(dir, &[("0001_a.sql", "SELECT 1;"), ("0009_b.sql", "SELECT 1;")]);
        let c = new_migration(dir, "seed", None, NOON).expect("new");
        assert_eq!(names(&c, dir), ["0010_seed.sql"]);
        fill_and_read(dir, &c.files[0], Layout::Plain, "0010_seed");
        let tmp = tempfile::tempdir().expect("tmp");
        let c = new_migration(tmp.path(), "init", Some(Layout::Plain), NOON).expect("new");
        assert_eq!(names(&c, tmp.path()), ["0001_init.sql"]);
    }

    #[test]
    fn never_overwrites_and_checks_names() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        let plan = "%project=p\na 2014-01-01T00:00:00Z M <m@x>\n";
        testdir::write(
            dir,
            &[
                ("sqitch.plan", plan),
                ("deploy/a.sql", "SELECT 1;"),
                ("verify/b.sql", "keep"),
            ],
        );
        let e = new_migration(dir, "b", None, NOON).expect_err("exists");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("b.sql already exists"), "{e}");
        assert!(
            !dir.join("deploy/b.sql").exists(),
            "nothing written when one file exists"
        );
        assert_eq!(fs::read_to_string(dir.join("verify/b.sql")).expect("read"), "keep");
        assert_eq!(fs::read_to_string(dir.join("sqitch.plan")).expect("read"), plan);
        for bad in ["", "has space", "../x", "-x", "a/b"] {
            assert_eq!(new_migration(dir, bad, None, NOON).expect_err(bad).exit_code(), 2);
        }
        let e = new_migration(&dir.join("missing"), "x", None, NOON).expect_err("no layout");
        assert!(e.to_string().contains("Pass --layout"), "{e}");
    }

    #[test]
    fn versions_and_clock() {
        assert_eq!(bump("9", 0), "10");
        assert_eq!(bump("0099", 0), "0100");
        assert_eq!(bump("1_9", 0), "1_10");
        assert_eq!(bump("2024.01.15.1", 0), "2024.01.15.2");
        assert_eq!(bump("20230101000000", NOON), "20240101120000");
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc(NOON + 59), (2024, 1, 1, 12, 0, 59));
        assert_eq!(timestamp_after(Some("20991231235959"), NOON), "20991231235960");
    }
}
