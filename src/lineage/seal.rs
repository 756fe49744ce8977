//! A deployment's lineage rows, written at once and sealed (or, when sealing
//! is refused, unsealed; and gap rows): each sealed row is inserted with its
//! place in the hash chain, instead of inserted and then updated by
//! deploy.seal_lineage() (that UPDATE of every row was most of the seal's
//! cost). The content digest (SQL's deploy.lineage_digest) and the link (a
//! sha256 of the hash before, the place and the digest) are computed by the
//! core over the very values inserted; verify_lineage recomputes both in SQL,
//! so these rows are checked as any other. A value SQL would not read back
//! unchanged sends the digests to SQL instead.

use super::read::Touched;
use crate::owner::Owner;
use crate::sqlstate::pg_error;
use crate::subxact::PgError;
use pg_deploy_core::checksum::lineage_link;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiError};
use pgrx::PgSqlErrorCode;

/// The rows as inserted: every column of deploy.lineage, in the table's
/// order (the digest reads them as a deploy.lineage row; a column added to
/// the table makes that cast fail, and flush writes the rows unsealed). $1 to
/// $15 the rows' fields as parallel arrays (`columns`: no jsonb to build and
/// parse), names and args as array literals; $16 the project, $17 the deployment.
/// The unnests run in the select list, in lockstep: ROWS FROM would first copy
/// each array into a tuplestore of its own (five times slower).
macro_rules! rows {
    () => {
        "SELECT r.id, pg_catalog.to_timestamp(r.at), r.event, r.tag, r.object_type, r.schema_name,
                r.object_identity, r.names::pg_catalog.text[], r.args::pg_catalog.text[],
                session_user, r.role::pg_catalog.name, pg_catalog.current_setting('application_name'),
                pg_catalog.inet_client_addr(), pg_catalog.pg_backend_pid(), pg_catalog.pg_current_xact_id(),
                $16::pg_catalog.text, r.change, $17::pg_catalog.int8, r.error, r.seq, r.prev_hash, r.row_hash
           FROM (SELECT pg_catalog.unnest($1::pg_catalog.int8[]) AS id, pg_catalog.unnest($2::pg_catalog.float8[]) AS at,
                        pg_catalog.unnest($3::pg_catalog.text[]) AS event, pg_catalog.unnest($4::pg_catalog.text[]) AS tag,
                        pg_catalog.unnest($5::pg_catalog.text[]) AS object_type,
                        pg_catalog.unnest($6::pg_catalog.text[]) AS schema_name,
                        pg_catalog.unnest($7::pg_catalog.text[]) AS object_identity,
                        pg_catalog.unnest($8::pg_catalog.text[]) AS names, pg_catalog.unnest($9::pg_catalog.text[]) AS args,
                        pg_catalog.unnest($10::pg_catalog.text[]) AS role, pg_catalog.unnest($11::pg_catalog.text[]) AS change,
                        pg_catalog.unnest($12::pg_catalog.text[]) AS error, pg_catalog.unnest($13::pg_catalog.int8[]) AS seq,
                        pg_catalog.unnest($14::pg_catalog.text[]) AS prev_hash,
                        pg_catalog.unnest($15::pg_catalog.text[]) AS row_hash) AS r"
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

/// A lineage row as a deployment collects it; the columns every row of one
/// insert shares (session, project, deployment) and its place in the chain
/// are added by `insert`.
#[derive(Debug, Clone, Default)]
pub struct LineageRow {
    /// When the command ran (seconds since the epoch); None: when inserted.
    pub at: Option<f64>,
    /// ddl, drop or gap.
    pub event: &'static str,
    /// The object and its command's tag (a gap: the tag only).
    pub object: Touched,
    pub role: Option<String>,
    pub change: Option<String>,
    pub error: Option<String>,
}

impl LineageRow {
    /// A gap: the command `tag` whose objects were not recorded, and why.
    pub fn gap(tag: &str, error: String) -> LineageRow {
        LineageRow {
            event: "gap",
            object: Touched {
                tag: Some(tag.to_string()),
                ..Touched::default()
            },
            error: Some(error),
            ..LineageRow::default()
        }
    }
}

/// The hash chain through the rows of a sealed insert: the place of the
/// first, and the head's hash followed by each row's (a row's previous hash
/// is the link before its own).
struct Chain {
    first_seq: i64,
    links: Vec<String>,
}

/// Inserts `rows` in their order as the extension's owner; `sealed`: after
/// the chain's head, which it locks (sealers take turns on it) and moves.
pub fn insert(
    client: &mut SpiClient<'_>,
    owner: Owner,
    rows: &[LineageRow],
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
            let ats: Vec<f64> = rows.iter().map(|r| r.at.unwrap_or(now)).collect();
            let Some((mut seq, hash)) = head else {
                client.update(INSERT, None, &columns(rows, &ids, &ats, None, project, deployment))?;
                return Ok(());
            };
            // The digests are computed here when every value is one SQL reads
            // back unchanged (always, for the rows the trigger collects); else by SQL.
            let computed = session.and_then(|session| {
                rows.iter()
                    .zip(ids.iter().zip(&ats))
                    .map(|(row, (&id, &at))| digest(row, id, at, &session, project, deployment))
                    .collect::<Option<Vec<String>>>()
            });
            let digests = match computed {
                Some(digests) => digests,
                None => {
                    let mut digests = Vec::with_capacity(rows.len());
                    let args = columns(rows, &ids, &ats, None, project, deployment);
                    for row in client.update(DIGESTS, None, &args)? {
                        digests.push(row.get::<String>(1)?.unwrap_or_default());
                    }
                    digests
                }
            };
            let mut chain = Chain {
                first_seq: seq + 1,
                links: Vec::with_capacity(digests.len() + 1),
            };
            chain.links.push(hash);
            for digest in digests {
                seq += 1;
                let next = lineage_link(chain.links.last().map_or("", String::as_str), seq, &digest);
                chain.links.push(next);
            }
            let hash = chain.links.last().cloned().unwrap_or_default();
            client.update(
                INSERT,
                None,
                &columns(rows, &ids, &ats, Some(&chain), project, deployment),
            )?;
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
fn columns<'a>(
    rows: &'a [LineageRow],
    ids: &[i64],
    ats: &[f64],
    chain: Option<&'a Chain>,
    project: &'a str,
    deployment: i64,
) -> [DatumWithOid<'a>; 17] {
    let text = |field: fn(&LineageRow) -> &Option<String>| rows.iter().map(|r| field(r).as_deref()).collect::<Vec<_>>();
    let array = |field: fn(&LineageRow) -> &Option<Vec<String>>| {
        rows.iter()
            .map(|r| field(r).as_deref().map(array_literal))
            .collect::<Vec<_>>()
    };
    let unchained = || vec![None::<&str>; rows.len()];
    let (seq, prev_hash, row_hash) = match chain {
        Some(c) => {
            let links = |from: usize| {
                c.links[from..]
                    .iter()
                    .take(rows.len())
                    .map(|h| Some(h.as_str()))
                    .collect::<Vec<_>>()
            };
            (
                (c.first_seq..).take(rows.len()).map(Some).collect::<Vec<_>>(),
                links(0),
                links(1),
            )
        }
        None => (vec![None; rows.len()], unchained(), unchained()),
    };
    [
        ids.to_vec().into(),
        ats.to_vec().into(),
        rows.iter().map(|r| r.event).collect::<Vec<_>>().into(),
        text(|r| &r.object.tag).into(),
        text(|r| &r.object.object_type).into(),
        text(|r| &r.object.schema_name).into(),
        text(|r| &r.object.object_identity).into(),
        array(|r| &r.object.names).into(),
        array(|r| &r.object.args).into(),
        text(|r| &r.role).into(),
        text(|r| &r.change).into(),
        text(|r| &r.error).into(),
        seq.into(),
        prev_hash.into(),
        row_hash.into(),
        project.into(),
        deployment.into(),
    ]
}

/// A list of strings as a text[] literal, each element quoted: array_in
/// reads it back as the same strings.
fn array_literal(items: &[String]) -> String {
    let mut literal = String::from("{");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
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
fn digest(row: &LineageRow, id: i64, at: f64, session: &Session, project: &str, deployment: i64) -> Option<String> {
    use pg_deploy_core::lineage_digest::{lineage_digest, to_timestamp, Field};
    fn text(value: &Option<String>) -> Field<'_> {
        value.as_deref().map_or(Field::Null, Field::Text)
    }
    fn texts(value: &Option<Vec<String>>) -> Option<Vec<Option<&str>>> {
        value
            .as_ref()
            .map(|items| items.iter().map(|s| Some(s.as_str())).collect())
    }
    // A role's name is at most NAMEDATALEN - 1 bytes: a longer one would be cut.
    if row
        .role
        .as_ref()
        .is_some_and(|r| r.len() >= pg_sys::NAMEDATALEN as usize)
    {
        return None;
    }
    let names = texts(&row.object.names);
    let args = texts(&row.object.args);
    let fields = [
        Field::Int(id),
        Field::Epoch(to_timestamp(at)),
        Field::Text(row.event),
        text(&row.object.tag),
        text(&row.object.object_type),
        text(&row.object.schema_name),
        text(&row.object.object_identity),
        Field::Texts(names.as_deref()),
        Field::Texts(args.as_deref()),
        Field::Text(&session.user),
        text(&row.role),
        Field::Text(&session.application),
        session.host.as_deref().map_or(Field::Null, Field::Text),
        Field::Int(session.pid),
        Field::Text(&session.xid),
        Field::Text(project),
        text(&row.change),
        Field::Int(deployment),
        text(&row.error),
    ];
    Some(lineage_digest(&fields))
}

/// The chain's head (seq, hash), locked until commit.
fn lock_head(client: &mut SpiClient<'_>) -> Result<(i64, String), SpiError> {
    // One statement: the row made on first use, or the existing one updated to lock it.
    let head = client
        .update(
            "INSERT INTO deploy.lineage_chain AS c DEFAULT VALUES
             ON CONFLICT (one) DO UPDATE SET head_seq = c.head_seq
             RETURNING c.head_seq, c.head_hash",
            Some(1),
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
