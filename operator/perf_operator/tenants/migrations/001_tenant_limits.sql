-- perf-operator's own schema: each TenantQuota's effective limits, mirrored from Redis for
-- applications that load limits from their database. Applied by the operator itself (once per
-- database, recorded in perf_operator.schema_migrations); see docs/rate-limit-tables.md.
CREATE SCHEMA IF NOT EXISTS perf_operator;

CREATE TABLE IF NOT EXISTS perf_operator.tenant_limits (
    profile_namespace text        NOT NULL,
    profile_name      text        NOT NULL,
    tenant_id         text        NOT NULL,
    -- the TenantQuota that owns the row, "<namespace>/<name>"
    owner             text        NOT NULL,
    -- the Redis record's version and digest: equal values mean equal tables
    version           bigint      NOT NULL,
    digest            text        NOT NULL,
    -- the same JSON document as the Redis record's "limits" field
    limits            jsonb       NOT NULL,
    written_at        timestamptz NOT NULL,
    PRIMARY KEY (profile_namespace, profile_name, tenant_id)
);

COMMENT ON TABLE perf_operator.tenant_limits IS
    'Managed by perf-operator: effective limits of each TenantQuota (docs/rate-limit-tables.md)';
