// Phases inside one transaction (rolled back): what apply queues, what the
// reports say before commit. Running the queue needs commits: pg_test/phases.sh.

#[pg_test]
fn online_changes_are_queued_with_the_deployment() {
    Spi::run("CREATE TABLE items (id int)").unwrap();
    let m = shop(
        "1.0.0",
        json!([
            {"id": "t", "sql": "CREATE TABLE more (id int)"},
            {"id": "i", "sql": "CREATE INDEX CONCURRENTLY items_id_idx ON items (id)", "online": true},
            {"id": "u", "sql": "CREATE TABLE later (id int)", "commit_before": true}
        ]),
    );
    let report = apply(&m);
    assert_eq!(ids(&report, "applied"), vec!["t"]);
    assert_eq!(
        report["phases"]["steps"],
        json!([{"step": 1, "kind": "online", "changes": ["i"]}, {"step": 2, "kind": "transaction", "changes": ["u"]}])
    );
    assert_eq!(
        one::<String>("SELECT string_agg(change_id || ':' || step || ':' || online || ':' || state, ',' ORDER BY step) FROM deploy.phase_queue"),
        Some("i:1:true:pending,u:2:false:pending".into())
    );
    let status = Spi::get_one::<JsonB>("SELECT deploy.phase_status('shop')").unwrap().unwrap().0;
    assert_eq!(status["state"], "pending");
    assert_eq!(status["queued_by_this_transaction"], true);
    assert_eq!(status["worker"], "starts when this transaction commits");
    assert_eq!(
        one::<String>("SELECT phase_state || ' ' || phase_steps_done || '/' || phase_steps || ' ' || phase_change FROM deploy.status('shop')"),
        Some("pending 0/2 i".into())
    );
    // Waiting in the transaction that queued the phase would wait forever.
    Spi::run(
        "CREATE FUNCTION pg_temp.try_wait() RETURNS text LANGUAGE plpgsql AS $$
         BEGIN PERFORM deploy.wait('shop', '1s'); RETURN 'ok';
         EXCEPTION WHEN OTHERS OR query_canceled THEN RETURN SQLSTATE; END $$",
    )
    .unwrap();
    assert_eq!(one::<String>("SELECT pg_temp.try_wait()"), Some("55000".into()));
    // Applying the same manifest again: its changes are on their way, a no-op.
    let again = apply(&m);
    assert_eq!(again["outcome"], "no-op");
    assert!(again["warnings"][0].as_str().unwrap_or("").contains("still pending"), "{again}");
}

#[pg_test]
fn phase_status_of_a_project_without_phases() {
    let status = Spi::get_one::<JsonB>("SELECT deploy.phase_status('nothing')").unwrap().unwrap().0;
    assert_eq!(status["state"], "none");
    let report = apply(&v1());
    assert!(report.get("phases").is_none(), "{report}");
}
