-- pg_deploy's history: written only by deploy.apply, inside the caller's transaction.

-- One row per project: its deployed version and latest deployment. apply
-- writes it first thing, so concurrent applies of one project serialise on it.
CREATE TABLE deploy.projects (
    project            text PRIMARY KEY,
    version            text,
    last_deployment_id bigint,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- Every manifest ever deployed, once, by its sha256 over canonical JSON.
CREATE TABLE deploy.manifests (
    sha256        text PRIMARY KEY,
    manifest      jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- The deployment log: one row per successful apply, no-ops included.
CREATE TABLE deploy.deployments (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project           text NOT NULL,
    version           text NOT NULL,
    previous_version  text,
    outcome           text NOT NULL CHECK (outcome IN ('applied', 'no-op')),
    manifest_sha256   text NOT NULL REFERENCES deploy.manifests (sha256),
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
    options           jsonb NOT NULL,
    warnings          text[] NOT NULL,
    pg_deploy_version text NOT NULL
);
CREATE INDEX deployments_project_idx ON deploy.deployments (project, id);

-- One row per change run (applied, rerun) or accepted in a deployment.
CREATE TABLE deploy.change_log (
    deployment_id bigint NOT NULL REFERENCES deploy.deployments (id),
    ordinal       integer NOT NULL,
    project       text NOT NULL,
    change_id     text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
    action        text NOT NULL CHECK (action IN ('applied', 'rerun', 'accepted')),
    checksum      text NOT NULL,
    statements    integer NOT NULL,
    lock_retries  integer NOT NULL DEFAULT 0,
    duration_ms   double precision NOT NULL,
    applied_at    timestamptz NOT NULL,
    PRIMARY KEY (deployment_id, ordinal)
);
CREATE INDEX change_log_project_change_idx ON deploy.change_log (project, change_id, deployment_id DESC);

-- The current state of every change: its latest checksum, when it first and last ran.
CREATE VIEW deploy.applied_changes AS
SELECT DISTINCT ON (l.project, l.change_id)
       l.project,
       l.change_id,
       l.kind,
       l.checksum,
       l.action AS last_action,
       l.deployment_id AS last_deployment_id,
       pg_catalog.min(l.applied_at) OVER w AS first_applied_at,
       l.applied_at AS last_applied_at,
       pg_catalog.count(*) FILTER (WHERE l.action OPERATOR(pg_catalog.<>) 'accepted') OVER w AS runs
  FROM deploy.change_log l
WINDOW w AS (PARTITION BY l.project, l.change_id)
 ORDER BY l.project, l.change_id, l.deployment_id DESC;

-- Where every project stands.
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
    last_duration_ms      double precision
)
LANGUAGE sql STABLE
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
           d.duration_ms
      FROM deploy.projects p
      LEFT JOIN deploy.deployments d ON d.id = p.last_deployment_id
     WHERE project_name IS NULL OR p.project = project_name
     ORDER BY p.project
$$;

-- The deployment log, newest first.
CREATE FUNCTION deploy.history(project_name text DEFAULT NULL)
RETURNS SETOF deploy.deployments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deploy.deployments d
     WHERE project_name IS NULL OR d.project = project_name
     ORDER BY d.id DESC
$$;

-- The applied changes of a project (or all), in the order they first ran.
CREATE FUNCTION deploy.changes(project_name text DEFAULT NULL)
RETURNS SETOF deploy.applied_changes
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deploy.applied_changes a
     WHERE project_name IS NULL OR a.project = project_name
     ORDER BY a.project, a.first_applied_at, a.change_id
$$;
