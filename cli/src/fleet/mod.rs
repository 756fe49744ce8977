//! Fleets: one manifest to many databases (docs/cli.md#fleets). The targets
//! come from a file and/or discovery on a server; each gets its own
//! connection and the same one call as a single apply, a bounded number at
//! a time, with a canary stage first; one report covers them all.

pub mod compare;
pub mod discover;
pub mod progress;
pub mod report;
pub mod runner;
pub mod status;
pub mod targets;
pub mod work;

use crate::args::{ApplyArgs, Cli, FolderArgs, OnFailure, RolloutArgs, TargetArgs, WaitArgs};
use crate::error::CliError;
use report::Row;
use runner::{Event, Rollout};
use std::io::IsTerminal;
use std::time::Duration;
use targets::Target;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// The fleet's targets: the file's, then the discovered ones; a duplicate,
/// an unreadable file or no target at all is bad input (exit 2).
pub fn targets(cli: &Cli, t: &TargetArgs) -> Result<Vec<Target>, CliError> {
    let mut out = Vec::new();
    if let Some(path) = &t.targets {
        out.extend(targets::read_file(path, &env)?);
    }
    if let Some(pattern) = &t.discover {
        let (mut cfg, source, tls) = crate::connect::config(cli.database_url.as_deref(), &env)?;
        cfg.notice_callback(|_| {});
        targets::fill_password(&mut cfg, &env);
        let retry = Duration::from_secs(cli.connect_retry);
        out.extend(discover::discover(&cfg, &source, &tls, pattern, retry)?);
    }
    targets::check_unique(&out)?;
    Ok(out)
}

fn limits(cli: &Cli, t: &TargetArgs) -> work::Limits {
    work::Limits {
        connect_retry: Duration::from_secs(cli.connect_retry),
        timeout: t.target_timeout,
    }
}

/// Runs `job` over the targets with progress on stderr; returns the rows.
fn run(quiet: bool, list: &[Target], plan: Rollout, job: &(dyn Fn(&Target, &'static str) -> Row + Sync)) -> Vec<Row> {
    let mut progress = progress::Progress::new(std::io::stderr().is_terminal(), quiet);
    let rows = runner::run(
        list.len(),
        plan,
        &|i, stage| job(&list[i], stage),
        &|i, stage, why| runner::skipped_row(&list[i].name, stage, why),
        &mut |e: Event| eprint!("{}", progress.update(e)),
    );
    eprint!("{}", progress.finish());
    rows
}

/// Prints the report (table, or JSON with --json) and returns the exit code.
fn finish(cli: &Cli, command: &str, project: Option<&str>, version: Option<&str>, rows: &[Row]) -> u8 {
    if cli.json {
        println!("{}", crate::text(&report::json(command, project, version, rows)));
    } else {
        print!("{}", report::text(command, rows));
    }
    u8::try_from(report::exit_code(rows)).unwrap_or(1)
}

/// `pg-deploy apply DIR --targets FILE | --discover PATTERN`.
pub fn apply(
    cli: &Cli,
    folder: &FolderArgs,
    apply: &ApplyArgs,
    no_wait: bool,
    wait: &WaitArgs,
    t: &TargetArgs,
    r: &RolloutArgs,
) -> Result<u8, CliError> {
    let (f, doc) = crate::load(folder)?;
    crate::announce(cli, folder, &f, &doc);
    crate::check_through(&doc, apply.through.as_deref())?;
    let list = targets(cli, t)?;
    let manifest = crate::text(&doc);
    let options = crate::text(&crate::apply_options(apply));
    let project = doc["project"].as_str().unwrap_or_default();
    let job = work::ApplyJob {
        manifest: &manifest,
        options: &options,
        project,
        phase_timeout: (!no_wait).then_some(wait.phase_timeout),
        run_here: !wait.no_run_here,
    };
    let l = limits(cli, t);
    let plan = Rollout {
        parallel: t.parallel(),
        canary: r.canary.unwrap_or(0),
        stop_on_failure: r.on_failure == Some(OnFailure::Stop),
    };
    let rows = run(cli.quiet, &list, plan, &|target, stage| {
        work::apply(target, stage, &job, &l)
    });
    Ok(finish(cli, "apply", Some(project), doc["version"].as_str(), &rows))
}

/// `pg-deploy plan DIR --targets FILE`: the dry run on every target.
pub fn plan(cli: &Cli, folder: &FolderArgs, opts: &serde_json::Value, t: &TargetArgs) -> Result<u8, CliError> {
    let (f, doc) = crate::load(folder)?;
    crate::announce(cli, folder, &f, &doc);
    let list = targets(cli, t)?;
    let manifest = crate::text(&doc);
    let options = crate::text(opts);
    let l = limits(cli, t);
    let plan = Rollout {
        parallel: t.parallel(),
        canary: 0,
        stop_on_failure: false,
    };
    let rows = run(cli.quiet, &list, plan, &|target, stage| {
        work::plan(target, stage, &manifest, &options, &l)
    });
    Ok(finish(
        cli,
        "plan",
        doc["project"].as_str(),
        doc["version"].as_str(),
        &rows,
    ))
}

/// `pg-deploy status --targets FILE`: every target's projects, outliers flagged.
pub fn status(cli: &Cli, project: Option<&str>, t: &TargetArgs) -> Result<u8, CliError> {
    let list = targets(cli, t)?;
    let l = limits(cli, t);
    let answers: Vec<std::sync::Mutex<Option<status::TargetStatus>>> =
        list.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let plan = Rollout {
        parallel: t.parallel(),
        canary: 0,
        stop_on_failure: false,
    };
    // The runner drives the connections (quietly: the table follows at
    // once); the rows it wants are placeholders.
    run(true, &list, plan, &|target, stage| {
        let result = work::status(target, project, &l)
            .and_then(|v| crate::output::read("status", &v, serde_json::from_value::<Vec<status::ProjectRow>>));
        let outcome = if result.is_ok() {
            report::Outcome::NoOp
        } else {
            report::Outcome::Failed
        };
        let i = list.iter().position(|x| x.name == target.name).unwrap_or(0);
        if let Ok(mut slot) = answers[i].lock() {
            *slot = Some(status::TargetStatus {
                target: target.name.clone(),
                result,
            });
        }
        Row::new(&target.name, stage, outcome)
    });
    let all: Vec<status::TargetStatus> = answers
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect();
    let lines = status::lines(&all);
    if cli.json {
        println!("{}", crate::text(&status::json(&lines, &status::majorities(&all))));
    } else {
        print!("{}", status::text(&lines));
    }
    Ok(u8::try_from(status::exit_code(&lines)).unwrap_or(1))
}

/// `pg-deploy compare A B --project P`.
pub fn compare(cli: &Cli, a: &str, b: &str, project: &str) -> Result<u8, CliError> {
    let side = |text: &str| -> Result<compare::Side, CliError> {
        let (mut cfg, source, tls) = crate::connect::config(Some(text), &env)?;
        cfg.notice_callback(|_| {});
        targets::fill_password(&mut cfg, &env);
        let mut c = crate::connect::connect(&cfg, &source, &tls, Duration::from_secs(cli.connect_retry))?;
        compare::read(&mut c, &targets::display_name(&cfg), project)
    };
    let (a, b) = (side(a)?, side(b)?);
    let (history, schema) = compare::compare(&a, &b);
    if cli.json {
        println!("{}", crate::text(&compare::json(project, &a, &b, &history, &schema)));
    } else {
        print!("{}", compare::text(project, &a, &b, &history, &schema));
    }
    Ok(if compare::differs(&a, &b, &history, &schema) {
        1
    } else {
        0
    })
}
