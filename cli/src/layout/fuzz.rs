//! Fuzz harness over the client's folder layouts: file names (Flyway,
//! golang-migrate), orderings, dbmate sections and Sqitch's transaction
//! wrappers, sqitch.plan lines, and whole folders written to a temp dir and
//! read through detection, every layout and the manifest build.
//!
//! The same driver as core/tests/fuzz.rs: proptest strategies from a seeded
//! ChaCha RNG, every input under `catch_unwind`, panics and property failures
//! counted, the first of each shrunk and saved in the corpus format. Nothing
//! may panic, every error is bad input (exit 2) with a message, orderings
//! are total orders, and no layout reads a file outside the folder.
//!
//! `cargo test -p pg-deploy-cli fuzz` runs a few thousand inputs per target;
//! `FUZZ_CASES=<n per target>` or `FUZZ_TOTAL=<n over all targets>` more (bench/fuzz.sh).
//! Corpus files of targets `cli_*` in core/tests/fuzz_corpus/ are replayed here.
// Generators and checkers take what proptest hands them, as it hands them.
#![allow(clippy::ptr_arg, clippy::unusual_byte_groupings, clippy::neg_cmp_op_on_partial_ord)]

use super::{dbmate, detect, flyway, golang_migrate, read_folder, sqitch, strip_transaction_wrapper, Layout};
use crate::error::CliError;
use crate::manifest::{build, BuildOptions};
use crate::order::{cmp_digits, cmp_natural, leading_digits, FlywayVersion};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The driver (as in core/tests/fuzz.rs)
// ---------------------------------------------------------------------------

/// Inputs for a target: `FUZZ_CASES` (per target), else `FUZZ_TOTAL` × its
/// share in per-mille of a whole run over core and client, else `default`.
fn cases(default: u64, per_mille: u64) -> u64 {
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.replace('_', "").parse::<u64>().ok())
    };
    env("FUZZ_CASES")
        .or_else(|| env("FUZZ_TOTAL").map(|t| t * per_mille / 1000))
        .unwrap_or(default)
}

fn seed(target: &str) -> [u8; 32] {
    let base: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0f_1a_2b);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ base;
    for b in target.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let x = h
            .wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .rotate_left(17 * i as u32);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

fn run_one<T>(check: &dyn Fn(&T) -> Result<(), String>, input: &T) -> Result<(), (bool, String)> {
    match catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err((false, why)),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err((true, format!("panicked: {msg}")))
        }
    }
}

fn fuzz<S>(target: &str, (default, per_mille): (u64, u64), strategy: S, check: impl Fn(&S::Value) -> Result<(), String>)
where
    S: Strategy,
    S::Value: serde::Serialize + Debug,
{
    let n = cases(default, per_mille);
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed(target));
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let (mut inputs, mut panics, mut failures) = (0u64, 0u64, 0u64);
    let (mut slowest, mut checking) = (Duration::ZERO, Duration::ZERO);
    let (mut saved_panic, mut saved_failure) = (false, false);
    let mut first = Vec::new();
    let started = Instant::now();
    for _ in 0..n {
        let mut tree = strategy.new_tree(&mut runner).expect("strategy generates");
        let input = tree.current();
        let t0 = Instant::now();
        let result = run_one(&check, &input);
        let took = t0.elapsed();
        checking += took;
        slowest = slowest.max(took);
        inputs += 1;
        let Err((panicked, why)) = result else { continue };
        if panicked {
            panics += 1;
        } else {
            failures += 1;
        }
        let saved = if panicked { &mut saved_panic } else { &mut saved_failure };
        if *saved {
            continue;
        }
        *saved = true;
        let (small, why) = shrink(&mut tree, &check, input, why);
        let path = save_failure(target, &small, &why);
        first.push(format!("{why}\n  input: {small:?}\n  saved: {}", path.display()));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {inputs} inputs in {secs:.2} s ({:.0} inputs/s), {panics} panics, {failures} failures, \
         slowest input {:.1} ms, {:.0}% of the time checking",
        inputs as f64 / secs.max(1e-9),
        slowest.as_secs_f64() * 1e3,
        100.0 * checking.as_secs_f64() / secs.max(1e-9)
    );
    assert!(
        panics == 0 && failures == 0,
        "fuzz {target}: {panics} panics, {failures} failures; first (shrunk):\n{}",
        first.join("\n")
    );
}

fn shrink<T: Debug, V: ValueTree<Value = T>>(
    tree: &mut V,
    check: &dyn Fn(&T) -> Result<(), String>,
    mut best: T,
    mut why: String,
) -> (T, String) {
    let mut failing = true;
    for _ in 0..500 {
        let moved = if failing { tree.simplify() } else { tree.complicate() };
        if !moved {
            break;
        }
        let current = tree.current();
        match run_one(check, &current) {
            Err((_, w)) => {
                failing = true;
                best = current;
                why = w;
            }
            Ok(()) => failing = false,
        }
    }
    (best, why)
}

fn save_failure<T: serde::Serialize>(target: &str, input: &T, why: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("pg-deploy-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let record = json!({"target": target, "note": why, "input": input});
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    let sum = pg_deploy_core::checksum::sha256_hex(text.as_bytes());
    let path = dir.join(format!("{target}-{}.json", &sum[..12]));
    let _ = std::fs::write(&path, text);
    path
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Local errors are bad input (exit 2) with a message.
fn check_error(e: &CliError) -> Result<(), String> {
    ensure!(e.exit_code() == 2, "exit code {} for {e:?}", e.exit_code());
    let CliError::Input { message, hint } = e else {
        return Err(format!("not a bad-input error: {e:?}"));
    };
    ensure!(!message.trim().is_empty(), "empty message");
    ensure!(hint.as_ref().is_none_or(|h| !h.trim().is_empty()), "empty hint");
    if let Some(rest) = message.strip_prefix("invalid manifest (") {
        let code = &rest[..rest.find(')').unwrap_or(0)];
        ensure!(code.len() == 5, "manifest error without a SQLSTATE: {message}");
    }
    Ok(())
}

/// Three ways to compare being a total order on a, b, c.
fn check_total_order<T: Debug>(items: [&T; 3], cmp: impl Fn(&T, &T) -> Ordering, what: &str) -> Result<(), String> {
    for &a in &items {
        ensure!(cmp(a, a) == Ordering::Equal, "{what}: {a:?} is not equal to itself");
        for &b in &items {
            ensure!(
                cmp(a, b) == cmp(b, a).reverse(),
                "{what}: not antisymmetric on {a:?}, {b:?}"
            );
            for &c in &items {
                if cmp(a, b) != Ordering::Greater && cmp(b, c) != Ordering::Greater {
                    ensure!(
                        cmp(a, c) != Ordering::Greater,
                        "{what}: not transitive on {a:?} ≤ {b:?} ≤ {c:?}"
                    );
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Targets: names and orderings
// ---------------------------------------------------------------------------

fn check_names(input: &(String, String, String)) -> Result<(), String> {
    let names = [&input.0, &input.1, &input.2];
    for name in names {
        match flyway::parse_name(name) {
            Some(flyway::Name::Versioned { version, description }) => {
                ensure!(
                    *name == format!("V{version}__{description}.sql"),
                    "{name:?} split wrong"
                );
                let v = FlywayVersion::parse(&version).ok_or("versioned without a version")?;
                let canonical = FlywayVersion::parse(&v.canonical()).ok_or("canonical version does not parse")?;
                ensure!(
                    canonical == v && canonical.canonical() == v.canonical(),
                    "canonical form of {version:?}"
                );
            }
            Some(flyway::Name::Undo { version }) => {
                ensure!(name.starts_with(&format!("U{version}__")), "{name:?} split wrong");
                ensure!(FlywayVersion::parse(&version).is_some(), "undo without a version");
            }
            Some(flyway::Name::Repeatable { description }) => {
                ensure!(
                    *name == format!("R__{description}.sql") && !description.is_empty(),
                    "{name:?} split wrong"
                );
            }
            None => {}
        }
        ensure!(
            flyway::is_flyway_name(name) == flyway::parse_name(name).is_some(),
            "is_flyway_name differs"
        );
        if let Some((digits, id, up)) = golang_migrate::parse_name(name) {
            let suffix = if up { ".up.sql" } else { ".down.sql" };
            ensure!(*name == format!("{id}{suffix}"), "{name:?} split wrong");
            ensure!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "version {digits:?}"
            );
            ensure!(id.starts_with(&digits), "id {id:?} does not start with {digits:?}");
            ensure!(!golang_migrate::key(&digits).is_empty(), "empty key");
        }
        let d = leading_digits(name);
        ensure!(
            name.starts_with(d) && d.bytes().all(|b| b.is_ascii_digit()),
            "leading digits {d:?}"
        );
    }
    check_total_order(names, |a, b| cmp_natural(a, b), "cmp_natural")?;
    let digits: Vec<String> = names
        .iter()
        .map(|n| n.chars().filter(char::is_ascii_digit).collect())
        .collect();
    check_total_order(
        [&digits[0], &digits[1], &digits[2]],
        |a, b| cmp_digits(a, b),
        "cmp_digits",
    )?;
    let versions: Vec<FlywayVersion> = names
        .iter()
        .filter_map(|n| FlywayVersion::parse(n.trim_start_matches(['V', 'U'])))
        .collect();
    if versions.len() == 3 {
        check_total_order(
            [&versions[0], &versions[1], &versions[2]],
            |a, b| a.cmp(b),
            "FlywayVersion",
        )?;
    }
    let mut sorted: Vec<&String> = names.to_vec();
    sorted.sort_by(|a, b| cmp_natural(a, b));
    Ok(())
}

fn name_strategy() -> BoxedStrategy<String> {
    let version = prop_oneof![
        "[0-9]{1,4}([._][0-9]{1,3}){0,3}",
        "0{0,3}[0-9]{1,20}",
        "[0-9._]{0,8}",
        Just(String::new()),
    ];
    let structured = (
        prop::sample::select(vec!["V", "U", "R", "v", "", "B", "VV"]),
        version,
        prop::sample::select(vec!["__", "_", "___", "", "__ "]),
        prop_oneof!["[a-z_ ]{0,12}", any::<String>(), Just(String::new())],
        prop::sample::select(vec![
            ".sql",
            ".up.sql",
            ".down.sql",
            ".sql.sql",
            ".SQL",
            "",
            ".up.sql.sql",
            ".txt",
        ]),
    )
        .prop_map(|(p, v, s, d, x)| format!("{p}{v}{s}{d}{x}"));
    prop_oneof![4 => structured, 1 => any::<String>(), 1 => "[0-9a-z_.]{0,10}"].boxed()
}

// ---------------------------------------------------------------------------
// Targets: file texts (dbmate sections, Sqitch transaction wrappers)
// ---------------------------------------------------------------------------

const LINES: &[&str] = &[
    "-- migrate:up",
    "--migrate:up",
    "  -- migrate:up transaction:false",
    "-- migrate:upper",
    "-- migrate:down",
    "--   migrate:down  ",
    "-- migrate:UP",
    "-- migrate:",
    "\u{feff}-- migrate:up",
    "BEGIN;",
    "begin",
    "BEGIN TRANSACTION ;",
    "START TRANSACTION;",
    "COMMIT;",
    "commit ;;",
    "ROLLBACK;",
    "END;",
    "SELECT 1;",
    "CREATE TABLE a (id int);",
    "",
    "   ",
    "\t",
    "-- comment",
    "--",
    "; ",
    "é\u{202e}",
];

fn text_strategy() -> BoxedStrategy<String> {
    let line = prop_oneof![6 => prop::sample::select(LINES.to_vec()).prop_map(str::to_string), 1 => any::<String>()];
    prop_oneof![
        6 => (prop::collection::vec(line, 0..12), prop::sample::select(vec!["\n", "\r\n", "\r", "\n\n"]), any::<bool>())
            .prop_map(|(lines, sep, end)| {
                let mut t = lines.join(sep);
                if end {
                    t.push_str(sep);
                }
                t
            }),
        1 => any::<String>(),
    ]
    .boxed()
}

fn check_text(text: &String) -> Result<(), String> {
    let has_up = text.lines().any(dbmate::is_up_marker);
    match dbmate::sections(text) {
        None => ensure!(!has_up, "an up marker but no sections"),
        Some((up, down)) => {
            ensure!(has_up, "sections without an up marker");
            ensure!(up.ends_with('\n'), "up section {up:?} does not end with a newline");
            ensure!(
                down.as_ref().is_none_or(|d| !d.trim().is_empty()),
                "blank down section kept"
            );
            ensure!(!up.lines().any(dbmate::is_up_marker), "marker inside the up section");
        }
    }
    let stripped = strip_transaction_wrapper(text);
    ensure!(stripped.len() <= text.len(), "stripping grew the text");
    if stripped != *text {
        let before = text.lines().filter(|l| !l.trim().is_empty()).count();
        let after = stripped.lines().filter(|l| !l.trim().is_empty()).count();
        ensure!(after + 2 == before, "stripping removed {} lines, not 2", before - after);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Targets: sqitch.plan
// ---------------------------------------------------------------------------

fn plan_strategy() -> BoxedStrategy<String> {
    let change_name = prop_oneof![
        4 => prop::sample::select(vec![
            "a", "users", "+b", "-c", "../x", "../../etc/passwd", "/tmp/x", "a/b", "a/../../b", "ü", "a:b", ".",
            "..", "+", "+-", "a\\b", "con", "x.y", "a@b",
        ])
        .prop_map(str::to_string),
        2 => "[a-z][a-z0-9_]{0,6}",
        1 => "[^\\s#\\[]{1,10}",
    ];
    let deps = prop_oneof![
        3 => Just(String::new()),
        2 => prop::collection::vec(
            prop::sample::select(vec!["a", "users", "b@v1", "!c", "x:y", "@t", "", "../x", "a@", "[", "ü"]),
            0..4
        )
        .prop_map(|d| format!(" [{}]", d.join(" "))),
        1 => prop::sample::select(vec![" [", " ]", " []", " [a", " a]", "[a]", " [[a]]"]).prop_map(str::to_string),
    ];
    let change = (
        change_name,
        deps,
        prop::sample::select(vec!["", " # note [x]", " #", "# no space"]),
    )
        .prop_map(|(n, d, note)| format!("{n}{d} 2014-01-01T00:00:00Z Marge <m@x>{note}"));
    let line = prop_oneof![
        6 => change,
        1 => prop::sample::select(vec![
            "%project=flipr", "%syntax-version=1.0.0", "%project = a b ", "%", "%=", "%project=", "@v1 2014-01-01T00:00:00Z M <m@x>",
            "# comment", "", "   ", "\u{feff}a", "a", "+", "-",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop_oneof![
        6 => (prop::collection::vec(line, 0..8), prop::sample::select(vec!["\n", "\r\n"]))
            .prop_map(|(lines, sep)| lines.join(sep)),
        1 => any::<String>(),
    ]
    .boxed()
}

/// A path below the folder: only normal components.
fn stays_inside(relative: &str) -> bool {
    !relative.contains('\\')
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn check_plan(text: &String) -> Result<(), String> {
    match sqitch::parse_plan(text) {
        Err(e) => {
            check_error(&e)?;
            ensure!(
                e.to_string().contains("sqitch.plan line"),
                "error without its line: {e}"
            );
        }
        Ok(plan) => {
            for (i, c) in plan.changes.iter().enumerate() {
                ensure!(
                    !c.name.is_empty() && !c.name.contains(char::is_whitespace),
                    "change name {:?}",
                    c.name
                );
                ensure!(
                    plan.changes[..i].iter().all(|o| o.name != c.name),
                    "duplicate change {:?} accepted",
                    c.name
                );
                ensure!(
                    c.line >= 1 && c.line <= text.lines().count(),
                    "line {} out of range",
                    c.line
                );
                // deploy/<name>.sql, revert/…, verify/… must stay in the folder.
                ensure!(
                    stays_inside(&format!("{}.sql", c.name)),
                    "change name {:?} leaves the folder",
                    c.name
                );
                for r in &c.requires {
                    ensure!(!r.contains(':'), "cross-project dependency {r:?} accepted");
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Target: whole folders
// ---------------------------------------------------------------------------

/// A folder: files (relative path, bytes), a layout to force or None, and the build options.
type FolderInput = (
    Vec<(String, Vec<u8>)>,
    Option<usize>,
    (Option<String>, Option<String>, Option<Value>, bool),
);

fn folder_strategy() -> BoxedStrategy<FolderInput> {
    let path = prop_oneof![
        4 => prop::sample::select(vec![
            "V1__a.sql", "V1.0__b.sql", "V2__c.sql", "U1__a.sql", "U3__x.sql", "R__views.sql", "R__.sql", "sub/V1.1__d.sql",
            "1_a.up.sql", "1_a.down.sql", "01_b.up.sql", "2_c.down.sql", "3.up.sql", "1_a.sql", "01_b.sql", "10_c.sql",
            "a.sql", "a.sql.sql", "notes.txt", "20240101000000_init/migration.sql", "20240201000000_x/migration.sql",
            "x/migration.sql", "migration.sql", "sqitch.plan", "deploy/a.sql", "deploy/users.sql", "revert/a.sql",
            "verify/a.sql", "deploy/b.sql", "x.sql", "outside.sql", ".sql", "..sql", "\u{202e}1_x.sql", "1_é.sql",
        ])
        .prop_map(str::to_string),
        1 => (name_strategy(), prop::sample::select(vec!["", "sub/", "deploy/", "a/migration.sql/"]))
            .prop_map(|(n, d)| format!("{d}{n}")),
    ];
    let content = prop_oneof![
        4 => text_strategy().prop_map(String::into_bytes),
        2 => plan_strategy().prop_map(String::into_bytes),
        2 => prop::sample::select(vec![
            "SELECT 1;", "", "  \n", "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n", "-- migrate:down\n",
            "%project=p\na 2014-01-01T00:00:00Z M <m@x>\n", "%project=\u{202e}p\na 2014-01-01T00:00:00Z M <m@x>\n",
            "a 2014-01-01T00:00:00Z M <m@x>\n../outside 2014-01-01T00:00:00Z M <m@x>\n",
            "users [a] 2014-01-01T00:00:00Z M <m@x>\n", "BEGIN;\nCOMMIT;\n",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    let opts = (
        prop::option::of(prop::sample::select(vec!["p", "", " p", "ü", "a\u{0}b"]).prop_map(str::to_string)),
        prop::option::of(
            prop::sample::select(vec!["1.0.0", "one", "1.0", " 2.0.0 ", "0.0.0-rc.1"]).prop_map(str::to_string),
        ),
        prop::option::of(prop::sample::select(vec![
            json!({}),
            json!({"lock_timeout": "2s"}),
            json!({"lock_timeout": "2 weeks"}),
            json!([]),
            json!(null),
            json!({"alow": []}),
        ])),
        any::<bool>(),
    );
    (
        prop::collection::vec((path, content), 0..6),
        prop::option::of(0usize..6),
        opts,
    )
        .boxed()
}

const LAYOUTS: [Layout; 6] = [
    Layout::Flyway,
    Layout::GolangMigrate,
    Layout::Dbmate,
    Layout::Sqitch,
    Layout::Prisma,
    Layout::Plain,
];

fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn check_folder(input: &FolderInput) -> Result<(), String> {
    let (files, layout, (project, release, defaults, include)) = input;
    let tmp = tempfile::tempdir_in(scratch_root()).map_err(|e| e.to_string())?;
    // The migrations live in tmp/m; tmp/outside.sql is a file a layout must never read.
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    std::fs::write(tmp.path().join("outside.sql"), "SELECT 'outside';").map_err(|e| e.to_string())?;
    for (name, bytes) in files {
        if name.is_empty() || name.contains('\0') || !stays_inside(name) {
            continue;
        }
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                continue;
            }
        }
        let _ = std::fs::write(&p, bytes);
    }
    match detect(&dir) {
        Ok(_) => {}
        Err(e) => check_error(&e)?,
    }
    let forced = layout.map(|i| LAYOUTS[i % LAYOUTS.len()]);
    let folder = match read_folder(&dir, forced) {
        Ok(f) => f,
        Err(e) => return check_error(&e),
    };
    ensure!(!folder.migrations.is_empty(), "a folder without migrations was read");
    let root = dir.canonicalize().map_err(|e| e.to_string())?;
    for m in &folder.migrations {
        let source = m
            .source
            .canonicalize()
            .map_err(|e| format!("source {}: {e}", m.source.display()))?;
        ensure!(
            source.starts_with(&root),
            "{:?} read {} outside the folder",
            folder.layout,
            source.display()
        );
        ensure!(!m.sql.trim().is_empty(), "blank SQL read from {}", m.source.display());
    }
    let opts = BuildOptions {
        project: project.clone(),
        release: release.clone(),
        include_revert: *include,
        include_verify: *include,
        defaults: defaults.clone(),
        schemas: Vec::new(),
    };
    match build(&dir, &folder, &opts) {
        Err(e) => check_error(&e)?,
        Ok(doc) => {
            let m = pg_deploy_core::Manifest::from_value(&doc).map_err(|e| format!("built manifest refused: {e}"))?;
            ensure!(m.changes.len() == folder.migrations.len(), "changes lost");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn fuzz_layout_names() {
    fuzz(
        "cli_names",
        (3_000, 40),
        (name_strategy(), name_strategy(), name_strategy()),
        check_names,
    );
}

#[test]
fn fuzz_layout_texts() {
    fuzz("cli_texts", (3_000, 30), text_strategy(), check_text);
}

#[test]
fn fuzz_sqitch_plans() {
    fuzz("cli_plans", (3_000, 30), plan_strategy(), check_plan);
}

#[test]
fn fuzz_layout_folders() {
    fuzz("cli_folders", (600, 5), folder_strategy(), check_folder);
}

fn replay<T: serde::de::DeserializeOwned>(
    input: &Value,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<(), String> {
    let t: T = serde_json::from_value(input.clone()).map_err(|e| format!("bad corpus input: {e}"))?;
    run_one(&check, &t).map_err(|(_, why)| why)
}

/// The corpus files of the client's targets (`cli_*`) in core/tests/fuzz_corpus/.
#[test]
fn fuzz_corpus_replays_clean() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fuzz_corpus");
    let mut failed = Vec::new();
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("core/tests/fuzz_corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let record: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let input = &record["input"];
        let result = match record["target"].as_str().unwrap_or_default() {
            "cli_names" => replay(input, check_names),
            "cli_texts" => replay(input, check_text),
            "cli_plans" => replay(input, check_plan),
            "cli_folders" => replay(input, check_folder),
            _ => continue,
        };
        replayed += 1;
        if let Err(why) = result {
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(failed.is_empty(), "corpus inputs fail:\n{}", failed.join("\n"));
    eprintln!("fuzz cli corpus: {replayed} inputs replayed clean");
}
