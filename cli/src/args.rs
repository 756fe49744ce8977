//! The command line: clap's types for every command and option. Each concept
//! has one name (docs/cli.md#options); older spellings are hidden aliases so
//! existing scripts keep working:
//!
//! - `--connect-retry SECONDS` (was `--wait`): how long to keep retrying while
//!   the server is not up yet.
//! - `--no-lock-wait` (was `--no-wait-for-lock`): do not wait for a concurrent
//!   deployment of the project (deploy.apply's `"wait": false`).

use crate::adopt::Tool;
use crate::error::CliError;
use crate::layout::Layout;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The heading the options every command takes are listed under.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "pg-deploy",
    version,
    about = "Deploy a migrations folder with pg_deploy, in one call",
    long_about = "Deploy a migrations folder (Flyway, golang-migrate, dbmate, Sqitch, Prisma, diesel, goose, pop, Liquibase formatted SQL, sqlx, versioned folders or plain .sql files) \
                  with the pg_deploy extension, in one call.\n\n\
                  Exit codes: 0 success; 1 the database said no (or drift found, a broken log, a difference found by compare, \
                  a failed target or an outlier of a fleet); \
                  2 bad input; 3 cannot connect."
)]
pub struct Cli {
    /// Connection string (postgres://… or "host=… dbname=…"); default: DATABASE_URL, else PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD.
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub database_url: Option<String>,
    /// Keep retrying the connection for up to SECONDS while the server refuses connections or is starting up (57P03); 0 = one attempt.
    #[arg(
        long,
        global = true,
        default_value_t = 60,
        value_name = "SECONDS",
        alias = "wait",
        help_heading = GLOBAL
    )]
    pub connect_retry: u64,
    /// Print the extension's JSON report (or a JSON error) on stdout instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Do not print the server's NOTICEs and the "what was read" line on stderr (connection retries are still said).
    #[arg(long, short, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    /// The migrations folder.
    pub dir: PathBuf,
    /// The folder's layout; default: detected from the files.
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// Project name; default: Sqitch's %project, else the folder's name.
    #[arg(long)]
    pub project: Option<String>,
    /// Manifest version (semver); default: 0.N.0, N = number of versioned migrations.
    #[arg(long, value_name = "X.Y.Z")]
    pub release: Option<String>,
    /// Leave down/undo/revert scripts out of the manifest.
    #[arg(long)]
    pub no_revert: bool,
    /// Leave verify scripts out of the manifest.
    #[arg(long)]
    pub no_verify: bool,
    /// JSON object for the manifest's "defaults" (lock_timeout, statement_timeout, search_path, allow, ...).
    #[arg(long, value_name = "JSON")]
    pub defaults: Option<String>,
    /// Schemas the project manages, for drift (manifest "schemas"), comma-separated; default: derived from the changes.
    #[arg(long, value_delimiter = ',', value_name = "SCHEMA,...")]
    pub schemas: Vec<String>,
    /// A placeholder's value (${name} in Flyway files, {{ index .Options "name" }} in pop files); repeatable.
    /// Also read from PG_DEPLOY_PLACEHOLDER_<name> and FLYWAY_PLACEHOLDERS_<NAME>.
    #[arg(long, value_name = "NAME=VALUE")]
    pub placeholder: Vec<String>,
}

/// What apply (or plan) does when the project's objects changed outside deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftPolicy {
    /// Go ahead without looking (the extension's default).
    Ignore,
    /// Go ahead and list the drift in the report's warnings.
    Warn,
    /// Refuse (55000, exit 1).
    Refuse,
}

impl DriftPolicy {
    /// The value of deploy.apply's `"drift"` option.
    pub fn name(self) -> &'static str {
        match self {
            DriftPolicy::Ignore => "ignore",
            DriftPolicy::Warn => "warn",
            DriftPolicy::Refuse => "refuse",
        }
    }
}

/// Where commit boundaries come from (deploy.apply's `"phases"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhasesMode {
    /// The server also starts a new phase where a change provably needs an
    /// earlier one committed (an enum value added, then used), as the old
    /// tool's one transaction per file did; its warnings say where.
    Auto,
    /// Only the manifest's marks (online, commit_before) split the deployment;
    /// a provable need for a commit is an error.
    Declared,
}

/// `--phase-timeout`: a duration with a unit (`90s`, `30min`, `2h`), more than zero.
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let trimmed = text.trim();
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("\"{text}\" has no unit; write e.g. 90s, 30min or 2h"));
    }
    match pg_deploy_core::manifest::duration_ms(trimmed) {
        Some(ms) if (1.0..1e15).contains(&ms) => Ok(std::time::Duration::from_millis(ms as u64)),
        _ => Err(format!("\"{text}\" is not a duration such as 90s, 30min or 2h")),
    }
}

/// Waiting for the steps that run after the deployment commits.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// Give up waiting after this long (the steps go on in the background; exit 1).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    pub phase_timeout: std::time::Duration,
    /// Never run the steps from this client: when no background worker slot
    /// is free, wait for one (by default the client runs them itself).
    #[arg(long)]
    pub no_run_here: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Apply a version older than the deployed one.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Accept the new text of this applied versioned change without running it (repeatable).
    #[arg(long, value_name = "ID")]
    pub accept_changed: Vec<String>,
    /// Fail at once (55P03) instead of waiting while another session deploys the project.
    #[arg(long, alias = "no-wait-for-lock")]
    pub no_lock_wait: bool,
    /// Wait at most this long for another session's deployment of the project (default 5min).
    #[arg(long, value_name = "DURATION", conflicts_with = "no_lock_wait")]
    pub lock_wait: Option<String>,
    /// Free text recorded with the deployment.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// What to do when objects changed outside deployments since the last one; default: ignore.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub drift: Option<DriftPolicy>,
    /// Where the deployment may be split into phases that commit one after the other.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub phases: PhasesMode,
    /// Apply the pending changes up to and including this change id only.
    #[arg(long, value_name = "ID")]
    pub through: Option<String>,
}

/// The heading the fleet options are listed under.
const FLEET: &str = "Fleet options (many databases, docs/cli.md#fleets)";

/// Many databases instead of one (docs/cli.md#fleets).
#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// Every database listed in FILE (one connection string a line; blank lines and # comments allowed) instead of one.
    #[arg(long, value_name = "FILE", help_heading = FLEET)]
    pub targets: Option<PathBuf>,
    /// Also every database on the server of --database-url (or PG*) whose name matches PATTERN (* and ?), templates left out.
    #[arg(long, value_name = "PATTERN", help_heading = FLEET)]
    pub discover: Option<String>,
    /// How many targets at once [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=512), help_heading = FLEET)]
    pub parallel: Option<u16>,
    /// Give up on a target after this long (its call is cancelled, so it rolls back): 90s, 10min, …
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, help_heading = FLEET)]
    pub target_timeout: Option<std::time::Duration>,
}

impl TargetArgs {
    /// Whether a fleet was asked for. Fleet options without targets are bad
    /// input: silently deploying one database where a canary was meant is worse.
    pub fn chosen(&self, rollout: Option<&RolloutArgs>) -> Result<bool, CliError> {
        if self.targets.is_some() || self.discover.is_some() {
            return Ok(true);
        }
        let mut stray = Vec::new();
        if self.parallel.is_some() {
            stray.push("--parallel");
        }
        if self.target_timeout.is_some() {
            stray.push("--target-timeout");
        }
        if let Some(r) = rollout {
            if r.canary.is_some() {
                stray.push("--canary");
            }
            if r.on_failure.is_some() {
                stray.push("--on-failure");
            }
        }
        if stray.is_empty() {
            return Ok(false);
        }
        Err(CliError::input_hint(
            format!(
                "{} only go(es) with --targets FILE or --discover PATTERN",
                stray.join(", ")
            ),
            "These options are for many databases at once (docs/cli.md#fleets).",
        ))
    }

    /// `--parallel`, or its default.
    pub fn parallel(&self) -> usize {
        usize::from(self.parallel.unwrap_or(4))
    }
}

/// After the canary, what a failed target does to the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OnFailure {
    /// Go on with every other target and report the failures at the end.
    #[default]
    Continue,
    /// Start no new target (those running finish); the rest are reported skipped.
    Stop,
}

/// How a fleet apply rolls out.
#[derive(Args, Debug, Clone, Default)]
pub struct RolloutArgs {
    /// First the first N targets alone; if any of them fails, no other target is started [default: 0].
    #[arg(long, value_name = "N", help_heading = FLEET)]
    pub canary: Option<usize>,
    /// After the canary: continue past a failed target, or stop starting new ones [default: continue].
    #[arg(long, value_enum, value_name = "MODE", help_heading = FLEET)]
    pub on_failure: Option<OnFailure>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the manifest built from the folder (no database needed).
    Manifest {
        #[command(flatten)]
        folder: FolderArgs,
    },
    /// Apply the folder: deploy.apply(manifest) in one call, then wait for the steps that run after commit.
    Apply {
        #[command(flatten)]
        folder: FolderArgs,
        #[command(flatten)]
        apply: ApplyArgs,
        /// Return when the deployment commits; steps after it (online changes, later phases) go on in the background.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        fleet: TargetArgs,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// After a successful apply, write the schema (pg_dump --schema-only) to FILE, like dbmate's schema.sql.
        #[arg(long, value_name = "FILE")]
        dump: Option<PathBuf>,
    },
    /// Write the database's schema (pg_dump --schema-only, no owners or grants) to FILE, or stdout.
    Dump {
        /// Where to write it; `-` or nothing: stdout.
        file: Option<PathBuf>,
    },
    /// Show what apply would do: deploy.plan(manifest); exit 1 if it would be refused or fail.
    Plan {
        #[command(flatten)]
        folder: FolderArgs,
        #[command(flatten)]
        apply: ApplyArgs,
        /// Also run the pending changes in a trial that is rolled back (what a
        /// rollback cannot undo, e.g. session advisory locks or NOTIFY, is not run).
        #[arg(long)]
        execute: bool,
        /// No trial run: the default since 0.2.0 (kept so old scripts still work).
        #[arg(long, hide = true, conflicts_with = "execute")]
        no_execute: bool,
        #[command(flatten)]
        fleet: TargetArgs,
    },
    /// Wait for the steps of a project's last deployment that run after it committed: deploy.phase_status(project).
    Wait {
        /// The project whose deployment to follow.
        project: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show deployed projects: deploy.status(); over a fleet, with the outliers flagged (exit 1 if any).
    Status {
        /// Show only this project; default: every project.
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        fleet: TargetArgs,
    },
    /// Compare one project in two databases (a branch and its parent): history and schema; exit 1 if they differ.
    Compare {
        /// Connection string of the first database (A), e.g. the parent.
        a: String,
        /// Connection string of the second database (B), e.g. the branch.
        b: String,
        /// The project to compare.
        #[arg(long)]
        project: String,
    },
    /// Objects added, removed or changed since the last deployment: deploy.drift(project); exit 1 if any.
    Drift {
        /// The project whose objects to compare with its last deployment.
        #[arg(long)]
        project: String,
    },
    /// Where each object of the project's schemas came from: the change and deployment that created and
    /// last altered it, and the last command outside deployments (who, when, application): deploy.lineage(project).
    Lineage {
        /// The project whose objects to show.
        #[arg(long)]
        project: String,
    },
    /// Record what another tool already applied (from its history table) without running it.
    Adopt {
        #[command(flatten)]
        folder: FolderArgs,
        /// The tool that built the database, whose history table is read.
        #[arg(long, value_enum, value_name = "TOOL")]
        from: Tool,
        /// The tool's history table if not its default (e.g. myschema.flyway_schema_history).
        #[arg(long, value_name = "TABLE")]
        history_table: Option<String>,
        /// Free text recorded with the deployment; default: "adopted from TOOL history (TABLE)".
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Undo everything deployed after VERSION with the stored revert SQL: deploy.revert(project, version).
    Revert {
        /// The project to revert.
        #[arg(long)]
        project: String,
        /// The version to go back to.
        #[arg(long, value_name = "VERSION")]
        to: String,
        /// Hazards the revert SQL may have (comma-separated), e.g. data_loss.
        #[arg(long, value_delimiter = ',', value_name = "HAZARD,...")]
        allow: Vec<String>,
        /// Fail at once (55P03) instead of waiting while another session deploys the project.
        #[arg(long, alias = "no-wait-for-lock")]
        no_lock_wait: bool,
        /// Free text recorded with the deployment.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Check the hash chain of the deployment log: deploy.verify_log(); exit 1 if broken.
    VerifyLog {
        /// Check only this project; default: every project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Record every change up to and including ID as applied without running it.
    Baseline {
        #[command(flatten)]
        folder: FolderArgs,
        /// The last change id to record as applied (every change before it is recorded too).
        #[arg(long, value_name = "ID")]
        through: String,
        /// Free text recorded with the deployment.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Create the files of a new migration, named and numbered as the folder's layout does (no database needed).
    New {
        /// The migration's name: letters, digits, '_' and '-'.
        name: String,
        /// The migrations folder (created if missing and --layout is given).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The folder's layout; default: detected from the files already there.
        #[arg(long, value_enum)]
        layout: Option<Layout>,
    },
    /// Print a shell completion script on stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page pg-deploy(1) on stdout, or write one page per command into a folder.
    Man {
        /// Write pg-deploy.1 and pg-deploy-COMMAND.1 into this folder instead, and print their paths.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("pg-deploy").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every argument of every command says what it is for, positional ones included.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
            }
            for sub in cmd.get_subcommands() {
                assert!(sub.get_about().is_some(), "{path} {} has no about", sub.get_name());
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "pg-deploy");
    }

    #[test]
    fn help_lists_the_values() {
        let mut cmd = Cli::command();
        cmd.build();
        let apply = cmd.find_subcommand_mut("apply").expect("apply");
        let help = apply.render_help().to_string();
        assert!(
            help.contains("[possible values: flyway, golang-migrate, dbmate, sqitch, prisma, diesel, goose, pop, liquibase, sqlx, versioned, plain]"),
            "{help}"
        );
        assert!(help.contains("[possible values: ignore, warn, refuse]"), "{help}");
        assert!(help.contains("--no-lock-wait"), "{help}");
        assert!(!help.contains("no-wait-for-lock"), "old spelling stays hidden: {help}");
        assert!(help.contains("--connect-retry <SECONDS>"), "{help}");
        let adopt = cmd.find_subcommand_mut("adopt").expect("adopt");
        let help = adopt.render_help().to_string();
        assert!(
            help.contains("[possible values: flyway, golang-migrate, dbmate, sqitch, sqlx, diesel, goose, pop, liquibase, temporal]"),
            "{help}"
        );
    }

    #[test]
    fn old_spellings_still_work() {
        let cli = parse(&["apply", "db", "--wait", "5", "--no-wait-for-lock"]);
        assert_eq!(cli.connect_retry, 5);
        let Command::Apply { apply, .. } = cli.command else {
            panic!("apply")
        };
        assert!(apply.no_lock_wait);
        let cli = parse(&[
            "--wait",
            "7",
            "revert",
            "--project",
            "p",
            "--to",
            "1.0.0",
            "--no-wait-for-lock",
        ]);
        assert_eq!(cli.connect_retry, 7);
        assert!(matches!(cli.command, Command::Revert { no_lock_wait: true, .. }));
        let cli = parse(&[
            "plan",
            "db",
            "--layout",
            "migrate",
            "--connect-retry",
            "0",
            "--no-lock-wait",
        ]);
        assert_eq!(cli.connect_retry, 0);
        let Command::Plan { folder, apply, .. } = cli.command else {
            panic!("plan")
        };
        assert_eq!(folder.layout, Some(Layout::GolangMigrate));
        assert!(apply.no_lock_wait);
        let cli = parse(&["adopt", "db", "--from", "migrate", "--layout", "sql"]);
        let Command::Adopt { from, folder, .. } = cli.command else {
            panic!("adopt")
        };
        assert_eq!(from, Tool::GolangMigrate);
        assert_eq!(folder.layout, Some(Layout::Plain));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let e = Cli::try_parse_from(["pg-deploy", "apply", "db", "--layout", "atlas"]).expect_err("bad layout");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("atlas"), "{e}");
        let e = Cli::try_parse_from(["pg-deploy", "apply", "db", "--drift", "maybe"]).expect_err("bad policy");
        assert_eq!(e.exit_code(), 2);
        let cli = parse(&["apply", "db", "--drift", "refuse"]);
        let Command::Apply { apply, .. } = cli.command else {
            panic!("apply")
        };
        assert_eq!(apply.drift.map(DriftPolicy::name), Some("refuse"));
    }

    #[test]
    fn phases_options_parse() {
        let cli = parse(&["apply", "db"]);
        let Command::Apply {
            apply, no_wait, wait, ..
        } = cli.command
        else {
            panic!("apply")
        };
        assert_eq!(apply.phases, PhasesMode::Auto);
        assert_eq!(apply.through, None);
        assert!(!no_wait);
        assert_eq!(wait.phase_timeout, std::time::Duration::from_secs(3600));
        let cli = parse(&[
            "apply",
            "db",
            "--phases",
            "declared",
            "--through",
            "0003_x",
            "--no-wait",
            "--phase-timeout",
            "90s",
        ]);
        let Command::Apply {
            apply, no_wait, wait, ..
        } = cli.command
        else {
            panic!("apply")
        };
        assert_eq!(apply.phases, PhasesMode::Declared);
        assert_eq!(apply.through.as_deref(), Some("0003_x"));
        assert!(no_wait);
        assert_eq!(wait.phase_timeout, std::time::Duration::from_secs(90));
        let cli = parse(&["wait", "shop", "--phase-timeout", "2h"]);
        let Command::Wait { project, wait } = cli.command else {
            panic!("wait")
        };
        assert_eq!((project.as_str(), wait.phase_timeout.as_secs()), ("shop", 7200));
        assert!(
            !wait.no_run_here,
            "the client runs the steps when no worker slot is free"
        );
        let cli = parse(&["wait", "shop", "--no-run-here"]);
        assert!(matches!(
            cli.command,
            Command::Wait {
                wait: WaitArgs { no_run_here: true, .. },
                ..
            }
        ));
        let cli = parse(&["apply", "db", "--no-run-here"]);
        assert!(matches!(
            cli.command,
            Command::Apply {
                wait: WaitArgs { no_run_here: true, .. },
                ..
            }
        ));
        let cli = parse(&["plan", "db", "--through", "a", "--phases", "auto"]);
        assert!(matches!(
            cli.command,
            Command::Plan {
                apply: ApplyArgs { through: Some(_), .. },
                ..
            }
        ));
        for bad in ["60", "0s", "soon", "-1min", ""] {
            let e = Cli::try_parse_from(["pg-deploy", "wait", "p", "--phase-timeout", bad]).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(parse_timeout("60").expect_err("bare").contains("no unit"));
        assert_eq!(parse_timeout("500ms"), Ok(std::time::Duration::from_millis(500)));
        let e = Cli::try_parse_from(["pg-deploy", "apply", "db", "--phases", "never"]).expect_err("bad mode");
        assert!(e.to_string().contains("never"), "{e}");
        // --no-wait is apply's; the old --wait SECONDS still means --connect-retry.
        assert!(Cli::try_parse_from(["pg-deploy", "plan", "db", "--no-wait"]).is_err());
        assert_eq!(parse(&["apply", "db", "--wait", "5", "--no-wait"]).connect_retry, 5);
    }

    #[test]
    fn fleet_options_need_targets() {
        let cli = parse(&["apply", "db", "--targets", "f", "--canary", "2", "--on-failure", "stop"]);
        let Command::Apply { fleet, rollout, .. } = cli.command else {
            panic!("apply")
        };
        assert_eq!(fleet.chosen(Some(&rollout)), Ok(true));
        assert_eq!(fleet.parallel(), 4);
        assert_eq!((rollout.canary, rollout.on_failure), (Some(2), Some(OnFailure::Stop)));
        let cli = parse(&["apply", "db", "--canary", "1", "--parallel", "8"]);
        let Command::Apply { fleet, rollout, .. } = cli.command else {
            panic!("apply")
        };
        let e = fleet.chosen(Some(&rollout)).expect_err("no targets");
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("--parallel, --canary only go(es) with --targets FILE"),
            "{e}"
        );
        let cli = parse(&[
            "status",
            "--discover",
            "t_*",
            "--parallel",
            "16",
            "--target-timeout",
            "30s",
        ]);
        let Command::Status { fleet, .. } = cli.command else {
            panic!("status")
        };
        assert_eq!((fleet.chosen(None), fleet.parallel()), (Ok(true), 16));
        assert!(Cli::try_parse_from(["pg-deploy", "status", "--targets", "f", "--parallel", "0"]).is_err());
        assert!(Cli::try_parse_from(["pg-deploy", "status", "--targets", "f", "--canary", "1"]).is_err());
        let cli = parse(&["plan", "db"]);
        let Command::Plan { fleet, .. } = cli.command else {
            panic!("plan")
        };
        assert_eq!(fleet.chosen(None), Ok(false));
    }

    #[test]
    fn new_and_generators_parse() {
        let cli = parse(&["new", "add_users"]);
        let Command::New { name, dir, layout } = cli.command else {
            panic!("new")
        };
        assert_eq!((name.as_str(), dir, layout), ("add_users", PathBuf::from("."), None));
        let cli = parse(&["new", "x", "db", "--layout", "dbmate"]);
        assert!(matches!(
            cli.command,
            Command::New {
                layout: Some(Layout::Dbmate),
                ..
            }
        ));
        let cli = parse(&["completions", "zsh"]);
        assert!(matches!(
            cli.command,
            Command::Completions {
                shell: clap_complete::Shell::Zsh
            }
        ));
        assert!(Cli::try_parse_from(["pg-deploy", "completions", "tcsh"]).is_err());
    }
}
