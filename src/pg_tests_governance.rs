// Included into `pg_tests::tests`: verify and revert, baseline, the
// tamper-evident log, drift, and search_path tricks.

fn app(version: &str, extra: Value) -> Value {
    let mut changes = vec![
        json!({"id": "0001-schema", "sql": "CREATE SCHEMA app;", "revert": "DROP SCHEMA app;"}),
        json!({"id": "0002-items", "sql": "CREATE TABLE app.items (id int PRIMARY KEY, name text);",
               "verify": "SELECT to_regclass('app.items') IS NOT NULL", "revert": "DROP TABLE app.items;"}),
        json!({"id": "names", "repeatable": true,
               "sql": "DROP VIEW IF EXISTS app.names; CREATE VIEW app.names AS SELECT name FROM app.items;",
               "revert": "DROP VIEW app.names;"}),
    ];
    // New changes go before the repeatable view, which may use them.
    let view = changes.pop();
    changes.extend(extra.as_array().cloned().unwrap_or_default());
    changes.extend(view);
    json!({"project": "app", "version": version, "changes": changes})
}

fn revert(project: &str, to: &str, options: Value) -> String {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.try_revert(p text, v text, o jsonb) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN RETURN deploy.revert(p, v, o)::text;
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$",
    )
    .expect("helper created");
    Spi::get_one_with_args::<String>(
        "SELECT pg_temp.try_revert($1, $2, $3)",
        &[project.into(), to.into(), JsonB(options).into()],
    )
    .expect("helper runs")
    .unwrap_or_default()
}

#[pg_test]
fn verify_must_return_true() {
    assert_eq!(apply(&app("1.0.0", json!([])))["outcome"], "applied");
    let failing = |verify: &str| {
        app("1.1.0", json!([{"id": "0003", "sql": "CREATE TABLE app.more (id int);", "verify": verify}]))
    };
    let got = try_apply(&failing("SELECT count(*) = 1 FROM app.more"), &json!({}));
    assert!(got.starts_with("23514: change \"0003\" of project \"app\" failed: verify returned false"), "{got}");
    let got = try_apply(&failing("SELECT 1/0"), &json!({}));
    assert!(got.starts_with("22012: change \"0003\" of project \"app\" failed: verify: division by zero"), "{got}");
    let got = try_apply(&failing("SELECT NULL::boolean"), &json!({}));
    assert!(got.contains("verify returned NULL or no row"), "{got}");
    assert_eq!(one::<bool>("SELECT to_regclass('app.more') IS NULL"), Some(true));
    assert_eq!(apply(&failing("SELECT count(*) = 0 FROM app.more"))["outcome"], "applied");
}

#[pg_test]
fn revert_undoes_later_versions_in_reverse() {
    apply(&app("1.0.0", json!([])));
    let mut v2 = app("1.1.0", json!([{"id": "0003-price", "sql": "ALTER TABLE app.items ADD COLUMN price numeric;",
                                     "revert": "ALTER TABLE app.items DROP COLUMN price;"}]));
    v2["changes"][3]["sql"] = json!("DROP VIEW IF EXISTS app.names; CREATE VIEW app.names AS SELECT name, price FROM app.items;");
    apply(&v2);
    let report = revert("app", "1.0.0", json!({}));
    assert!(report.contains("\"outcome\": \"revert\""), "{report}");
    // The view came back to its 1.0.0 text before the column it used went away.
    assert_eq!(one::<i64>("SELECT count(*) FROM information_schema.columns WHERE table_name = 'names'"), Some(1));
    assert_eq!(one::<i64>("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'price'"), Some(0));
    assert_eq!(one::<String>("SELECT version FROM deploy.status('app')").as_deref(), Some("1.0.0"));
    // Applying 1.1.0 again runs the reverted change again.
    let again = apply(&v2);
    assert_eq!(ids(&again, "applied"), vec!["0003-price"]);
    assert_eq!(ids(&again, "rerun"), vec!["names"]);
}

#[pg_test]
fn revert_refuses_missing_reverts_and_unallowed_data_loss() {
    apply(&app("1.0.0", json!([])));
    apply(&app("1.1.0", json!([{"id": "0003-seed", "sql": "INSERT INTO app.items VALUES (1, 'a');"},
                               {"id": "0004-idx", "sql": "CREATE INDEX ON app.items (name);"}])));
    let got = revert("app", "1.0.0", json!({}));
    assert!(got.starts_with("55000: project \"app\": cannot revert to 1.0.0: no revert SQL for \"0004-idx\", \"0003-seed\""), "{got}");
    let got = revert("app", "0.1.0", json!({}));
    assert!(got.starts_with("55000: project \"app\": cannot revert to 0.1.0: no revert SQL"), "{got}");
    let got = revert("app", "2.0.0", json!({}));
    assert!(got.contains("newer than the deployed version 1.1.0"), "{got}");
    let got = revert("app", "x", json!({}));
    assert!(got.starts_with("22023: invalid options: to_version"), "{got}");
    // Dropping a table with rows is data loss: refused unless allowed.
    let only_items = || json!({"project": "loss", "version": "1.0.0", "changes": [
        {"id": "t", "sql": "CREATE TABLE loss_t (id int); INSERT INTO loss_t VALUES (1);", "revert": "DROP TABLE loss_t;"}]});
    apply(&only_items());
    Spi::run("ANALYZE loss_t").unwrap();
    let got = revert("loss", "0.0.1", json!({}));
    assert!(got.starts_with("55000: change \"t\" of project \"loss\" has the hazard data_loss"), "{got}");
    let got = revert("loss", "0.0.1", json!({"allow": ["data_loss"]}));
    assert!(got.contains("\"reverted\""), "{got}");
    assert_eq!(one::<bool>("SELECT to_regclass('loss_t') IS NULL"), Some(true));
}

#[pg_test]
fn baseline_records_without_running() {
    // Its own project and schema: tests run in parallel, and another test's
    // apply of "app" would wait for this one's schema while holding the project.
    let based = |m: Value| -> Value { serde_json::from_str(&m.to_string().replace("app", "based")).unwrap() };
    Spi::run("CREATE SCHEMA based; CREATE TABLE based.items (id int PRIMARY KEY, name text)").unwrap();
    let report = Spi::get_one_with_args::<JsonB>(
        "SELECT deploy.baseline($1, '{\"through\": \"0002-items\"}')",
        &[JsonB(based(app("1.0.0", json!([])))).into()],
    )
    .unwrap()
    .unwrap()
    .0;
    assert_eq!(report["baselined"], json!(["0001-schema", "0002-items"]));
    let next = apply(&based(app("1.0.0", json!([]))));
    assert_eq!(ids(&next, "applied"), vec!["names"], "only what was not baselined runs");
    assert_eq!(one::<String>("SELECT last_action FROM deploy.changes('based') WHERE change_id = '0001-schema'").as_deref(), Some("baseline"));
}

#[pg_test]
fn the_log_is_hash_chained_and_edits_are_found() {
    apply(&app("1.0.0", json!([])));
    apply(&app("1.1.0", json!([{"id": "0003", "sql": "SELECT 1"}])));
    apply(&app("1.1.0", json!([{"id": "0003", "sql": "SELECT 1"}])));
    let intact = "SELECT intact FROM deploy.verify_log('app')";
    assert_eq!(one::<bool>(intact), Some(true));
    // The digest does not depend on session settings.
    Spi::run("SET TimeZone = 'Pacific/Chatham'; SET DateStyle = 'SQL, DMY'; SET extra_float_digits = -10").unwrap();
    assert_eq!(one::<bool>(intact), Some(true));
    let original = one::<String>("SELECT checksum FROM deploy.change_log WHERE change_id = '0003'").unwrap_or_default();
    Spi::run("UPDATE deploy.change_log SET checksum = 'sha256:forged' WHERE change_id = '0003'").unwrap();
    assert_eq!(one::<bool>(intact), Some(false));
    let id = one::<i64>("SELECT first_broken_id FROM deploy.verify_log('app')");
    assert_eq!(id, one::<i64>("SELECT deployment_id FROM deploy.change_log WHERE change_id = '0003'"));
    Spi::run_with_args("UPDATE deploy.change_log SET checksum = $1 WHERE change_id = '0003'", &[original.into()]).unwrap();
    assert_eq!(one::<bool>(intact), Some(true), "putting the value back mends the chain");
    // Deleting a row in the middle breaks the next link.
    Spi::run("DELETE FROM deploy.change_log WHERE deployment_id = (SELECT min(id) FROM deploy.deployments);
              DELETE FROM deploy.deployments WHERE id = (SELECT min(id) FROM deploy.deployments)").unwrap();
    let problem = one::<String>("SELECT problem FROM deploy.verify_log('app')").unwrap_or_default();
    assert!(problem.contains("link to the previous deployment is broken"), "{problem}");
}

/// deploy.apply computes its row's hash in the library (record.rs); SQL's
/// deploy.deployment_digest, which verify_log runs, must agree on every row:
/// odd text in every column the client sets, several changes, a revert
/// (hashed by SQL) and a manifest already stored by an earlier deployment.
#[pg_test]
fn the_library_hashes_a_deployment_as_sql_does() {
    Spi::run("SET application_name = E'ci \"job\" \\\\ ✓\\t'").unwrap();
    let options = json!({"reason": "naïve \"quote\" \\ \n\u{1}", "wait": false, "drift": "warn"});
    apply_with(&app("1.0.0", json!([])), &options);
    let v2 = app(
        "1.1.0",
        json!([{"id": "0003-ünïcode \"id\"", "sql": "ALTER TABLE app.items ADD COLUMN note text;",
                "revert": "ALTER TABLE app.items\n  DROP COLUMN note; -- «done»"}]),
    );
    apply_with(&v2, &options);
    assert!(revert("app", "1.0.0", json!({})).contains("\"outcome\": \"revert\""));
    // Its manifest is stored already: the store finds it instead of inserting it.
    apply(&v2);
    assert_eq!(one::<i64>("SELECT count(*) FROM deploy.deployments WHERE project = 'app'"), Some(4));
    // A baseline records through the same path.
    let based: Value = serde_json::from_str(&app("1.0.0", json!([])).to_string().replace("app", "based")).unwrap();
    Spi::run("CREATE SCHEMA based; CREATE TABLE based.items (id int PRIMARY KEY, name text)").unwrap();
    Spi::run_with_args(
        "SELECT deploy.baseline($1, '{\"through\": \"0002-items\"}')",
        &[JsonB(based).into()],
    )
    .unwrap();
    let agree = "SELECT bool_and(row_hash = deploy.deployment_digest(d)) FROM deploy.deployments d";
    assert_eq!(one::<bool>(agree), Some(true));
    assert_eq!(one::<bool>("SELECT intact FROM deploy.verify_log('app')"), Some(true));
}

/// The fingerprint strips qualifiers from ASCII deparsed text by a scan of
/// its own (fingerprint/quals.rs); the regular expression it replaced, over
/// the same schemas, is the oracle: hand-picked texts, then random ones.
#[pg_test]
fn qualifiers_are_stripped_as_the_regular_expression_strips_them() {
    Spi::run(r#"CREATE SCHEMA app; CREATE SCHEMA "My Schema"; CREATE SCHEMA "user"; CREATE SCHEMA "a.b""c""#).unwrap();
    let names = Spi::get_one::<Vec<String>>("SELECT array_agg(nspname::text) FROM pg_namespace").unwrap().unwrap();
    let quals = crate::fingerprint::Quals::new(names.into_iter().map(String::into_bytes).collect());
    let check = |text: &str| {
        let by_scan = quals.strip(Some(text.as_bytes().to_vec()));
        assert_eq!(by_scan, quals.by_expression(text.as_bytes()), "{text:?}");
        by_scan != Some(text.as_bytes().to_vec())
    };
    let view = "SELECT orders.id, orders.total FROM app.orders WHERE (orders.total > (1000)::numeric)";
    assert_eq!(
        quals.strip(Some(view.as_bytes().to_vec())).as_deref(),
        Some(&b"SELECT id, total FROM app.orders WHERE (total > (1000)::numeric)"[..])
    );
    for text in [
        "SELECT orders.id, orders.total FROM app.orders WHERE (orders.total > (1000)::numeric)",
        r#"SELECT "My Schema".t.a, "T"."b", x."y".z, "a""b".c FROM "My Schema".t"#,
        r#"SELECT user.x, "user".x, pg_catalog.now(), public.f(t.a), "a.b""c".t.u"#,
        r#""".x, """".x, """a".b, "a"""."b", "a".1, a.$b, _a.b, a$.b, 9a.b, a..b, .a.b"#,
        "t.a::text, 'lit.eral'::text, (t).a, f(t.*), t.a.b.c, a.", "",
    ] {
        check(text);
    }
    let mut stripped = 0;
    let tokens = [
        "a", "b1", "x_y", "$", ".", "\"", "\"\"", "app", "public", "user", "\"user\"", "\"My Schema\"", "My", " ",
        "(", ")", "_", "9", "A", "pg_catalog", "::", "'",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = 1 + next() % 12;
        let text: String = (0..len).map(|_| tokens[(next() % tokens.len() as u64) as usize]).collect();
        stripped += usize::from(check(&text));
    }
    assert!(stripped > 100, "only {stripped} random texts had a qualifier to strip");
}

#[pg_test]
fn drift_shows_objects_changed_outside_deployments() {
    apply(&app("1.0.0", json!([])));
    assert_eq!(one::<Vec<String>>("SELECT managed_schemas FROM deploy.status('app')"), Some(vec!["app".to_string()]));
    assert_eq!(one::<bool>("SELECT drifted FROM deploy.status('app')"), Some(false));
    Spi::run("ALTER TABLE app.items ADD COLUMN sneaky int; CREATE TABLE app.extra (); DROP VIEW app.names;
              GRANT SELECT ON app.items TO PUBLIC").unwrap();
    assert_eq!(one::<bool>("SELECT drifted FROM deploy.status('app')"), Some(true));
    let rows = one::<String>("SELECT string_agg(change || ' ' || kind || ' ' || name, ', ' ORDER BY name) FROM deploy.drift('app')");
    assert_eq!(rows.as_deref(), Some("added table app.extra, changed table app.items, removed view app.names"));
    let got = try_apply(&app("1.0.0", json!([])), &json!({"drift": "refuse"}));
    assert!(got.starts_with("55000: project \"app\" has drifted: 3 object(s) changed outside deployments"), "{got}");
    let warned = apply_with(&app("1.0.0", json!([])), &json!({"drift": "warn"}));
    assert!(warned["warnings"][0].as_str().unwrap_or("").contains("added table app.extra"), "{warned}");
    // An explicit schema list wins over the derived one.
    let explicit = json!({"project": "x", "version": "1.0.0", "schemas": ["app", "public"], "changes": [{"id": "a", "sql": "SELECT 1"}]});
    apply(&explicit);
    assert_eq!(one::<Vec<String>>("SELECT managed_schemas FROM deploy.status('x')"), Some(vec!["app".into(), "public".into()]));
}

#[pg_test]
fn internal_queries_ignore_shadowing_functions_and_operators() {
    Spi::run(
        "CREATE SCHEMA evil;
         CREATE FUNCTION evil.boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed'; END $$;
         CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed clock_timestamp'; END $$;
         CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed current_setting'; END $$;
         CREATE FUNCTION evil.set_config(text, text, boolean) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed set_config'; END $$;
         CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed unnest'; END $$;
         CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed ='; END $$;
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
         CREATE FUNCTION evil.textcat(text, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed ||'; END $$;
         CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textcat);
         SET search_path = evil, pg_catalog, public;",
    )
    .unwrap();
    let m = json!({"project": "p'; DROP SCHEMA evil; --", "version": "1.0.0",
                   "changes": [{"id": "a", "sql": "CREATE TABLE public.safe (id int)", "revert": "DROP TABLE public.safe"}]});
    assert_eq!(apply(&m)["outcome"], "applied");
    assert_eq!(plan_of(&m, &json!({}))["outcome"], "no-op");
    assert_eq!(apply(&m)["outcome"], "no-op");
    assert_eq!(one::<bool>("SELECT intact FROM deploy.verify_log()"), Some(true));
    assert_eq!(one::<bool>("SELECT to_regnamespace('evil') IS NOT NULL"), Some(true));
    assert_eq!(one::<String>("SELECT pg_catalog.current_setting('search_path')").as_deref(), Some("evil, pg_catalog, public"));
}

/// Each change's SQL is stored once, however many manifests carry it; the
/// stored manifest comes back whole, and an edit of the stored SQL is found.
#[pg_test]
fn change_sql_is_stored_once() {
    apply(&app("1.0.0", json!([])));
    apply(&app("1.1.0", json!([{"id": "0003", "sql": "SELECT 1"}])));
    assert_eq!(one::<i64>("SELECT count(*) FROM deploy.manifests"), Some(2));
    assert_eq!(one::<i64>("SELECT count(*) FROM deploy.change_sql"), Some(4));
    assert_eq!(one::<bool>("SELECT bool_and(NOT (c ? 'sql')) FROM deploy.manifests, jsonb_array_elements(manifest->'changes') c"), Some(true));
    let whole = one::<JsonB>("SELECT deploy.manifest_document(manifest_sha256) FROM deploy.deployments ORDER BY id DESC LIMIT 1");
    assert_eq!(whole.map(|m| m.0["changes"][2]["sql"].clone()), Some(json!("SELECT 1")));
    assert_eq!(one::<bool>("SELECT intact FROM deploy.verify_log('app')"), Some(true));
    Spi::run("UPDATE deploy.change_sql SET sql = 'SELECT 2' WHERE sql = 'SELECT 1'").unwrap();
    let problem = one::<String>("SELECT problem FROM deploy.verify_log('app')").unwrap_or_default();
    assert!(problem.contains("deploy.change_sql no longer holds"), "{problem}");
}

/// deploy.sha256 (src/sha256.rs) gives pg_catalog.sha256's bytes, so the
/// history's hashes do not depend on which of the two took them.
#[pg_test]
fn deploy_sha256_is_pg_catalog_sha256() {
    let big = "xy".repeat(200_000);
    for input in ["", "abc", "é \u{1} 😀", big.as_str()] {
        let same = Spi::get_one_with_args::<bool>(
            "SELECT deploy.sha256(convert_to($1, 'UTF8')) = pg_catalog.sha256(convert_to($1, 'UTF8'))",
            &[input.into()],
        );
        assert_eq!(same, Ok(Some(true)), "an input of {} bytes", input.len());
    }
    // A value stored compressed and out of line, and NULL (the function is STRICT).
    Spi::run("CREATE TEMP TABLE stored AS SELECT convert_to(repeat('ab', 200000), 'UTF8') AS v").unwrap();
    let stored = one::<bool>("SELECT deploy.sha256(v) = pg_catalog.sha256(v) FROM stored");
    assert_eq!(stored, Some(true));
    assert_eq!(one::<bool>("SELECT deploy.sha256(NULL) IS NULL"), Some(true));
}
