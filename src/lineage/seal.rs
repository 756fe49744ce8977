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
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiError};
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{json, Value};

/// The rows as inserted: every column of deploy.lineage, in the table's
/// order (the digest reads them as a deploy.lineage row; a column added to
/// the table makes that cast fail, and flush writes the rows unsealed). $1
/// the rows (with id, at and the chain's columns filled), $2 the project,
/// $3 the deployment.
macro_rules! rows {
    () => {
        "SELECT r.id, pg_catalog.to_timestamp(r.at), r.event, r.tag, r.object_type, r.schema_name,
                r.object_identity,
                CASE WHEN pg_catalog.jsonb_typeof(r.names) OPERATOR(pg_catalog.=) 'array'
                     THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(r.names)) END,
                CASE WHEN pg_catalog.jsonb_typeof(r.args) OPERATOR(pg_catalog.=) 'array'
                     THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(r.args)) END,
                session_user, r.role, pg_catalog.current_setting('application_name'),
                pg_catalog.inet_client_addr(), pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(),
                $2::pg_catalog.text, r.change, $3::pg_catalog.int8, r.error, r.seq, r.prev_hash, r.row_hash
           FROM pg_catalog.jsonb_to_recordset($1) AS r(id pg_catalog.int8, at pg_catalog.float8, event text,
                  tag text, object_type text, schema_name text, object_identity text, names jsonb, args jsonb,
                  role name, change text, error text, seq pg_catalog.int8, prev_hash text, row_hash text)"
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
            let args = |rows: Vec<Value>| [JsonB(Value::Array(rows)).into(), project.into(), deployment.into()];
            let Some((mut seq, mut hash)) = head else {
                client.update(INSERT, None, &args(rows))?;
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
                    for row in client.update(DIGESTS, None, &args(rows.clone()))? {
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
            client.update(INSERT, None, &args(rows))?;
            client.update(
                "UPDATE deploy.lineage_chain SET head_seq = $1, head_hash = $2",
                None,
                &[seq.into(), hash.into()],
            )?;
            Ok(())
        })
        .map_err(internal)
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
fn now_epoch() -> f64 {
    // SAFETY: GetCurrentTimestamp reads the clock; no state.
    let micros = unsafe { pg_sys::GetCurrentTimestamp() };
    // TimestampTz counts microseconds from 2000-01-01, 946,684,800 s after the epoch.
    micros as f64 / 1_000_000.0 + 946_684_800.0
}
