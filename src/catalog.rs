//! Answers the hazard rules' questions from the catalogs, for one change.
//! Unqualified names resolve along the change's own search_path.

use crate::error::DeployError;
use crate::subxact::GucLevel;
use pg_deploy_core::analysis::ObjectName;
use pg_deploy_core::hazards::{Catalog, TableFacts};
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use std::collections::HashMap;
use std::ffi::CString;

pub struct SpiCatalog<'a, 'conn> {
    client: &'a mut SpiClient<'conn>,
    /// Schemas of the change's search_path, in order (pg_catalog and pg_temp included).
    schemas: Vec<String>,
    /// The first query error, kept: the trait's answers cannot carry it.
    pub error: Option<DeployError>,
    /// Tables already looked up: hazards and locks ask about the same ones.
    tables: HashMap<u32, Option<TableFacts>>,
    busy: HashMap<u32, Option<String>>,
}

/// The schemas a search_path setting resolves to, as `current_schemas(true)` says.
pub fn schemas_of(client: &mut SpiClient<'_>, search_path: &str) -> Result<Vec<String>, DeployError> {
    let level = GucLevel::open();
    let schemas = client
        .update(
            "SELECT pg_catalog.set_config('search_path', $1, true),
                    pg_catalog.current_schemas(true)::pg_catalog.text[]",
            Some(1),
            &[search_path.into()],
        )
        .and_then(|t| t.first().get::<Vec<String>>(2));
    level.restore();
    Ok(schemas?.unwrap_or_default())
}

impl<'a, 'conn> SpiCatalog<'a, 'conn> {
    pub fn new(client: &'a mut SpiClient<'conn>, schemas: Vec<String>) -> Self {
        SpiCatalog {
            client,
            schemas,
            error: None,
            tables: HashMap::new(),
            busy: HashMap::new(),
        }
    }

    fn keep<T>(&mut self, result: Result<T, pgrx::spi::Error>, fallback: T) -> T {
        result.unwrap_or_else(|e| {
            self.error.get_or_insert(DeployError::from(e));
            fallback
        })
    }
}

/// Resolves a relation name through the syscache (no query: most names in a
/// new deployment do not exist yet); only tables, partitioned tables and
/// materialized views count.
fn resolve(schemas: &[String], name: &ObjectName) -> Option<pg_sys::Oid> {
    resolve_kind(schemas, name, b"rpm")
}

/// Resolves a relation name to a relation of one of `kinds` (pg_class.relkind).
fn resolve_kind(schemas: &[String], name: &ObjectName, kinds: &[u8]) -> Option<pg_sys::Oid> {
    let relname = CString::new(name.name.as_str()).ok()?;
    let lookup_in = |schema: &str| -> Option<pg_sys::Oid> {
        let nspname = CString::new(schema).ok()?;
        // SAFETY: syscache lookups with valid C strings; missing_ok, so no error.
        unsafe {
            let nsp = pg_sys::get_namespace_oid(nspname.as_ptr(), true);
            if nsp == pg_sys::InvalidOid {
                return None;
            }
            let rel = pg_sys::get_relname_relid(relname.as_ptr(), nsp);
            (rel != pg_sys::InvalidOid).then_some(rel)
        }
    };
    let oid = match &name.schema {
        Some(schema) => lookup_in(schema),
        None => schemas.iter().find_map(|s| lookup_in(s)),
    }?;
    // SAFETY: a syscache lookup of an oid that exists.
    let kind = unsafe { pg_sys::get_rel_relkind(oid) } as u8;
    kinds.contains(&kind).then_some(oid)
}

const TABLE: &str = "
    SELECT pg_catalog.concat(n.nspname, '.', c.relname), c.reltuples::pg_catalog.float8,
           pg_catalog.pg_total_relation_size(c.oid), pg_catalog.pg_relation_size(c.oid)
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = $1::pg_catalog.oid";

/// A table's scans and row writes a second since the statistics were reset
/// (or the server started; at least five minutes, so that a table just made
/// and filled is not busy), and the other sessions holding a lock on it now.
/// The statistics functions pg_stat_all_tables reads, called directly: that
/// view (a join and a GROUP BY) cost more to plan than this costs to run.
const BUSY: &str = "
    SELECT (pg_catalog.pg_stat_get_numscans(c.oid)
              + COALESCE((SELECT pg_catalog.sum(pg_catalog.pg_stat_get_numscans(i.indexrelid))::pg_catalog.int8
                            FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid), 0)
              + pg_catalog.pg_stat_get_tuples_inserted(c.oid) + pg_catalog.pg_stat_get_tuples_updated(c.oid)
              + pg_catalog.pg_stat_get_tuples_deleted(c.oid))::pg_catalog.float8
             / GREATEST(pg_catalog.date_part('epoch', pg_catalog.now()
                 - GREATEST(pg_catalog.pg_postmaster_start_time(), pg_catalog.pg_stat_get_db_stat_reset_time(d.oid))), 300),
           (SELECT pg_catalog.count(DISTINCT l.pid) FROM pg_catalog.pg_locks l
             WHERE l.locktype = 'relation' AND l.database = d.oid AND l.relation = c.oid
               AND l.granted AND l.pid <> pg_catalog.pg_backend_pid())
      FROM pg_catalog.pg_class c, pg_catalog.pg_database d
     WHERE c.oid = $1::pg_catalog.oid AND c.relkind IN ('r', 't', 'm', 'p')
       AND d.datname = pg_catalog.current_database()";

impl SpiCatalog<'_, '_> {
    fn table_by_oid(&mut self, oid: pg_sys::Oid) -> Option<TableFacts> {
        if let Some(known) = self.tables.get(&u32::from(oid)) {
            return known.clone();
        }
        let result = self
            .client
            .update(TABLE, Some(1), &[i64::from(u32::from(oid)).into()])
            .and_then(|t| {
                if t.is_empty() {
                    return Ok(None);
                }
                let row = t.first();
                Ok(Some(TableFacts {
                    oid: u32::from(oid),
                    name: row.get::<String>(1)?.unwrap_or_default(),
                    rows: row.get::<f64>(2)?.unwrap_or(-1.0),
                    bytes: row.get::<i64>(3)?.unwrap_or(0),
                    heap_bytes: row.get::<i64>(4)?.unwrap_or(0),
                }))
            });
        let facts = self.keep(result, None);
        self.tables.insert(u32::from(oid), facts.clone());
        facts
    }
}

impl Catalog for SpiCatalog<'_, '_> {
    fn table(&mut self, name: &ObjectName) -> Option<TableFacts> {
        let oid = resolve(&self.schemas, name)?;
        self.table_by_oid(oid)
    }

    fn index_table(&mut self, index: &ObjectName) -> Option<TableFacts> {
        let oid = resolve_kind(&self.schemas, index, b"iI")?;
        // SAFETY: a syscache lookup of an index that exists; InvalidOid if it vanished.
        let table = unsafe { pg_sys::IndexGetRelation(oid, true) };
        (table != pg_sys::InvalidOid)
            .then(|| self.table_by_oid(table))
            .flatten()
    }

    fn partitioned(&mut self, name: &ObjectName) -> bool {
        resolve_kind(&self.schemas, name, b"pI").is_some()
    }

    fn subscription_without_slot(&mut self, name: &str) -> bool {
        let result = self
            .client
            .update(
                "SELECT s.subslotname IS NULL FROM pg_catalog.pg_subscription s
                  WHERE s.subname = $1
                    AND s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d
                                      WHERE d.datname = pg_catalog.current_database())",
                Some(1),
                &[name.into()],
            )
            .and_then(|t| {
                if t.is_empty() {
                    Ok(None)
                } else {
                    t.first().get::<bool>(1)
                }
            });
        self.keep(result, None).unwrap_or(false)
    }

    fn busy(&mut self, table: &TableFacts) -> Option<String> {
        if let Some(known) = self.busy.get(&table.oid) {
            return known.clone();
        }
        let result = self
            .client
            .update(BUSY, Some(1), &[i64::from(table.oid).into()])
            .and_then(|t| {
                if t.is_empty() {
                    return Ok(None);
                }
                let row = t.first();
                Ok(pg_deploy_core::locks::busy_description(
                    row.get::<f64>(1)?.unwrap_or(0.0),
                    row.get::<i64>(2)?.unwrap_or(0),
                ))
            });
        let busy = self.keep(result, None);
        self.busy.insert(table.oid, busy.clone());
        busy
    }

    fn domain_tables(&mut self, domain: &ObjectName) -> Vec<TableFacts> {
        // Columns of the domain or of a domain over it, as PostgreSQL's
        // get_rels_with_domain finds them (composite types aside); the name
        // resolves along the change's search_path.
        let schemas: Vec<String> = match &domain.schema {
            Some(schema) => vec![schema.clone()],
            None => self.schemas.clone(),
        };
        let result = self
            .client
            .update(
                "WITH RECURSIVE named AS (
                     SELECT t.oid FROM pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY s(nsp, i)
                       JOIN pg_catalog.pg_namespace n ON n.nspname = s.nsp
                       JOIN pg_catalog.pg_type t ON t.typnamespace = n.oid AND t.typname = $1 AND t.typtype = 'd'
                      ORDER BY s.i LIMIT 1),
                 d(oid) AS (
                     SELECT oid FROM named
                     UNION SELECT t.oid FROM pg_catalog.pg_type t JOIN d ON t.typbasetype = d.oid AND t.typtype = 'd')
                 SELECT DISTINCT a.attrelid::pg_catalog.int8
                   FROM pg_catalog.pg_attribute a JOIN d ON a.atttypid = d.oid
                   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p', 'm')
                  WHERE NOT a.attisdropped",
                None,
                &[domain.name.as_str().into(), schemas.into()],
            )
            .and_then(|t| t.map(|row| row.get::<i64>(1)).collect::<Result<Vec<_>, _>>());
        let oids = self.keep(result, Vec::new());
        oids.into_iter()
            .flatten()
            .filter_map(|oid| u32::try_from(oid).ok())
            .filter_map(|oid| self.table_by_oid(pg_sys::Oid::from(oid)))
            .collect()
    }

    fn schema_tables(&mut self, schema: &str) -> Option<TableFacts> {
        let result = self
            .client
            .update(
                "SELECT pg_catalog.sum(GREATEST(c.reltuples, 0))::pg_catalog.float8,
                        pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid))::pg_catalog.int8,
                        pg_catalog.sum(pg_catalog.pg_relation_size(c.oid))::pg_catalog.int8
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')
                 HAVING pg_catalog.count(*) > 0",
                Some(1),
                &[schema.into()],
            )
            .and_then(|t| {
                if t.is_empty() {
                    return Ok(None);
                }
                let row = t.first();
                Ok(Some(TableFacts {
                    oid: 0,
                    name: format!("{schema}.*"),
                    rows: row.get::<f64>(1)?.unwrap_or(0.0),
                    bytes: row.get::<i64>(2)?.unwrap_or(0),
                    heap_bytes: row.get::<i64>(3)?.unwrap_or(0),
                }))
            });
        self.keep(result, None)
    }

    fn any_volatile(&mut self, functions: &[String]) -> bool {
        if functions.is_empty() {
            return false;
        }
        let result = self
            .client
            .update(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_proc
                                 WHERE proname::pg_catalog.text = ANY ($1) AND provolatile = 'v')",
                Some(1),
                &[functions.to_vec().into()],
            )
            .and_then(|t| t.first().get_one::<bool>());
        self.keep(result, None).unwrap_or(true)
    }

    fn type_change_rewrites(&mut self, table: &TableFacts, column: &str, new_type: &str) -> bool {
        let result = self
            .client
            .update(
                "SELECT a.atttypid IS DISTINCT FROM t.oid
                        AND NOT EXISTS (SELECT FROM pg_catalog.pg_cast
                                         WHERE castsource = a.atttypid AND casttarget = t.oid AND castmethod = 'b')
                   FROM pg_catalog.pg_attribute a,
                        LATERAL (SELECT pg_catalog.to_regtype($3)::pg_catalog.oid AS oid) t
                  WHERE a.attrelid = $1::pg_catalog.oid AND a.attname = $2 AND NOT a.attisdropped",
                Some(1),
                &[i64::from(table.oid).into(), column.into(), new_type.into()],
            )
            .and_then(|t| {
                if t.is_empty() {
                    Ok(None)
                } else {
                    t.first().get_one::<bool>()
                }
            });
        // An unknown column or type: the statement will fail or rewrite; assume the worst.
        self.keep(result, None).unwrap_or(true)
    }

    fn not_null_proven(&mut self, table: &TableFacts, column: &str, validated: &[String]) -> bool {
        let result = self
            .client
            .update(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint
                                 WHERE conrelid = $1::pg_catalog.oid AND contype = 'c'
                                   AND (convalidated OR conname::pg_catalog.text = ANY ($3))
                                   AND pg_catalog.strpos(pg_catalog.pg_get_constraintdef(oid),
                                         pg_catalog.concat('(', pg_catalog.quote_ident($2), ' IS NOT NULL)')) > 0)",
                Some(1),
                &[i64::from(table.oid).into(), column.into(), validated.to_vec().into()],
            )
            .and_then(|t| t.first().get_one::<bool>());
        self.keep(result, None).unwrap_or(false)
    }
}

/// Catalog lookups along one search_path are the same for every change that
/// uses it, so the resolved schemas are computed once per path.
#[derive(Default)]
pub struct SchemaCache(HashMap<String, Vec<String>>);

impl SchemaCache {
    pub fn get(&mut self, client: &mut SpiClient<'_>, search_path: &str) -> Result<Vec<String>, DeployError> {
        if let Some(schemas) = self.0.get(search_path) {
            return Ok(schemas.clone());
        }
        let schemas = schemas_of(client, search_path)?;
        self.0.insert(search_path.to_string(), schemas.clone());
        Ok(schemas)
    }
}
