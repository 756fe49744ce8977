//! Discovery: the databases of one server whose names match a pattern,
//! templates and databases that refuse connections left out.

use super::targets::{display_name, glob_match, Target};
use crate::connect;
use crate::error::CliError;
use crate::tls::TlsWish;
use postgres::Config;
use std::time::Duration;

/// Connects to the server of `cfg` and lists its databases matching `pattern`
/// (a glob), in name order; each becomes a target with `cfg`'s settings.
pub fn discover(
    cfg: &Config,
    source: &connect::Source,
    tls: &TlsWish,
    pattern: &str,
    retry: Duration,
) -> Result<Vec<Target>, CliError> {
    let mut c = connect::connect(cfg, source, tls, retry)?;
    let rows = c
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database \
             WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .map_err(|e| crate::db::call_error("discover", "pg_database", e))?;
    let names: Vec<String> = rows.iter().filter_map(|r| r.try_get::<_, String>(0).ok()).collect();
    let server = connect::describe(cfg);
    Ok(matching(&names, pattern)
        .into_iter()
        .map(|db| {
            let mut one = cfg.clone();
            one.dbname(db);
            Target {
                name: display_name(&one),
                cfg: one,
                tls: tls.clone(),
                origin: format!("--discover {pattern} on {server}"),
            }
        })
        .collect())
}

/// The names matching the glob, in the order given.
pub fn matching<'a>(names: &'a [String], pattern: &str) -> Vec<&'a str> {
    names
        .iter()
        .filter(|n| glob_match(pattern, n))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_names() {
        let names: Vec<String> = ["postgres", "tenant_1", "tenant_2", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(matching(&names, "tenant_*"), ["tenant_1", "tenant_2"]);
        assert!(matching(&names, "nope*").is_empty());
    }
}
