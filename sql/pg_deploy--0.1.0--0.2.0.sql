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
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH ns AS (SELECT n.oid, n.nspname FROM pg_namespace n WHERE n.nspname = ANY (schemas)),
    -- Column qualifiers in deparsed queries (views, rules, BEGIN ATOMIC bodies):
    -- from PostgreSQL 16 on, a query over one relation is deparsed without them,
    -- so they are left out on every major; schema qualifiers stay.
    quals AS (SELECT '(?<![[:alnum:]_."$])(?!(?:'
                     || string_agg(regexp_replace(quote_ident(n.nspname), '([^[:alnum:]_])', '\\\1', 'g'), '|')
                     || ')\.)([[:alpha:]_][[:alnum:]_$]*|"(?:[^"]|"")+")\.(?=[[:alpha:]_"])' AS pattern
                FROM pg_namespace n),
    rel AS (SELECT c.oid, c.relname, c.relkind, c.relowner, c.relacl, c.relpersistence, c.relrowsecurity,
                   c.relforcerowsecurity, c.relam, c.reloptions, ns.nspname
              FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I')),
    cols AS (SELECT a.attrelid,
                    string_agg(concat_ws(':', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                         pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                                         (SELECT co.collname FROM pg_collation co
                                           WHERE co.oid = a.attcollation AND a.attcollation <> 0), a.attacl),
                               ',' ORDER BY a.attnum) AS d
               FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attnum > 0 AND NOT a.attisdropped
              GROUP BY a.attrelid),
    cons AS (SELECT co.conrelid,
                    string_agg(concat_ws(':', co.conname, pg_get_constraintdef(co.oid), co.condeferrable,
                                         co.condeferred, co.convalidated),
                               ',' ORDER BY co.conname) AS d
               FROM pg_constraint co JOIN rel ON rel.oid = co.conrelid
              WHERE co.contype <> 'n'  -- NOT NULL, in pg_constraint from 18 on: attnotnull says it
              GROUP BY co.conrelid),
    trigs AS (SELECT t.tgrelid,
                     string_agg(concat_ws(':', t.tgname, pg_get_triggerdef(t.oid), t.tgenabled), ',' ORDER BY t.tgname) AS d
                FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
               WHERE NOT t.tgisinternal
               GROUP BY t.tgrelid),
    pols AS (SELECT p.polrelid,
                    string_agg(concat_ws(':', p.polname, p.polcmd, p.polpermissive,
                                         (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END,
                                                            ',' ORDER BY 1)
                                            FROM unnest(p.polroles) AS r),
                                         pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)),
                               ',' ORDER BY p.polname) AS d
               FROM pg_policy p JOIN rel ON rel.oid = p.polrelid
              GROUP BY p.polrelid),
    objects AS (
        SELECT 'schema' AS kind, ns.nspname::text AS name,
               concat_ws('|', pg_get_userbyid(n.nspowner), n.nspacl) AS description
          FROM pg_namespace n JOIN ns USING (oid)
        UNION ALL
        SELECT CASE rel.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                                WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                                ELSE 'index' END,
               rel.nspname || '.' || rel.relname,
               concat_ws('|', rel.relkind, pg_get_userbyid(rel.relowner), rel.relacl, rel.relpersistence,
                         rel.relrowsecurity, rel.relforcerowsecurity,
                         (SELECT am.amname FROM pg_am am WHERE am.oid = rel.relam), rel.reloptions,
                         cols.d, cons.d, trigs.d, pols.d,
                         (SELECT string_agg(concat_ws(':', r.rulename, regexp_replace(pg_get_ruledef(r.oid), quals.pattern, '', 'g')),
                                       ',' ORDER BY r.rulename)
                            FROM pg_rewrite r, quals WHERE r.ev_class = rel.oid),
                         CASE WHEN rel.relkind IN ('i', 'I') THEN pg_get_indexdef(rel.oid) END,
                         (SELECT concat_ws(':', format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmax,
                                           s.seqmin, s.seqcache, s.seqcycle)
                            FROM pg_sequence s WHERE s.seqrelid = rel.oid))
          FROM rel
          LEFT JOIN cols ON cols.attrelid = rel.oid
          LEFT JOIN cons ON cons.conrelid = rel.oid
          LEFT JOIN trigs ON trigs.tgrelid = rel.oid
          LEFT JOIN pols ON pols.polrelid = rel.oid
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
               ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               concat_ws('|', pg_get_userbyid(p.proowner), p.proacl,
                         CASE WHEN p.prokind = 'a'
                              THEN concat_ws(':', pg_get_function_arguments(p.oid), format_type(p.prorettype, NULL))
                              WHEN p.prosqlbody IS NOT NULL
                              THEN regexp_replace(pg_get_functiondef(p.oid), quals.pattern, '', 'g')
                              ELSE pg_get_functiondef(p.oid) END)
          FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace CROSS JOIN quals
        UNION ALL
        SELECT 'type', ns.nspname || '.' || t.typname,
               concat_ws('|', t.typtype, pg_get_userbyid(t.typowner), t.typacl,
                         CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                         t.typnotnull, t.typdefault,
                         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
                         (SELECT string_agg(concat_ws(':', co.conname, pg_get_constraintdef(co.oid)), ',' ORDER BY co.conname)
                            FROM pg_constraint co WHERE co.contypid = t.oid AND co.contype <> 'n'),
                         (SELECT string_agg(concat_ws(':', a.attname, format_type(a.atttypid, a.atttypmod)), ',' ORDER BY a.attnum)
                            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                           WHERE c.oid = t.typrelid AND c.relkind = 'c' AND a.attnum > 0 AND NOT a.attisdropped),
                         (SELECT concat_ws(':', format_type(r.rngsubtype, NULL),
                                           (SELECT co.collname FROM pg_collation co WHERE co.oid = r.rngcollation),
                                           (SELECT oc.opcname FROM pg_opclass oc WHERE oc.oid = r.rngsubopc))
                            FROM pg_range r WHERE r.rngtypid = t.oid))
          FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
         WHERE t.typtype IN ('e', 'd', 'r', 'm')
            OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
    )
    SELECT o.kind, o.name, encode(sha256(convert_to(coalesce(o.description, ''), 'UTF8')), 'hex')
      FROM objects o
$$;

CREATE OR REPLACE FUNCTION deploy.drift(project_name text)
RETURNS TABLE (change text, kind text, name text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

CREATE OR REPLACE FUNCTION deploy.deployment_digest(d deploy.deployments)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT concat('sha256:', encode(sha256(convert_to((jsonb_build_object(
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
        'manifest', (SELECT encode(sha256(convert_to(m.manifest::text, 'UTF8')), 'hex')
                       FROM deploy.manifests m WHERE m.sha256 = d.manifest_sha256))
    ELSE '{}'::jsonb END)::text, 'UTF8')), 'hex'))
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

-- status() gains the phase columns: its result type changes, so it is made
-- again, and the EXECUTE grants it had are given back.
SELECT pg_catalog.set_config('pg_deploy.status_grants', coalesce(pg_catalog.string_agg(
           pg_catalog.format('GRANT EXECUTE ON FUNCTION deploy.status(text) TO %I', r.rolname), '; '), ''), true)
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
  JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
 WHERE p.oid = 'deploy.status(text)'::pg_catalog.regprocedure AND a.privilege_type = 'EXECUTE'
   AND a.grantee <> p.proowner;
DROP FUNCTION deploy.status(text);
-- Where every project stands, with its latest phase (docs/online.md): the
-- steps after its deployment's commit, done of total, the change running or
-- failed, since when, the error that stopped it, and its worker (started
-- again here when the phase is unfinished and nobody runs it).
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
    phase_worker          text
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
           CASE WHEN p.schemas IS NOT NULL THEN EXISTS (SELECT FROM deploy.drift(p.project)) END,
           ph.state, ph.steps_done, ph.steps, ph.change, ph.since, ph.error,
           -- An unfinished phase nobody runs is started again here.
           CASE WHEN ph.state IN ('pending', 'running') THEN deploy.phase_status(p.project) ->> 'worker' END
      FROM deploy.projects p
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
REVOKE ALL ON TABLE deploy.change_sql, deploy.phase_queue, deploy.phase_runners, deploy.phase_events FROM PUBLIC;
REVOKE ALL ON SEQUENCE deploy.phase_events_id_seq FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION deploy.verify_log(text, text), deploy.transfer_project(text, text),
                           deploy.manifest_document(text), deploy.object_fingerprints(text[]),
                           deploy.phase_status(text), deploy.phase_client(text, jsonb), deploy.wait(text, interval),
                           deploy.status(text) FROM PUBLIC;
