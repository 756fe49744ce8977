-- pg_deploy 0.1.0 -> 0.2.0. Every change to pg_deploy's SQL objects in 0.2.0
-- is here, and a database updated by it ends with the same objects as a
-- fresh 0.2.0 install (pg_test/upgrade.sh compares them).
\echo Use "ALTER EXTENSION pg_deploy UPDATE TO '0.2.0'" to load this file. \quit

-- Projects are owned by a role: the role of their first deployment.
ALTER TABLE deploy.projects ADD COLUMN owner name;
UPDATE deploy.projects p
   SET owner = (SELECT d.applied_by FROM deploy.deployments d
                 WHERE d.project = p.project ORDER BY d.id LIMIT 1);

-- Each change's SQL is stored once; manifests stored from now on name it.
-- Manifests stored by 0.1.0 keep their SQL inline.
CREATE TABLE deploy.change_sql (
    sha256 text PRIMARY KEY,
    sql    text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('deploy.change_sql', '');

-- Transfers of ownership are recorded in the log.
ALTER TABLE deploy.deployments
    DROP CONSTRAINT deployments_outcome_check,
    ADD CONSTRAINT deployments_outcome_check
        CHECK (outcome IN ('applied', 'no-op', 'baseline', 'revert', 'transfer'));

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

-- Nothing is granted to PUBLIC (sql/privileges.sql).
REVOKE ALL ON TABLE deploy.change_sql FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION deploy.verify_log(text, text), deploy.transfer_project(text, text),
                           deploy.manifest_document(text) FROM PUBLIC;
