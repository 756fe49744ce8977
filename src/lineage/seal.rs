//! A deployment's lineage rows, written at once and sealed (or, when sealing
//! is refused, unsealed; and gap rows): each sealed row is inserted with its
//! place in the hash chain, instead of inserted and then updated by
//! deploy.seal_lineage() (that UPDATE of every row was most of the seal's
//! cost). The content digest (SQL's deploy.lineage_digest) and the link (a
//! sha256 of the hash before, the place and the digest) are computed by the
//! core over the very values inserted; verify_lineage recomputes both in SQL,
//! so these rows are checked as any other. A value SQL would not read back
//! unchanged sends the digests to SQL instead.

use crate::owner::Owner;
use crate::sqlstate::pg_error;
use crate::subxact::PgError;
use pg_deploy_core::checksum::lineage_link;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiError};
use pgrx::PgSqlErrorCode;
use serde_json::{json, Value};

/// The rows as inserted: every column of deploy.lineage, in the table's
/// order (the digest reads them as a deploy.lineage row; a column added to
/// the table makes that cast fail, and flush writes the rows unsealed). $1 to
/// $15 the rows' fields as parallel arrays (`columns`: no jsonb to build and
/// parse), names and args as array literals; $16 the project, $17 the deployment.
macro_rules! rows {
    () => {
        "SELECT r.id, pg_catalog.to_timestamp(r.at), r.event, r.tag, r.object_type, r.schema_name,
                r.object_identity, r.names::pg_catalog.text[], r.args::pg_catalog.text[],
                session_user, r.role::pg_catalog.name, pg_catalog.current_setting('application_name'),
                pg_catalog.inet_client_addr(), pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(),
                $16::pg_catalog.text, r.change, $17::pg_catalog.int8, r.error, r.seq, r.prev_hash, r.row_hash
           FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.float8[]),
                  pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]),
                  pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[]),
                  pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]),
                  pg_catalog.unnest($9::pg_catalog.text[]), pg_catalog.unnest($10::pg_catalog.text[]),
                  pg_catalog.unnest($11::pg_catalog.text[]), pg_catalog.unnest($12::pg_catalog.text[]),
                  pg_catalog.unnest($13::pg_catalog.int8[]), pg_catalog.unnest($14::pg_catalog.text[]),
                  pg_catalog.unnest($15::pg_catalog.text[]))
                AS r(id, at, event, tag, object_type, schema_name, object_identity, names, args, role, change,
                     error, seq, prev_hash, row_hash)"
    };
}

// OFFSET 0 keeps the row a plain column of the outer query, so that the
// planner inlines deploy.lineage_digest (an argument with a subquery in it,
// read 19 times, would be evaluated as a SQL function call per row).
const DIGESTS: &str = concat!(
    "SELECT deploy.lineage_digest(s.l) FROM (SELECT ROW(t.*)::deploy.lineage AS l FROM (",
    rows!(),
    ") AS t OFFSET 0) AS s ORDER BY (s.l).id"
);

const INSERT: &str = concat!(
    "INSERT INTO deploy.lineage (id, at, event, command_tag, object_type, schema_name, object_identity,
        object_names, object_args, session_user_name, current_user_name, application_name, client_addr,
        backend_pid, xid, project, change_id, deployment_id, error, seq, prev_hash, row_hash)
     OVERRIDING SYSTEM VALUE ",
    rows!()
);

/// Inserts `rows` in their order as the extension's owner; `sealed`: after
/// the chain's head, which it locks (sealers take turns on it) and moves.
pub fn insert(
    client: &mut SpiClient<'_>,
    owner: Owner,
    mut rows: Vec<Value>,
    project: &str,
    deployment: i64,
    sealed: bool,
) -> Result<(), PgError> {
    let internal = |e: SpiError| pg_error(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string());
    owner
        .run(|| -> Result<(), SpiError> {
            let head = if sealed { Some(lock_head(client)?) } else { None };
            let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
            let mut ids = Vec::with_capacity(rows.len());
            let mut session = None;
            for row in client.update(
                "SELECT pg_catalog.nextval('deploy.lineage_id_seq'), session_user::pg_catalog.text,
                        pg_catalog.current_setting('application_name'), pg_catalog.host(pg_catalog.inet_client_addr()),
                        pg_catalog.pg_backend_pid()::pg_catalog.int8, pg_catalog.pg_current_xact_id()::pg_catalog.text
                   FROM pg_catalog.generate_series(1, $1)",
                None,
                &[count.into()],
            )? {
                ids.push(row.get::<i64>(1)?.unwrap_or_default());
                if session.is_none() {
                    session = Some(Session {
                        user: row.get::<String>(2)?.unwrap_or_default(),
                        application: row.get::<String>(3)?.unwrap_or_default(),
                        host: row.get::<String>(4)?,
                        pid: row.get::<i64>(5)?.unwrap_or_default(),
                        xid: row.get::<String>(6)?.unwrap_or_default(),
                    });
                }
            }
            ids.sort_unstable();
            let now = now_epoch();
            for (row, id) in rows.iter_mut().zip(ids) {
                row["id"] = json!(id);
                if row.get("at").is_none_or(Value::is_null) {
                    row["at"] = json!(now);
                }
            }
            let args = |rows: &[Value]| columns(rows, project, deployment);
            let Some((mut seq, mut hash)) = head else {
                client.update(INSERT, None, &args(&rows))?;
                return Ok(());
            };
            // The digests are computed here when every value is one SQL reads
            // back unchanged (always, for the rows the trigger collects); else by SQL.
            let computed = session.and_then(|session| {
                rows.iter()
                    .map(|row| digest(row, &session, project, deployment))
                    .collect::<Option<Vec<String>>>()
            });
            let digests = match computed {
                Some(digests) => digests,
                None => {
                    let mut digests = Vec::with_capacity(rows.len());
                    for row in client.update(DIGESTS, None, &args(&rows))? {
                        digests.push(row.get::<String>(1)?.unwrap_or_default());
                    }
                    digests
                }
            };
            for (row, digest) in rows.iter_mut().zip(digests) {
                seq += 1;
                row["seq"] = json!(seq);
                row["prev_hash"] = json!(hash);
                hash = lineage_link(&hash, seq, &digest);
                row["row_hash"] = json!(hash);
            }
            client.update(INSERT, None, &args(&rows))?;
            client.update(
                "UPDATE deploy.lineage_chain SET head_seq = $1, head_hash = $2",
                None,
                &[seq.into(), hash.into()],
            )?;
            Ok(())
        })
        .map_err(internal)
}

/// `rows!`'s parameters: each field of the rows as an array, in order.
fn columns<'a>(rows: &[Value], project: &'a str, deployment: i64) -> [DatumWithOid<'a>; 17] {
    let int = |key: &str| {
        rows.iter()
            .map(|r| r.get(key).and_then(Value::as_i64))
            .collect::<Vec<_>>()
    };
    let text = |key: &str| rows.iter().map(|r| as_text(r.get(key))).collect::<Vec<_>>();
    let array = |key: &str| rows.iter().map(|r| array_literal(r.get(key))).collect::<Vec<_>>();
    let at = rows
        .iter()
        .map(|r| r.get("at").and_then(Value::as_f64))
        .collect::<Vec<_>>();
    [
        int("id").into(),
        at.into(),
        text("event").into(),
        text("tag").into(),
        text("object_type").into(),
        text("schema_name").into(),
        text("object_identity").into(),
        array("names").into(),
        array("args").into(),
        text("role").into(),
        text("change").into(),
        text("error").into(),
        int("seq").into(),
        text("prev_hash").into(),
        text("row_hash").into(),
        project.into(),
        deployment.into(),
    ]
}

/// A JSON value as text (a string as it is, anything else as its JSON text).
fn as_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A JSON array as a text[] literal (NULL for anything else), each element
/// quoted: array_in reads it back as the same strings.
fn array_literal(value: Option<&Value>) -> Option<String> {
    let Some(Value::Array(items)) = value else { return None };
    let mut literal = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        match as_text(Some(item)) {
            None => literal.push_str("NULL"),
            Some(s) => {
                literal.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        literal.push('\\');
                    }
                    literal.push(c);
                }
                literal.push('"');
            }
        }
    }
    literal.push('}');
    Some(literal)
}

/// What every row of this session's insert has in common.
struct Session {
    user: String,
    application: String,
    host: Option<String>,
    pid: i64,
    xid: String,
}

/// deploy.lineage_digest of `row` as INSERT will write it (see `rows!`), or
/// None when a value would not read back as it is here.
fn digest(row: &Value, session: &Session, project: &str, deployment: i64) -> Option<String> {
    use pg_deploy_core::lineage_digest::{lineage_digest, to_timestamp, Field};
    let text = |key: &str| match row.get(key) {
        None | Some(Value::Null) => Some(Field::Null),
        Some(Value::String(s)) => Some(Field::Text(s)),
        Some(_) => None,
    };
    let texts = |key: &str| -> Option<Option<Vec<Option<&str>>>> {
        match row.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Some(Some(s.as_str())),
                    Value::Null => Some(None),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some),
            _ => Some(None),
        }
    };
    // A role's name is at most NAMEDATALEN - 1 bytes: a longer one would be cut.
    let role = text("role").filter(|r| !matches!(r, Field::Text(s) if s.len() >= pg_sys::NAMEDATALEN as usize))?;
    let names = texts("names")?;
    let args = texts("args")?;
    let fields = [
        Field::Int(row.get("id")?.as_i64()?),
        Field::Epoch(to_timestamp(row.get("at")?.as_f64()?)),
        text("event")?,
        text("tag")?,
        text("object_type")?,
        text("schema_name")?,
        text("object_identity")?,
        Field::Texts(names.as_deref()),
        Field::Texts(args.as_deref()),
        Field::Text(&session.user),
        role,
        Field::Text(&session.application),
        session.host.as_deref().map_or(Field::Null, Field::Text),
        Field::Int(session.pid),
        Field::Text(&session.xid),
        Field::Text(project),
        text("change")?,
        Field::Int(deployment),
        text("error")?,
    ];
    Some(lineage_digest(&fields))
}

/// The chain's head (seq, hash), locked until commit.
fn lock_head(client: &mut SpiClient<'_>) -> Result<(i64, String), SpiError> {
    client.update(
        "INSERT INTO deploy.lineage_chain DEFAULT VALUES ON CONFLICT DO NOTHING",
        None,
        &[],
    )?;
    let head = client
        .update(
            "UPDATE deploy.lineage_chain c SET head_seq = c.head_seq RETURNING c.head_seq, c.head_hash",
            None,
            &[],
        )?
        .first();
    Ok((
        head.get::<i64>(1)?.unwrap_or(0),
        head.get::<String>(2)?.unwrap_or_default(),
    ))
}

/// Now, as the seconds since the epoch that to_timestamp reads back.
pub(super) fn now_epoch() -> f64 {
    // SAFETY: GetCurrentTimestamp reads the clock; no state.
    let micros = unsafe { pg_sys::GetCurrentTimestamp() };
    // TimestampTz counts microseconds from 2000-01-01, 946,684,800 s after the epoch.
    micros as f64 / 1_000_000.0 + 946_684_800.0
}
