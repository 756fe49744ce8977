// Included into `pg_tests::tests`: statement analysis, deploy.plan, hazards.

fn plan_of(manifest: &Value, options: &Value) -> Value {
    Spi::get_one_with_args::<JsonB>(
        "SELECT deploy.plan($1, $2)",
        &[JsonB(manifest.clone()).into(), JsonB(options.clone()).into()],
    )
    .expect("plan runs")
    .expect("plan returns a report")
    .0
}

/// The refusal SQLSTATE deploy.plan gives each statement kind, without running anything.
#[pg_test]
fn statement_kinds_are_classified_before_anything_runs() {
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>)] = &[
        // transaction control
        ("BEGIN", Some("2D000")), ("START TRANSACTION", Some("2D000")), ("COMMIT", Some("2D000")),
        ("END", Some("2D000")), ("ROLLBACK", Some("2D000")), ("ABORT", Some("2D000")),
        ("SAVEPOINT s", Some("2D000")), ("RELEASE SAVEPOINT s", Some("2D000")),
        ("ROLLBACK TO SAVEPOINT s", Some("2D000")), ("PREPARE TRANSACTION 'x'", Some("2D000")),
        ("COMMIT PREPARED 'x'", Some("2D000")), ("ROLLBACK PREPARED 'x'", Some("2D000")),
        // cannot run inside a transaction block
        ("CREATE INDEX CONCURRENTLY i ON t (a)", Some("25001")), ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", Some("25001")),
        ("DROP INDEX CONCURRENTLY i", Some("25001")), ("REINDEX INDEX CONCURRENTLY i", Some("25001")),
        ("REINDEX TABLE CONCURRENTLY t", Some("25001")), ("REINDEX DATABASE d", Some("25001")),
        ("REINDEX SYSTEM d", Some("25001")), ("VACUUM", Some("25001")), ("VACUUM FULL t", Some("25001")),
        ("VACUUM (ANALYZE) t", Some("25001")), ("CREATE DATABASE d", Some("25001")), ("DROP DATABASE d", Some("25001")),
        ("ALTER DATABASE d SET TABLESPACE x", Some("25001")), ("CREATE TABLESPACE x LOCATION '/tmp/x'", Some("25001")),
        ("DROP TABLESPACE x", Some("25001")), ("ALTER SYSTEM SET work_mem = '1MB'", Some("25001")),
        ("ALTER SYSTEM RESET ALL", Some("25001")), ("CLUSTER", Some("25001")),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", Some("25001")), ("DROP SUBSCRIPTION s", Some("25001")),
        ("ALTER TABLE t DETACH PARTITION p CONCURRENTLY", Some("25001")),
        // would outlive the deployment in a (pooled) session, or needs a client
        ("DISCARD ALL", Some("0A000")), ("DISCARD PLANS", Some("0A000")), ("LISTEN c", Some("0A000")),
        ("UNLISTEN *", Some("0A000")), ("PREPARE q AS SELECT 1", Some("0A000")), ("DEALLOCATE q", Some("0A000")),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", Some("0A000")), ("LOAD 'auto_explain'", Some("0A000")),
        ("COPY t FROM STDIN", Some("0A000")), ("COPY t TO STDOUT", Some("0A000")),
        // fine inside a deployment
        ("CREATE TABLE t (a int)", None), ("CREATE TEMP TABLE tt (a int) ON COMMIT DROP", None),
        // checked after the change runs instead: it may drop the table again
        ("CREATE TEMP TABLE tt (a int)", None), ("CREATE TEMP TABLE tt AS SELECT 1", None),
        ("CREATE INDEX i ON t (a)", None), ("ANALYZE t", None), ("CLUSTER t USING i", None), ("REINDEX TABLE t", None),
        ("ALTER DATABASE d SET work_mem = '1MB'", None), ("SET search_path = x", None),
        ("SET LOCAL lock_timeout = '1s'", None), ("RESET ALL", None), ("DECLARE c CURSOR FOR SELECT 1", None),
        ("NOTIFY c", None), ("COPY t FROM '/tmp/x.csv'", None), ("INSERT INTO t VALUES (1)", None),
        ("UPDATE t SET a = 1", None), ("DELETE FROM t WHERE a = 1", None), ("CREATE VIEW v AS SELECT 1", None),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", None), ("DO $$ BEGIN END $$", None),
        ("ALTER TYPE e ADD VALUE 'x'", None), ("GRANT SELECT ON t TO PUBLIC", None), ("COMMENT ON TABLE t IS 'x'", None),
        ("CREATE EXTENSION IF NOT EXISTS x", None), ("LOCK TABLE t IN SHARE MODE", None), ("CREATE SCHEMA s", None),
        ("ALTER TABLE t ADD COLUMN b int", None), ("TRUNCATE t", None), ("CHECKPOINT", None), ("CALL p()", None),
        ("ALTER TABLE t DETACH PARTITION p", None), ("CREATE MATERIALIZED VIEW mv AS SELECT 1", None),
    ];
    assert!(cases.len() >= 40);
    let changes: Vec<Value> =
        cases.iter().enumerate().map(|(i, (sql, _))| json!({"id": format!("c{i}"), "sql": sql})).collect();
    let report = plan_of(&json!({"project": "kinds", "version": "1.0.0", "changes": changes}), &json!({}));
    assert_eq!(report["outcome"], "refused");
    assert_eq!(report["execution"]["executed"], false);
    let mut wrong = Vec::new();
    for (i, (sql, want)) in cases.iter().enumerate() {
        let statement = &report["changes"][i]["statements"][0];
        let got = statement["refusal"]["sqlstate"].as_str();
        if got != *want {
            wrong.push(format!("{sql}: got {got:?}, wanted {want:?}"));
        }
        if want.is_some() && report["changes"][i]["action"] != "refuse" {
            wrong.push(format!("{sql}: action {}", report["changes"][i]["action"]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(one::<i64>("SELECT count(*) FROM deploy.deployments"), Some(0), "plan records nothing");
}

#[pg_test]
fn refused_statements_stop_apply_before_anything_runs() {
    let m = json!({"project": "r", "version": "1.0.0", "changes": [
        {"id": "a", "sql": "CREATE TABLE r_t (a int);"},
        {"id": "b", "sql": "SELECT 1;\n  CREATE INDEX CONCURRENTLY ON r_t (a);"}]});
    let got = try_apply(&m, &json!({}));
    assert!(got.starts_with("25001: change \"b\" of project \"r\" cannot run at line 2, column 3: CREATE INDEX CONCURRENTLY cannot run inside a transaction block"), "{got}");
    assert_eq!(one::<bool>("SELECT to_regclass('r_t') IS NULL"), Some(true));
}

#[pg_test]
fn plan_executes_and_rolls_back_leaving_no_trace() {
    Spi::run("SET search_path = public").unwrap();
    let m = json!({"project": "p", "version": "1.0.0", "defaults": {"search_path": "pg_catalog"},
                   "changes": [{"id": "a", "sql": "CREATE TABLE public.plan_t (a int); SET work_mem = '7MB';"},
                               {"id": "b", "sql": "INSERT INTO public.plan_t VALUES (1)"}]});
    assert_eq!(plan_of(&m, &json!({}))["execution"]["executed"], false, "no trial run unless asked");
    let report = plan_of(&m, &json!({"execute": true}));
    assert_eq!(report["outcome"], "would apply");
    assert_eq!(report["execution"]["ok"], true, "{report}");
    assert_eq!(report["changes"][0]["action"], "apply");
    assert_eq!(report["changes"][1]["statements"][0]["locks"][0]["mode"], "RowExclusiveLock");
    assert_eq!(one::<bool>("SELECT to_regclass('public.plan_t') IS NULL"), Some(true));
    assert_eq!(one::<String>("SELECT current_setting('search_path')").as_deref(), Some("public"));
    assert_ne!(one::<String>("SELECT current_setting('work_mem')").as_deref(), Some("7MB"));
    assert_eq!(one::<i64>("SELECT count(*) FROM deploy.projects"), Some(0));
    let failing = json!({"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "SELECT 1;\nSELECT 1/0"}]});
    let report = plan_of(&failing, &json!({"execute": true}));
    assert_eq!(report["execution"]["ok"], false);
    assert_eq!(report["execution"]["sqlstate"], "22012");
    assert_eq!(report["execution"]["line"], 2);
    assert_eq!(plan_of(&failing, &json!({"execute": false}))["execution"]["executed"], false);
}

#[pg_test]
fn hazards_on_a_big_table_are_refused_unless_allowed() {
    Spi::run(
        "CREATE TABLE big (id int PRIMARY KEY, v text, other int);
         INSERT INTO big SELECT g, md5(g::text), g FROM generate_series(1, 1000000) g;
         CREATE TABLE small (id int PRIMARY KEY);
         INSERT INTO small VALUES (1);
         ANALYZE big; ANALYZE small;",
    )
    .unwrap();
    let m = |sql: &str, allow: Value| {
        json!({"project": "h", "version": "1.0.0", "changes": [{"id": "c", "sql": sql, "allow": allow}]})
    };
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], bool)] = &[
        ("CREATE INDEX ON big (v)", &["blocking_index_build"], true),
        ("CREATE INDEX ON small (id)", &["blocking_index_build"], false),
        ("ALTER TABLE big ALTER COLUMN other TYPE bigint", &["table_rewrite", "access_exclusive"], true),
        ("ALTER TABLE big ALTER COLUMN v TYPE varchar", &["access_exclusive"], true),
        ("ALTER TABLE big ADD COLUMN r float8 DEFAULT random()", &["table_rewrite", "access_exclusive"], true),
        ("ALTER TABLE big ADD COLUMN r float8 DEFAULT pg_catalog.random()", &["table_rewrite", "access_exclusive"], true),
        // Function names come from the parse tree: not from comments, not from strings.
        ("ALTER TABLE big ADD COLUMN r float8 DEFAULT /* random() */ 1", &["access_exclusive"], true),
        ("ALTER TABLE big ADD COLUMN r text DEFAULT 'random()'", &["access_exclusive"], true),
        ("ALTER TABLE big ADD COLUMN r text DEFAULT $q$random()$q$", &["access_exclusive"], true),
        ("ALTER TABLE big ADD COLUMN s serial", &["table_rewrite", "access_exclusive"], true),
        ("ALTER TABLE big ADD COLUMN n timestamptz DEFAULT now()", &["access_exclusive"], true),
        ("ALTER TABLE big ADD CONSTRAINT fk FOREIGN KEY (other) REFERENCES small (id)", &["validating_constraint"], true),
        ("ALTER TABLE big ADD CONSTRAINT fk FOREIGN KEY (other) REFERENCES small (id) NOT VALID", &[], false),
        ("ALTER TABLE big ADD CONSTRAINT c CHECK (other > 0)", &["validating_constraint", "access_exclusive"], true),
        ("ALTER TABLE big ALTER COLUMN v SET NOT NULL", &["validating_constraint", "access_exclusive"], true),
        ("ALTER TABLE big DROP COLUMN v", &["data_loss", "access_exclusive"], true),
        ("DROP TABLE small", &["data_loss"], true),
        ("TRUNCATE big", &["data_loss"], true),
        ("DELETE FROM small", &["data_loss"], true),
        ("DELETE FROM small WHERE id = 2", &[], false),
        ("ALTER TABLE big RENAME COLUMN v TO w", &["access_exclusive"], true),
        ("ALTER TABLE small RENAME TO tiny", &["access_exclusive"], false),
        ("CREATE TABLE fresh (a int); CREATE INDEX ON fresh (a)", &[], false),
    ];
    let mut wrong = Vec::new();
    for (sql, kinds, refused) in cases {
        let report = plan_of(&m(sql, json!([])), &json!({"execute": false}));
        let change = &report["changes"][0];
        let got: Vec<String> = change["statements"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["hazards"].as_array().cloned().unwrap_or_default())
            .map(|h| h["kind"].as_str().unwrap_or("").to_string())
            .collect();
        let got_refused = change["action"] == "refuse";
        if got != *kinds || got_refused != *refused {
            wrong.push(format!("{sql}: got {got:?} refused={got_refused}, wanted {kinds:?} refused={refused}"));
        }
        if *refused {
            let allowed = plan_of(&m(sql, json!(kinds)), &json!({"execute": false}));
            if allowed["changes"][0]["action"] != "apply" {
                wrong.push(format!("{sql}: still refused with allow {kinds:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Evidence in the error, and apply honours allow.
    let got = try_apply(&m("ALTER TABLE big ALTER COLUMN other TYPE bigint", json!([])), &json!({}));
    assert!(got.starts_with("55000: change \"c\" of project \"h\" has the hazard table_rewrite"), "{got}");
    assert!(got.contains("public.big (~1000000 rows"), "{got}");
    let ok = apply(&m("ALTER TABLE big ADD COLUMN n int", json!(["access_exclusive"])));
    assert_eq!(ok["outcome"], "applied");
    // Thresholds are configurable: with a 10-billion-row bar the table is not big.
    let lenient = json!({"project": "h2", "version": "1.0.0", "defaults": {"big_table_rows": 10_000_000_000u64, "big_table_bytes": 1_000_000_000_000u64},
                         "changes": [{"id": "c", "sql": "CREATE INDEX ON big (v)"}]});
    assert_eq!(plan_of(&lenient, &json!({"execute": false}))["changes"][0]["action"], "apply");
}

#[pg_test]
fn enum_values_used_before_commit_are_explained() {
    let m = json!({"project": "e", "version": "1.0.0", "changes": [
        {"id": "a", "sql": "CREATE TYPE mood AS ENUM ('sad')"},
        {"id": "b", "sql": "ALTER TYPE mood ADD VALUE 'happy'"},
        {"id": "c", "sql": "SELECT 'happy'::mood"}]});
    // Refused before anything runs, naming both changes and the field to set.
    let got = try_apply(&m, &json!({}));
    assert!(got.starts_with("55P04: project \"e\": change \"c\" uses mood value 'happy', added by change \"b\""), "{got}");
    // With "phases": "auto" the plan places the boundary and says so.
    let report = plan_of(&m, &json!({"execute": false, "phases": "auto"}));
    let warning = report["warnings"][0].as_str().unwrap_or("");
    assert!(warning.contains("change \"c\" starts a new phase") && warning.contains("change \"b\""), "{warning}");
    let steps: Vec<Value> = report["changes"].as_array().unwrap().iter().map(|c| c["step"].clone()).collect();
    assert_eq!(steps, vec![json!(0), json!(0), json!(1)]);
    // One boundary is enough for several later uses.
    let mut twice = m.clone();
    twice["changes"].as_array_mut().unwrap().push(json!({"id": "d", "sql": "SELECT 'happy'::mood"}));
    let report = plan_of(&twice, &json!({"execute": false, "phases": "auto"}));
    assert_eq!(report["warnings"].as_array().map(Vec::len), Some(1), "{report}");
    let steps: Vec<Value> = report["changes"].as_array().unwrap().iter().map(|c| c["step"].clone()).collect();
    assert_eq!(steps, vec![json!(0), json!(0), json!(1), json!(1)]);
    // Declared with commit_before, nothing is refused.
    let mut declared = m.clone();
    declared["changes"][2]["commit_before"] = json!(true);
    assert_eq!(plan_of(&declared, &json!({"execute": false}))["outcome"], "would apply");
    // Added and used in one change: no boundary can help.
    let same = json!({"project": "e", "version": "1.0.0", "changes": [
        {"id": "a", "sql": "CREATE TYPE mood AS ENUM ('sad')"},
        {"id": "b", "sql": "ALTER TYPE mood ADD VALUE 'happy'; SELECT 'happy'::mood"}]});
    let got = try_apply(&same, &json!({"phases": "auto"}));
    assert!(got.starts_with("55P04: project \"e\": change \"b\" adds mood value 'happy' and uses it"), "{got}");
}

/// Enum values are found in the parse tree: comments neither trigger nor hide
/// a finding, dollar-quoted and E'' strings are read as what they denote.
#[pg_test]
fn enum_value_uses_come_from_the_parse_tree() {
    Spi::run("CREATE TYPE mood AS ENUM ('sad'); CREATE TYPE other AS ENUM ('happy'); CREATE TABLE people (m mood)")
        .unwrap();
    let warned = |user_sql: &str| {
        let m = json!({"project": "e", "version": "1.0.0", "changes": [
            {"id": "add", "sql": "ALTER TYPE mood ADD VALUE 'happy'"},
            {"id": "use", "sql": user_sql}]});
        let report = plan_of(&m, &json!({"execute": false, "phases": "auto"}));
        report["warnings"].as_array().is_some_and(|w| w.iter().any(|w| w.as_str().unwrap_or("").contains("change \"use\" starts a new phase")))
    };
    #[rustfmt::skip]
    let cases: &[(&str, bool)] = &[
        ("UPDATE people SET m = 'happy'", true),
        ("UPDATE people SET m = E'hap\\x70y'", true),
        ("UPDATE people SET m = $$happy$$", true),
        ("ALTER TABLE people ALTER COLUMN m SET DEFAULT 'happy'", true),
        ("CREATE TABLE later (m mood DEFAULT 'happy')", true),
        ("CREATE TABLE later (m mood CHECK (m <> 'happy'))", true),
        ("CREATE VIEW glad AS SELECT * FROM people WHERE m = 'happy'", true),
        ("CREATE INDEX ON people (m) WHERE m = 'happy'", true),
        ("DO $$ BEGIN UPDATE people SET m = 'happy'; END $$", true),
        ("-- sets 'happy' later\nUPDATE people SET m = 'sad'", false),
        ("UPDATE people SET m = 'sad' /* not 'happy' yet */", false),
        ("SELECT 'unhappy'", false),
        ("COMMENT ON TABLE people IS 'happy people'", false),
        // The same label written as of another type (documenso's migrations do this).
        ("SELECT 'happy'::mood", true),
        ("SELECT 'happy'::public.mood[]", true),
        ("ALTER TABLE people ADD COLUMN m2 mood NOT NULL DEFAULT 'happy'", true),
        ("SELECT 'happy'::text", false),
        ("ALTER TABLE people ADD COLUMN o other NOT NULL DEFAULT 'happy'", false),
        ("CREATE TYPE third AS ENUM ('happy'); CREATE TABLE later (t third DEFAULT 'happy')", false),
    ];
    for (sql, want) in cases {
        assert_eq!(warned(sql), *want, "{sql}");
    }
}

/// The trial run leaves out what a rollback cannot undo, and says why.
#[pg_test]
fn trial_runs_refuse_what_escapes_a_rollback() {
    for sql in [
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_catalog.pg_terminate_backend(0)",
        "SELECT pg_notify('ch', 'x')",
        "NOTIFY ch",
        "CREATE TABLE t (id int); SELECT pg_try_advisory_lock_shared(1)",
    ] {
        let m = json!({"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": sql}]});
        let trial = &plan_of(&m, &json!({"execute": true}))["execution"];
        assert_eq!(trial["executed"], false, "{sql}: {trial}");
        assert_eq!(trial["sqlstate"], "0A000", "{sql}");
        assert!(trial["message"].as_str().unwrap_or("").contains("cannot run in a trial run"), "{trial}");
    }
    assert_eq!(one::<bool>("SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory'"), Some(true));
}

/// What a change leaves in the session is found after it runs, dynamic SQL
/// included, and rolled back or removed; what it creates and drops again is fine.
#[pg_test]
fn session_state_left_by_a_change_is_refused() {
    Spi::run("PREPARE callers_own AS SELECT 1").unwrap();
    Spi::run(
        "CREATE TABLE altered (a int); INSERT INTO altered VALUES (1);
         CREATE FUNCTION stash() RETURNS int LANGUAGE plpgsql AS
           $$BEGIN EXECUTE 'CREATE TEMP TABLE IF NOT EXISTS via_default (a int)'; RETURN 1; END$$",
    )
    .unwrap();
    let m = |sql: &str| json!({"project": format!("s{}", sql.len()), "version": "1.0.0", "changes": [{"id": "c", "sql": sql}]});
    #[rustfmt::skip]
    let refused: &[(&str, &str)] = &[
        ("CREATE TEMP TABLE kept (a int)", "temporary object \"kept\""),
        ("DO $$ BEGIN EXECUTE 'CREATE TEMP TABLE dyn (a int)'; END $$", "temporary object \"dyn\""),
        ("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "temporary object \"f()\""),
        ("DO $$ BEGIN EXECUTE 'PREPARE sneaky AS SELECT 1'; END $$", "prepared statement \"sneaky\""),
        ("DO $$ BEGIN EXECUTE 'DEALLOCATE callers_own'; END $$", "without its prepared statement \"callers_own\""),
        // An ALTER TABLE is checked when it calls a function (here for every row of the rewrite).
        ("ALTER TABLE altered ADD COLUMN b int DEFAULT stash()", "temporary object \"via_default\""),
    ];
    for (sql, what) in refused {
        let got = try_apply(&m(sql), &json!({}));
        assert!(got.starts_with("0A000: change \"c\" of project \"s"), "{sql}: {got}");
        assert!(got.contains(what), "{sql}: {got}");
    }
    // Session advisory locks are checked once all changes have run.
    for sql in ["SELECT pg_advisory_lock(7)", "DO $$ BEGIN PERFORM pg_advisory_lock_shared(8, 9); END $$"] {
        let got = try_apply(&m(sql), &json!({}));
        assert!(got.starts_with("0A000: the deployment left a session-level advisory lock"), "{sql}: {got}");
    }
    // Nothing of it is left: no temp table, no statement, no session lock.
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relname IN ('kept', 'dyn')"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_prepared_statements WHERE name = 'sneaky'"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"), Some(0));
    // A failed change's session lock is released too.
    let got = try_apply(&m("SELECT pg_advisory_lock(11); SELECT 1/0"), &json!({}));
    assert!(got.starts_with("22012"), "{got}");
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"), Some(0));
    // Fine: a temp table created and dropped again (lemmy's comment_ltrees), ON COMMIT DROP, xact locks.
    for sql in [
        "CREATE TEMP TABLE staging (a int); INSERT INTO staging VALUES (1); DROP TABLE staging",
        "CREATE TEMP TABLE staged (a int) ON COMMIT DROP",
        "SELECT pg_advisory_xact_lock(12)",
        "ALTER TABLE altered ADD COLUMN c int NOT NULL DEFAULT 0",
    ] {
        assert_eq!(try_apply(&m(sql), &json!({})), "ok", "{sql}");
    }
}
