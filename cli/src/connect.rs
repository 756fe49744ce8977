//! Connecting: `--database-url`, else `DATABASE_URL`, else libpq's PG*
//! variables; on a cold start (connection refused, no socket yet, or 57P03
//! "the database system is starting up") retry with backoff up to `--connect-retry`.

use crate::error::CliError;
use crate::tls::TlsWish;
use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Where the connection settings came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    DatabaseUrl,
    PgEnv,
    /// Nothing given at all: libpq's defaults (local socket, OS user).
    Defaults,
}

/// The variables that count as connection settings given.
const PG_VARIABLES: [&str; 5] = ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE"];

/// The connection config: a URL or `key=value` string if one is given (flag,
/// then DATABASE_URL), else PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
/// PGAPPNAME, PGCONNECT_TIMEOUT with libpq's defaults.
pub fn config(url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<(Config, Source, TlsWish), CliError> {
    let mut wish = TlsWish::default();
    let (text, url_source) = match url {
        Some(u) => (Some(u.to_string()), Source::Flag),
        None => (env("DATABASE_URL").filter(|s| !s.is_empty()), Source::DatabaseUrl),
    };
    let (mut cfg, source) = match text {
        Some(t) => {
            let (t, from_url) = crate::tls::split_params(&t);
            wish = from_url;
            let mut cfg = Config::from_str(&t).map_err(|e| {
                CliError::input_hint(
                    format!("bad connection string: {e}"),
                    "Use postgres://user:password@host:port/dbname or \"host=… port=… user=… dbname=…\".",
                )
            })?;
            // libpq's defaults for what the URL leaves out.
            if cfg.get_hosts().is_empty() {
                add_host(&mut cfg, &env("PGHOST").unwrap_or_else(default_host));
            }
            if cfg.get_user().is_none() {
                cfg.user(&env("PGUSER").unwrap_or_else(|| os_user(env)));
            }
            if cfg.get_ports().is_empty() {
                if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
                    cfg.port(p);
                }
            }
            (cfg, url_source)
        }
        None => {
            let mut cfg = Config::new();
            let host = env("PGHOST").filter(|s| !s.is_empty()).unwrap_or_else(default_host);
            for h in host.split(',') {
                add_host(&mut cfg, h);
            }
            if let Some(p) = env("PGPORT").filter(|s| !s.is_empty()) {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| CliError::input(format!("PGPORT is not a port number: \"{p}\"")))?;
                cfg.port(port);
            }
            let user = env("PGUSER").filter(|s| !s.is_empty()).unwrap_or_else(|| os_user(env));
            let dbname = env("PGDATABASE")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| user.clone());
            cfg.dbname(&dbname);
            cfg.user(&user);
            if let Some(pw) = env("PGPASSWORD") {
                cfg.password(pw);
            }
            if let Some(t) = env("PGCONNECT_TIMEOUT").and_then(|t| t.parse::<u64>().ok()) {
                cfg.connect_timeout(Duration::from_secs(t.max(1)));
            }
            match env("PGSSLMODE").as_deref() {
                None | Some("") | Some("prefer") | Some("allow") => {}
                Some("disable") => {
                    cfg.ssl_mode(SslMode::Disable);
                }
                Some("require") => {
                    cfg.ssl_mode(SslMode::Require);
                }
                Some("verify-ca") | Some("verify-full") => {
                    cfg.ssl_mode(SslMode::Require);
                    wish.verify = true;
                }
                Some(other) => return Err(CliError::input(format!("PGSSLMODE \"{other}\" is not an sslmode"))),
            }
            if let Some(app) = env("PGAPPNAME") {
                cfg.application_name(&app);
            }
            let given = PG_VARIABLES.iter().any(|v| env(v).is_some_and(|s| !s.is_empty()));
            (cfg, if given { Source::PgEnv } else { Source::Defaults })
        }
    };
    if cfg.get_application_name().is_none() {
        cfg.application_name("pg-deploy");
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    if wish.root_cert.is_none() {
        wish.root_cert = env("PGSSLROOTCERT").filter(|s| !s.is_empty());
    }
    Ok((cfg, source, wish))
}

fn add_host(cfg: &mut Config, host: &str) {
    if host.starts_with('/') {
        cfg.host_path(host);
    } else {
        cfg.host(host);
    }
}

/// libpq's default: the local socket directory if there is one, else localhost.
fn default_host() -> String {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "localhost".into()
    }
}

fn os_user(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "postgres".into())
}

/// Why a failed attempt is worth retrying (the server is not up yet), or None.
pub fn retry_reason(err: &postgres::Error) -> Option<String> {
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::CANNOT_CONNECT_NOW {
            return Some(format!("{} (57P03)", db.message()));
        }
        return None;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused => Some("connection refused".into()),
                io::ErrorKind::NotFound => Some("no server socket yet".into()),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => {
                    Some(format!("connection closed ({io})"))
                }
                io::ErrorKind::TimedOut => Some("connection timed out".into()),
                _ => None,
            };
        }
        source = s.source();
    }
    // tokio-postgres reports an early close without an io error.
    let text = err.to_string();
    if text.contains("connection closed") || text.contains("timed out") {
        return Some(text);
    }
    None
}

/// Backoff before attempt `n` (0-based): 250 ms doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.min(5));
    Duration::from_millis(ms.min(5000))
}

/// Connects, retrying while the server is not up, for at most `retry_for` (`--connect-retry`).
/// Each retry is announced on stderr. Other failures end at once (exit 3).
pub fn connect(cfg: &Config, source: &Source, tls: &TlsWish, retry_for: Duration) -> Result<Client, CliError> {
    let start = Instant::now();
    let mut attempt = 0u32;
    // TLS is never started on Unix sockets, nor with sslmode=disable.
    let plain = cfg.get_ssl_mode() == SslMode::Disable || cfg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    let connector = if plain { None } else { Some(crate::tls::connector(tls)?) };
    if *source == Source::Defaults {
        eprintln!("pg-deploy: {}", defaults_note(cfg));
    }
    loop {
        let result = match &connector {
            None => cfg.connect(NoTls),
            Some(c) => cfg.connect(c.clone()),
        };
        match result {
            Ok(client) => return Ok(client),
            Err(e) => {
                let reason = retry_reason(&e);
                let waited = start.elapsed();
                match reason {
                    // Nobody asked for this server: waiting for it would only hide the missing settings.
                    Some(reason) if *source == Source::Defaults => {
                        return Err(CliError::Connect {
                            message: format!("{}: {reason}", describe(cfg)),
                            hint: Some(format!("{} {DEFAULTS_HINT}", defaults_note(cfg))),
                        })
                    }
                    Some(reason) if waited < retry_for => {
                        let pause = backoff(attempt).min(retry_for - waited);
                        eprintln!(
                            "pg-deploy: {} is not ready: {reason}; retrying in {:.1}s ({:.0}s of --connect-retry {}s used)",
                            describe(cfg),
                            pause.as_secs_f64(),
                            waited.as_secs_f64(),
                            retry_for.as_secs()
                        );
                        std::thread::sleep(pause);
                        attempt += 1;
                    }
                    Some(reason) => {
                        return Err(CliError::Connect {
                            message: format!("{}: {reason}, still after {}s", describe(cfg), retry_for.as_secs()),
                            hint: Some("Is the server running? Wait longer with --connect-retry SECONDS.".into()),
                        })
                    }
                    None => {
                        let hint = match source {
                            Source::PgEnv => "Connection settings came from PGHOST, PGPORT, PGUSER, PGDATABASE; or pass --database-url / DATABASE_URL.".to_string(),
                            Source::DatabaseUrl => "Connection settings came from DATABASE_URL.".to_string(),
                            Source::Flag => "Connection settings came from --database-url.".to_string(),
                            Source::Defaults => format!("{} {DEFAULTS_HINT}", defaults_note(cfg)),
                        };
                        return Err(CliError::Connect {
                            message: format!("{}: {}", describe(cfg), full_error(&e)),
                            hint: Some(hint),
                        });
                    }
                }
            }
        }
    }
}

const DEFAULTS_HINT: &str = "Pass --database-url URL, or set DATABASE_URL or PGHOST, PGPORT, PGUSER, PGDATABASE.";

/// What is tried when no connection settings were given.
fn defaults_note(cfg: &Config) -> String {
    format!(
        "no connection settings given (no --database-url, DATABASE_URL, PGHOST, PGPORT, PGUSER, PGDATABASE or \
         PGSERVICE): trying libpq's defaults, {}",
        describe(cfg)
    )
}

/// The error with its SQLSTATE when the server sent one.
pub fn full_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR {}: {}", db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text.push_str(": ");
                    text.push_str(&more);
                }
                source = s.source();
            }
            text
        }
    }
}

/// host:port/dbname as user, for messages (never the password).
pub fn describe(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "server {host}:{port} (database {}, user {})",
        cfg.get_dbname().unwrap_or("?"),
        cfg.get_user().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn pg_variables() {
        let env = env_of(&[
            ("PGHOST", "/tmp/sock"),
            ("PGPORT", "5491"),
            ("PGUSER", "alice"),
            ("PGPASSWORD", "pw"),
        ]);
        let (cfg, source, _) = config(None, &env).expect("config");
        assert_eq!(source, Source::PgEnv);
        assert_eq!(cfg.get_hosts(), &[Host::Unix("/tmp/sock".into())]);
        assert_eq!(cfg.get_ports(), &[5491]);
        assert_eq!(cfg.get_user(), Some("alice"));
        assert_eq!(cfg.get_dbname(), Some("alice"));
        assert_eq!(cfg.get_password(), Some(&b"pw"[..]));
        assert_eq!(cfg.get_application_name(), Some("pg-deploy"));
        assert!(!describe(&cfg).contains("pw"));
    }

    #[test]
    fn url_wins_over_variables() {
        let env = env_of(&[
            ("DATABASE_URL", "postgres://bob@db.example:6543/shop"),
            ("PGHOST", "/tmp/sock"),
        ]);
        let (cfg, source, _) = config(None, &env).expect("config");
        assert_eq!(source, Source::DatabaseUrl);
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(cfg.get_dbname(), Some("shop"));
        let (cfg, source, tls) = config(Some("host=h user=u dbname=d sslmode=verify-full"), &env).expect("config");
        assert!(tls.verify);
        assert_eq!(cfg.get_ssl_mode(), SslMode::Require);
        assert_eq!(source, Source::Flag);
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("h".into())]);
    }

    #[test]
    fn nothing_given_means_defaults() {
        let cases: &[(&[(&str, &str)], Source)] = &[
            (&[], Source::Defaults),
            (&[("USER", "alice"), ("PGPASSWORD", "pw")], Source::Defaults),
            (&[("PGHOST", "")], Source::Defaults),
            (&[("PGPORT", "5433")], Source::PgEnv),
            (&[("PGDATABASE", "shop")], Source::PgEnv),
            (&[("PGSERVICE", "prod")], Source::PgEnv),
            (&[("DATABASE_URL", "postgres://h/d")], Source::DatabaseUrl),
        ];
        for (vars, want) in cases {
            let (cfg, source, _) = config(None, &env_of(vars)).expect("config");
            assert_eq!(&source, want, "{vars:?}");
            if source == Source::Defaults {
                let note = defaults_note(&cfg);
                assert!(note.starts_with("no connection settings given"), "{note}");
                assert!(note.contains(":5432 (database"), "{note}");
            }
        }
    }

    #[test]
    fn defaults_that_refuse_fail_at_once() {
        // Nothing listens on this port: with nothing given, no wait.
        let (mut cfg, _, tls) = config(None, &env_of(&[])).expect("config");
        cfg.host("127.0.0.1").port(1);
        let start = Instant::now();
        let Err(e) = connect(&cfg, &Source::Defaults, &tls, Duration::from_secs(30)) else {
            panic!("port 1 answered");
        };
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("no connection settings given"), "{e}");
        assert!(e.to_string().contains("--database-url"), "{e}");
    }

    #[test]
    fn bad_settings_are_bad_input() {
        let env = env_of(&[("PGPORT", "fivefourthreetwo")]);
        assert_eq!(config(None, &env).expect_err("port").exit_code(), 2);
        assert_eq!(
            config(Some("postgres://a:b@h:notaport/x"), &env_of(&[]))
                .expect_err("url")
                .exit_code(),
            2
        );
    }

    #[test]
    fn backoff_doubles_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(4), Duration::from_millis(4000));
        assert_eq!(backoff(5), Duration::from_millis(5000));
        assert_eq!(backoff(60), Duration::from_millis(5000));
    }
}
