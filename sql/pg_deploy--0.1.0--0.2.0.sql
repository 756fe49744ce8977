-- pg_deploy 0.1.0 -> 0.2.0. Every change to pg_deploy's SQL objects in 0.2.0
-- is here, and a database updated by it ends with the same objects as a
-- fresh 0.2.0 install (pg_test/upgrade.sh compares them).
\echo Use "ALTER EXTENSION pg_deploy UPDATE TO '0.2.0'" to load this file. \quit

-- Projects are owned by a role: the role of their first deployment.
ALTER TABLE deploy.projects ADD COLUMN owner name;
UPDATE deploy.projects p
   SET owner = (SELECT d.applied_by FROM deploy.deployments d
                 WHERE d.project = p.project ORDER BY d.id LIMIT 1);

-- Fingerprints by name, which survive a dump and restore: projects keep 0.1.0's
-- (by OID, fingerprint_version 1) until their next deployment takes new ones.
ALTER TABLE deploy.projects ADD COLUMN fingerprint_version integer NOT NULL DEFAULT 1;
ALTER FUNCTION deploy.object_fingerprints(text[]) RENAME TO object_fingerprints_v1;
CREATE FUNCTION deploy.object_fingerprints(schemas text[])
RETURNS TABLE (kind text, name text, sha256 text)
STABLE COST 100
LANGUAGE c /* Rust: src/fingerprint/, which reads the catalogs itself */
AS 'MODULE_PATHNAME', 'object_fingerprints_wrapper';

CREATE OR REPLACE FUNCTION deploy.drift(project_name text)
RETURNS TABLE (change text, kind text, name text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Their cost estimates (a lateral join per object) pass jit_above_cost; JIT
-- compiling took longer than the query (10,000 objects: 1.8 s against 0.5 s).
SET jit = off
AS $$
    WITH now AS (SELECT f.* FROM deploy.projects p
                    CROSS JOIN LATERAL (SELECT * FROM deploy.object_fingerprints(p.schemas) WHERE p.fingerprint_version >= 2
                                        UNION ALL
                                        SELECT * FROM deploy.object_fingerprints_v1(p.schemas) WHERE p.fingerprint_version < 2) f
                  WHERE p.project = project_name AND p.schemas IS NOT NULL),
         was AS (SELECT f.kind, f.name, f.sha256 FROM deploy.fingerprints f WHERE f.project = project_name)
    SELECT CASE WHEN was.name IS NULL THEN 'added' WHEN now.name IS NULL THEN 'removed' ELSE 'changed' END,
           coalesce(now.kind, was.kind), coalesce(now.name, was.name)
      FROM now FULL JOIN was ON now.kind = was.kind AND now.name = was.name
     WHERE now.sha256 IS DISTINCT FROM was.sha256
     ORDER BY 2, 3
$$;

-- Each change's SQL is stored once; manifests stored from now on name it.
-- Manifests stored by 0.1.0 keep their SQL inline.
CREATE TABLE deploy.change_sql (
    sha256 text PRIMARY KEY,
    sql    text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('deploy.change_sql', '');

-- Transfers of ownership and the steps of phases are recorded in the log.
ALTER TABLE deploy.deployments
    DROP CONSTRAINT deployments_outcome_check,
    ADD CONSTRAINT deployments_outcome_check
        CHECK (outcome IN ('applied', 'no-op', 'baseline', 'revert', 'transfer', 'phase', 'phase-failed'));

-- Rows recorded so far keep the digest they were hashed with (1); rows the
-- 0.2.0 library records also cover their stored manifest (2, set by it).
ALTER TABLE deploy.deployments ADD COLUMN digest_version integer NOT NULL DEFAULT 1;
-- sha256 of the manifest argument's jsonb bytes (NULL before 0.2.0): apply
-- knows the same bytes sent again without reading them (a no-op re-apply).
ALTER TABLE deploy.deployments ADD COLUMN manifest_jsonb_sha256 text;

-- pg_catalog.sha256 without OpenSSL (C, src/sha256.rs): the first digest
-- through OpenSSL in a backend costs a new session about half a millisecond,
-- which a rollout to many databases pays once per database. Same bytes.
CREATE FUNCTION deploy.sha256(bytea)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_deploy_sha256';

CREATE OR REPLACE FUNCTION deploy.deployment_digest(d deploy.deployments)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT concat('sha256:', encode(deploy.sha256(convert_to((jsonb_build_object(
        'id', d.id, 'project', d.project, 'version', d.version, 'previous_version', d.previous_version,
        'outcome', d.outcome, 'manifest_sha256', d.manifest_sha256, 'applied_by', d.applied_by,
        'session_user', d.session_user_name, 'application_name', d.application_name,
        'client_addr', host(d.client_addr), 'backend_pid', d.backend_pid,
        'started_at', extract(epoch FROM d.started_at), 'finished_at', extract(epoch FROM d.finished_at),
        'duration_ms', d.duration_ms::numeric,
        'counts', jsonb_build_array(d.changes_applied, d.changes_rerun, d.changes_skipped, d.changes_accepted,
                                    d.changes_baselined, d.changes_reverted),
        'options', d.options, 'warnings', to_jsonb(d.warnings), 'pg_deploy_version', d.pg_deploy_version,
        'fingerprint', d.fingerprint, 'prev_hash', d.prev_hash,
        'changes', (SELECT coalesce(jsonb_agg(jsonb_build_array(l.ordinal, l.change_id, l.kind, l.action, l.checksum,
                                                                l.statements, l.lock_retries, l.duration_ms::numeric,
                                                                extract(epoch FROM l.applied_at), l.revert_sql)
                                              ORDER BY l.ordinal), '[]'::jsonb)
                      FROM deploy.change_log l WHERE l.deployment_id = d.id)
    ) || CASE WHEN d.digest_version >= 2 THEN jsonb_build_object(
        'digest_version', d.digest_version,
        'manifest', (SELECT encode(deploy.sha256(convert_to(m.manifest::text, 'UTF8')), 'hex')
                       FROM deploy.manifests m WHERE m.sha256 = d.manifest_sha256))
    ELSE '{}'::jsonb END
    -- Only when recorded: the digests of rows without it stay as they were.
    || CASE WHEN d.manifest_jsonb_sha256 IS NOT NULL
            THEN jsonb_build_object('manifest_jsonb_sha256', d.manifest_jsonb_sha256) ELSE '{}'::jsonb END)::text, 'UTF8')), 'hex'))
$$;

CREATE FUNCTION deploy.manifest_document(manifest_sha256 text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(m.manifest -> 'changes') = 'array' THEN
               jsonb_set(m.manifest, '{changes}', coalesce((
                   SELECT jsonb_agg(CASE WHEN e.c ? 'sql_sha256'
                                         THEN (e.c - 'sql_sha256') || jsonb_build_object('sql', s.sql)
                                         ELSE e.c END ORDER BY e.ord)
                     FROM jsonb_array_elements(m.manifest -> 'changes') WITH ORDINALITY AS e(c, ord)
                     LEFT JOIN deploy.change_sql s ON s.sha256 = e.c ->> 'sql_sha256'), '[]'::jsonb))
           ELSE m.manifest END
      FROM deploy.manifests m
     WHERE m.sha256 = manifest_sha256
$$;

CREATE FUNCTION deploy.verify_log(project_name text, expected_head text)
RETURNS TABLE (project text, deployments bigint, intact boolean, first_broken_id bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH chain AS (
        SELECT d.project, d.id, d.prev_hash, d.row_hash, deploy.deployment_digest(d) AS digest,
               lag(d.row_hash) OVER (PARTITION BY d.project ORDER BY d.id) AS expected_prev,
               lead(d.id) OVER (PARTITION BY d.project ORDER BY d.id) AS next_id
          FROM deploy.deployments d
         WHERE project_name IS NULL OR d.project = project_name
    ), checked AS (
        SELECT c.project, c.id,
               CASE WHEN c.row_hash IS DISTINCT FROM c.digest
                        THEN 'deployment ' || c.id || ': its content, its change_log rows or its manifest no longer match its hash'
                    WHEN c.prev_hash IS DISTINCT FROM coalesce(c.expected_prev, '')
                        THEN 'deployment ' || c.id || ': the link to the previous deployment is broken (a row was deleted or inserted)'
                    WHEN c.next_id IS NULL AND NOT EXISTS (SELECT FROM deploy.projects p
                                                            WHERE p.project = c.project AND p.last_deployment_id = c.id)
                        THEN 'deployment ' || c.id || ' is the last one left, but deploy.projects names another: later rows were deleted'
               END AS problem
          FROM chain c
    ), beside AS (
        SELECT p.project, p.last_deployment_id AS id,
               CASE WHEN head.version IS DISTINCT FROM p.version
                        THEN 'deploy.projects says version ' || coalesce(p.version, 'none') || ' but deployment '
                             || p.last_deployment_id || ' says ' || coalesce(head.version, 'none')
                    WHEN p.owner IS NOT NULL AND p.owner IS DISTINCT FROM coalesce(
                             (SELECT (d.options ->> 'to')::name FROM deploy.deployments d
                               WHERE d.project = p.project AND d.outcome = 'transfer' ORDER BY d.id DESC LIMIT 1),
                             (SELECT d.applied_by FROM deploy.deployments d WHERE d.project = p.project ORDER BY d.id LIMIT 1))
                        THEN 'deploy.projects says the owner is ' || coalesce(p.owner::text, 'nobody')
                             || ', which no deployment or transfer recorded'
                    WHEN fp.fingerprint IS DISTINCT FROM (
                             SELECT concat('sha256:', encode(sha256(convert_to(
                                        coalesce(string_agg(concat_ws(' ', f.kind, f.name, f.sha256), E'\n' ORDER BY f.kind, f.name), ''),
                                        'UTF8')), 'hex'))
                               FROM deploy.fingerprints f WHERE f.project = p.project)
                         AND fp.fingerprint IS NOT NULL
                        THEN 'deploy.fingerprints no longer match the fingerprint recorded by deployment ' || fp.id
                    WHEN EXISTS (
                             SELECT FROM deploy.deployments d
                               JOIN deploy.manifests m ON m.sha256 = d.manifest_sha256
                              CROSS JOIN LATERAL jsonb_array_elements(
                                  CASE WHEN jsonb_typeof(m.manifest -> 'changes') = 'array'
                                       THEN m.manifest -> 'changes' ELSE '[]'::jsonb END) AS e(c)
                               LEFT JOIN deploy.change_sql s ON s.sha256 = e.c ->> 'sql_sha256'
                              WHERE d.project = p.project AND e.c ? 'sql_sha256'
                                AND (s.sha256 IS NULL
                                     OR s.sha256 <> concat('sha256:', encode(sha256(convert_to(s.sql, 'UTF8')), 'hex'))))
                        THEN 'deploy.change_sql no longer holds the SQL the project''s manifests name'
                    WHEN expected_head IS NOT NULL AND NOT EXISTS (
                             SELECT FROM deploy.deployments d WHERE d.project = p.project AND d.row_hash = expected_head)
                        THEN 'the expected head ' || expected_head || ' is not in the chain: deployments were rewritten or removed'
               END AS problem
          FROM deploy.projects p
          LEFT JOIN deploy.deployments head ON head.id = p.last_deployment_id
          LEFT JOIN LATERAL (SELECT d.id, d.fingerprint FROM deploy.deployments d
                              WHERE d.project = p.project AND d.fingerprint IS NOT NULL
                              ORDER BY d.id DESC LIMIT 1) fp ON true
         WHERE (project_name IS NULL OR p.project = project_name) AND p.last_deployment_id IS NOT NULL
    ), problems AS (
        SELECT k.project, k.id, k.problem, 0 AS rank FROM checked k
        UNION ALL
        SELECT b.project, b.id, b.problem, 1 FROM beside b
    )
    SELECT x.project, (SELECT count(*) FROM checked c WHERE c.project = x.project),
           bool_and(x.problem IS NULL),
           min(x.id) FILTER (WHERE x.problem IS NOT NULL),
           (array_agg(x.problem ORDER BY x.rank, x.id) FILTER (WHERE x.problem IS NOT NULL))[1]
      FROM problems x
     GROUP BY x.project
     ORDER BY x.project
$$;

CREATE OR REPLACE FUNCTION deploy.verify_log(project_name text DEFAULT NULL)
RETURNS TABLE (project text, deployments bigint, intact boolean, first_broken_id bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deploy.verify_log(project_name, NULL)
$$;

CREATE FUNCTION deploy."transfer_project"(
	"project_name" TEXT, /* Option < String > */
	"new_owner" TEXT /* Option < String > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transfer_project_wrapper';

-- A no-op apply records no deployment, only when the project was last checked.
ALTER TABLE deploy.projects ADD COLUMN last_checked_at timestamptz;

-- Phases (docs/online.md): the queue of the steps that run after a
-- deployment commits, who runs it, and what happened to it.
-- The steps of a deployment that run after it commits (docs/online.md): one
-- row per change, written in the deployment's own transaction, so the queue
-- exists if and only if the deployment committed. A background worker runs
-- the steps in order, as the role that called deploy.apply.
CREATE TABLE deploy.phase_queue (
    deployment_id bigint NOT NULL REFERENCES deploy.deployments (id),
    project       text NOT NULL,
    -- 1, 2, …: the order of the steps (0, the main phase, is never queued).
    step          integer NOT NULL CHECK (step > 0),
    -- The change's position in the manifest.
    ordinal       integer NOT NULL,
    change_id     text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
    action        text NOT NULL CHECK (action IN ('applied', 'rerun')),
    checksum      text NOT NULL,
    -- true: one statement, top level, outside any transaction block; false:
    -- one change of a transactional phase (the step's changes commit together).
    online        boolean NOT NULL,
    repeat_until_no_rows boolean NOT NULL DEFAULT false,
    repeat_pause  text,
    sql           text NOT NULL,
    verify        text,
    revert_sql    text,
    -- search_path, lock_timeout, statement_timeout, lock_retries, as resolved at apply.
    settings      jsonb NOT NULL,
    -- The role that called deploy.apply (statements run as it) and the role it logged in as.
    run_as        name NOT NULL,
    login_role    name NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'superseded')),
    attempts      integer NOT NULL DEFAULT 0,
    rounds        bigint NOT NULL DEFAULT 0,
    rows_affected bigint NOT NULL DEFAULT 0,
    started_at    timestamptz,
    finished_at   timestamptz,
    sqlstate      text,
    message       text,
    PRIMARY KEY (deployment_id, ordinal)
);
CREATE INDEX phase_queue_project_idx ON deploy.phase_queue (project, deployment_id);

-- Who runs a project's queue: at most one live worker per project. A row
-- whose backend is gone is stale, and the next worker takes it over.
CREATE TABLE deploy.phase_runners (
    project       text PRIMARY KEY,
    pid           integer NOT NULL,
    backend_start timestamptz NOT NULL,
    deployment_id bigint NOT NULL,
    since         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- Everything that happened to queued changes, append-only: started, retry,
-- round, done, failed, reconciled, superseded.
CREATE TABLE deploy.phase_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id bigint NOT NULL,
    project       text NOT NULL,
    step          integer NOT NULL,
    change_id     text,
    event         text NOT NULL
                  CHECK (event IN ('started', 'retry', 'round', 'done', 'failed', 'reconciled', 'superseded')),
    sqlstate      text,
    message       text,
    pid           integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    at            timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX phase_events_deployment_idx ON deploy.phase_events (deployment_id, id);
SELECT pg_catalog.pg_extension_config_dump('deploy.phase_queue', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.phase_events', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.phase_events_id_seq', '');

CREATE FUNCTION deploy."phase_status"(
	"project" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'phase_status_wrapper';

CREATE FUNCTION deploy."phase_client"(
	"project" TEXT, /* Option < & str > */
	"request" jsonb /* Option < JsonB > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'phase_client_wrapper';

CREATE FUNCTION deploy."wait"(
	"project" TEXT, /* Option < & str > */
	"timeout" interval DEFAULT '1 hour' /* Option < Interval > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'wait_wrapper';

-- Nothing is granted to PUBLIC (sql/privileges.sql).
REVOKE ALL ON TABLE deploy.change_sql, deploy.phase_queue, deploy.phase_runners, deploy.phase_events FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION deploy.sha256(bytea) FROM PUBLIC;
REVOKE ALL ON SEQUENCE deploy.phase_events_id_seq FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION deploy.verify_log(text, text), deploy.transfer_project(text, text),
                           deploy.manifest_document(text), deploy.object_fingerprints(text[]),
                           deploy.phase_status(text), deploy.phase_client(text, jsonb), deploy.wait(text, interval)
                      FROM PUBLIC;

-- ======================================================================
-- Issue 16, lineage (docs/lineage.md): the same as sql/lineage.sql, with
-- drift() and status() (sql/status.sql) made again. Keep them in step.
-- ======================================================================

-- Lineage (docs/lineage.md): every DDL command in the database, attributed,
-- recorded by the extension's event triggers into an append-only log.

-- One row per object a DDL command created, altered or dropped ('ddl',
-- 'drop'), per command whose recording failed ('gap'), and per switch of the
-- recording ('enabled', 'disabled'). Written only by pg_deploy, as the
-- extension's owner; nobody else has any privilege on it.
CREATE TABLE deploy.lineage (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    event             text NOT NULL CHECK (event IN ('ddl', 'drop', 'gap', 'enabled', 'disabled')),
    command_tag       text,
    -- pg_event_trigger_ddl_commands() / pg_event_trigger_dropped_objects().
    object_type       text,
    schema_name       text,
    object_identity   text,
    -- pg_identify_object_as_address: unquoted names, stable across OIDs.
    object_names      text[],
    object_args       text[],
    session_user_name name NOT NULL,
    current_user_name name NOT NULL,
    application_name  text,
    client_addr       inet,
    backend_pid       integer NOT NULL,
    xid               xid8,
    -- Set when the command ran inside deploy.apply or deploy.revert (never from a setting).
    project           text,
    change_id         text,
    deployment_id     bigint,
    -- A gap: why the command could not be recorded.
    error             text,
    -- The hash chain, filled by deploy.seal_lineage() in the order rows are sealed.
    seq               bigint UNIQUE,
    prev_hash         text,
    row_hash          text
);
CREATE INDEX lineage_object_idx ON deploy.lineage ((object_names[1]), (object_names[2]));
CREATE INDEX lineage_unsealed_idx ON deploy.lineage (id) WHERE seq IS NULL;

-- The chain's head and the anchor left by trimming: at most one row, made by
-- the first seal (not by this script, so a restored dump brings its own).
CREATE TABLE deploy.lineage_chain (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    head_seq     bigint NOT NULL DEFAULT 0,
    head_hash    text NOT NULL DEFAULT '',
    trimmed_seq  bigint NOT NULL DEFAULT 0,
    trimmed_hash text NOT NULL DEFAULT '',
    trimmed_at   timestamptz
);

-- What the chain covers of a lineage row: its content (every column but
-- the chain's own), hashed on its own so that sealing hashes the rows in one
-- pass; deploy.lineage_link chains them. Times go in as numerics so the text
-- does not depend on TimeZone or DateStyle. No SET clause, every name
-- qualified: the planner inlines it.
CREATE FUNCTION deploy.lineage_digest(l deploy.lineage)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_array(
        l.id, EXTRACT(epoch FROM l.at), l.event, l.command_tag, l.object_type, l.schema_name,
        l.object_identity, l.object_names, l.object_args, l.session_user_name, l.current_user_name,
        l.application_name, pg_catalog.host(l.client_addr), l.backend_pid, l.xid::pg_catalog.text, l.project,
        l.change_id, l.deployment_id, l.error)::pg_catalog.text, 'UTF8')), 'hex')
$$;

-- A sealed row's hash: its place in the chain, the hash before it, its content.
CREATE FUNCTION deploy.lineage_link(prev_hash text, seq bigint, digest text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT 'sha256:' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
        pg_catalog.concat_ws(' ', prev_hash, seq, digest), 'UTF8')), 'hex')
$$;

-- Chains every unsealed row, in id order, after the head: the rows' digests
-- in one query, the links in a loop over them, one UPDATE. deploy.apply seals
-- at the end of each deployment; run it (or trim_lineage) from a scheduler to
-- seal what was done outside deployments. Returns the number of rows sealed.
CREATE FUNCTION deploy.seal_lineage()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids     bigint[];
    digests text[];
    seqs    bigint[] := '{}';
    prevs   text[] := '{}';
    hashes  text[] := '{}';
    pos     bigint;
    head    text;
    n       integer;
BEGIN
    INSERT INTO deploy.lineage_chain DEFAULT VALUES ON CONFLICT DO NOTHING;
    -- The row lock makes sealers take turns.
    UPDATE deploy.lineage_chain c SET head_seq = c.head_seq RETURNING c.head_seq, c.head_hash INTO pos, head;
    SELECT array_agg(l.id ORDER BY l.id), array_agg(deploy.lineage_digest(l) ORDER BY l.id) INTO ids, digests
      FROM deploy.lineage l WHERE l.seq IS NULL;
    n := coalesce(array_length(ids, 1), 0);
    FOR i IN 1 .. n LOOP
        pos := pos + 1;
        seqs[i] := pos;
        prevs[i] := head;
        head := deploy.lineage_link(head, pos, digests[i]);
        hashes[i] := head;
    END LOOP;
    UPDATE deploy.lineage l SET seq = u.seq, prev_hash = u.prev_hash, row_hash = u.row_hash
      FROM unnest(ids, seqs, prevs, hashes) AS u(id, seq, prev_hash, row_hash)
     WHERE l.id = u.id;
    UPDATE deploy.lineage_chain c SET head_seq = pos, head_hash = head;
    RETURN n;
END
$$;

-- Checks the lineage chain: each sealed row's hash, each link, the head, and
-- with expected_head (a hash kept outside the database) that it is still there.
CREATE FUNCTION deploy.verify_lineage(expected_head text DEFAULT NULL)
RETURNS TABLE (sealed bigint, unsealed bigint, intact boolean, first_broken_seq bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH chain AS (SELECT coalesce(max(c.head_seq), 0) AS head_seq, coalesce(max(c.head_hash), '') AS head_hash,
                          coalesce(max(c.trimmed_seq), 0) AS trimmed_seq, coalesce(max(c.trimmed_hash), '') AS trimmed_hash
                     FROM deploy.lineage_chain c),
    rows AS (SELECT l.seq, l.id, l.prev_hash, l.row_hash,
                    deploy.lineage_link(l.prev_hash, l.seq, deploy.lineage_digest(l)) AS digest,
                    lag(l.seq) OVER w AS before_seq, lag(l.row_hash) OVER w AS before_hash
               FROM deploy.lineage l WHERE l.seq IS NOT NULL WINDOW w AS (ORDER BY l.seq)),
    problems AS (
        SELECT r.seq,
               CASE WHEN r.row_hash IS DISTINCT FROM r.digest
                        THEN 'lineage row ' || r.id || ' (seq ' || r.seq || '): its content no longer matches its hash'
                    WHEN r.seq <> coalesce(r.before_seq, ch.trimmed_seq) + 1
                      OR r.prev_hash IS DISTINCT FROM coalesce(r.before_hash, ch.trimmed_hash)
                        THEN 'lineage seq ' || r.seq || ': the link to the previous row is broken (a row was deleted or inserted)'
               END AS problem
          FROM rows r CROSS JOIN chain ch
        UNION ALL
        SELECT ch.head_seq, 'the chain''s head is seq ' || ch.head_seq || ', which is missing or changed: rows were deleted'
          FROM chain ch
         WHERE ch.head_seq > ch.trimmed_seq
           AND NOT EXISTS (SELECT FROM rows r WHERE r.seq = ch.head_seq AND r.row_hash = ch.head_hash)
        UNION ALL
        SELECT NULL, 'the expected head ' || expected_head || ' is not in the chain: rows were rewritten or removed'
          FROM chain ch
         WHERE expected_head IS NOT NULL AND expected_head <> ch.trimmed_hash
           AND NOT EXISTS (SELECT FROM rows r WHERE r.row_hash = expected_head)
    )
    SELECT (SELECT count(*) FROM rows),
           (SELECT count(*) FROM deploy.lineage l WHERE l.seq IS NULL),
           bool_and(p.problem IS NULL),
           min(p.seq) FILTER (WHERE p.problem IS NOT NULL),
           (array_agg(p.problem ORDER BY p.seq NULLS LAST) FILTER (WHERE p.problem IS NOT NULL))[1]
      FROM (SELECT * FROM problems UNION ALL SELECT NULL, NULL) p
$$;

-- Deletes the oldest sealed rows, older than older_than (default: the setting
-- pg_deploy.lineage_retention, else 90 days), and keeps the hash of the last
-- one deleted as the chain's new anchor. Returns the number of rows deleted.
CREATE FUNCTION deploy.trim_lineage(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := clock_timestamp() - coalesce(older_than,
        nullif(current_setting('pg_deploy.lineage_retention', true), '')::interval, interval '90 days');
    upto   bigint;
    n      bigint;
BEGIN
    PERFORM deploy.seal_lineage();
    -- Only a prefix of the chain goes, so what stays still verifies.
    SELECT coalesce(min(l.seq) - 1, (SELECT c.head_seq FROM deploy.lineage_chain c)) INTO upto
      FROM deploy.lineage l WHERE l.at >= cutoff;
    UPDATE deploy.lineage_chain c
       SET trimmed_seq = upto, trimmed_at = clock_timestamp(),
           trimmed_hash = (SELECT l.row_hash FROM deploy.lineage l WHERE l.seq = upto)
     WHERE upto > c.trimmed_seq;
    DELETE FROM deploy.lineage l WHERE l.seq <= upto;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- The event triggers' function (C, src/lineage/trigger.rs): it runs as the
-- role whose command fired it, reads the backend-local deployment context and
-- writes the rows as the extension's owner. An error is recorded as a gap,
-- never raised into the user's command.
CREATE FUNCTION deploy.lineage_event()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_deploy_lineage_event';

-- Whether DDL is being recorded: 'recorded', or 'not recorded' and why.
CREATE FUNCTION deploy.lineage_recording()
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) FILTER (WHERE e.evtenabled <> 'D') = 2 THEN 'recorded'
                WHEN count(*) = 0 THEN 'not recorded: the event triggers do not exist (deploy.enable_lineage(), as a superuser, makes them)'
                ELSE 'not recorded: the event triggers are missing or disabled (deploy.enable_lineage(), as a superuser)' END
      FROM pg_event_trigger e
     WHERE e.evtname IN ('deploy_lineage_ddl', 'deploy_lineage_drop') AND e.evtfoid = 'deploy.lineage_event()'::regprocedure
$$;

-- Logs who turned recording on or off, and says where it stands now.
CREATE FUNCTION deploy.lineage_switched(event text)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO deploy.lineage (event, session_user_name, current_user_name, application_name, client_addr, backend_pid, xid)
    VALUES (event, session_user, current_user, current_setting('application_name'), inet_client_addr(),
            pg_backend_pid(), pg_current_xact_id());
    -- Sealed at once: the switch matters to an auditor, and a new database's
    -- first deployment then has nothing to seal but its own rows.
    SELECT deploy.seal_lineage();
    SELECT deploy.lineage_recording();
$$;

-- Makes (or enables again) the event triggers. PostgreSQL lets only a
-- superuser create event triggers; some providers let their admin role do it
-- too (docs/lineage.md), so this tries rather than checks rolsuper.
-- CREATE EXTENSION calls it and, refused, leaves lineage "not recorded".
CREATE FUNCTION deploy.enable_lineage()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    BEGIN
        FOR t IN SELECT * FROM (VALUES ('deploy_lineage_ddl', 'ddl_command_end'), ('deploy_lineage_drop', 'sql_drop')) v(name, event) LOOP
            IF NOT EXISTS (SELECT FROM pg_event_trigger e WHERE e.evtname = t.name) THEN
                EXECUTE format('CREATE EVENT TRIGGER %I ON %s EXECUTE FUNCTION deploy.lineage_event()', t.name, t.event);
                -- Inside CREATE EXTENSION it is a member already; later it is added, so DROP EXTENSION takes it.
                IF NOT EXISTS (SELECT FROM pg_depend d JOIN pg_event_trigger e ON e.oid = d.objid
                                WHERE d.classid = 'pg_event_trigger'::regclass AND e.evtname = t.name AND d.deptype = 'e') THEN
                    EXECUTE format('ALTER EXTENSION pg_deploy ADD EVENT TRIGGER %I', t.name);
                END IF;
            END IF;
            EXECUTE format('ALTER EVENT TRIGGER %I ENABLE', t.name);
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'deploy.enable_lineage(): role % may not create or enable event triggers', current_user
            USING ERRCODE = '42501', DETAIL = SQLERRM,
                  HINT = 'Only a superuser (or a provider''s admin role allowed to) may: ask one to run SELECT deploy.enable_lineage().';
    END;
    RETURN deploy.lineage_switched('enabled');
END
$$;

-- Stops recording (the triggers stay, disabled); the log says when.
CREATE FUNCTION deploy.disable_lineage()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT e.evtname FROM pg_event_trigger e WHERE e.evtname IN ('deploy_lineage_ddl', 'deploy_lineage_drop') LOOP
        EXECUTE format('ALTER EVENT TRIGGER %I DISABLE', t.evtname);
    END LOOP;
    RETURN deploy.lineage_switched('disabled');
END
$$;

-- Where an object of a project's managed schemas came from, keyed by kind and
-- schema-qualified name (a column, constraint, trigger, policy or rule counts
-- for its table): the change and deployment that created it (its latest
-- incarnation) and last altered it, and the last command outside any
-- deployment of the project, with who, when and from which application.
-- origin: 'deployment' (created by one of the project's), 'outside' (created
-- by no deployment of the project: unmanaged), 'not recorded' (older than the
-- log, or the log is off).
CREATE FUNCTION deploy.lineage(project_name text)
RETURNS TABLE (kind text, name text, origin text, dropped boolean,
               created_at timestamptz, created_by_change text, created_in_deployment bigint,
               last_changed_at timestamptz, last_change_id text, last_deployment_id bigint,
               outside_at timestamptz, outside_role name, outside_session_user name,
               outside_application text, outside_client inet, outside_command text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Their cost estimates (a lateral join per object) pass jit_above_cost; JIT
-- compiling took longer than the query (10,000 objects: 1.8 s against 0.5 s).
SET jit = off
AS $$
    WITH managed AS (SELECT p.schemas FROM deploy.projects p WHERE p.project = project_name),
    ev AS (SELECT l.*,
                  CASE WHEN l.object_type IN ('table column', 'table constraint', 'trigger', 'policy', 'rule',
                                              'default value') THEN 'table'
                       ELSE l.object_type END AS k,
                  CASE WHEN l.object_type = 'schema' THEN l.object_names[1]
                       ELSE l.object_names[1] || '.' || l.object_names[2] END AS n
             FROM deploy.lineage l, managed m
            WHERE l.event IN ('ddl', 'drop') AND coalesce(l.schema_name, l.object_names[1]) = ANY (m.schemas)),
    objects AS (SELECT DISTINCT e.k, e.n FROM ev e),
    recorded AS (
        SELECT o.k, o.n,
               CASE WHEN cr.id IS NULL THEN 'not recorded' WHEN cr.project IS NOT DISTINCT FROM project_name
                    THEN 'deployment' ELSE 'outside' END AS origin,
               (SELECT e.event = 'drop' AND e.object_type = o.k FROM ev e WHERE e.k = o.k AND e.n = o.n
                 ORDER BY e.id DESC LIMIT 1) AS dropped,
               cr.at, cr.change_id AS cr_change, cr.deployment_id AS cr_dep,
               la.at AS la_at, la.change_id AS la_change, la.deployment_id AS la_dep,
               ou.at AS ou_at, ou.current_user_name, ou.session_user_name, ou.application_name, ou.client_addr,
               ou.command_tag
          FROM objects o
          LEFT JOIN LATERAL (SELECT e.* FROM ev e WHERE e.k = o.k AND e.n = o.n AND e.object_type = o.k
                                AND e.event = 'ddl' AND e.command_tag LIKE 'CREATE%'
                              ORDER BY e.id DESC LIMIT 1) cr ON true
          LEFT JOIN LATERAL (SELECT e.* FROM ev e WHERE e.k = o.k AND e.n = o.n AND e.project = project_name
                              ORDER BY e.id DESC LIMIT 1) la ON true
          LEFT JOIN LATERAL (SELECT e.* FROM ev e WHERE e.k = o.k AND e.n = o.n
                                AND e.project IS DISTINCT FROM project_name
                              ORDER BY e.id DESC LIMIT 1) ou ON true
    )
    SELECT r.k, r.n, r.origin, coalesce(r.dropped, false), r.at, r.cr_change, r.cr_dep, r.la_at, r.la_change, r.la_dep,
           r.ou_at, r.current_user_name, r.session_user_name, r.application_name, r.client_addr, r.command_tag
      FROM recorded r
    UNION ALL
    -- Fingerprinted objects the log has nothing on.
    SELECT f.kind, f.name, 'not recorded', false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM deploy.fingerprints f
     WHERE f.project = project_name
       AND NOT EXISTS (SELECT FROM objects o WHERE o.k = f.kind AND o.n = split_part(f.name, '(', 1))
     ORDER BY 1, 2
$$;

-- The log of a project's managed schemas and deployments (or all of it),
-- gaps and switches included, oldest first.
CREATE FUNCTION deploy.lineage_log(project_name text DEFAULT NULL)
RETURNS SETOF deploy.lineage
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM deploy.lineage l
     WHERE project_name IS NULL OR l.project = project_name OR l.event NOT IN ('ddl', 'drop')
        OR coalesce(l.schema_name, l.object_names[1]) = ANY ((SELECT p.schemas FROM deploy.projects p
                                                               WHERE p.project = project_name)::text[])
     ORDER BY l.id
$$;

-- drift() gains the commands behind it: its result type changes, so it is
-- made again, and the EXECUTE grants it had are given back.
SELECT pg_catalog.set_config('pg_deploy.drift_grants', coalesce(pg_catalog.string_agg(
           pg_catalog.format('GRANT EXECUTE ON FUNCTION deploy.drift(text) TO %I', r.rolname), '; '), ''), true)
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
  JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
 WHERE p.oid = 'deploy.drift(text)'::pg_catalog.regprocedure AND a.privilege_type = 'EXECUTE'
   AND a.grantee <> p.proowner;
DROP FUNCTION deploy.drift(text);
-- Objects added, removed or changed since the project's last deployment,
-- with the commands the lineage log has on them since then, outside the
-- project's deployments: the last one's role, application and time, and all
-- of them as JSON. No commands: not recorded (or done before the log was on).
CREATE FUNCTION deploy.drift(project_name text)
RETURNS TABLE (change text, kind text, name text, changed_by name, application_name text,
               changed_at timestamptz, commands jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Their cost estimates (a lateral join per object) pass jit_above_cost; JIT
-- compiling took longer than the query (10,000 objects: 1.8 s against 0.5 s).
SET jit = off
AS $$
    WITH now AS (SELECT f.* FROM deploy.projects p
                    CROSS JOIN LATERAL (SELECT * FROM deploy.object_fingerprints(p.schemas) WHERE p.fingerprint_version >= 2
                                        UNION ALL
                                        SELECT * FROM deploy.object_fingerprints_v1(p.schemas) WHERE p.fingerprint_version < 2) f
                  WHERE p.project = project_name AND p.schemas IS NOT NULL),
         was AS (SELECT f.kind, f.name, f.sha256, f.taken_at FROM deploy.fingerprints f WHERE f.project = project_name),
         drifted AS (
             SELECT CASE WHEN was.name IS NULL THEN 'added' WHEN now.name IS NULL THEN 'removed' ELSE 'changed' END AS change,
                    coalesce(now.kind, was.kind) AS kind, coalesce(now.name, was.name) AS name
               FROM now FULL JOIN was ON now.kind = was.kind AND now.name = was.name
              WHERE now.sha256 IS DISTINCT FROM was.sha256),
         since AS (SELECT coalesce(max(f.taken_at), '-infinity') AS at FROM deploy.fingerprints f WHERE f.project = project_name)
    SELECT d.change, d.kind, d.name, c.changed_by, c.application_name, c.changed_at, c.commands
      FROM drifted d
      LEFT JOIN LATERAL (
          SELECT (array_agg(l.current_user_name ORDER BY l.id DESC))[1] AS changed_by,
                 (array_agg(l.application_name ORDER BY l.id DESC))[1] AS application_name,
                 max(l.at) AS changed_at,
                 jsonb_agg(jsonb_build_object('command', l.command_tag, 'event', l.event, 'object_type', l.object_type,
                                              'object', l.object_identity, 'role', l.current_user_name,
                                              'session_user', l.session_user_name, 'application_name', l.application_name,
                                              'client_addr', host(l.client_addr), 'backend_pid', l.backend_pid,
                                              'project', l.project, 'change_id', l.change_id, 'at', l.at) ORDER BY l.id) AS commands
            FROM deploy.lineage l, since s
           WHERE l.event IN ('ddl', 'drop') AND l.at >= s.at AND l.project IS DISTINCT FROM project_name
             AND CASE WHEN d.kind = 'schema' THEN l.object_type = 'schema' AND l.object_names[1] = d.name
                      ELSE l.object_names[1] = split_part(d.name, '.', 1)
                           AND l.object_names[2] = split_part(substr(d.name, length(split_part(d.name, '.', 1)) + 2), '(', 1) END
          HAVING count(*) > 0
      ) c ON true
     ORDER BY 2, 3
$$;

DO $$
BEGIN
    IF pg_catalog.current_setting('pg_deploy.drift_grants', true) <> '' THEN
        EXECUTE pg_catalog.current_setting('pg_deploy.drift_grants');
    END IF;
END $$;

-- Not marked for pg_dump (pg_extension_config_dump), unlike the deployment
-- log: a restore runs CREATE EXTENSION, whose triggers record the restore's
-- own DDL before the dumped rows would come back, and their ids would clash.
-- Copies of the database (CREATE DATABASE … TEMPLATE, branches, pg_upgrade,
-- physical backups) carry the log; docs/lineage.md says so.

DO $$
BEGIN
    PERFORM deploy.enable_lineage();
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_deploy: lineage is not recorded: %', SQLERRM
        USING HINT = 'A superuser can turn it on later with SELECT deploy.enable_lineage().';
END $$;

-- status() gains the phase columns and drifted_by: its result type changes,
-- so it is made again, and the EXECUTE grants it had are given back.
SELECT pg_catalog.set_config('pg_deploy.status_grants', coalesce(pg_catalog.string_agg(
           pg_catalog.format('GRANT EXECUTE ON FUNCTION deploy.status(text) TO %I', r.rolname), '; '), ''), true)
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
  JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
 WHERE p.oid = 'deploy.status(text)'::pg_catalog.regprocedure AND a.privilege_type = 'EXECUTE'
   AND a.grantee <> p.proowner;
DROP FUNCTION deploy.status(text);
CREATE FUNCTION deploy.status(project_name text DEFAULT NULL)
RETURNS TABLE (
    project               text,
    version               text,
    changes_applied       bigint,
    deployments           bigint,
    last_deployment_id    bigint,
    last_outcome          text,
    last_deployed_at      timestamptz,
    last_deployed_by      name,
    last_application_name text,
    last_client_addr      inet,
    last_duration_ms      double precision,
    last_checked_at       timestamptz,
    managed_schemas       text[],
    drifted               boolean,
    phase_state           text,
    phase_steps_done      bigint,
    phase_steps           bigint,
    phase_change          text,
    phase_since           timestamptz,
    phase_error           text,
    phase_worker          text,
    -- Who drifted it, as the lineage log recorded (docs/lineage.md): the
    -- roles and applications of the commands behind the drift.
    drifted_by            text
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Their cost estimates (a lateral join per object) pass jit_above_cost; JIT
-- compiling took longer than the query (10,000 objects: 1.8 s against 0.5 s).
SET jit = off
AS $$
    SELECT p.project,
           p.version,
           (SELECT count(*) FROM deploy.applied_changes a WHERE a.project = p.project),
           (SELECT count(*) FROM deploy.deployments d2 WHERE d2.project = p.project),
           d.id,
           d.outcome,
           d.finished_at,
           d.applied_by,
           d.application_name,
           d.client_addr,
           d.duration_ms,
           greatest(p.last_checked_at, d.finished_at),
           p.schemas,
           dr.drifted,
           ph.state, ph.steps_done, ph.steps, ph.change, ph.since, ph.error,
           -- An unfinished phase nobody runs is started again here.
           CASE WHEN ph.state IN ('pending', 'running') THEN deploy.phase_status(p.project) ->> 'worker' END,
           dr.drifted_by
      FROM deploy.projects p
      LEFT JOIN LATERAL (
          SELECT count(*) > 0 AS drifted,
                 string_agg(DISTINCT d.changed_by || coalesce(' (' || nullif(d.application_name, '') || ')', ''), ', ')
                     AS drifted_by
            FROM deploy.drift(p.project) d
      ) dr ON p.schemas IS NOT NULL
      LEFT JOIN deploy.deployments d ON d.id = p.last_deployment_id
      LEFT JOIN LATERAL (
          SELECT CASE WHEN bool_or(q.state = 'failed') THEN 'failed'
                      WHEN bool_or(q.state = 'running') THEN 'running'
                      WHEN bool_or(q.state = 'pending') THEN 'pending'
                      WHEN bool_or(q.state = 'superseded') THEN 'superseded'
                      ELSE 'done' END AS state,
                 count(DISTINCT q.step) - count(DISTINCT q.step) FILTER (WHERE q.state <> 'done') AS steps_done,
                 count(DISTINCT q.step) AS steps,
                 (array_agg(q.change_id ORDER BY q.state = 'running' DESC, q.state = 'failed' DESC,
                                               q.state = 'pending' DESC, q.step, q.ordinal)
                    FILTER (WHERE q.state IN ('running', 'failed', 'pending')))[1] AS change,
                 coalesce(max(q.started_at) FILTER (WHERE q.state = 'running'), max(q.finished_at)) AS since,
                 (array_agg(q.change_id || ': ' || q.sqlstate || ' ' || q.message ORDER BY q.step, q.ordinal)
                    FILTER (WHERE q.state = 'failed'))[1] AS error
            FROM deploy.phase_queue q
           WHERE q.project = p.project
             AND q.deployment_id = (SELECT max(l.deployment_id) FROM deploy.phase_queue l WHERE l.project = p.project)
          HAVING count(*) > 0
      ) ph ON true
     WHERE project_name IS NULL OR p.project = project_name
     ORDER BY p.project
$$;

DO $$
BEGIN
    IF pg_catalog.current_setting('pg_deploy.status_grants', true) <> '' THEN
        EXECUTE pg_catalog.current_setting('pg_deploy.status_grants');
    END IF;
END $$;

-- Nothing is granted to PUBLIC (sql/privileges.sql).
REVOKE ALL ON TABLE deploy.lineage, deploy.lineage_chain FROM PUBLIC;
REVOKE ALL ON SEQUENCE deploy.lineage_id_seq FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION deploy.lineage_digest(deploy.lineage), deploy.lineage_link(text, bigint, text),
                           deploy.seal_lineage(),
                           deploy.verify_lineage(text), deploy.trim_lineage(interval), deploy.lineage_event(),
                           deploy.lineage_recording(), deploy.lineage_switched(text), deploy.enable_lineage(), deploy.disable_lineage(),
                           deploy.lineage(text), deploy.lineage_log(text), deploy.drift(text), deploy.status(text) FROM PUBLIC;
