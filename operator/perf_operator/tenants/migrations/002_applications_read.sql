-- The schema belongs to the operator's login (no superuser, see docs/deploy.md); applications
-- read their tenants' limits from it, so every role may read (never write) the mirror. The
-- limits are no secret: they are what the applications enforce.
GRANT USAGE ON SCHEMA perf_operator TO PUBLIC;
GRANT SELECT ON perf_operator.tenant_limits TO PUBLIC;
