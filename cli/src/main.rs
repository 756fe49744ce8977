//! pg-deploy: turns a migrations folder (Flyway, golang-migrate, dbmate,
//! Sqitch, Prisma or plain .sql files) into one pg_deploy manifest and sends it
//! in one call. See docs/cli.md.

mod adopt;
mod connect;
mod db;
mod error;
mod layout;
mod manifest;
mod order;
mod output;
mod tls;

use clap::{Args, Parser, Subcommand};
use error::CliError;
use layout::{Folder, Layout};
use manifest::BuildOptions;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "pg-deploy", version, about = "Deploy a migrations folder with pg_deploy, in one call", long_about = None)]
struct Cli {
    /// Connection string (postgres://… or "host=… dbname=…"); default: DATABASE_URL, else PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Seconds to keep retrying while the server refuses connections or is starting up (57P03).
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS")]
    wait: u64,
    /// Print the extension's JSON report (or a JSON error) on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Do not print the server's NOTICEs and the "what was read" line on stderr (connection retries are still said).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct FolderArgs {
    /// The migrations folder.
    dir: PathBuf,
    /// flyway, golang-migrate, dbmate, sqitch, prisma or plain; default: detected.
    #[arg(long)]
    layout: Option<String>,
    /// Project name; default: Sqitch's %project, else the folder's name.
    #[arg(long)]
    project: Option<String>,
    /// Manifest version (semver); default: 0.N.0, N = number of versioned migrations.
    #[arg(long, value_name = "X.Y.Z")]
    release: Option<String>,
    /// Leave down/undo/revert scripts out of the manifest.
    #[arg(long)]
    no_revert: bool,
    /// Leave verify scripts out of the manifest.
    #[arg(long)]
    no_verify: bool,
    /// JSON object for the manifest's "defaults" (lock_timeout, statement_timeout, search_path, allow, ...).
    #[arg(long, value_name = "JSON")]
    defaults: Option<String>,
    /// Schemas the project manages, for drift (manifest "schemas"), comma-separated; default: derived from the changes.
    #[arg(long, value_delimiter = ',', value_name = "SCHEMA,...")]
    schemas: Vec<String>,
}

#[derive(Args, Debug, Clone)]
struct ApplyArgs {
    /// Apply a version older than the deployed one.
    #[arg(long)]
    allow_downgrade: bool,
    /// Accept the new text of this applied versioned change without running it (repeatable).
    #[arg(long, value_name = "ID")]
    accept_changed: Vec<String>,
    /// Fail at once (55P03) instead of waiting when another session deploys the project.
    #[arg(long)]
    no_wait_for_lock: bool,
    /// Free text recorded with the deployment.
    #[arg(long)]
    reason: Option<String>,
    /// Objects changed outside deployments since the last one: ignore (default), warn, or refuse (55000).
    #[arg(long, value_parser = ["ignore", "warn", "refuse"])]
    drift: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the manifest built from the folder (no database needed).
    Manifest {
        #[command(flatten)]
        folder: FolderArgs,
    },
    /// Apply the folder: deploy.apply(manifest) in one call.
    Apply {
        #[command(flatten)]
        folder: FolderArgs,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Show what apply would do: deploy.plan(manifest); exit 1 if it would be refused or fail.
    Plan {
        #[command(flatten)]
        folder: FolderArgs,
        #[command(flatten)]
        apply: ApplyArgs,
        /// Do not run the pending changes in a rolled-back trial.
        #[arg(long)]
        no_execute: bool,
    },
    /// Show deployed projects: deploy.status().
    Status {
        #[arg(long)]
        project: Option<String>,
    },
    /// Objects added, removed or changed since the last deployment: deploy.drift(project); exit 1 if any.
    Drift {
        #[arg(long)]
        project: String,
    },
    /// Record what another tool already applied (from its history table) without running it.
    Adopt {
        #[command(flatten)]
        folder: FolderArgs,
        /// flyway, golang-migrate, dbmate, sqitch or sqlx.
        #[arg(long)]
        from: String,
        /// The tool's history table if not its default (e.g. myschema.flyway_schema_history).
        #[arg(long, value_name = "TABLE")]
        history_table: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Undo everything deployed after VERSION with the stored revert SQL: deploy.revert(project, version).
    Revert {
        #[arg(long)]
        project: String,
        /// The version to go back to.
        #[arg(long, value_name = "VERSION")]
        to: String,
        /// Hazards the revert SQL may have (comma-separated), e.g. data_loss.
        #[arg(long, value_delimiter = ',')]
        allow: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Check the hash chain of the deployment log: deploy.verify_log(); exit 1 if broken.
    VerifyLog {
        #[arg(long)]
        project: Option<String>,
    },
    /// Record every change up to and including ID as applied without running it.
    Baseline {
        #[command(flatten)]
        folder: FolderArgs,
        #[arg(long, value_name = "ID")]
        through: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Reads the folder and builds the manifest; everything here is local (exit 2 on errors).
fn load(f: &FolderArgs) -> Result<(Folder, Value), CliError> {
    let layout = f.layout.as_deref().map(Layout::parse).transpose()?;
    let folder = layout::read_folder(&f.dir, layout)?;
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

/// One line on stderr saying what was read, so a wrong guess of the layout shows.
fn announce(cli: &Cli, f: &FolderArgs, folder: &Folder, doc: &Value) {
    if !cli.quiet {
        eprintln!(
            "pg-deploy: {}: {} migration(s), layout {}, project {}, version {}",
            f.dir.display(),
            folder.migrations.len(),
            folder.layout.name(),
            doc["project"].as_str().unwrap_or("?"),
            doc["version"].as_str().unwrap_or("?")
        );
    }
}

fn apply_options(a: &ApplyArgs) -> Value {
    let mut o = json!({});
    if a.no_wait_for_lock {
        o["wait"] = json!(false);
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
    if let Some(d) = &a.drift {
        o["drift"] = json!(d);
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
    connect::connect(&cfg, &source, &tls, Duration::from_secs(cli.wait))
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Prints a report: JSON as-is with --json, else the human rendering.
fn show(cli: &Cli, report: &Value, human: fn(&Value) -> String) {
    if cli.json {
        println!("{}", text(report));
    } else {
        print!("{}", human(report));
    }
}

fn run(cli: &Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Manifest { folder } => {
            let (_, doc) = load(folder)?;
            let pretty = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| text(&doc));
            println!("{}", if cli.json { text(&doc) } else { pretty });
            Ok(0)
        }
        Command::Apply { folder, apply } => {
            let (f, doc) = load(folder)?;
            announce(cli, folder, &f, &doc);
            let mut c = client(cli)?;
            let report = db::apply(&mut c, &text(&doc), &text(&apply_options(apply)))?;
            show(cli, &report, output::apply);
            Ok(0)
        }
        Command::Plan {
            folder,
            apply,
            no_execute,
        } => {
            let (f, doc) = load(folder)?;
            announce(cli, folder, &f, &doc);
            let mut opts = apply_options(apply);
            if *no_execute {
                opts["execute"] = json!(false);
            }
            let mut c = client(cli)?;
            let report = db::plan(&mut c, &text(&doc), &text(&opts))?;
            show(cli, &report, output::plan);
            Ok(if output::plan_failed(&report) { 1 } else { 0 })
        }
        Command::Status { project } => {
            let mut c = client(cli)?;
            let rows = db::status(&mut c, project.as_deref())?;
            show(cli, &rows, output::status);
            Ok(0)
        }
        Command::Drift { project } => {
            let mut c = client(cli)?;
            let report = db::drift(&mut c, project)?;
            show(cli, &report, output::drift);
            Ok(if output::drift_found(&report) { 1 } else { 0 })
        }
        Command::Adopt {
            folder,
            from,
            history_table,
            reason,
        } => {
            let tool = adopt::Tool::parse(from)?;
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
            let report = db::baseline(&mut c, &text(&doc), &text(&opts))?;
            show(cli, &report, output::baseline);
            Ok(0)
        }
        Command::Revert {
            project,
            to,
            allow,
            reason,
        } => {
            let mut opts = json!({});
            if !allow.is_empty() {
                opts["allow"] = json!(allow);
            }
            if let Some(r) = reason {
                opts["reason"] = json!(r);
            }
            let mut c = client(cli)?;
            let report = db::revert(&mut c, project, to, &text(&opts))?;
            show(cli, &report, output::revert);
            Ok(0)
        }
        Command::VerifyLog { project } => {
            let mut c = client(cli)?;
            let rows = db::verify_log(&mut c, project.as_deref())?;
            show(cli, &rows, output::verify_log);
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
            let report = db::baseline(&mut c, &text(&doc), &text(&opts))?;
            show(cli, &report, output::baseline);
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
