// Included into `pg_tests::tests`: issue 17, the hazards and refusals that
// need the catalogs, and the locks a deployment holds until it commits.

/// A table above the big-table threshold, with what the cases need on it.
fn big_table() {
    Spi::run(
        "CREATE DOMAIN posint AS int;
         CREATE TABLE big (id int PRIMARY KEY, v text, other int, p posint);
         INSERT INTO big SELECT g, md5(g::text), g, g FROM generate_series(1, 150000) g;
         CREATE INDEX big_v ON big (v);
         CREATE FUNCTION big_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
         CREATE TRIGGER big_t BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION big_noop();
         ALTER TABLE big ADD CONSTRAINT big_nn CHECK (other IS NOT NULL) NOT VALID;
         ANALYZE big;",
    )
    .unwrap();
}

fn one_change(sql: &str, allow: Value) -> Value {
    json!({"project": "h17", "version": "1.0.0", "changes": [{"id": "c", "sql": sql, "allow": allow}]})
}

fn hazard_kinds(change: &Value) -> Vec<String> {
    change["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["hazards"].as_array().cloned().unwrap_or_default())
        .map(|h| h["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Each class of issue 17 on a big table: the hazards, the lock on the table
/// and the way out, pointing at the phases.
#[pg_test]
fn issue_17_hazards_name_lock_and_phase() {
    big_table();
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], &str, &str)] = &[
        // (statement, hazards, lock on public.big, in the first hazard's hint)
        ("ALTER TABLE big ADD COLUMN g int GENERATED ALWAYS AS (other * 2) STORED",
            &["table_rewrite", "access_exclusive"], "AccessExclusiveLock", "Expand, backfill, contract"),
        ("ALTER TABLE big ADD COLUMN u int UNIQUE",
            &["blocking_index_build", "access_exclusive"], "AccessExclusiveLock", "CREATE UNIQUE INDEX CONCURRENTLY"),
        ("ALTER TABLE big ADD COLUMN k int CONSTRAINT k_key UNIQUE",
            &["blocking_index_build", "access_exclusive"], "AccessExclusiveLock", "\"online\": true"),
        ("ALTER TABLE big ADD COLUMN k int PRIMARY KEY",
            &["blocking_index_build", "access_exclusive"], "AccessExclusiveLock", "USING INDEX"),
        ("DROP INDEX big_v", &["access_exclusive"], "AccessExclusiveLock", "DROP INDEX CONCURRENTLY"),
        ("ALTER DOMAIN posint ADD CONSTRAINT pos CHECK (VALUE > 0)",
            &["validating_constraint"], "ShareLock", "VALIDATE CONSTRAINT in a later change with \"commit_before\": true"),
        ("ALTER DOMAIN posint SET NOT NULL", &["validating_constraint"], "ShareLock", "NOT VALID"),
        ("REINDEX TABLE big", &["blocking_index_build"], "ShareLock", "REINDEX … CONCURRENTLY"),
        ("REINDEX INDEX big_v", &["blocking_index_build"], "ShareLock", "\"online\": true"),
        ("CLUSTER big USING big_v", &["table_rewrite", "access_exclusive"], "AccessExclusiveLock", "expand, backfill, contract"),
        ("DROP TRIGGER big_t ON big", &["access_exclusive"], "AccessExclusiveLock", "\"commit_before\": true"),
        ("LOCK TABLE big", &["access_exclusive"], "AccessExclusiveLock", "\"commit_before\": true"),
        // In one change, a backfill under an earlier statement's lock: split the change.
        ("LOCK TABLE big IN SHARE MODE; UPDATE big SET other = other WHERE id > 0",
            &["lock_held_until_commit"], "ShareLock", "Split change \"c\": put statement 2"),
        // The false positive: SET NOT NULL after VALIDATE of a CHECK (col IS NOT NULL) skips the scan.
        ("ALTER TABLE big VALIDATE CONSTRAINT big_nn; ALTER TABLE big ALTER COLUMN other SET NOT NULL",
            &["access_exclusive"], "ShareUpdateExclusiveLock", "commit_before"),
    ];
    let mut wrong = Vec::new();
    for (sql, kinds, mode, hint) in cases {
        let report = plan_of(&one_change(sql, json!([])), &json!({"execute": false}));
        let change = &report["changes"][0];
        let got = hazard_kinds(change);
        let lock = &change["statements"][0]["locks"][0];
        let got_hint = change["statements"].as_array().into_iter().flatten()
            .flat_map(|s| s["hazards"].as_array().cloned().unwrap_or_default())
            .map(|h| h["hint"].as_str().unwrap_or("").to_string())
            .next()
            .unwrap_or_default();
        if got != *kinds || lock["mode"] != *mode || lock["table"] != "public.big" || !got_hint.contains(hint) {
            wrong.push(format!("{sql}: got {got:?} {lock} hint {got_hint:?}"));
        }
        if change["action"] != "refuse" {
            wrong.push(format!("{sql}: not refused on a big table"));
        }
    }
    // NOT VALID on the domain: no scan, no hazard.
    let ok = plan_of(&one_change("ALTER DOMAIN posint ADD CONSTRAINT pos CHECK (VALUE > 0) NOT VALID", json!([])), &json!({"execute": false}));
    assert_eq!(hazard_kinds(&ok["changes"][0]), Vec::<String>::new());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The hint reaches the error, before the way to allow it.
    let got = try_apply(&one_change("DROP INDEX big_v", json!([])), &json!({}));
    assert!(got.starts_with("55000: change \"c\" of project \"h17\" has the hazard access_exclusive"), "{got}");
    Spi::run(
        "DO $$ DECLARE h text; BEGIN PERFORM deploy.apply('{\"project\": \"h17\", \"version\": \"1.0.0\", \"changes\": [{\"id\": \"c\", \"sql\": \"DROP INDEX big_v\"}]}'::jsonb);
         EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT; PERFORM set_config('h17.hint', h, true); END $$",
    )
    .unwrap();
    let hint = one::<String>("SELECT current_setting('h17.hint')").unwrap_or_default();
    assert!(hint.starts_with("Use DROP INDEX CONCURRENTLY") && hint.contains("allow it with"), "{hint}");
}

/// NOT VALID then VALIDATE in one deployment: the first lock is still held
/// while the second scans. Refused on a big table; "phases": "auto" places the
/// boundary; the locks held are reported per table.
#[pg_test]
fn validate_after_not_valid_in_one_transaction_is_a_held_lock() {
    big_table();
    let m = json!({"project": "h17", "version": "1.0.0", "changes": [
        {"id": "add", "sql": "ALTER TABLE big ADD CONSTRAINT pos CHECK (other > 0) NOT VALID", "allow": ["access_exclusive"]},
        {"id": "check", "sql": "ALTER TABLE big VALIDATE CONSTRAINT pos"}]});
    let report = plan_of(&m, &json!({"execute": false}));
    assert_eq!(report["outcome"], "refused", "{report}");
    let check = &report["changes"][1];
    assert_eq!(hazard_kinds(check), vec!["lock_held_until_commit"]);
    assert_eq!(check["statements"][0]["locks"][0]["mode"], "ShareUpdateExclusiveLock");
    let hazard = &check["statements"][0]["hazards"][0];
    assert!(hazard["reason"].as_str().unwrap_or("").starts_with("AccessExclusiveLock taken by change \"add\""), "{hazard}");
    assert!(hazard["hint"].as_str().unwrap_or("").contains("\"commit_before\": true on change \"check\""), "{hazard}");
    let held = &report["locks_held"][0];
    assert_eq!((held["table"].as_str(), held["mode"].as_str(), held["change"].as_str()),
               (Some("public.big"), Some("AccessExclusiveLock"), Some("add")), "{report}");
    assert_eq!(held["held_during"], json!(["check"]));
    let got = try_apply(&m, &json!({}));
    assert!(got.starts_with("55000: change \"check\" of project \"h17\" has the hazard lock_held_until_commit"), "{got}");
    // With "phases": "auto" the validation runs in a later phase, without the lock.
    let auto = plan_of(&m, &json!({"execute": false, "phases": "auto"}));
    assert_eq!(auto["outcome"], "would apply", "{auto}");
    let steps: Vec<Value> = auto["changes"].as_array().unwrap().iter().map(|c| c["step"].clone()).collect();
    assert_eq!(steps, vec![json!(0), json!(1)]);
    assert!(auto["warnings"][0].as_str().unwrap_or("").contains("change \"check\" starts a new phase"), "{auto}");
    // Declared with commit_before: nothing to say either.
    let mut declared = m.clone();
    declared["changes"][1]["commit_before"] = json!(true);
    assert_eq!(plan_of(&declared, &json!({"execute": false}))["outcome"], "would apply");
    // A backfill under an earlier ACCESS EXCLUSIVE is the same hazard.
    let backfill = json!({"project": "h17", "version": "1.0.0", "changes": [
        {"id": "col", "sql": "ALTER TABLE big ADD COLUMN flag boolean", "allow": ["access_exclusive"]},
        {"id": "fill", "sql": "UPDATE big SET flag = true WHERE id > 0"}]});
    let report = plan_of(&backfill, &json!({"execute": false}));
    assert_eq!(hazard_kinds(&report["changes"][1]), vec!["lock_held_until_commit"], "{report}");
}

/// Every statement PostgreSQL 15–18 refuses in a transaction block (each
/// PreventInTransactionBlock call, core/src/outside.rs) is refused before
/// anything runs; the forms it accepts are not.
#[pg_test]
fn statements_postgres_runs_only_outside_a_transaction_block() {
    Spi::run(
        "CREATE TABLE plain (a int); CREATE INDEX plain_a ON plain (a);
         CREATE TABLE parted (a int) PARTITION BY RANGE (a);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
         CREATE INDEX parted_a ON parted (a);
         CREATE SUBSCRIPTION slotted CONNECTION 'host=x' PUBLICATION p WITH (connect = false);
         CREATE SUBSCRIPTION slotless CONNECTION 'host=x' PUBLICATION p WITH (connect = false, slot_name = NONE);",
    )
    .unwrap();
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>)] = &[
        ("CREATE INDEX CONCURRENTLY i ON plain (a)", Some("25001")),
        ("DROP INDEX CONCURRENTLY plain_a", Some("25001")),
        ("REINDEX (CONCURRENTLY) TABLE plain", Some("25001")),
        ("REINDEX SCHEMA public", Some("25001")),
        ("REINDEX SYSTEM d", Some("25001")), // the name is optional from 16 on
        ("REINDEX DATABASE d", Some("25001")),
        ("REINDEX TABLE parted", Some("25001")),
        ("REINDEX INDEX parted_a", Some("25001")),
        ("VACUUM plain", Some("25001")),
        ("CLUSTER", Some("25001")),
        ("CLUSTER parted USING parted_a", Some("25001")),
        ("CREATE DATABASE d", Some("25001")),
        ("DROP DATABASE d", Some("25001")),
        ("ALTER DATABASE d SET TABLESPACE x", Some("25001")),
        ("CREATE TABLESPACE x LOCATION '/tmp/x'", Some("25001")),
        ("DROP TABLESPACE x", Some("25001")),
        ("ALTER SYSTEM SET work_mem = '1MB'", Some("25001")),
        ("ALTER TABLE parted DETACH PARTITION parted_1 CONCURRENTLY", Some("25001")),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", Some("25001")),
        ("ALTER SUBSCRIPTION s REFRESH PUBLICATION", Some("25001")),
        ("ALTER SUBSCRIPTION s SET PUBLICATION p", Some("25001")),
        ("ALTER SUBSCRIPTION s ADD PUBLICATION p", Some("25001")),
        ("ALTER SUBSCRIPTION s DROP PUBLICATION p", Some("25001")),
        ("ALTER SUBSCRIPTION s SET (failover = true)", Some("25001")),
        ("ALTER SUBSCRIPTION s SET (two_phase = false)", Some("25001")),
        ("DROP SUBSCRIPTION s", Some("25001")), // not in the catalogs: may have been made with a slot
        ("DROP SUBSCRIPTION slotted", Some("25001")), // connect = false keeps slot_name
        ("DISCARD ALL", Some("0A000")),
        ("COMMIT PREPARED 'x'", Some("2D000")),
        ("ROLLBACK PREPARED 'x'", Some("2D000")),
        // The forms PostgreSQL runs in a transaction block.
        ("REINDEX TABLE plain", None),
        ("REINDEX INDEX plain_a", None),
        ("CLUSTER plain USING plain_a", None),
        ("ANALYZE plain", None),
        ("ALTER TABLE parted DETACH PARTITION parted_1", None),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (connect = false)", None),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = false)", None),
        ("ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false)", None),
        ("ALTER SUBSCRIPTION s ADD PUBLICATION p WITH (refresh = off)", None),
        ("ALTER SUBSCRIPTION s SET (two_phase = true)", None),
        ("ALTER SUBSCRIPTION s DISABLE", None),
        ("DROP SUBSCRIPTION slotless", None),
    ];
    let changes: Vec<Value> =
        cases.iter().enumerate().map(|(i, (sql, _))| json!({"id": format!("c{i}"), "sql": sql})).collect();
    let report = plan_of(&json!({"project": "outside", "version": "1.0.0", "changes": changes}), &json!({"execute": false}));
    let mut wrong = Vec::new();
    for (i, (sql, want)) in cases.iter().enumerate() {
        let got = report["changes"][i]["statements"][0]["refusal"]["sqlstate"].as_str();
        if got != *want {
            wrong.push(format!("{sql}: got {got:?}, wanted {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Refused at analysis time, like the others: nothing ran.
    let m = json!({"project": "r", "version": "1.0.0", "changes": [
        {"id": "a", "sql": "CREATE TABLE r_t (a int)"}, {"id": "b", "sql": "REINDEX SCHEMA public"}]});
    let got = try_apply(&m, &json!({}));
    assert!(got.starts_with("25001: change \"b\" of project \"r\" cannot run at line 1, column 1: REINDEX SCHEMA cannot run inside a transaction block"), "{got}");
    assert_eq!(one::<bool>("SELECT to_regclass('r_t') IS NULL"), Some(true));
}

/// A transaction that would create more relations than the lock table is
/// sized for is refused before anything runs (53200), with the count and the
/// setting to raise.
#[pg_test]
fn more_relations_than_the_lock_table_holds_is_refused_up_front() {
    let changes: Vec<Value> = (0..20_000)
        .map(|i| json!({"id": format!("t{i:05}"), "sql": format!("CREATE TABLE t{i} ()")}))
        .collect();
    let manifest = json!({"project": "many", "version": "1.0.0", "changes": changes});
    let got = try_apply(&manifest, &json!({}));
    assert!(
        got.starts_with("53200: ")
            && got.contains("one transaction of this deployment creates 20000 relations, each locked until it commits"),
        "got {got:?}"
    );
    assert_eq!(one::<bool>("SELECT to_regclass('t0') IS NULL"), Some(true), "nothing ran");
}

/// The relations a statement creates, read off its parse tree: what the
/// lock table check counts.
#[pg_test]
fn relations_created_by_a_statement() {
    let cases: &[(&str, u64)] = &[
        // Table, primary key index, TOAST table and its index.
        ("CREATE TABLE r1 (id bigint PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT now())", 4),
        ("CREATE TABLE r1 (id bigint, code varchar(10))", 1),
        ("CREATE TABLE r1 (id bigserial, n int GENERATED ALWAYS AS IDENTITY, UNIQUE (n), CHECK (n > 0))", 4),
        ("CREATE TABLE r1 (a int, b int, PRIMARY KEY (a), EXCLUDE USING btree (b WITH =))", 3),
        ("CREATE TABLE r1 (a int, tags text[]) PARTITION BY RANGE (a)", 1),
        ("CREATE TABLE r1 (LIKE r0 INCLUDING ALL)", 1),
        ("CREATE INDEX ON r0 (a)", 1),
        ("CREATE SEQUENCE r1_seq", 1),
        ("CREATE VIEW r1 AS SELECT 1", 1),
        ("ALTER TABLE r0 ADD COLUMN b serial UNIQUE, ADD PRIMARY KEY (a)", 3),
        ("ALTER TABLE r0 ADD CONSTRAINT r0_u UNIQUE USING INDEX r0_i", 0),
        ("ALTER TABLE r0 ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY", 1),
        ("ALTER TABLE r0 ADD COLUMN c text", 0),
        ("INSERT INTO r0 VALUES (1)", 0),
    ];
    let mut wrong = Vec::new();
    for (sql, want) in cases {
        match crate::statements::split(sql) {
            Ok(statements) if statements.len() == 1 && statements[0].relations == *want => {}
            Ok(statements) => wrong.push(format!("{sql}: {:?}, wanted {want}", statements.iter().map(|s| s.relations).collect::<Vec<_>>())),
            Err(e) => wrong.push(format!("{sql}: {:?}", e.error)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Late in a long deployment groups are larger (group_size): a change failing
/// in one of 128 is still reported as itself, and nothing stays.
#[pg_test]
fn a_failing_change_in_a_large_group_is_reported_as_itself() {
    let changes: Vec<Value> = (0..1200)
        .map(|i| {
            let table = if i == 1100 { 7 } else { i };
            json!({"id": format!("l{i:04}"), "sql": format!("CREATE TABLE gl_{table} ()")})
        })
        .collect();
    let got = try_apply(&json!({"project": "large", "version": "1.0.0", "changes": changes}), &json!({}));
    assert!(
        got.starts_with("42P07: ") && got.contains("change \"l1100\" of project \"large\""),
        "got {got:?}"
    );
    assert_eq!(one::<bool>("SELECT to_regclass('gl_0') IS NULL"), Some(true), "nothing stays");
    assert_eq!(crate::group::group_size(1024), 128);
}

/// Consecutive DDL changes share a subtransaction (group.rs); one failing among
/// them is still reported as itself, and nothing of the deployment stays.
#[pg_test]
fn a_failing_change_in_a_group_is_reported_as_itself() {
    let changes: Vec<Value> = (0..10)
        .map(|i| {
            let table = if i == 6 { 1 } else { i };
            json!({"id": format!("g{i}"), "sql": format!("CREATE TABLE g_{table} (a int);\nCREATE INDEX ON g_{table} (a);")})
        })
        .collect();
    let got = try_apply(&json!({"project": "grp", "version": "1.0.0", "changes": changes}), &json!({}));
    assert!(
        got.starts_with("42P07: ") && got.contains("change \"g6\" of project \"grp\"") && got.contains("\"g_1\" already exists"),
        "got {got:?}"
    );
    assert_eq!(one::<bool>("SELECT to_regclass('g_0') IS NULL"), Some(true), "nothing stays");
    let ok: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("g{i}"), "sql": format!("CREATE TABLE g_{i} (a int);")}))
        .collect();
    let report = apply(&json!({"project": "grp", "version": "1.0.0", "changes": ok}));
    assert_eq!(ids(&report, "applied"), (0..10).map(|i| format!("g{i}")).collect::<Vec<_>>());
    assert_eq!(one::<i64>("SELECT count(*) FROM deploy.change_log WHERE change_id LIKE 'g%'"), Some(10));
}

/// A revert is one transaction too: a revert that backfills a big table after
/// another revert's ACCESS EXCLUSIVE on it is refused before anything runs.
#[pg_test]
fn a_revert_checks_the_locks_it_holds_until_commit() {
    big_table();
    let m = json!({"project": "h17r", "version": "1.0.0", "changes": [
        {"id": "col", "sql": "ALTER TABLE big ADD COLUMN flag boolean", "revert": "ALTER TABLE big DROP COLUMN flag",
         "allow": ["access_exclusive"]},
        {"id": "fill", "sql": "SELECT 1", "revert": "UPDATE big SET flag = NULL WHERE id > 0"},
        {"id": "tag", "sql": "ALTER TABLE big ADD COLUMN tag text", "revert": "ALTER TABLE big DROP COLUMN tag",
         "allow": ["access_exclusive"]}]});
    assert_eq!(try_apply(&m, &json!({})), "ok");
    let mut v2 = m.clone();
    v2["version"] = json!("2.0.0");
    v2["changes"].as_array_mut().unwrap().push(json!({"id": "none", "sql": "SELECT 2", "revert": "SELECT 2"}));
    assert_eq!(try_apply(&v2, &json!({})), "ok");
    // Reverting "tag" (DROP COLUMN: ACCESS EXCLUSIVE) then "fill" (a backfill of big).
    let got = revert("h17r", "0.0.0", json!({"allow": ["data_loss", "access_exclusive"]}));
    assert!(got.starts_with("55000: change \"fill\""), "{got}");
    assert!(got.contains("lock_held_until_commit") && got.contains("taken by change \"tag\""), "{got}");
    assert_eq!(one::<bool>("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'tag' AND NOT attisdropped)"), Some(true));
}

/// A deployment that runs a change holds its database's catalogs' locks
/// until commit (src/catalog_locks.rs); a plan does not.
#[pg_test]
fn catalog_locks_are_held_by_a_deployment_not_by_a_plan() {
    let held = || {
        one::<i64>(
            "SELECT count(*) FROM pg_locks
              WHERE pid = pg_backend_pid() AND granted AND relation = 'pg_catalog.pg_seclabel'::regclass
                AND mode IN ('AccessShareLock', 'RowExclusiveLock')",
        )
    };
    let m = json!({"project": "cat", "version": "1.0.0", "changes": [
        {"id": "1", "sql": "CREATE SCHEMA cat; CREATE TABLE cat.t (id int);"}]});
    Spi::get_one_with_args::<JsonB>("SELECT deploy.plan($1)", &[JsonB(m.clone()).into()])
        .expect("plan runs")
        .expect("a plan");
    assert_eq!(held(), Some(0), "a plan: not held");
    apply(&m);
    assert_eq!(held(), Some(2), "a deployment: both modes held");
}
