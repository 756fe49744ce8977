//! pg-deploy: turns a migrations folder (Flyway, golang-migrate, dbmate,
//! Sqitch, Prisma, diesel, goose, pop, Liquibase formatted SQL, sqlx,
//! versioned folders or plain .sql files) into one pg_deploy manifest and
//! sends it in one call. See docs/cli.md.

mod adopt;
mod args;
mod connect;
mod db;
mod dump;
mod error;
mod fleet;
mod generate;
mod hints;
mod layout;
mod manifest;
mod order;
mod output;
mod phase;
mod placeholder;
mod refusals;
mod run_here;
mod scaffold;
mod sql_text;
mod tls;
mod wait;

use args::{ApplyArgs, Cli, Command, FolderArgs, PhasesMode};
use clap::Parser;
use error::CliError;
use layout::Folder;
use manifest::BuildOptions;
use output::read;
use pg_deploy_core::report::{
    ApplyReport, BaselineReport, DriftRow, PlanReport, RevertReport, StatusRow, VerifyLogRow,
};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Reads the folder and builds the manifest; everything here is local (exit 2 on errors).
fn load(f: &FolderArgs) -> Result<(Folder, Value), CliError> {
    let placeholders = placeholder::Placeholders::new(&f.placeholder, std::env::vars())?;
    let folder = layout::read_folder_with(&f.dir, f.layout, &placeholders)?;
    let defaults = match &f.defaults {
        None => None,
        Some(text) => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| CliError::input(format!("--defaults is not JSON: {e}")))?;
            Some(v)
        }
    };
    let opts = BuildOptions {
        project: f.project.clone(),
        release: f.release.clone(),
        include_revert: !f.no_revert,
        include_verify: !f.no_verify,
        defaults,
        schemas: f.schemas.clone(),
    };
    let doc = manifest::build(&f.dir, &folder, &opts)?;
    Ok((folder, doc))
}

/// One line on stderr saying what was read, so a wrong guess of the layout
/// shows, and the warnings about how files were read.
fn announce(cli: &Cli, f: &FolderArgs, folder: &Folder, doc: &Value) {
    if !cli.quiet {
        let online = folder.migrations.iter().filter(|m| m.online.is_online()).count();
        eprintln!(
            "pg-deploy: {}: {} migration(s){}, layout {}, project {}, version {}",
            f.dir.display(),
            folder.migrations.len(),
            if online > 0 {
                format!(" ({online} online)")
            } else {
                String::new()
            },
            folder.layout.name(),
            doc["project"].as_str().unwrap_or("?"),
            doc["version"].as_str().unwrap_or("?")
        );
    }
    warn_folder(cli, folder);
}

fn warn_folder(cli: &Cli, folder: &Folder) {
    if !cli.quiet {
        for w in &folder.warnings {
            eprintln!("pg-deploy: warning: {w}");
        }
    }
}

/// `--through ID` must name a change of the folder (checked before connecting).
fn check_through(doc: &Value, through: Option<&str>) -> Result<(), CliError> {
    let Some(id) = through else { return Ok(()) };
    let ids: Vec<&str> = doc["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    if ids.contains(&id) {
        return Ok(());
    }
    Err(CliError::input_hint(
        format!("--through {id}: the folder has no change \"{id}\""),
        format!(
            "Change ids are the migrations' names without .sql (the last one here is \"{}\"); \
             `pg-deploy manifest DIR` lists them.",
            ids.last().unwrap_or(&"")
        ),
    ))
}

fn apply_options(a: &ApplyArgs) -> Value {
    let mut o = json!({});
    if a.no_lock_wait {
        o["wait"] = json!(false);
    }
    if let Some(t) = &a.lock_wait {
        o["wait_timeout"] = json!(t);
    }
    if a.allow_downgrade {
        o["allow_downgrade"] = json!(true);
    }
    if !a.accept_changed.is_empty() {
        o["accept_changed"] = json!(a.accept_changed);
    }
    if let Some(r) = &a.reason {
        o["reason"] = json!(r);
    }
    if let Some(d) = a.drift {
        o["drift"] = json!(d.name());
    }
    // "declared" is the extension's default: left out, so that an extension
    // older than phases still takes the options.
    if a.phases == PhasesMode::Auto {
        o["phases"] = json!("auto");
    }
    if let Some(t) = &a.through {
        o["through"] = json!(t);
    }
    o
}

fn client(cli: &Cli) -> Result<postgres::Client, CliError> {
    let env = |k: &str| std::env::var(k).ok();
    let (mut cfg, source, tls) = connect::config(cli.database_url.as_deref(), &env)?;
    if !cli.quiet {
        cfg.notice_callback(|n| eprintln!("NOTICE: {}", n.message()));
    } else {
        cfg.notice_callback(|_| {});
    }
    connect::connect(&cfg, &source, &tls, Duration::from_secs(cli.connect_retry))
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Prints a report: with --json the server's answer as it came (not the typed
/// report written again, so nothing is lost), else the human rendering of the
/// typed report read from it.
fn show<T: ?Sized>(cli: &Cli, answer: &Value, report: &T, human: fn(&T) -> String) {
    if cli.json {
        println!("{}", text(answer));
    } else {
        print!("{}", human(report));
    }
}

fn run(cli: &Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Manifest { folder } => {
            let (f, doc) = load(folder)?;
            warn_folder(cli, &f);
            let pretty = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| text(&doc));
            println!("{}", if cli.json { text(&doc) } else { pretty });
            Ok(0)
        }
        Command::Apply {
            folder,
            apply,
            no_wait,
            wait,
            fleet,
            rollout,
            dump,
        } => {
            if fleet.chosen(Some(rollout))? {
                if dump.is_some() {
                    return Err(CliError::input_hint(
                        "--dump writes one database's schema; it does not go with --targets or --discover",
                        "Run `pg-deploy dump FILE --database-url URL` against the database whose schema you want.",
                    ));
                }
                return fleet::apply(cli, folder, apply, *no_wait, wait, fleet, rollout);
            }
            let (f, doc) = load(folder)?;
            announce(cli, folder, &f, &doc);
            check_through(&doc, apply.through.as_deref())?;
            let mut c = client(cli)?;
            let options = text(&apply_options(apply));
            let mut answer = match db::apply(&mut c, &text(&doc), &options) {
                Ok(a) => a,
                Err(e) => return Err(refusals::after_apply(&mut c, &text(&doc), &options, e)),
            };
            let report = read("apply", &answer, serde_json::from_value::<ApplyReport>)?;
            let steps = phase::steps_of(&answer)?;
            if cli.json {
                // The text report prints them; with --json, say on stderr where the server split.
                if !cli.quiet {
                    for w in &report.warnings {
                        eprintln!("pg-deploy: warning: {}", hints::in_client_terms(w));
                    }
                }
            } else {
                print!("{}", output::apply(&report));
                if let Some(s) = &steps {
                    print!("{}", phase::steps_text(s, !*no_wait));
                    if *no_wait {
                        println!("  `pg-deploy wait {}` follows them", report.project);
                    }
                }
            }
            let Some(steps) = steps.filter(|_| !*no_wait) else {
                if cli.json {
                    println!("{}", text(&answer));
                }
                dump::to_file(cli.database_url.as_deref(), cli.quiet, dump.as_deref())?;
                return Ok(0);
            };
            let followed = follow(cli, &mut c, &report.project, Some(steps.deployment_id), wait);
            let followed = match followed {
                Ok(f) => f,
                // The deployment committed: with --json its report is printed
                // all the same, with why waiting stopped under "wait_error".
                Err(e) if cli.json => {
                    answer["wait_error"] = e.to_json()["error"].clone();
                    println!("{}", text(&answer));
                    eprintln!("pg-deploy: {e}");
                    return Ok(u8::try_from(e.exit_code()).unwrap_or(1));
                }
                Err(e) => return Err(e),
            };
            if cli.json {
                answer["phases"] = phase::merged(&answer["phases"], &followed.answer);
                println!("{}", text(&answer));
            }
            let code = finish(cli, &followed, wait.phase_timeout)?;
            if code == 0 {
                dump::to_file(cli.database_url.as_deref(), cli.quiet, dump.as_deref())?;
            }
            Ok(code)
        }
        Command::Dump { file } => {
            let file = file.as_deref().unwrap_or(std::path::Path::new("-"));
            dump::to_file(cli.database_url.as_deref(), cli.quiet, Some(file))?;
            Ok(0)
        }
        Command::Wait { project, wait } => {
            let mut c = client(cli)?;
            let followed = follow(cli, &mut c, project, None, wait)?;
            if cli.json {
                println!("{}", text(&followed.answer));
            }
            finish(cli, &followed, wait.phase_timeout)
        }
        Command::Plan {
            folder,
            apply,
            execute,
            no_execute: _,
            fleet,
        } => {
            let mut opts = apply_options(apply);
            opts["execute"] = json!(*execute);
            if fleet.chosen(None)? {
                return fleet::plan(cli, folder, &opts, fleet);
            }
            let (f, doc) = load(folder)?;
            announce(cli, folder, &f, &doc);
            let mut c = client(cli)?;
            let answer = db::plan(&mut c, &text(&doc), &text(&opts))?;
            let report = read("plan", &answer, serde_json::from_value::<PlanReport>)?;
            show(cli, &answer, &report, output::plan);
            Ok(if output::plan_failed(&report) { 1 } else { 0 })
        }
        Command::Compare { a, b, project } => fleet::compare(cli, a, b, project),
        Command::Status { project, fleet } if fleet.chosen(None)? => fleet::status(cli, project.as_deref(), fleet),
        Command::Status { project, .. } => {
            let mut c = client(cli)?;
            let answer = db::status(&mut c, project.as_deref())?;
            let rows = read("status", &answer, serde_json::from_value::<Vec<StatusRow>>)?;
            show(cli, &answer, rows.as_slice(), output::status);
            Ok(0)
        }
        Command::Drift { project } => {
            let mut c = client(cli)?;
            let answer = db::drift(&mut c, project)?;
            let rows = read("drift", &answer, serde_json::from_value::<Vec<DriftRow>>)?;
            show(cli, &answer, rows.as_slice(), output::drift);
            Ok(if output::drift_found(&rows) { 1 } else { 0 })
        }
        Command::Lineage { project } => {
            let mut c = client(cli)?;
            let answer = db::lineage(&mut c, project)?;
            let report = read(
                "lineage",
                &answer,
                serde_json::from_value::<output::lineage::LineageReport>,
            )?;
            show(cli, &answer, &report, output::lineage::lineage);
            Ok(0)
        }
        Command::Adopt {
            folder,
            from,
            history_table,
            reason,
        } => {
            let tool = *from;
            let (f, doc) = load(folder)?;
            announce(cli, folder, &f, &doc);
            let mut c = client(cli)?;
            let project = doc["project"].as_str().unwrap_or_default().to_string();
            let sqitch_project = f.declared_project.clone().unwrap_or_else(|| project.clone());
            let rows = adopt::read_history(&mut c, tool, history_table.as_deref(), Some(&sqitch_project))?;
            let mapping = adopt::map(tool, &rows, &f.migrations)?;
            for w in &mapping.warnings {
                eprintln!("pg-deploy: warning: {w}");
            }
            if mapping.ids.is_empty() {
                let report = json!({"project": project, "outcome": "nothing to adopt", "baselined": [], "skipped": []});
                if cli.json {
                    println!("{}", text(&report));
                } else {
                    println!("{project}: the {} history lists nothing to adopt", tool.name());
                }
                return Ok(0);
            }
            let table = history_table
                .clone()
                .unwrap_or_else(|| tool.default_table().to_string());
            let reason = reason
                .clone()
                .unwrap_or_else(|| format!("adopted from {} history ({table})", tool.name()));
            let opts = json!({"changes": mapping.ids, "reason": reason});
            let answer = db::baseline(&mut c, &text(&doc), &text(&opts))?;
            let report = read("baseline", &answer, serde_json::from_value::<BaselineReport>)?;
            show(cli, &answer, &report, output::baseline);
            Ok(0)
        }
        Command::Revert {
            project,
            to,
            allow,
            no_lock_wait,
            reason,
        } => {
            let mut opts = json!({});
            if !allow.is_empty() {
                opts["allow"] = json!(allow);
            }
            if *no_lock_wait {
                opts["wait"] = json!(false);
            }
            if let Some(r) = reason {
                opts["reason"] = json!(r);
            }
            let mut c = client(cli)?;
            let answer = db::revert(&mut c, project, to, &text(&opts))?;
            let report = read("revert", &answer, serde_json::from_value::<RevertReport>)?;
            show(cli, &answer, &report, output::revert);
            Ok(0)
        }
        Command::VerifyLog { project } => {
            let mut c = client(cli)?;
            let answer = db::verify_log(&mut c, project.as_deref())?;
            let rows = read("verify-log", &answer, serde_json::from_value::<Vec<VerifyLogRow>>)?;
            show(cli, &answer, rows.as_slice(), output::verify_log);
            Ok(if output::log_broken(&rows) { 1 } else { 0 })
        }
        Command::Baseline {
            folder,
            through,
            reason,
        } => {
            let (f, doc) = load(folder)?;
            announce(cli, folder, &f, &doc);
            let mut opts = json!({"through": through});
            if let Some(r) = reason {
                opts["reason"] = json!(r);
            }
            let mut c = client(cli)?;
            let answer = db::baseline(&mut c, &text(&doc), &text(&opts))?;
            let report = read("baseline", &answer, serde_json::from_value::<BaselineReport>)?;
            show(cli, &answer, &report, output::baseline);
            Ok(0)
        }
        Command::New { name, dir, layout } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let made = scaffold::new_migration(dir, name, *layout, now)?;
            if cli.json {
                let files: Vec<String> = made.files.iter().map(|p| p.display().to_string()).collect();
                println!("{}", text(&json!({"layout": made.layout.name(), "created": files})));
            } else {
                for p in &made.files {
                    println!("{}", p.display());
                }
            }
            Ok(0)
        }
        Command::Completions { shell } => generate::completions(*shell),
        Command::Man { dir: None } => generate::man_page(),
        Command::Man { dir: Some(dir) } => {
            for p in generate::write_man_pages(dir)? {
                println!("{}", p.display());
            }
            Ok(0)
        }
    }
}

/// Polls deploy.phase_status on `c` (autocommit, one statement each) until
/// the phase ends, with progress on stderr; reconnects once per lost
/// connection. When no background worker slot is free, runs the phase from
/// `c` itself (docs/cli.md), unless `opts.no_run_here`.
fn follow(
    cli: &Cli,
    c: &mut postgres::Client,
    project: &str,
    deployment: Option<i64>,
    opts: &args::WaitArgs,
) -> Result<wait::Followed, CliError> {
    let live = !cli.quiet && std::io::stderr().is_terminal();
    let clear = if live { "\r\x1b[2K" } else { "" };
    let progress = RefCell::new(phase::Progress::new(live));
    let c = RefCell::new(c);
    let mut clock = wait::RealClock::start();
    let mut here = run_here::session::ClientRunner::new(!opts.no_run_here, project, deployment, opts.phase_timeout);
    let result = {
        let mut fetch = || {
            let mut c = c.borrow_mut();
            match db::phase_status(&mut c, project) {
                Err(e) if wait::reconnectable(&e) => {
                    eprintln!("{clear}pg-deploy: {}", wait::reconnect_note(&e));
                    **c = client(cli)?;
                    db::phase_status(&mut c, project)
                }
                other => other,
            }
        };
        let mut report = |s: &phase::PhaseStatus, waited: Duration| {
            if !cli.quiet {
                eprint!("{}", progress.borrow_mut().update(s, waited));
            }
        };
        let mut run_here = |s: &phase::PhaseStatus| {
            let mut c = c.borrow_mut();
            let ran = here.run_if_wanted(
                s,
                &mut c,
                &mut || eprint!("{}", progress.borrow_mut().finish()),
                &mut |line| {
                    if !cli.quiet {
                        eprintln!("pg-deploy: {line}");
                    }
                },
                &mut |note| eprintln!("pg-deploy: {note}"),
            );
            match ran {
                Err(e) if wait::reconnectable(&e) => {
                    eprintln!("pg-deploy: {}", run_here::lost_note(&e));
                    **c = client(cli)?;
                    Ok(true)
                }
                other => other,
            }
        };
        wait::follow(
            &mut fetch,
            deployment,
            opts.phase_timeout,
            &mut clock,
            &mut report,
            &mut run_here,
        )
    };
    eprint!("{}", progress.borrow_mut().finish());
    result
}

/// Ends a wait: the summary (text output), and exit 1 when the phase failed,
/// timed out or was taken over. With --json the report printed already says
/// so, and the error goes to stderr only.
fn finish(cli: &Cli, f: &wait::Followed, timeout: Duration) -> Result<u8, CliError> {
    if !cli.json {
        if f.ending == wait::Ending::Nothing {
            println!("{}", phase::line(&f.status));
        } else {
            print!("{}", phase::summary(&f.status, f.waited));
        }
    }
    match f.error(timeout) {
        None => Ok(0),
        Some(e) if cli.json => {
            eprintln!("pg-deploy: {e}");
            Ok(u8::try_from(e.exit_code()).unwrap_or(1))
        }
        Some(e) => Err(e),
    }
}

/// Parses the command line. Help and --version print and exit 0; a usage
/// error prints clap's message and exits 2 (bad input), with the JSON error
/// on stdout too when `--json` was given.
fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            if std::env::args_os().any(|a| a == "--json") {
                let rendered = e.to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                println!("{}", text(&CliError::input(message).to_json()));
            }
            std::process::exit(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    let cli = parse_args();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pg-deploy: {e}");
            if cli.json {
                println!("{}", text(&e.to_json()));
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn options(args: &[&str]) -> Value {
        let cli = Cli::try_parse_from(["pg-deploy", "apply", "db"].iter().chain(args)).expect("parses");
        let Command::Apply { apply, .. } = cli.command else {
            panic!("apply")
        };
        apply_options(&apply)
    }

    #[test]
    fn apply_options_ask_for_auto_phases_by_default() {
        assert_eq!(options(&[]), json!({"phases": "auto"}));
        assert_eq!(options(&["--phases", "declared"]), json!({}));
        assert_eq!(
            options(&["--through", "0003_x", "--no-lock-wait", "--drift", "warn"]),
            json!({"phases": "auto", "through": "0003_x", "wait": false, "drift": "warn"})
        );
        // Every option built is one the extension's own parser takes.
        for args in [
            &[][..],
            &["--phases", "declared", "--through", "a", "--lock-wait", "2min"][..],
        ] {
            let o = options(args);
            pg_deploy_core::ApplyOptions::from_value(&o).expect("valid options");
        }
    }

    #[test]
    fn through_must_name_a_change() {
        let doc = json!({"changes": [{"id": "1_a"}, {"id": "2_b"}]});
        assert!(check_through(&doc, None).is_ok());
        assert!(check_through(&doc, Some("1_a")).is_ok());
        let e = check_through(&doc, Some("2")).expect_err("no such change");
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("--through 2: the folder has no change \"2\""),
            "{e}"
        );
        assert!(e.to_string().contains("the last one here is \"2_b\""), "{e}");
    }
}
