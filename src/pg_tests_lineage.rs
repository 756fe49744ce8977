// Included into `pg_tests::tests`: lineage (docs/lineage.md).

fn lineage_app(version: &str, extra: Value) -> Value {
    let mut changes = vec![
        json!({"id": "0001-schema", "sql": "CREATE SCHEMA lin;"}),
        json!({"id": "0002-items", "sql": "CREATE TABLE lin.items (id int PRIMARY KEY, name text, price int);"}),
    ];
    changes.extend(extra.as_array().cloned().unwrap_or_default());
    json!({"project": "lin", "version": version, "schemas": ["lin"], "changes": changes})
}

#[pg_test]
fn lineage_attributes_each_command_to_its_change() {
    apply(&lineage_app("1.0.0", json!([])));
    // (change, command tag, object type, names) of every row the deployment left.
    let cases = [
        ("0001-schema", "CREATE SCHEMA", "schema", "lin"),
        ("0002-items", "CREATE TABLE", "table", "lin,items"),
        ("0002-items", "CREATE INDEX", "index", "lin,items_pkey"),
    ];
    let got = one::<String>(
        "SELECT string_agg(concat_ws('|', change_id, command_tag, object_type, array_to_string(object_names, ',')),
                           ';' ORDER BY id)
           FROM deploy.lineage WHERE project = 'lin'",
    )
    .unwrap_or_default();
    let expected: Vec<String> = cases
        .iter()
        .map(|(c, t, o, n)| format!("{c}|{t}|{o}|{n}"))
        .collect();
    assert_eq!(got, expected.join(";"));
    assert_eq!(
        one::<i64>("SELECT count(DISTINCT deployment_id) FROM deploy.lineage WHERE project = 'lin'"),
        Some(1),
        "every row carries the deployment"
    );
    assert_eq!(
        one::<i64>("SELECT count(*) FROM deploy.lineage WHERE project = 'lin' AND seq IS NULL"),
        Some(0),
        "the deployment sealed its rows"
    );
}

#[pg_test]
fn lineage_chain_finds_each_kind_of_tampering() {
    apply(&lineage_app("1.0.0", json!([])));
    Spi::run("CREATE TABLE lin.outside (id int)").expect("outside DDL");
    Spi::run("SELECT deploy.seal_lineage()").expect("sealed");
    assert_eq!(one::<bool>("SELECT intact FROM deploy.verify_lineage()"), Some(true));
    // (tampering, the problem it must show); each in a savepoint-free sequence, undone after.
    let cases = [
        (
            "UPDATE deploy.lineage SET current_user_name = 'x' WHERE object_names = '{lin,outside}'",
            "no longer matches its hash",
        ),
        (
            "DELETE FROM deploy.lineage WHERE seq = (SELECT min(seq) + 1 FROM deploy.lineage)",
            "link to the previous row is broken",
        ),
        (
            "DELETE FROM deploy.lineage WHERE seq = (SELECT max(seq) FROM deploy.lineage)",
            "head",
        ),
    ];
    for (tampering, problem) in cases {
        Spi::run("CREATE TEMP TABLE saved AS SELECT * FROM deploy.lineage").expect("saved");
        Spi::run(tampering).expect("tampered");
        let found = one::<String>("SELECT problem FROM deploy.verify_lineage()").unwrap_or_default();
        assert!(found.contains(problem), "{tampering}: {found}");
        Spi::run("DELETE FROM deploy.lineage; INSERT INTO deploy.lineage OVERRIDING SYSTEM VALUE SELECT * FROM saved; DROP TABLE saved")
            .expect("restored");
        assert_eq!(one::<bool>("SELECT intact FROM deploy.verify_lineage()"), Some(true));
    }
}

#[pg_test]
fn lineage_drift_names_the_commands_outside_deployments() {
    apply(&lineage_app("1.0.0", json!([])));
    // (outside DDL, drifted object, command named)
    let cases = [
        ("ALTER TABLE lin.items ADD COLUMN note text", "changed table lin.items", "ALTER TABLE"),
        ("CREATE INDEX items_name ON lin.items (name)", "added index lin.items_name", "CREATE INDEX"),
        ("CREATE FUNCTION lin.f(a int) RETURNS int LANGUAGE sql AS 'SELECT a'", "added function lin.f(a integer)", "CREATE FUNCTION"),
    ];
    for (ddl, _, _) in cases {
        Spi::run(ddl).expect("outside DDL");
    }
    for (_, object, command) in cases {
        let got = one::<String>(&format!(
            "SELECT concat_ws(' ', change, kind, name) || '|' || (commands -> -1 ->> 'command') || '|' || changed_by
               FROM deploy.drift('lin') WHERE concat_ws(' ', change, kind, name) = '{object}'"
        ));
        assert_eq!(got, Some(format!("{object}|{command}|postgres")), "{object}");
    }
}

#[pg_test]
fn lineage_downstream_dependants_warn_or_refuse() {
    apply(&lineage_app("1.0.0", json!([])));
    Spi::run(
        "CREATE SCHEMA other;
         CREATE VIEW other.names AS SELECT name FROM lin.items;
         CREATE TABLE other.orders (item int REFERENCES lin.items (id));
         CREATE PUBLICATION lin_pub FOR TABLE lin.items (id, price);",
    )
    .expect("dependants");
    // (change SQL, a dependant the warning must name, or None)
    let cases: [(&str, Option<&str>); 7] = [
        ("ALTER TABLE lin.items DROP COLUMN name", Some("view other.names")),
        ("ALTER TABLE lin.items RENAME TO goods", Some("publication lin_pub")),
        ("ALTER TABLE lin.items RENAME COLUMN name TO title", None),
        ("ALTER TABLE lin.items ALTER COLUMN price TYPE bigint", Some("publication lin_pub")),
        ("DROP TABLE lin.items CASCADE", Some("foreign key orders_item_fkey on other.orders")),
        ("ALTER TABLE lin.items ADD COLUMN extra int", None),
        ("ALTER TABLE lin.items ALTER COLUMN id TYPE bigint", Some("foreign key orders_item_fkey on other.orders")),
    ];
    // The catalog reads run with the caller's search_path: a shadowing "=" must not be used.
    Spi::run(
        "CREATE SCHEMA evil_ds;
         CREATE FUNCTION evil_ds.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed ='; END $$;
         CREATE OPERATOR evil_ds.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil_ds.texteq);
         SET search_path = evil_ds, pg_catalog, public;",
    )
    .expect("shadowing");
    for (sql, dependant) in cases {
        let m = lineage_app("2.0.0", json!([{"id": "0003", "sql": sql, "allow": ["data_loss"]}]));
        let plan = Spi::get_one_with_args::<JsonB>("SELECT deploy.plan($1)", &[JsonB(m.clone()).into()])
            .expect("plan runs")
            .expect("a plan")
            .0;
        let warnings = plan["warnings"].to_string();
        match dependant {
            Some(d) => assert!(warnings.contains(d), "{sql}: {warnings}"),
            None => assert!(!warnings.contains("downstream"), "{sql}: {warnings}"),
        }
        if dependant.is_some() {
            let refused = try_apply(&m, &json!({"downstream": "refuse"}));
            assert!(refused.starts_with("2BP01"), "{sql}: {refused}");
            let ignored = Spi::get_one_with_args::<JsonB>(
                "SELECT deploy.plan($1, '{\"downstream\": \"ignore\"}')",
                &[JsonB(m).into()],
            )
            .expect("plan runs")
            .expect("a plan")
            .0;
            assert!(!ignored["warnings"].to_string().contains("downstream"), "{sql}");
        }
    }
}

/// The digests of a deployment's sealed rows are computed by the extension:
/// verify_lineage, which recomputes them in SQL, must find every one intact,
/// whatever the names, the application and the drops hold.
#[pg_test]
fn lineage_digests_computed_by_the_extension_verify_in_sql() {
    Spi::run("SET application_name = 'odd \"app\" \\ é\ttab'").expect("application_name");
    let awkward = json!([
        {"id": "0003-quotes", "sql": "CREATE TABLE lin.\"we \"\"ird\" (\"col\\n\" int); CREATE VIEW lin.\"v é\" AS SELECT 1 AS x;"},
        {"id": "0004-function", "sql": "CREATE FUNCTION lin.f(a int, b text DEFAULT 'x') RETURNS int LANGUAGE sql AS 'SELECT a';"},
        {"id": "0005-drop", "sql": "DROP TABLE lin.\"we \"\"ird\"; ALTER TABLE lin.items ADD COLUMN note text;"},
    ]);
    apply(&lineage_app("1.0.0", awkward));
    assert_eq!(
        one::<String>(
            "SELECT count(*) FILTER (WHERE seq IS NULL) || ' ' || (count(*) >= 7) FROM deploy.lineage WHERE project = 'lin'"
        ),
        Some("0 true".to_string()),
        "every row of the deployment is sealed"
    );
    assert_eq!(
        one::<String>("SELECT unsealed || ' ' || intact || ' ' || coalesce(problem, '') FROM deploy.verify_lineage()"),
        Some("0 true ".to_string())
    );
}

/// The query the catalog reads of `lineage::downstream::dependants` replaced:
/// every table and column below must give the same dependants.
const DEPENDANTS_ORACLE: &str = "
    WITH t AS (SELECT $1::oid AS rel,
                      (SELECT a.attnum FROM pg_attribute a
                        WHERE a.attrelid = $1 AND a.attname = $2 AND NOT a.attisdropped) AS col)
    SELECT 'publication' AS kind, p.pubname::text AS name, NULL::text AS schema
      FROM pg_publication p, t
     WHERE p.puballtables
        OR EXISTS (SELECT FROM pg_publication_rel pr
                    WHERE pr.prpubid = p.oid AND pr.prrelid = t.rel
                      AND (t.col IS NULL OR pr.prattrs IS NULL OR t.col = ANY (pr.prattrs)))
        OR EXISTS (SELECT FROM pg_publication_namespace pn JOIN pg_class c ON c.relnamespace = pn.pnnspid
                    WHERE pn.pnpubid = p.oid AND c.oid = t.rel)
    UNION
    SELECT CASE WHEN c.relkind = 'm' THEN 'materialized view' ELSE 'view' END,
           n.nspname || '.' || c.relname, n.nspname::text
      FROM t, pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = t.rel AND c.oid <> t.rel AND (t.col IS NULL OR d.refobjsubid = t.col)
    UNION
    SELECT 'function', p.oid::regprocedure::text, n.nspname::text
      FROM t, pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = t.rel AND (t.col IS NULL OR d.refobjsubid = t.col)
    UNION
    SELECT 'foreign key', co.conname || ' on ' || n.nspname || '.' || c.relname, n.nspname::text
      FROM t, pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE co.contype = 'f' AND co.confrelid = t.rel AND co.conrelid <> t.rel
       AND (t.col IS NULL OR t.col = ANY (co.confkey))
    UNION
    SELECT 'owner', pg_get_userbyid(c.relowner)::text, NULL
      FROM t, pg_class c WHERE c.oid = t.rel AND pg_get_userbyid(c.relowner) <> current_user
     ORDER BY 1, 2, 3";

#[pg_test]
fn lineage_downstream_dependants_match_the_catalog_query() {
    Spi::run(
        "CREATE SCHEMA ds; CREATE SCHEMA other; CREATE ROLE ds_owner;
         CREATE TABLE ds.t (id int PRIMARY KEY, a int, b text, c int);
         CREATE TABLE ds.u (x int UNIQUE); ALTER TABLE ds.u OWNER TO ds_owner;
         CREATE TABLE ds.self (id int PRIMARY KEY, parent int REFERENCES ds.self);
         CREATE VIEW other.v AS SELECT a, b FROM ds.t;
         CREATE MATERIALIZED VIEW other.mv AS SELECT b FROM ds.t;
         CREATE VIEW ds.own AS SELECT * FROM ds.t;
         CREATE FUNCTION other.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT c FROM ds.t LIMIT 1; END;
         CREATE TABLE other.r (t int REFERENCES ds.t, u int REFERENCES ds.u (x));
         CREATE PUBLICATION ds_cols FOR TABLE ds.t (id, a);
         CREATE PUBLICATION ds_whole FOR TABLE ds.u;
         CREATE PUBLICATION ds_schema FOR TABLES IN SCHEMA other;",
    )
    .expect("dependants");
    // (table, column) read both ways; "nope" is no column (the whole table).
    let cases = [
        ("ds.t", None),
        ("ds.t", Some("id")),
        ("ds.t", Some("a")),
        ("ds.t", Some("b")),
        ("ds.t", Some("c")),
        ("ds.t", Some("nope")),
        ("ds.u", None),
        ("ds.u", Some("x")),
        ("ds.self", Some("id")),
        ("other.r", None),
        ("other.v", Some("a")),
    ];
    let found = |table: &str, column: Option<&str>| {
        let oid = one::<pg_sys::Oid>(&format!("SELECT '{table}'::regclass::oid")).expect("the table");
        let mut native: Vec<String> = crate::lineage::downstream::dependants(u32::from(oid), column)
            .into_iter()
            .map(|d| format!("{}|{}|{}", d.kind, d.name, d.schema.unwrap_or_default()))
            .collect();
        native.sort();
        let mut query: Vec<String> = Spi::connect(|client| {
            client
                .select(DEPENDANTS_ORACLE, None, &[oid.into(), column.into()])
                .expect("the oracle runs")
                .map(|row| {
                    let text = |i| row.get::<String>(i).ok().flatten().unwrap_or_default();
                    format!("{}|{}|{}", text(1), text(2), text(3))
                })
                .collect()
        });
        query.sort();
        (native, query)
    };
    for (table, column) in cases {
        let (native, query) = found(table, column);
        assert_eq!(native, query, "{table} {column:?}");
    }
    // Every kind shows up somewhere, so each part is compared with something.
    let (whole, _) = found("ds.t", None);
    for kind in ["publication|ds_cols", "view|other.v", "materialized view|other.mv", "function|other.f()", "foreign key|r_t_fkey"] {
        assert!(whole.iter().any(|d| d.starts_with(kind)), "{kind}: {whole:?}");
    }
    let (owned, _) = found("ds.u", None);
    assert!(owned.iter().any(|d| d == "owner|ds_owner|"), "{owned:?}");
    Spi::run("CREATE PUBLICATION ds_all FOR ALL TABLES").expect("all tables");
    for (table, column) in cases {
        let (native, query) = found(table, column);
        assert_eq!(native, query, "with FOR ALL TABLES: {table} {column:?}");
        assert!(native.iter().any(|d| d == "publication|ds_all|"), "{table}: {native:?}");
    }
}
