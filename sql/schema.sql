-- pg_deploy's history: written only by deploy.apply, inside the caller's transaction.

-- One row per project: its deployed version and latest deployment. apply
-- writes it first thing, so concurrent applies of one project serialise on it.
CREATE TABLE deploy.projects (
    project            text PRIMARY KEY,
    version            text,
    last_deployment_id bigint,
    -- The schemas whose objects are fingerprinted for drift (manifest "schemas",
    -- or the schemas the project's changes create objects in).
    schemas            text[],
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    -- The role whose members may deploy, baseline, revert or transfer the
    -- project: its first deployer, until deploy.transfer_project moves it.
    owner              name,
    -- Which deploy.object_fingerprints took the project's fingerprints: 1 (by
    -- OID, pg_deploy 0.1.0; also rows restored from its dumps), 2 (by name).
    fingerprint_version integer NOT NULL DEFAULT 1,
    -- The last apply that found nothing to do (it records no deployment).
    last_checked_at    timestamptz
);

-- Every manifest ever deployed, once, by its sha256 over canonical JSON.
-- Since 0.2.0 each change's "sql" is stored once in deploy.change_sql and
-- the manifest keeps its "sql_sha256" instead (deploy.manifest_document
-- puts the SQL back); manifests stored by 0.1.0 keep their SQL inline.
CREATE TABLE deploy.manifests (
    sha256        text PRIMARY KEY,
    manifest      jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- The SQL of every change ever deployed, once, by the sha256 of its exact text.
CREATE TABLE deploy.change_sql (
    sha256 text PRIMARY KEY,
    sql    text NOT NULL
);

-- The deployment log: one row per successful apply, no-ops included.
CREATE TABLE deploy.deployments (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project           text NOT NULL,
    version           text NOT NULL,
    previous_version  text,
    outcome           text NOT NULL CHECK (outcome IN ('applied', 'no-op', 'baseline', 'revert', 'transfer', 'phase',
                                                   'phase-failed')),
    -- The manifest deployed; for a revert, the one whose state it returns to (NULL: none).
    manifest_sha256   text REFERENCES deploy.manifests (sha256),
    applied_by        name NOT NULL,
    session_user_name name NOT NULL,
    application_name  text,
    client_addr       inet,
    backend_pid       integer NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    duration_ms       double precision NOT NULL,
    changes_applied   integer NOT NULL,
    changes_rerun     integer NOT NULL,
    changes_skipped   integer NOT NULL,
    changes_accepted  integer NOT NULL,
    changes_baselined integer NOT NULL DEFAULT 0,
    changes_reverted  integer NOT NULL DEFAULT 0,
    options           jsonb NOT NULL,
    warnings          text[] NOT NULL,
    pg_deploy_version text NOT NULL,
    -- sha256 over the fingerprints of the objects the project manages, after this deployment.
    fingerprint       text,
    -- The hash chain: row_hash of the project's previous deployment ('' for the first),
    -- and sha256 over this row and its change_log rows (deploy.deployment_digest).
    prev_hash         text NOT NULL DEFAULT '',
    row_hash          text,
    -- Which deploy.deployment_digest form row_hash was taken with: 1 for rows
    -- recorded by pg_deploy 0.1.0 (also when restored from its dumps), 2 (which
    -- also covers the stored manifest) for rows pg_deploy 0.2.0 records.
    digest_version    integer NOT NULL DEFAULT 1,
    -- sha256 of the manifest argument's jsonb bytes (NULL before 0.2.0): apply
    -- knows the same bytes sent again without reading them (a no-op re-apply).
    manifest_jsonb_sha256 text
);
CREATE INDEX deployments_project_idx ON deploy.deployments (project, id);

-- One row per change run (applied, rerun) or accepted in a deployment.
CREATE TABLE deploy.change_log (
    deployment_id bigint NOT NULL REFERENCES deploy.deployments (id),
    ordinal       integer NOT NULL,
    project       text NOT NULL,
    change_id     text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
    action        text NOT NULL CHECK (action IN ('applied', 'rerun', 'accepted', 'baseline', 'reverted')),
    checksum      text NOT NULL,
    statements    integer NOT NULL,
    lock_retries  integer NOT NULL DEFAULT 0,
    duration_ms   double precision NOT NULL,
    applied_at    timestamptz NOT NULL,
    -- The change's revert SQL as it was applied, for deploy.revert.
    revert_sql    text,
    PRIMARY KEY (deployment_id, ordinal)
);
CREATE INDEX change_log_project_change_idx ON deploy.change_log (project, change_id, deployment_id DESC);

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

-- The fingerprint of every object a project manages, as of its last
-- deployment that changed something: sha256 over a canonical description.
CREATE TABLE deploy.fingerprints (
    project  text NOT NULL,
    kind     text NOT NULL,
    name     text NOT NULL,
    sha256   text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (project, kind, name)
);

-- pg_deploy 0.1.0's fingerprints, kept for projects last fingerprinted by it
-- (deploy.projects.fingerprint_version 1): they name objects by OID, so a
-- dump and restore changes all of them. A canonical description of every
-- object in `schemas`, hashed: the schema
-- itself, tables (columns, types, defaults, not null, identity, generated,
-- constraints, triggers, policies, row security), views and materialized
-- views (rewrite rules), indexes, sequences, functions and procedures, types
-- (enums, domains, ranges, composites); each with owner and privileges.
-- Expressions are compared as PostgreSQL stores them (pg_node_tree), which is
-- exact and much cheaper than deparsing them.
CREATE FUNCTION deploy.object_fingerprints_v1(schemas text[])
RETURNS TABLE (kind text, name text, sha256 text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
-- Compiling this plan with JIT costs seconds and saves nothing.
SET jit = off
AS $$
    WITH ns AS (SELECT n.oid, n.nspname FROM pg_namespace n WHERE n.nspname = ANY (schemas)),
    rel AS (SELECT c.*, ns.nspname FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I')),
    cols AS (SELECT a.attrelid,
                    string_agg(concat_ws(':', a.attname, a.atttypid, a.atttypmod, a.attnotnull, d.adbin, a.attidentity,
                                         a.attgenerated, a.attcollation, a.attacl), ',' ORDER BY a.attnum) AS d
               FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attnum > 0 AND NOT a.attisdropped
              GROUP BY a.attrelid),
    cons AS (SELECT co.conrelid,
                    string_agg(concat_ws(':', co.conname, co.contype, co.condeferrable, co.condeferred, co.convalidated,
                                         co.conkey, co.confrelid, co.confkey, co.confupdtype, co.confdeltype, co.conbin),
                               ',' ORDER BY co.conname) AS d
               FROM pg_constraint co JOIN rel ON rel.oid = co.conrelid
              GROUP BY co.conrelid),
    trigs AS (SELECT t.tgrelid,
                     string_agg(concat_ws(':', t.tgname, t.tgfoid, t.tgtype, t.tgenabled, t.tgattr, t.tgargs, t.tgqual),
                                ',' ORDER BY t.tgname) AS d
                FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
               WHERE NOT t.tgisinternal
               GROUP BY t.tgrelid),
    pols AS (SELECT p.polrelid,
                    string_agg(concat_ws(':', p.polname, p.polcmd, p.polpermissive, p.polroles, p.polqual, p.polwithcheck),
                               ',' ORDER BY p.polname) AS d
               FROM pg_policy p JOIN rel ON rel.oid = p.polrelid
              GROUP BY p.polrelid),
    objects AS (
        SELECT 'schema' AS kind, ns.nspname::text AS name,
               concat_ws('|', n.nspowner, n.nspacl) AS description
          FROM pg_namespace n JOIN ns USING (oid)
        UNION ALL
        SELECT CASE rel.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                                WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                                ELSE 'index' END,
               rel.nspname || '.' || rel.relname,
               concat_ws('|', rel.relkind, rel.relowner, rel.relacl, rel.relpersistence, rel.relrowsecurity,
                         rel.relforcerowsecurity, rel.relam, rel.reloptions, cols.d, cons.d, trigs.d, pols.d,
                         (SELECT string_agg(concat_ws(':', r.rulename, r.ev_type, r.ev_action), ',' ORDER BY r.rulename)
                            FROM pg_rewrite r WHERE r.ev_class = rel.oid),
                         (SELECT concat_ws(':', i.indrelid, i.indisunique, i.indisprimary, i.indkey, i.indclass,
                                           i.indoption, i.indexprs, i.indpred, i.indnullsnotdistinct)
                            FROM pg_index i WHERE i.indexrelid = rel.oid),
                         (SELECT concat_ws(':', s.seqtypid, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache,
                                           s.seqcycle)
                            FROM pg_sequence s WHERE s.seqrelid = rel.oid))
          FROM rel
          LEFT JOIN cols ON cols.attrelid = rel.oid
          LEFT JOIN cons ON cons.conrelid = rel.oid
          LEFT JOIN trigs ON trigs.tgrelid = rel.oid
          LEFT JOIN pols ON pols.polrelid = rel.oid
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
               ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               concat_ws('|', p.proowner, p.proacl, p.prolang, p.prorettype, p.proargtypes, p.proallargtypes,
                         p.proargmodes, p.proretset, p.provolatile, p.prosecdef, p.proleakproof, p.proisstrict,
                         p.proparallel, p.proconfig, p.prosrc, p.probin, p.prosqlbody)
          FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
        UNION ALL
        SELECT 'type', ns.nspname || '.' || t.typname,
               concat_ws('|', t.typtype, t.typowner, t.typacl, t.typbasetype, t.typtypmod, t.typnotnull, t.typdefaultbin,
                         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
                         (SELECT string_agg(concat_ws(':', co.conname, co.conbin), ',' ORDER BY co.conname)
                            FROM pg_constraint co WHERE co.contypid = t.oid),
                         (SELECT string_agg(concat_ws(':', a.attname, a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                           WHERE c.oid = t.typrelid AND c.relkind = 'c' AND a.attnum > 0),
                         (SELECT concat_ws(':', r.rngsubtype, r.rngcollation, r.rngsubopc) FROM pg_range r WHERE r.rngtypid = t.oid))
          FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
         WHERE t.typtype IN ('e', 'd', 'r', 'm')
            OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
    )
    SELECT o.kind, o.name, encode(sha256(convert_to(coalesce(o.description, ''), 'UTF8')), 'hex')
      FROM objects o
$$;

-- A stored manifest as it was deployed, its changes' SQL put back from
-- deploy.change_sql (NULL when no manifest has that sha256).
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

-- A canonical description of every object in `schemas`, hashed, in terms
-- that survive pg_dump and pg_restore, pg_upgrade and a move to another
-- server: names, not OIDs; expressions, constraints, indexes, triggers, rules
-- and functions as PostgreSQL deparses them. The schema itself (owner,
-- privileges); tables and partitioned tables (columns with types, not null,
-- defaults, identity, generated, collation and column privileges;
-- constraints; triggers and whether they are enabled; row-level security and
-- its policies; owner, privileges, persistence, access method, options);
-- views and materialized views (their rules); indexes; sequences; functions
-- and procedures; types (enums, domains, ranges, composite types).
CREATE FUNCTION deploy.object_fingerprints(schemas text[])
RETURNS TABLE (kind text, name text, sha256 text)
STABLE COST 100
LANGUAGE c /* Rust: src/fingerprint/, which reads the catalogs itself */
AS 'MODULE_PATHNAME', 'object_fingerprints_wrapper';

-- deploy.drift(project) is in sql/lineage.sql: it names the commands behind the drift.

-- The current state of every applied change: its latest checksum, when it
-- first and last ran. Reverted changes are not applied any more.
CREATE VIEW deploy.applied_changes AS
SELECT s.project, s.change_id, s.kind, s.checksum, s.last_action, s.last_deployment_id,
       s.first_applied_at, s.last_applied_at, s.runs
  FROM (SELECT DISTINCT ON (l.project, l.change_id)
               l.project,
               l.change_id,
               l.kind,
               l.checksum,
               l.action AS last_action,
               l.deployment_id AS last_deployment_id,
               pg_catalog.min(l.applied_at) OVER w AS first_applied_at,
               l.applied_at AS last_applied_at,
               pg_catalog.count(*) FILTER (WHERE l.action OPERATOR(pg_catalog.=) ANY ('{applied,rerun}')) OVER w AS runs
          FROM deploy.change_log l
        WINDOW w AS (PARTITION BY l.project, l.change_id)
         ORDER BY l.project, l.change_id, l.deployment_id DESC) s
 WHERE s.last_action OPERATOR(pg_catalog.<>) 'reverted';

-- pg_catalog.sha256 without OpenSSL (C, src/sha256.rs): the first digest
-- through OpenSSL in a backend costs a new session about half a millisecond,
-- which a rollout to many databases pays once per database. Same bytes.
CREATE FUNCTION deploy.sha256(bytea)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_deploy_sha256';

-- What the hash chain covers of a deployment: every column but row_hash, and
-- its change_log rows; from digest_version 2 on, also the stored manifest it
-- names. Times and floats go in as numerics so the text does not depend on
-- TimeZone, DateStyle or extra_float_digits.
CREATE FUNCTION deploy.deployment_digest(d deploy.deployments)
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

-- Checks every project's hash chain, and what lies beside it: the project's
-- row (its version, its owner) and its fingerprints must agree with the chain;
-- with expected_head (a row_hash kept outside the database, e.g. from an
-- apply report in a CI log), that deployment must still be in the chain.
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

-- Checks every project's hash chain; reports the first broken link.
CREATE FUNCTION deploy.verify_log(project_name text DEFAULT NULL)
RETURNS TABLE (project text, deployments bigint, intact boolean, first_broken_id bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deploy.verify_log(project_name, NULL)
$$;

-- The deployment log, newest first.
CREATE FUNCTION deploy.history(project_name text DEFAULT NULL)
RETURNS SETOF deploy.deployments
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deploy.deployments d
     WHERE project_name IS NULL OR d.project = project_name
     ORDER BY d.id DESC
$$;

-- The applied changes of a project (or all), in the order they first ran.
CREATE FUNCTION deploy.changes(project_name text DEFAULT NULL)
RETURNS SETOF deploy.applied_changes
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deploy.applied_changes a
     WHERE project_name IS NULL OR a.project = project_name
     ORDER BY a.project, a.first_applied_at, a.change_id
$$;

-- pg_dump leaves an extension's tables out unless told: the history must travel
-- with a dump, or a restored database would deploy everything again.
SELECT pg_catalog.pg_extension_config_dump('deploy.projects', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.manifests', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.change_sql', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.deployments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.change_log', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.fingerprints', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.phase_queue', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.phase_events', '');
SELECT pg_catalog.pg_extension_config_dump('deploy.phase_events_id_seq', '');
