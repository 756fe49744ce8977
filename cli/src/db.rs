//! The calls into the extension. Each command is one statement; manifests and
//! options travel as text parameters and come back as the extension's JSON.

use crate::error::{CliError, ServerError};
use postgres::types::Type;
use postgres::Client;
use serde_json::Value;

/// Turns a failed call into the error the user sees: the server's SQLSTATE,
/// message, DETAIL and HINT (exit 1), or a lost connection (exit 3).
pub fn call_error(context: &str, function: &str, e: postgres::Error) -> CliError {
    let Some(db) = e.as_db_error() else {
        return CliError::Connect {
            message: format!("{context}: the connection failed: {e}"),
            hint: Some(
                "If the connection broke after the call was sent, the outcome is unknown: check `pg-deploy status`."
                    .into(),
            ),
        };
    };
    let code = db.code().code().to_string();
    let missing_function = code == "42883" && db.message().contains(function);
    let missing_schema = code == "3F000" && db.message().contains("\"deploy\"");
    if missing_schema || (code == "42883" && db.message().contains("deploy.")) {
        let hint = if missing_schema {
            "Install the extension in this database: CREATE EXTENSION pg_deploy;".to_string()
        } else if missing_function {
            format!("The pg_deploy installed in this database has no {function}; install a newer build and run ALTER EXTENSION pg_deploy UPDATE.")
        } else {
            "Check that pg_deploy is installed and up to date in this database.".to_string()
        };
        return CliError::Server {
            context: context.into(),
            error: ServerError {
                sqlstate: code,
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: Some(if missing_function || missing_schema {
                    hint
                } else {
                    db.hint().map_or(hint.clone(), |h| format!("{h}\n{hint}"))
                }),
            },
        };
    }
    let server_hint = db.hint().map(crate::hints::in_client_terms);
    let extra = phases_unknown(&code, db.message()).or_else(|| crate::hints::permission(&code, db.message()));
    let hint = match extra {
        Some(extra) => Some(server_hint.map_or(extra.clone(), |h| format!("{h}\n{extra}"))),
        None => server_hint,
    };
    CliError::Server {
        context: context.into(),
        error: ServerError {
            sqlstate: code,
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            hint,
        },
    }
}

/// A hint when an extension older than phases refuses what this client sends
/// for them: the options `phases` and `through`, the change fields `online`
/// and `commit_before`.
fn phases_unknown(code: &str, message: &str) -> Option<String> {
    let phases_field = ["options.phases", "options.through", ".online", ".commit_before"]
        .iter()
        .any(|f| message.contains(&format!("{f}: unknown field")));
    (code == "22023" && phases_field).then(|| {
        "The pg_deploy installed in this database predates phases (online changes, commit boundaries, \
         --through): install a newer build and run ALTER EXTENSION pg_deploy UPDATE. `--phases declared` \
         leaves the \"phases\" option out."
            .to_string()
    })
}

/// Runs `sql` (which returns one text column holding JSON) with text parameters.
fn json_call(
    client: &mut Client,
    context: &str,
    function: &str,
    sql: &str,
    params: &[&str],
) -> Result<Value, CliError> {
    let typed: Vec<(&(dyn postgres::types::ToSql + Sync), Type)> = params
        .iter()
        .map(|p| (p as &(dyn postgres::types::ToSql + Sync), Type::TEXT))
        .collect();
    let rows = client
        .query_typed(sql, &typed)
        .map_err(|e| call_error(context, function, e))?;
    let text: Option<String> = match rows.first() {
        Some(row) => row.try_get(0).map_err(|e| call_error(context, function, e))?,
        None => None,
    };
    let text = text.unwrap_or_else(|| "null".into());
    serde_json::from_str(&text).map_err(|e| CliError::Refused {
        message: format!("{context}: the server's answer is not JSON: {e}"),
        hint: None,
    })
}

pub fn apply(client: &mut Client, manifest: &str, options: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "apply",
        "deploy.apply",
        "SELECT deploy.apply($1::jsonb, $2::jsonb)::text",
        &[manifest, options],
    )
}

pub fn plan(client: &mut Client, manifest: &str, options: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "plan",
        "deploy.plan",
        "SELECT deploy.plan($1::jsonb, $2::jsonb)::text",
        &[manifest, options],
    )
}

pub fn baseline(client: &mut Client, manifest: &str, options: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "baseline",
        "deploy.baseline",
        "SELECT deploy.baseline($1::jsonb, $2::jsonb)::text",
        &[manifest, options],
    )
}

pub fn revert(client: &mut Client, project: &str, to_version: &str, options: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "revert",
        "deploy.revert",
        "SELECT deploy.revert($1, $2, $3::jsonb)::text",
        &[project, to_version, options],
    )
}

/// deploy.verify_log() rows as JSON objects.
pub fn verify_log(client: &mut Client, project: Option<&str>) -> Result<Value, CliError> {
    let sql = "SELECT coalesce(jsonb_agg(to_jsonb(v) ORDER BY v.project), '[]')::text FROM deploy.verify_log($1) v";
    let typed: [(&(dyn postgres::types::ToSql + Sync), Type); 1] = [(&project, Type::TEXT)];
    let rows = client
        .query_typed(sql, &typed)
        .map_err(|e| call_error("verify-log", "deploy.verify_log", e))?;
    let text: String = match rows.first() {
        Some(row) => row
            .try_get(0)
            .map_err(|e| call_error("verify-log", "deploy.verify_log", e))?,
        None => "[]".into(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Refused {
        message: format!("verify-log: the server's answer is not JSON: {e}"),
        hint: None,
    })
}

/// deploy.status() rows as JSON objects.
pub fn status(client: &mut Client, project: Option<&str>) -> Result<Value, CliError> {
    let sql = "SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.project), '[]')::text FROM deploy.status($1) s";
    let typed: [(&(dyn postgres::types::ToSql + Sync), Type); 1] = [(&project, Type::TEXT)];
    let rows = client
        .query_typed(sql, &typed)
        .map_err(|e| call_error("status", "deploy.status", e))?;
    let text: String = match rows.first() {
        Some(row) => row.try_get(0).map_err(|e| call_error("status", "deploy.status", e))?,
        None => "[]".into(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Refused {
        message: format!("status: the server's answer is not JSON: {e}"),
        hint: None,
    })
}

/// deploy.phase_status(project): how far the steps after the project's last
/// deployment got. One short statement, in autocommit.
pub fn phase_status(client: &mut Client, project: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "wait",
        "deploy.phase_status",
        "SELECT deploy.phase_status($1)::text",
        &[project],
    )
}

/// deploy.drift(project) rows `{change, kind, name}` as JSON objects.
pub fn drift(client: &mut Client, project: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "drift",
        "deploy.drift",
        "SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]')::text FROM deploy.drift($1) d",
        &[project],
    )
}

/// `{"recording": deploy.lineage_recording(), "objects": deploy.lineage(project) rows}`.
pub fn lineage(client: &mut Client, project: &str) -> Result<Value, CliError> {
    json_call(
        client,
        "lineage",
        "deploy.lineage",
        "SELECT jsonb_build_object('recording', deploy.lineage_recording(),
                                   'objects', coalesce((SELECT jsonb_agg(to_jsonb(l)) FROM deploy.lineage($1) l), '[]'))::text",
        &[project],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_without_phases_gets_a_hint() {
        for message in [
            "options.phases: unknown field",
            "invalid options: options.through: unknown field",
            "changes[2].online: unknown field",
            "changes[0].commit_before: unknown field",
        ] {
            let hint = phases_unknown("22023", message).expect(message);
            assert!(hint.contains("ALTER EXTENSION pg_deploy UPDATE"), "{hint}");
            assert!(hint.contains("--phases declared"), "{hint}");
        }
        assert_eq!(phases_unknown("22023", "options.wiat: unknown field"), None);
        assert_eq!(phases_unknown("42703", "options.phases: unknown field"), None);
    }
}
