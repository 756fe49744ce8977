//! The targets of a fleet: a targets file (one connection string a line,
//! blank lines and `#` comments allowed), each turned into a connection
//! config and a display name (host:port/database, never the password).

use crate::connect;
use crate::error::CliError;
use crate::tls::TlsWish;
use postgres::config::Host;
use postgres::Config;
use std::collections::HashMap;
use std::path::Path;

/// One database to deploy to.
#[derive(Clone)]
pub struct Target {
    /// host:port/database, unique in the fleet.
    pub name: String,
    pub cfg: Config,
    pub tls: TlsWish,
    /// Where it came from, for messages: `FILE:LINE` or `discovered on …`.
    pub origin: String,
}

/// A line of a targets file that holds a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub text: String,
}

/// The connection strings of a targets file: every line but blanks and `#` comments, trimmed.
pub fn lines(text: &str) -> Vec<Line> {
    text.lines()
        .enumerate()
        .map(|(i, l)| Line {
            number: i + 1,
            text: l.trim().to_string(),
        })
        .filter(|l| !l.text.is_empty() && !l.text.starts_with('#'))
        .collect()
}

/// host:port/database of a config, as the report names the target.
pub fn display_name(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    // libpq's default database is the user's name.
    let db = cfg.get_dbname().or(cfg.get_user()).unwrap_or("?");
    format!("{host}:{port}/{db}")
}

/// The password for a config that has none: PGPASSWORD, else the passfile
/// (PGPASSFILE, else ~/.pgpass), as libpq looks them up.
pub fn fill_password(cfg: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
    if cfg.get_password().is_some() {
        return;
    }
    if let Some(pw) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
        cfg.password(pw);
        return;
    }
    let file = env("PGPASSFILE").or_else(|| env("HOME").map(|h| format!("{h}/.pgpass")));
    let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) else {
        return;
    };
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        // libpq matches a socket connection as "localhost".
        _ => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = cfg.get_user().unwrap_or_default().to_string();
    let db = cfg.get_dbname().unwrap_or(&user).to_string();
    if let Some(pw) = passfile_lookup(&text, &host, &port, &db, &user) {
        cfg.password(pw);
    }
}

/// The first passfile entry `host:port:database:user:password` matching
/// (`*` matches anything; `\:` and `\\` are escapes).
pub fn passfile_lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_passfile_line(line);
        if fields.len() < 5 {
            continue;
        }
        let want = [host, port, db, user];
        if fields[..4].iter().zip(want).all(|(f, w)| f == "*" || f == w) {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Reads a targets file into targets. An unreadable file, a line that is no
/// connection string, a duplicate target or an empty file is bad input (exit 2),
/// naming the file and line; nothing is connected to then.
pub fn read_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Target>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::input(format!("cannot read the targets file {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for line in lines(&text) {
        let origin = format!("{}:{}", path.display(), line.number);
        // A line is its own connection string: DATABASE_URL must not stand in for it.
        let (mut cfg, _, tls) = connect::config(Some(&line.text), env).map_err(|e| match e {
            CliError::Input { message, hint } => CliError::Input {
                message: format!("{origin}: {message}"),
                hint,
            },
            other => other,
        })?;
        fill_password(&mut cfg, env);
        out.push(Target {
            name: display_name(&cfg),
            cfg,
            tls,
            origin,
        });
    }
    Ok(out)
}

/// Refuses two targets with the same name (the same database twice would
/// be deployed twice at once, and the report could not tell them apart).
pub fn check_unique(targets: &[Target]) -> Result<(), CliError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for t in targets {
        if let Some(first) = seen.insert(&t.name, &t.origin) {
            return Err(CliError::input_hint(
                format!("{}: duplicate target {} (also at {first})", t.origin, t.name),
                "Each database may be listed once; remove one of the lines.",
            ));
        }
    }
    if targets.is_empty() {
        return Err(CliError::input(
            "no targets: the targets file lists none and discovery found none",
        ));
    }
    Ok(())
}

/// Whether `name` matches a glob `pattern` (`*` any run of characters, `?` one).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn lines_skip_blanks_and_comments() {
        let text = "# fleet\n\npostgres://a@h1/db1\n  host=h2 dbname=db2  \n   # indented comment\n";
        let l = lines(text);
        assert_eq!(
            l,
            vec![
                Line {
                    number: 3,
                    text: "postgres://a@h1/db1".into()
                },
                Line {
                    number: 4,
                    text: "host=h2 dbname=db2".into()
                }
            ]
        );
    }

    #[test]
    fn display_names_never_show_the_password() {
        let (cfg, _, _) = connect::config(Some("postgres://u:secret@db.example:6543/shop"), &no_env).expect("url");
        assert_eq!(display_name(&cfg), "db.example:6543/shop");
        let (cfg, _, _) = connect::config(Some("host=/tmp/s port=5560 user=u password=pw"), &no_env).expect("kv");
        assert_eq!(display_name(&cfg), "/tmp/s:5560/u");
    }

    #[test]
    fn a_targets_file_is_read_checked_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("targets");
        std::fs::write(
            &path,
            "postgres://u@h/a\n# c\nhost=h port=5432 user=u dbname=b\npostgres://u@h:5432/a\n",
        )
        .expect("write");
        let t = read_file(&path, &no_env).expect("reads");
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["h:5432/a", "h:5432/b", "h:5432/a"]);
        let e = check_unique(&t).expect_err("duplicate");
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains(":4: duplicate target h:5432/a (also at "), "{text}");
        assert!(text.contains(":1)"), "{text}");
        assert!(check_unique(&t[..2]).is_ok());
        assert_eq!(check_unique(&[]).expect_err("empty").exit_code(), 2);

        std::fs::write(&path, "postgres://u@h/a\npostgres://u@h:notaport/b\n").expect("write");
        let e = read_file(&path, &no_env).err().expect("bad line");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("targets:2: bad connection string"), "{e}");

        let e = read_file(&dir.path().join("missing"), &no_env)
            .err()
            .expect("unreadable");
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().starts_with("bad input: cannot read the targets file "),
            "{e}"
        );
    }

    #[test]
    fn passwords_come_from_the_environment_or_the_passfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = dir.path().join("pgpass");
        std::fs::write(
            &pass,
            "# c\nother:*:*:*:nope\nh:5432:*:u:p\\:w\\\\d\n*:*:*:*:fallback\n",
        )
        .expect("write");
        let pass_s = pass.display().to_string();
        let env = move |k: &str| (k == "PGPASSFILE").then(|| pass_s.clone());
        let (mut cfg, _, _) = connect::config(Some("postgres://u@h/a"), &no_env).expect("url");
        fill_password(&mut cfg, &env);
        assert_eq!(cfg.get_password(), Some(&b"p:w\\d"[..]));
        let (mut cfg, _, _) = connect::config(Some("postgres://x@h/a"), &no_env).expect("url");
        fill_password(&mut cfg, &env);
        assert_eq!(cfg.get_password(), Some(&b"fallback"[..]));
        let env = |k: &str| (k == "PGPASSWORD").then(|| "envpw".to_string());
        let (mut cfg, _, _) = connect::config(Some("postgres://u@h/a"), &no_env).expect("url");
        fill_password(&mut cfg, &env);
        assert_eq!(cfg.get_password(), Some(&b"envpw"[..]));
        let (mut cfg, _, _) = connect::config(Some("postgres://u:given@h/a"), &no_env).expect("url");
        fill_password(&mut cfg, &env);
        assert_eq!(cfg.get_password(), Some(&b"given"[..]));
    }

    #[test]
    fn globs() {
        assert!(glob_match("tenant_*", "tenant_001"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("t?_*_x", "t1_a_b_x"));
        assert!(!glob_match("tenant_*", "tenants"));
        assert!(!glob_match("a?", "a"));
        assert!(glob_match("shop", "shop"));
        assert!(!glob_match("shop", "shop2"));
        assert!(glob_match("*_2", "a_1_2"));
    }
}
