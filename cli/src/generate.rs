//! What the client generates about itself: shell completions and man pages,
//! from the same clap definitions as `--help`, so they cannot disagree with it.

use crate::args::Cli;
use crate::error::CliError;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// Writes generated text to stdout; a reader that stops early (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// `pg-deploy completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> Result<u8, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pg-deploy", &mut script);
    print_bytes(&script);
    Ok(0)
}

/// `pg-deploy man`: pg-deploy(1) on stdout.
pub fn man_page() -> Result<u8, CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| CliError::input(format!("cannot render the man page: {e}")))?;
    print_bytes(&page);
    Ok(0)
}

/// Writes pg-deploy.1 and one pg-deploy-COMMAND.1 per command into `dir`
/// (created if missing); returns the paths written.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    fn walk(cmd: &clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        out.push(clap_mangen::Man::new(cmd.clone()).generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, dir, out)?;
        }
        Ok(())
    }
    let fail = |e: std::io::Error| CliError::input(format!("cannot write man pages to {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, dir, &mut out).map_err(fail)?;
    Ok(out)
}
