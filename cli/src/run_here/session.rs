//! The client's own connection as the session that runs a phase: every call
//! one statement in autocommit; values travel as parameters, never in the
//! SQL text; the online statement itself goes as a simple query, top level,
//! so that a CREATE INDEX CONCURRENTLY runs (no transaction block around it).

use super::{Here, Session};
use crate::db::call_error;
use crate::error::CliError;
use crate::phase::PhaseStatus;
use postgres::types::{ToSql, Type};
use postgres::{Client, SimpleQueryMessage};
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct ClientSession<'a> {
    pub client: &'a mut Client,
    pub project: &'a str,
}

const FUNCTION: &str = "deploy.phase_client";

/// Runs the phase waited for from the client's own connection, for a wait
/// (apply's and the fleet's) that polls `deploy.phase_status`.
#[derive(Debug)]
pub struct ClientRunner<'a> {
    here: Here,
    project: &'a str,
    deployment: Option<i64>,
    started: Instant,
    limit: Duration,
}

impl<'a> ClientRunner<'a> {
    /// `limit` counts from now: a run here stops between two steps past it.
    pub fn new(enabled: bool, project: &'a str, deployment: Option<i64>, limit: Duration) -> Self {
        ClientRunner {
            here: Here::new(enabled),
            project,
            deployment,
            started: Instant::now(),
            limit,
        }
    }

    /// Runs the phase of `s` from `client` when it is wanted here (Ok(false)
    /// when not); `starting` first, to end a progress line. Otherwise as
    /// [`Here::run`].
    pub fn run_if_wanted(
        &mut self,
        s: &PhaseStatus,
        client: &mut Client,
        starting: &mut dyn FnMut(),
        say: &mut dyn FnMut(&str),
        warn: &mut dyn FnMut(&str),
    ) -> Result<bool, CliError> {
        if !self.here.wants(s, self.deployment) {
            return Ok(false);
        }
        starting();
        let mut session = ClientSession {
            client,
            project: self.project,
        };
        let (started, limit) = (self.started, self.limit);
        self.here
            .run(s, &mut session, &mut || started.elapsed() >= limit, say, warn)
    }
}

impl ClientSession<'_> {
    /// One row of one statement with typed parameters.
    fn one_row(
        &mut self,
        context: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<postgres::Row, CliError> {
        let rows = self
            .client
            .query_typed(sql, params)
            .map_err(|e| call_error(context, FUNCTION, e))?;
        rows.into_iter().next().ok_or_else(|| CliError::Refused {
            message: format!("{context}: the server answered no row"),
            hint: None,
        })
    }
}

impl Session for ClientSession<'_> {
    fn call(&mut self, request: &Value) -> Result<(Value, i32), CliError> {
        let what = request.get("do").and_then(Value::as_str).unwrap_or("?");
        let context = format!("{FUNCTION} ({what})");
        let text = request.to_string();
        let project = self.project;
        let row = self.one_row(
            &context,
            "SELECT deploy.phase_client($1, $2::pg_catalog.jsonb)::pg_catalog.text, pg_catalog.pg_backend_pid()",
            &[(&project, Type::TEXT), (&text, Type::TEXT)],
        )?;
        let answer: Option<String> = row.try_get(0).map_err(|e| call_error(&context, FUNCTION, e))?;
        let pid: i32 = row.try_get(1).map_err(|e| call_error(&context, FUNCTION, e))?;
        let answer = serde_json::from_str(answer.as_deref().unwrap_or("null")).map_err(|e| CliError::Refused {
            message: format!("{context}: the server's answer is not JSON: {e}"),
            hint: None,
        })?;
        Ok((answer, pid))
    }

    fn setting(&mut self, name: &str, pid: i32) -> Result<Option<String>, CliError> {
        let row = self.one_row(
            "reading a setting",
            "SELECT CASE WHEN pg_catalog.pg_backend_pid() = $2 THEN pg_catalog.current_setting($1) END",
            &[(&name, Type::TEXT), (&pid, Type::INT4)],
        )?;
        row.try_get(0).map_err(|e| call_error("reading a setting", FUNCTION, e))
    }

    fn set(&mut self, name: &str, value: &str, pid: i32) -> Result<bool, CliError> {
        let row = self.one_row(
            &format!("setting {name}"),
            "SELECT CASE WHEN pg_catalog.pg_backend_pid() = $3 THEN pg_catalog.set_config($1, $2, false) END",
            &[(&name, Type::TEXT), (&value, Type::TEXT), (&pid, Type::INT4)],
        )?;
        let set: Option<String> = row.try_get(0).map_err(|e| call_error("setting", FUNCTION, e))?;
        Ok(set.is_some())
    }

    fn execute(&mut self, sql: &str) -> Result<u64, CliError> {
        let messages = self
            .client
            .simple_query(sql)
            .map_err(|e| call_error("the phase's statement", FUNCTION, e))?;
        Ok(messages
            .iter()
            .map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum())
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}
