//! A deployment's row hash, as SQL's `deploy.deployment_digest` (0.2.0)
//! computes it: `sha256:` and the hex sha256 of the text of a jsonb object of
//! the row's columns and its change_log rows. The extension computes it here
//! for the deployments `deploy.apply` records (the SQL function, planned in
//! every new session, was a tenth of a small first apply's own work);
//! `verify_log` recomputes it in SQL, so any difference shows as a broken
//! chain. A value jsonb would not print as written here gives None, and the
//! caller asks SQL instead.

use crate::checksum::sha256_hex;
use crate::jsonb_text::{push_array, push_epoch, push_object, push_string};
use serde_json::Value;
use std::fmt::Write;

/// The deployment's row, as inserted (times in microseconds since 2000-01-01).
#[derive(Debug, Clone)]
pub struct DeploymentRow<'a> {
    pub id: i64,
    pub project: &'a str,
    pub version: &'a str,
    pub previous_version: Option<&'a str>,
    pub outcome: &'a str,
    pub manifest_sha256: Option<&'a str>,
    pub applied_by: &'a str,
    pub session_user: &'a str,
    pub application_name: Option<&'a str>,
    /// `host(client_addr)`.
    pub client_addr: Option<&'a str>,
    pub backend_pid: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_ms: f64,
    /// applied, rerun, skipped, accepted, baselined, reverted.
    pub counts: [i64; 6],
    pub options: &'a Value,
    pub warnings: &'a [String],
    pub pg_deploy_version: &'a str,
    pub fingerprint: Option<&'a str>,
    pub prev_hash: &'a str,
    pub changes: &'a [ChangeRow<'a>],
    /// The sha256 (hex) of the stored manifest's text, for digest version 2.
    pub manifest_text_sha256: Option<&'a str>,
    pub manifest_jsonb_sha256: Option<&'a str>,
}

/// One change_log row of the deployment.
#[derive(Debug, Clone)]
pub struct ChangeRow<'a> {
    pub ordinal: i64,
    pub change_id: &'a str,
    pub kind: &'a str,
    pub action: &'a str,
    pub checksum: &'a str,
    pub statements: i64,
    pub lock_retries: i64,
    pub duration_ms: f64,
    pub applied_at: i64,
    pub revert_sql: Option<&'a str>,
}

/// A jsonb value as it prints.
enum Json<'a> {
    Null,
    Int(i64),
    /// A float8 cast to numeric.
    Float(f64),
    Epoch(i64),
    Text(&'a str),
    Array(Vec<Json<'a>>),
    Object(Vec<(&'a str, Json<'a>)>),
    Value(&'a Value),
}

fn opt_text(value: Option<&str>) -> Json<'_> {
    value.map_or(Json::Null, Json::Text)
}

/// `sha256:<hex>` of the row as digest version 2 prints it, or None when
/// some value would not print here as jsonb prints it.
pub fn deployment_digest(d: &DeploymentRow<'_>) -> Option<String> {
    let mut changes: Vec<&ChangeRow<'_>> = d.changes.iter().collect();
    changes.sort_by_key(|c| c.ordinal);
    let changes = changes
        .into_iter()
        .map(|c| {
            Json::Array(vec![
                Json::Int(c.ordinal),
                Json::Text(c.change_id),
                Json::Text(c.kind),
                Json::Text(c.action),
                Json::Text(c.checksum),
                Json::Int(c.statements),
                Json::Int(c.lock_retries),
                Json::Float(c.duration_ms),
                Json::Epoch(c.applied_at),
                opt_text(c.revert_sql),
            ])
        })
        .collect();
    let mut fields = vec![
        ("id", Json::Int(d.id)),
        ("project", Json::Text(d.project)),
        ("version", Json::Text(d.version)),
        ("previous_version", opt_text(d.previous_version)),
        ("outcome", Json::Text(d.outcome)),
        ("manifest_sha256", opt_text(d.manifest_sha256)),
        ("applied_by", Json::Text(d.applied_by)),
        ("session_user", Json::Text(d.session_user)),
        ("application_name", opt_text(d.application_name)),
        ("client_addr", opt_text(d.client_addr)),
        ("backend_pid", Json::Int(d.backend_pid)),
        ("started_at", Json::Epoch(d.started_at)),
        ("finished_at", Json::Epoch(d.finished_at)),
        ("duration_ms", Json::Float(d.duration_ms)),
        ("counts", Json::Array(d.counts.iter().map(|&n| Json::Int(n)).collect())),
        ("options", Json::Value(d.options)),
        (
            "warnings",
            Json::Array(d.warnings.iter().map(|w| Json::Text(w)).collect()),
        ),
        ("pg_deploy_version", Json::Text(d.pg_deploy_version)),
        ("fingerprint", opt_text(d.fingerprint)),
        ("prev_hash", Json::Text(d.prev_hash)),
        ("changes", Json::Array(changes)),
        ("digest_version", Json::Int(2)),
        ("manifest", opt_text(d.manifest_text_sha256)),
    ];
    if let Some(sha) = d.manifest_jsonb_sha256 {
        fields.push(("manifest_jsonb_sha256", Json::Text(sha)));
    }
    let mut text = String::with_capacity(1024 + 256 * d.changes.len());
    push(&mut text, &Json::Object(fields))?;
    Some(format!("sha256:{}", sha256_hex(text.as_bytes())))
}

fn push(out: &mut String, value: &Json<'_>) -> Option<()> {
    match value {
        Json::Null => out.push_str("null"),
        Json::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Json::Float(f) => out.push_str(&float8_numeric(*f)?),
        Json::Epoch(ts) => push_epoch(out, *ts),
        Json::Text(s) => push_string(out, s),
        Json::Array(items) => push_array(out, items, push)?,
        Json::Object(pairs) => push_object(out, pairs.iter().map(|(k, v)| (*k, v)), push)?,
        Json::Value(v) => push_value(out, v)?,
    }
    Some(())
}

/// A document the extension sent as jsonb (serde_json's text, read by
/// jsonb_in), as jsonb prints it back: only integers among its numbers
/// (a fraction or an exponent may print otherwise).
fn push_value(out: &mut String, value: &Value) -> Option<()> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u)) => {
                let _ = write!(out, "{u}");
            }
            _ => return None,
        },
        Value::String(s) => push_string(out, s),
        Value::Array(items) => push_array(out, items, push_value)?,
        Value::Object(map) => push_object(out, map.iter().map(|(k, v)| (k.as_str(), v)), push_value)?,
    }
    Some(())
}

/// `value::numeric::text`: PostgreSQL prints the float8 with 15 significant
/// digits (`%.15g`) and reads that as a numeric, which prints without an
/// exponent. None for NaN and the infinities.
pub fn float8_numeric(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    if value == 0.0 {
        return Some("0".into());
    }
    // d.dddddddddddddde±x: 15 significant digits, rounded as printf rounds
    // (both convert the exact binary value).
    let formatted = format!("{:.14e}", value.abs());
    let (mantissa, exponent) = formatted.split_once('e')?;
    let exponent: i64 = exponent.parse().ok()?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let count = digits.len() as i64;
    // Digits before the decimal point.
    let point = exponent + 1;
    let mut out = String::with_capacity(digits.len() + 24);
    if value < 0.0 {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(digits);
    } else if point >= count {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (point - count) as usize));
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `SELECT v, v::numeric::text FROM unnest(ARRAY[...]::float8[]) v` on PostgreSQL 15.
    #[test]
    fn floats_print_as_float8_cast_to_numeric() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (12.345, "12.345"),
            (0.001, "0.001"),
            (1234.5, "1234.5"),
            (1e-5, "0.00001"),
            (1.5e-5, "0.000015"),
            (123456789.123, "123456789.123"),
            (1e15, "1000000000000000"),
            (1e16, "10000000000000000"),
            (1e20, "100000000000000000000"),
            (0.1 + 0.2, "0.3"),
            (1.0 / 3.0, "0.333333333333333"),
            (2.0 / 3.0, "0.666666666666667"),
            (123456789012345678.0, "123456789012346000"),
            (1e-20, "0.00000000000000000001"),
            (99999999999999.99, "100000000000000"),
            (-2.5, "-2.5"),
            (0.30000000000000004, "0.3"),
            (1234567.8912345678, "1234567.89123457"),
        ];
        for (value, printed) in cases {
            assert_eq!(float8_numeric(*value).as_deref(), Some(*printed), "{value}");
        }
        assert_eq!(float8_numeric(f64::NAN), None);
        assert_eq!(float8_numeric(f64::INFINITY), None);
    }

    #[test]
    fn object_keys_print_in_jsonb_order() {
        let options = json!({"wait": true, "a": [1, "x"], "zz": {"bb": null, "c": -3}});
        let mut out = String::new();
        push_value(&mut out, &options).unwrap();
        // SELECT '{"wait": true, "a": [1, "x"], "zz": {"bb": null, "c": -3}}'::jsonb::text
        assert_eq!(out, r#"{"a": [1, "x"], "zz": {"c": -3, "bb": null}, "wait": true}"#);
    }

    #[test]
    fn fractions_in_options_are_left_to_sql() {
        let mut out = String::new();
        assert_eq!(push_value(&mut out, &json!({"timeout": 1.5})), None);
    }

    fn row<'a>(options: &'a Value, warnings: &'a [String], changes: &'a [ChangeRow<'a>]) -> DeploymentRow<'a> {
        DeploymentRow {
            id: 7,
            project: "app",
            version: "1.0.0",
            previous_version: None,
            outcome: "applied",
            manifest_sha256: Some("sha256:m"),
            applied_by: "alice",
            session_user: "alice",
            application_name: Some("psql"),
            client_addr: None,
            backend_pid: 4242,
            started_at: 0,
            finished_at: 1_500_000,
            duration_ms: 1500.0,
            counts: [1, 0, 0, 0, 0, 0],
            options,
            warnings,
            pg_deploy_version: "0.2.0",
            fingerprint: Some("sha256:f"),
            prev_hash: "",
            changes,
            manifest_text_sha256: Some("abc"),
            manifest_jsonb_sha256: Some("def"),
        }
    }

    /// The text a PostgreSQL 15 server prints for the same row: the jsonb
    /// object below, built as deploy.deployment_digest builds it.
    #[test]
    fn the_row_prints_as_the_sql_function_prints_it() {
        let options = json!({});
        let warnings = vec!["w \"1\"".to_string()];
        let changes = [ChangeRow {
            ordinal: 1,
            change_id: "001",
            kind: "migration",
            action: "applied",
            checksum: "sha256:c",
            statements: 2,
            lock_retries: 0,
            duration_ms: 0.25,
            applied_at: 1_250,
            revert_sql: None,
        }];
        let d = row(&options, &warnings, &changes);
        // SELECT (jsonb_build_object('id', 7, 'project', 'app', 'version', '1.0.0', 'previous_version', NULL,
        //   'outcome', 'applied', 'manifest_sha256', 'sha256:m', 'applied_by', 'alice', 'session_user', 'alice',
        //   'application_name', 'psql', 'client_addr', NULL, 'backend_pid', 4242,
        //   'started_at', extract(epoch FROM '2000-01-01 00:00:00+00'::timestamptz),
        //   'finished_at', extract(epoch FROM '2000-01-01 00:00:01.5+00'::timestamptz),
        //   'duration_ms', 1500::float8::numeric, 'counts', jsonb_build_array(1, 0, 0, 0, 0, 0),
        //   'options', '{}'::jsonb, 'warnings', to_jsonb(ARRAY['w "1"']), 'pg_deploy_version', '0.2.0',
        //   'fingerprint', 'sha256:f', 'prev_hash', '',
        //   'changes', jsonb_build_array(jsonb_build_array(1, '001', 'migration', 'applied', 'sha256:c', 2, 0,
        //       0.25::float8::numeric, extract(epoch FROM '2000-01-01 00:00:00.00125+00'::timestamptz), NULL)))
        //   || jsonb_build_object('digest_version', 2, 'manifest', 'abc')
        //   || jsonb_build_object('manifest_jsonb_sha256', 'def'))::text
        let text = r#"{"id": 7, "counts": [1, 0, 0, 0, 0, 0], "changes": [[1, "001", "migration", "applied", "sha256:c", 2, 0, 0.25, 946684800.001250, null]], "options": {}, "outcome": "applied", "project": "app", "version": "1.0.0", "manifest": "abc", "warnings": ["w \"1\""], "prev_hash": "", "applied_by": "alice", "started_at": 946684800.000000, "backend_pid": 4242, "client_addr": null, "duration_ms": 1500, "fingerprint": "sha256:f", "finished_at": 946684801.500000, "session_user": "alice", "digest_version": 2, "manifest_sha256": "sha256:m", "application_name": "psql", "previous_version": null, "pg_deploy_version": "0.2.0", "manifest_jsonb_sha256": "def"}"#;
        assert_eq!(
            deployment_digest(&d),
            Some(format!("sha256:{}", sha256_hex(text.as_bytes())))
        );
    }

    #[test]
    fn changes_are_ordered_by_ordinal() {
        let options = json!({});
        let change = |ordinal| ChangeRow {
            ordinal,
            change_id: "x",
            kind: "migration",
            action: "applied",
            checksum: "c",
            statements: 1,
            lock_retries: 0,
            duration_ms: 1.0,
            applied_at: 0,
            revert_sql: Some("DROP TABLE t"),
        };
        let forward = [change(1), change(2)];
        let backward = [change(2), change(1)];
        assert_eq!(
            deployment_digest(&row(&options, &[], &forward)),
            deployment_digest(&row(&options, &[], &backward))
        );
    }
}
