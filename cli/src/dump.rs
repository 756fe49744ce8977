//! `pg-deploy dump [FILE]` and `apply --dump FILE`: the database's schema as
//! `pg_dump --schema-only` prints it, like dbmate's schema.sql, so a review
//! shows what a migration did to the schema. Runs the pg_dump on PATH with
//! the client's own connection settings.

use crate::error::CliError;
use postgres::config::{Host, SslMode};
use postgres::Config;
use std::path::Path;
use std::process::Command;

/// The pg_dump arguments and environment for `cfg` (the password travels in
/// PGPASSWORD, never on the command line).
pub fn command(cfg: &Config, pg_dump: &str) -> Command {
    let mut cmd = Command::new(pg_dump);
    // As dbmate runs it: plain SQL, no owners or grants (they differ between environments).
    cmd.args(["--schema-only", "--no-owner", "--no-privileges", "--encoding=UTF8"]);
    if let Some(h) = cfg.get_hosts().first() {
        let host = match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
        cmd.arg(format!("--host={host}"));
    }
    if let Some(p) = cfg.get_ports().first() {
        cmd.arg(format!("--port={p}"));
    }
    if let Some(u) = cfg.get_user() {
        cmd.arg(format!("--username={u}"));
    }
    if let Some(d) = cfg.get_dbname() {
        cmd.arg(format!("--dbname={d}"));
    }
    cmd.arg("--no-password");
    if let Some(pw) = cfg.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(pw).into_owned());
    }
    let sslmode = match cfg.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    };
    cmd.env("PGSSLMODE", sslmode);
    cmd
}

/// pg_dump's output without its per-run `\restrict KEY` / `\unrestrict KEY`
/// lines (pg_dump 17.6 and later): their random key would change a committed
/// schema file on every run.
pub fn stable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The pg_dump to run: `PG_DUMP`, else the one on PATH.
pub fn program() -> String {
    std::env::var("PG_DUMP").unwrap_or_else(|_| "pg_dump".into())
}

/// Runs `pg_dump` and writes the schema to `file` (`-` for stdout).
pub fn write(cfg: &Config, file: &Path, pg_dump: &str) -> Result<(), CliError> {
    let output = command(cfg, pg_dump).output().map_err(|e| CliError::Refused {
        message: format!("cannot run {pg_dump}: {e}"),
        hint: Some(
            "pg-deploy dump runs pg_dump: install the PostgreSQL client (of the server's major version or newer), \
             or name it with PG_DUMP=/path/to/pg_dump."
                .into(),
        ),
    })?;
    if !output.status.success() {
        return Err(CliError::Refused {
            message: format!(
                "{pg_dump} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            hint: Some("pg_dump must be of the server's major version or newer.".into()),
        });
    }
    let text = stable(&String::from_utf8_lossy(&output.stdout));
    if file == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    std::fs::write(file, text).map_err(|e| CliError::input(format!("cannot write {}: {e}", file.display())))
}

/// `--dump FILE` / `dump FILE`: the schema with the client's connection
/// settings (`database_url` as `--database-url`); nothing without a file.
pub fn to_file(database_url: Option<&str>, quiet: bool, file: Option<&Path>) -> Result<(), CliError> {
    let Some(file) = file else { return Ok(()) };
    let env = |k: &str| std::env::var(k).ok();
    let (cfg, _, _) = crate::connect::config(database_url, &env)?;
    write(&cfg, file, &program())?;
    if !quiet && file != Path::new("-") {
        eprintln!("pg-deploy: schema written to {}", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn arguments_and_environment() {
        let cfg = Config::from_str("postgres://alice:s3cret@db.example:6543/shop?sslmode=require").expect("cfg");
        let cmd = command(&cfg, "pg_dump");
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        for want in [
            "--schema-only",
            "--no-owner",
            "--host=db.example",
            "--port=6543",
            "--username=alice",
            "--dbname=shop",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert!(
            !args.iter().any(|a| a.contains("s3cret")),
            "no password on the command line"
        );
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
            .collect();
        assert!(envs.contains(&("PGPASSWORD".into(), "s3cret".into())));
        assert!(envs.contains(&("PGSSLMODE".into(), "require".into())));
    }

    #[test]
    fn restrict_keys_are_left_out() {
        let dump = "--\n\\restrict AbC123\nSET x = 1;\nCREATE TABLE t ();\n\\unrestrict AbC123\n";
        assert_eq!(stable(dump), "--\nSET x = 1;\nCREATE TABLE t ();\n");
    }

    #[test]
    fn a_missing_pg_dump_is_named() {
        let cfg = Config::from_str("host=/nowhere dbname=x user=y").expect("cfg");
        let e = write(&cfg, Path::new("-"), "/nonexistent/pg_dump").expect_err("missing");
        assert!(e.to_string().contains("cannot run /nonexistent/pg_dump"), "{e}");
        assert!(e.to_string().contains("PG_DUMP="), "{e}");
    }
}
