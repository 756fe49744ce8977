-- Least privilege (docs/security.md). Nothing is granted to PUBLIC: the
-- extension's owner grants what each role needs, e.g.
--   GRANT USAGE ON SCHEMA deploy TO ci_deployer;
--   GRANT EXECUTE ON FUNCTION deploy.apply(jsonb, jsonb), deploy.plan(jsonb, jsonb) TO ci_deployer;
-- Changes run with the caller's privileges; history is written as the owner,
-- so no role needs, or gets, privileges on the history tables.
REVOKE ALL ON ALL TABLES IN SCHEMA deploy FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA deploy FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA deploy FROM PUBLIC;
