//! Downstream hazards found in the catalogs (core/src/downstream.rs has the
//! rules): who depends on a table or column a pending change drops or retypes.

use crate::analyze::ChangeAnalysis;
use crate::catalog::{SchemaCache, SpiCatalog};
use crate::error::DeployError;
use pg_deploy_core::downstream::{outside, touched, warning, Dependant};
use pg_deploy_core::hazards::Catalog;
use pg_deploy_core::Manifest;
use pgrx::spi::SpiClient;

/// Publications (FOR ALL TABLES, FOR TABLES IN SCHEMA, or listing the table,
/// with the column when it has a column list), views and functions that
/// depend on the table or column, foreign keys of other tables on it, and its
/// owner when that is not current_user. PostgreSQL 15's catalogs.
const DEPENDANTS: &str = "
    WITH t AS (SELECT $1::pg_catalog.oid AS rel,
                      (SELECT a.attnum FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = $1 AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped) AS col)
    SELECT 'publication' AS kind, p.pubname::pg_catalog.text AS name, NULL::pg_catalog.text AS schema
      FROM pg_catalog.pg_publication p, t
     WHERE p.puballtables
        OR EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr
                    WHERE pr.prpubid OPERATOR(pg_catalog.=) p.oid AND pr.prrelid OPERATOR(pg_catalog.=) t.rel
                      AND (t.col IS NULL OR pr.prattrs IS NULL OR t.col OPERATOR(pg_catalog.=) ANY (pr.prattrs)))
        OR EXISTS (SELECT FROM pg_catalog.pg_publication_namespace pn JOIN pg_catalog.pg_class c
                           ON c.relnamespace OPERATOR(pg_catalog.=) pn.pnnspid
                    WHERE pn.pnpubid OPERATOR(pg_catalog.=) p.oid AND c.oid OPERATOR(pg_catalog.=) t.rel)
    UNION
    SELECT CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'm' THEN 'materialized view' ELSE 'view' END,
           n.nspname OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.relname, n.nspname::pg_catalog.text
      FROM t, pg_catalog.pg_depend d
      JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) t.rel AND c.oid OPERATOR(pg_catalog.<>) t.rel
       AND (t.col IS NULL OR d.refobjsubid OPERATOR(pg_catalog.=) t.col)
    UNION
    SELECT 'function', p.oid::pg_catalog.regprocedure::pg_catalog.text, n.nspname::pg_catalog.text
      FROM t, pg_catalog.pg_depend d
      JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) t.rel
       AND (t.col IS NULL OR d.refobjsubid OPERATOR(pg_catalog.=) t.col)
    UNION
    SELECT 'foreign key', co.conname OPERATOR(pg_catalog.||) ' on ' OPERATOR(pg_catalog.||) n.nspname
                          OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.relname, n.nspname::pg_catalog.text
      FROM t, pg_catalog.pg_constraint co
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) co.conrelid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE co.contype OPERATOR(pg_catalog.=) 'f' AND co.confrelid OPERATOR(pg_catalog.=) t.rel
       AND co.conrelid OPERATOR(pg_catalog.<>) t.rel
       AND (t.col IS NULL OR t.col OPERATOR(pg_catalog.=) ANY (co.confkey))
    UNION
    SELECT 'owner', pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text, NULL
      FROM t, pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) t.rel
       AND pg_catalog.pg_get_userbyid(c.relowner) OPERATOR(pg_catalog.<>) current_user
     ORDER BY 1, 2";

/// One warning per touched table or column that something outside the
/// project (`managed`: its schemas) depends on. Tables the deployment itself
/// creates are not in the catalogs yet, and have no dependants outside it.
pub fn warnings(
    client: &mut SpiClient<'_>,
    manifest: &Manifest,
    analyses: &[Option<ChangeAnalysis>],
    managed: &[String],
) -> Result<Vec<String>, DeployError> {
    let mut schemas = SchemaCache::default();
    let mut out = Vec::new();
    for (change, analysis) in manifest.changes.iter().zip(analyses) {
        let Some(analysis) = analysis else { continue };
        for statement in &analysis.statements {
            for touch in touched(&statement.statement.facts) {
                let path = schemas.get(client, &analysis.settings.search_path)?;
                let Some(table) = SpiCatalog::new(client, path).table(&touch.table) else {
                    continue;
                };
                let found = dependants(client, table.oid, touch.column.as_deref())?;
                let mut managed = managed.to_vec();
                if let Some(schema) = table.name.split('.').next() {
                    managed.push(schema.to_string());
                }
                if let Some(w) = warning(&change.id, &touch, &table.name, &outside(&found, &managed)) {
                    out.push(w);
                }
            }
        }
    }
    Ok(out)
}

fn dependants(client: &mut SpiClient<'_>, table: u32, column: Option<&str>) -> Result<Vec<Dependant>, DeployError> {
    let rows = client.update(
        DEPENDANTS,
        None,
        &[pgrx::pg_sys::Oid::from(table).into(), column.into()],
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(Dependant {
            kind: row.get::<String>(1)?.unwrap_or_default(),
            name: row.get::<String>(2)?.unwrap_or_default(),
            schema: row.get::<String>(3)?,
        });
    }
    Ok(out)
}
