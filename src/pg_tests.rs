//! In-transaction behaviour, run by `cargo pgrx test` (each test is rolled back).
//! Commits, concurrency, poolers and restarts are tested end to end in `pg_test/`.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use serde_json::{json, Value};

    fn apply_with(manifest: &Value, options: &Value) -> Value {
        Spi::get_one_with_args::<JsonB>(
            "SELECT deploy.apply($1, $2)",
            &[JsonB(manifest.clone()).into(), JsonB(options.clone()).into()],
        )
        .expect("apply runs")
        .expect("apply returns a report")
        .0
    }

    fn apply(manifest: &Value) -> Value {
        apply_with(manifest, &json!({}))
    }

    /// Applies in a PL/pgSQL exception block and returns "SQLSTATE: message",
    /// or "ok"; the block's savepoint undoes whatever the failed apply did.
    fn try_apply(manifest: &Value, options: &Value) -> String {
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.try_apply(m jsonb, o jsonb) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN PERFORM deploy.apply(m, o); RETURN 'ok';
             EXCEPTION WHEN OTHERS OR query_canceled THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$",
        )
        .expect("helper created");
        Spi::get_one_with_args::<String>(
            "SELECT pg_temp.try_apply($1, $2)",
            &[JsonB(manifest.clone()).into(), JsonB(options.clone()).into()],
        )
        .expect("helper runs")
        .unwrap_or_default()
    }

    fn one<T: IntoDatum + FromDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).expect("query runs")
    }

    fn shop(version: &str, changes: Value) -> Value {
        json!({"project": "shop", "version": version, "changes": changes})
    }

    fn v1() -> Value {
        shop(
            "1.0.0",
            json!([
                {"id": "0001-schema", "sql": "CREATE SCHEMA shop;"},
                {"id": "0002-customers", "sql": "CREATE TABLE shop.customers (id int PRIMARY KEY, name text);"},
                {"id": "view", "repeatable": true, "sql": "CREATE OR REPLACE VIEW shop.names AS SELECT name FROM shop.customers;"}
            ]),
        )
    }

    fn ids(report: &Value, key: &str) -> Vec<String> {
        report[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e.get("id").unwrap_or(e).as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[pg_test]
    fn first_apply_runs_everything_and_records_it() {
        let report = apply(&v1());
        assert_eq!(report["outcome"], "applied");
        assert_eq!(ids(&report, "applied"), vec!["0001-schema", "0002-customers", "view"]);
        assert_eq!(report["version"], "1.0.0");
        assert_eq!(report["previous_version"], Value::Null);
        assert_eq!(one::<i64>("SELECT count(*) FROM shop.names"), Some(0));
        assert_eq!(
            one::<String>("SELECT version FROM deploy.status('shop')").as_deref(),
            Some("1.0.0")
        );
        assert_eq!(one::<i64>("SELECT changes_applied FROM deploy.status('shop')"), Some(3));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM deploy.change_log WHERE project = 'shop'"),
            Some(3)
        );
        assert_eq!(
            one::<String>("SELECT applied_by::text FROM deploy.history('shop')").as_deref(),
            Some("postgres")
        );
    }

    #[pg_test]
    fn reapply_is_a_noop_that_records_no_deployment() {
        let first = apply(&v1());
        let again = apply(&v1());
        assert_eq!(again["outcome"], "no-op");
        assert!(ids(&again, "applied").is_empty());
        assert_eq!(ids(&again, "skipped"), vec!["0001-schema", "0002-customers", "view"]);
        // Nothing recorded: the report names the deployment in place, status when it was checked.
        assert_eq!(one::<i64>("SELECT count(*) FROM deploy.deployments"), Some(1));
        assert_eq!(again["deployment_id"], first["deployment_id"]);
        assert_eq!(again["chain_head"], first["chain_head"]);
        assert_eq!(
            one::<bool>("SELECT last_checked_at IS NOT NULL AND last_outcome = 'applied' FROM deploy.status('shop')"),
            Some(true)
        );
        assert_eq!(again["previous_version"], "1.0.0");
        assert_eq!(one::<i64>("SELECT deployments FROM deploy.status('shop')"), Some(1));
    }

    /// A deployment `through` a change leaves the later ones to the next
    /// apply of the same manifest, which is then no no-op.
    #[pg_test]
    fn reapply_after_through_runs_the_rest() {
        let first = apply_with(&v1(), &json!({"through": "0001-schema"}));
        assert_eq!(ids(&first, "applied"), vec!["0001-schema"]);
        let rest = apply(&v1());
        assert_eq!(rest["outcome"], "applied");
        assert_eq!(ids(&rest, "applied"), vec!["0002-customers", "view"]);
        assert_eq!(one::<bool>("SELECT to_regclass('shop.names') IS NOT NULL"), Some(true));
        assert_eq!(apply(&v1())["outcome"], "no-op");
        // Through the last change is all of it, read from the history.
        let all = apply_with(&v1(), &json!({"through": "view"}));
        assert_eq!(all["outcome"], "no-op");
    }

    /// A re-apply of the very bytes the project's last deployment applied
    /// reads only their head and ids (`Manifest::elided`) and reports what a
    /// whole read reports; it trusts the digest recorded with that deployment.
    #[pg_test]
    fn a_reapply_of_the_same_bytes_reads_no_more_than_their_ids() {
        let jsonb_digest = |manifest: &Value| {
            let text = std::ffi::CString::new(manifest.to_string()).expect("no NUL in JSON");
            // SAFETY: jsonb_in reads a C string and returns a jsonb datum.
            let datum = unsafe {
                pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(pg_sys::Datum::from(text.as_ptr()))])
                    .expect("jsonb_in returns a datum")
            };
            crate::jsonb_manifest::digest(crate::jsonb_arg::StoredJsonb(datum))
        };
        let set_digest = |digest: Option<String>| {
            Spi::run_with_args(
                "UPDATE deploy.deployments SET manifest_jsonb_sha256 = $1",
                &[digest.into()],
            )
            .expect("digest set")
        };
        let without_duration = |mut report: Value| {
            report.as_object_mut().map(|o| o.remove("duration_ms"));
            report
        };
        let first = apply(&v1());
        assert_eq!(
            one::<String>("SELECT manifest_jsonb_sha256 FROM deploy.deployments"),
            Some(jsonb_digest(&v1()))
        );
        let elided = without_duration(apply(&v1()));
        set_digest(None);
        let whole = without_duration(apply(&v1()));
        assert_eq!(elided, whole);
        assert_eq!(elided["outcome"], "no-op");
        assert_eq!(elided["manifest_sha256"], first["manifest_sha256"]);
        // Shown by pointing the recorded digest at another manifest: taken as applied, unread.
        let mut v2 = v1();
        v2["changes"]
            .as_array_mut()
            .expect("changes")
            .push(json!({"id": "0003-orders", "sql": "CREATE TABLE shop.orders (id int);"}));
        set_digest(Some(jsonb_digest(&v2)));
        assert_eq!(apply(&v2)["outcome"], "no-op");
        assert_eq!(one::<bool>("SELECT to_regclass('shop.orders') IS NULL"), Some(true));
        // Any other digest: read whole, and the new change runs.
        set_digest(Some(jsonb_digest(&v1())));
        assert_eq!(ids(&apply(&v2), "applied"), vec!["0003-orders"]);
    }

    #[pg_test]
    fn new_changes_and_changed_repeatables_run_in_manifest_order() {
        apply(&v1());
        let mut v2 = v1();
        v2["version"] = json!("1.1.0");
        v2["changes"][2]["sql"] = json!("CREATE OR REPLACE VIEW shop.names AS SELECT name, id FROM shop.customers;");
        v2["changes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "0003-orders", "sql": "CREATE TABLE shop.orders (id int);"}));
        let report = apply(&v2);
        assert_eq!(ids(&report, "rerun"), vec!["view"]);
        assert_eq!(ids(&report, "applied"), vec!["0003-orders"]);
        assert_eq!(ids(&report, "skipped"), vec!["0001-schema", "0002-customers"]);
        assert_eq!(
            one::<String>("SELECT version FROM deploy.status('shop')").as_deref(),
            Some("1.1.0")
        );
        assert_eq!(
            one::<i64>("SELECT runs FROM deploy.changes('shop') WHERE change_id = 'view'"),
            Some(2)
        );
    }

    #[pg_test]
    fn refusals_carry_sqlstate_and_leave_nothing_behind() {
        apply(&v1());
        let changed = {
            let mut m = v1();
            m["version"] = json!("1.0.1");
            m["changes"][1]["sql"] = json!("CREATE TABLE shop.customers (id bigint PRIMARY KEY);");
            m
        };
        let with_new = |extra: Value| {
            let mut m = v1();
            m["version"] = json!("1.2.0");
            m["changes"]
                .as_array_mut()
                .unwrap()
                .extend(extra.as_array().unwrap().clone());
            m
        };
        let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
            (
                "null manifest",
                Value::Null,
                json!({}),
                "22023",
                "invalid manifest: $: expected a JSON object",
            ),
            (
                "duplicate id",
                shop(
                    "1.0.0",
                    json!([{"id": "a", "sql": "SELECT 1"}, {"id": "a", "sql": "SELECT 2"}]),
                ),
                json!({}),
                "23505",
                "changes[1].id",
            ),
            (
                "bad option",
                v1(),
                json!({"wiat": false}),
                "22023",
                "invalid options: options.wiat: unknown field",
            ),
            (
                "checksum mismatch",
                changed.clone(),
                json!({}),
                "23000",
                "\"0002-customers\" was applied as sha256:",
            ),
            (
                "older version",
                shop("0.9.0", json!([{"id": "0001-schema", "sql": "CREATE SCHEMA shop;"}])),
                json!({}),
                "55000",
                "older than the deployed version 1.0.0",
            ),
            (
                "postgres too old",
                json!({"project": "p", "version": "1.0.0", "requires": {"postgres": ">=99"}, "changes": [{"id": "a", "sql": "SELECT 1"}]}),
                json!({}),
                "55000",
                "requires.postgres >=99 is not met",
            ),
            (
                "missing extension",
                json!({"project": "p", "version": "1.0.0", "requires": {"extensions": ["no_such_ext"]}, "changes": [{"id": "a", "sql": "SELECT 1"}]}),
                json!({}),
                "55000",
                "\"no_such_ext\"",
            ),
            (
                "syntax error",
                with_new(json!([{"id": "0003", "sql": "CREATE TABLE shop.t1 ();\nCREAT TABLE shop.t2 ();"}])),
                json!({}),
                "42601",
                "change \"0003\" of project \"shop\" has a syntax error at line 2, column 1",
            ),
            (
                "failing change",
                with_new(
                    json!([{"id": "0003", "sql": "CREATE TABLE shop.t1 ();"}, {"id": "0004", "sql": "INSERT INTO shop.customers VALUES (1, 'a');\nSELECT 1/0;"}]),
                ),
                json!({}),
                "22012",
                "change \"0004\" of project \"shop\" failed at line 2, column 1: division by zero",
            ),
            (
                "undefined column points at it",
                with_new(json!([{"id": "0003", "sql": "SELECT nope FROM shop.customers"}])),
                json!({}),
                "42703",
                "failed at line 1, column 8: column \"nope\" does not exist",
            ),
            (
                "unknown type in DDL points at it",
                with_new(json!([{"id": "0003", "sql": "SELECT 1;\nCREATE TABLE shop.t1 (a int, b nosuchtype);"}])),
                json!({}),
                "42704",
                "failed at line 2, column 32: type \"nosuchtype\" does not exist",
            ),
            (
                "error inside a function body points at the call",
                with_new(
                    json!([{"id": "0003", "sql": "CREATE FUNCTION shop.f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN (SELECT nope FROM shop.customers); END $f$;\n  SELECT shop.f();"}]),
                ),
                json!({}),
                "42703",
                "failed at line 2, column 3: column \"nope\" does not exist",
            ),
            (
                "commit in change",
                with_new(json!([{"id": "0003", "sql": "CREATE TABLE shop.t1 (); COMMIT;"}])),
                json!({}),
                "2D000",
                "cannot run at line 1, column 26: COMMIT is transaction control",
            ),
            (
                "commit in DO block",
                with_new(json!([{"id": "0003", "sql": "DO $$ BEGIN COMMIT; END $$"}])),
                json!({}),
                "2D000",
                "invalid transaction termination",
            ),
            (
                "statement timeout",
                with_new(json!([{"id": "0003", "sql": "SELECT pg_sleep(5)", "statement_timeout": "50ms"}])),
                json!({}),
                "57014",
                "statement timeout",
            ),
            (
                "kind changed",
                {
                    let mut m = v1();
                    m["changes"][1]["repeatable"] = json!(true);
                    m
                },
                json!({}),
                "23000",
                "was applied as versioned but the manifest now declares it repeatable",
            ),
        ];
        for (name, manifest, options, sqlstate, fragment) in cases {
            let got = try_apply(&manifest, &options);
            assert!(
                got.starts_with(&format!("{sqlstate}: ")) && got.contains(fragment),
                "{name}: got {got:?}, wanted {sqlstate} with {fragment:?}"
            );
        }
        assert_eq!(
            one::<bool>("SELECT to_regclass('shop.t1') IS NULL"),
            Some(true),
            "earlier changes of a failed deployment are rolled back"
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM shop.customers"), Some(0));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM deploy.deployments"),
            Some(1),
            "failed deployments leave no history"
        );
        assert_eq!(
            one::<String>("SELECT version FROM deploy.status('shop')").as_deref(),
            Some("1.0.0")
        );
    }

    #[pg_test]
    fn settings_changed_by_a_change_do_not_leak() {
        Spi::run("SET search_path = public; SET lock_timeout = '7s'; CREATE SCHEMA gdefault").unwrap();
        apply(&json!({"project": "g", "version": "1.0.0",
            "defaults": {"search_path": "gdefault", "lock_timeout": "1s", "statement_timeout": "1min"},
            "changes": [{"id": "a", "sql": "CREATE SCHEMA elsewhere; SET search_path = elsewhere; SET lock_timeout = 100; CREATE TABLE t (x int); SET ROLE NONE;"},
                        {"id": "b", "sql": "CREATE TABLE u (x int)"}]}));
        assert_eq!(
            one::<String>("SELECT current_setting('search_path')").as_deref(),
            Some("public")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('lock_timeout')").as_deref(),
            Some("7s")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('statement_timeout')").as_deref(),
            Some("0")
        );
        assert_eq!(one::<bool>("SELECT to_regclass('elsewhere.t') IS NOT NULL"), Some(true));
        // Each change starts from the manifest's settings, not the previous change's.
        assert_eq!(one::<bool>("SELECT to_regclass('gdefault.u') IS NOT NULL"), Some(true));
    }

    #[pg_test]
    fn changes_run_with_the_callers_search_path_by_default() {
        Spi::run("CREATE SCHEMA app; SET search_path = app, public").unwrap();
        apply(&json!({"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "CREATE TABLE t (x int)"}]}));
        assert_eq!(one::<bool>("SELECT to_regclass('app.t') IS NOT NULL"), Some(true));
    }

    #[pg_test]
    fn accepted_changes_are_recorded_not_run() {
        apply(&v1());
        let mut fixed = v1();
        fixed["changes"][1]["sql"] =
            json!("CREATE TABLE shop.customers (id int PRIMARY KEY, name text); -- typo fixed");
        let report = apply_with(
            &fixed,
            &json!({"accept_changed": ["0002-customers"], "reason": "comment only"}),
        );
        assert_eq!(report["accepted"], json!(["0002-customers"]));
        assert_eq!(
            one::<String>("SELECT action FROM deploy.change_log WHERE change_id = '0002-customers' ORDER BY deployment_id DESC LIMIT 1").as_deref(),
            Some("accepted")
        );
        assert_eq!(
            one::<String>("SELECT options->>'reason' FROM deploy.history('shop') LIMIT 1").as_deref(),
            Some("comment only")
        );
        assert_eq!(
            apply(&fixed)["outcome"],
            "no-op",
            "the accepted text is the new baseline"
        );
    }

    #[pg_test]
    fn downgrade_needs_an_explicit_option() {
        let mut v2 = v1();
        v2["version"] = json!("2.0.0");
        apply(&v2);
        let report = apply_with(&v1(), &json!({"allow_downgrade": true}));
        assert_eq!(report["outcome"], "no-op");
        assert!(report["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("downgrade from 2.0.0 to 1.0.0"));
        assert_eq!(
            one::<String>("SELECT version FROM deploy.status('shop')").as_deref(),
            Some("1.0.0")
        );
    }

    #[pg_test]
    fn names_are_stored_verbatim() {
        let project = "o'brien; DROP TABLE x; -- ✓";
        let id = "0001 \"quoted\" $$ ünï";
        apply(&json!({"project": project, "version": "1.0.0", "changes": [{"id": id, "sql": "SELECT 1"}]}));
        assert_eq!(
            Spi::get_one_with_args::<String>("SELECT change_id FROM deploy.changes($1)", &[project.into()])
                .unwrap()
                .as_deref(),
            Some(id)
        );
    }

    #[pg_test]
    fn checksums_guard_the_transport() {
        let sql = "SELECT 1";
        let good = pg_deploy_core::checksum::sha256_checksum(sql.as_bytes());
        let m = |sum: &str| json!({"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": sql, "checksum": sum}]});
        assert_eq!(apply(&m(&good))["outcome"], "applied");
        let bad = try_apply(
            &m("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            &json!({}),
        );
        assert!(bad.starts_with("22000: invalid manifest: changes[0].checksum"), "{bad}");
    }

    #[pg_test]
    fn nowait_succeeds_when_nobody_holds_the_lock() {
        let m = json!({"project": "nowait", "version": "1.0.0", "changes": [{"id": "a", "sql": "SELECT 1"}]});
        assert_eq!(apply_with(&m, &json!({"wait": false}))["outcome"], "applied");
    }

    /// SQLSTATEs go between PostgreSQL's codes and their five characters both ways.
    #[pg_test]
    fn sqlstates_round_trip() {
        use crate::sqlstate::{code, sqlstate};
        use pgrx::PgSqlErrorCode as C;
        for (c, text) in [
            (C::ERRCODE_UNDEFINED_TABLE, "42P01"),
            (C::ERRCODE_LOCK_NOT_AVAILABLE, "55P03"),
            (C::ERRCODE_UNSAFE_NEW_ENUM_VALUE_USAGE, "55P04"),
            (C::ERRCODE_FEATURE_NOT_SUPPORTED, "0A000"),
        ] {
            assert_eq!(sqlstate(c), text);
            assert_eq!(code(text), c);
        }
        assert_eq!(code("nonsense"), C::ERRCODE_INTERNAL_ERROR);
    }

    // Statement analysis, lock safety and hazards (shares the helpers above).
    include!("pg_tests_analysis.rs");

    include!("pg_tests_locks.rs");
    // Verify/revert, baseline, the hash-chained log, drift, hostile search paths.
    include!("pg_tests_governance.rs");

    include!("pg_tests_phases.rs");
    // Lineage: attribution, the lineage chain, drift with its commands, downstream hazards.
    include!("pg_tests_lineage.rs");

    include!("pg_tests_arguments.rs");
}
