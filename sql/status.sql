-- deploy.status(): after deploy.phase_status, which it calls. last_checked_at:
-- the last apply of the project, including those that found nothing to do.

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
