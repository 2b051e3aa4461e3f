-- Reference schema of the multi-tenant developer platform (SaaS IDP) that perf-operator tunes.
--
-- Every tenant-owned table carries tenant_id, and every query of the platform filters by it
-- first; soft-deleted rows keep deleted_at (or revoked_at / disconnected_at / read_at), so the
-- hot queries read "active" rows only. The strategic indexes for these access paths are not
-- here: they are in performance_indexes.sql and, declared for the operator, in
-- examples/profile-indexes.yaml. This file has only what the data model itself needs: primary
-- keys, foreign keys and the natural-key constraints.
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/schema.sql

CREATE TABLE tenants (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    plan        text        NOT NULL DEFAULT 'free',       -- free | team | enterprise
    status      text        NOT NULL DEFAULT 'active',     -- active | suspended
    settings    jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid        NOT NULL REFERENCES tenants (id),
    email         text        NOT NULL,
    display_name  text,
    role          text        NOT NULL DEFAULT 'member',   -- owner | admin | member | viewer
    status        text        NOT NULL DEFAULT 'active',   -- active | invited | disabled
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE sessions (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    user_id      uuid        NOT NULL REFERENCES users (id),
    token        text        NOT NULL,                     -- hash of the session token
    ip_address   inet,
    user_agent   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);

CREATE TABLE teams (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    name        text        NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE team_members (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    team_id    uuid        NOT NULL REFERENCES teams (id),
    user_id    uuid        NOT NULL REFERENCES users (id),
    role       text        NOT NULL DEFAULT 'member',      -- maintainer | member
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE permissions (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid        NOT NULL REFERENCES tenants (id),
    user_id       uuid        REFERENCES users (id),
    team_id       uuid        REFERENCES teams (id),
    role          text,
    resource_type text        NOT NULL,                    -- plugin | entity | service | ...
    resource_id   uuid,                                    -- NULL: every resource of the type
    action        text        NOT NULL,                    -- read | write | admin
    granted_by    uuid        REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    CHECK (user_id IS NOT NULL OR team_id IS NOT NULL OR role IS NOT NULL)
);

CREATE TABLE plugins (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    name         text        NOT NULL,
    display_name text,
    description  text,
    version      text        NOT NULL,                     -- the latest published version
    category     text,
    author       text,
    status       text        NOT NULL DEFAULT 'active',    -- active | deprecated | disabled
    is_public    boolean     NOT NULL DEFAULT false,       -- listed in the marketplace
    downloads    bigint      NOT NULL DEFAULT 0,
    rating       numeric(3, 2),
    tags         text[]      NOT NULL DEFAULT '{}',
    metadata     jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);

CREATE TABLE plugin_versions (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    plugin_id    uuid        NOT NULL REFERENCES plugins (id),
    version      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'draft',     -- draft | published | yanked
    is_latest    boolean     NOT NULL DEFAULT false,
    changelog    text,
    manifest     jsonb       NOT NULL DEFAULT '{}',
    published_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plugin_installations (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    plugin_id      uuid        NOT NULL REFERENCES plugins (id),
    version_id     uuid        NOT NULL REFERENCES plugin_versions (id),
    status         text        NOT NULL DEFAULT 'installing', -- installing | enabled | disabled | failed
    config         jsonb       NOT NULL DEFAULT '{}',
    installed_by   uuid        REFERENCES users (id),
    installed_at   timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    uninstalled_at timestamptz
);

CREATE TABLE catalog_entities (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid        NOT NULL REFERENCES tenants (id),
    kind          text        NOT NULL,                    -- Component | API | System | Resource ...
    namespace     text        NOT NULL DEFAULT 'default',
    name          text        NOT NULL,
    title         text,
    owner_team_id uuid        REFERENCES teams (id),
    lifecycle     text,                                    -- experimental | production | deprecated
    tags          text[]      NOT NULL DEFAULT '{}',
    metadata      jsonb       NOT NULL DEFAULT '{}',
    spec          jsonb       NOT NULL DEFAULT '{}',
    search_vector tsvector,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE catalog_relations (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    source_id  uuid        NOT NULL REFERENCES catalog_entities (id),
    target_id  uuid        NOT NULL REFERENCES catalog_entities (id),
    type       text        NOT NULL,                       -- ownedBy | dependsOn | providesApi ...
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, type, target_id)
);

CREATE TABLE services (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid        NOT NULL REFERENCES tenants (id),
    entity_id      uuid        REFERENCES catalog_entities (id),
    name           text        NOT NULL,
    owner_team_id  uuid        REFERENCES teams (id),
    tier           smallint    NOT NULL DEFAULT 3,         -- 1 (critical) .. 4
    lifecycle      text        NOT NULL DEFAULT 'production',
    status         text        NOT NULL DEFAULT 'active',  -- active | archived
    repository_url text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);

CREATE TABLE deployments (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    service_id  uuid        NOT NULL REFERENCES services (id),
    environment text        NOT NULL,                      -- dev | staging | production
    version     text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending',    -- pending | running | succeeded | failed
    started_by  uuid        REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    user_id      uuid        REFERENCES users (id),        -- NULL: a tenant service key
    name         text        NOT NULL,
    key_prefix   text        NOT NULL,                     -- shown to users, first 8 characters
    key_hash     text        NOT NULL,
    scopes       text[]      NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'active',
    last_used_at timestamptz,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE audit_logs (
    id            bigserial   PRIMARY KEY,                 -- append-only, in time order
    tenant_id     uuid        NOT NULL,                    -- kept after a tenant is deleted
    actor_id      uuid,
    actor_type    text        NOT NULL DEFAULT 'user',     -- user | api_key | system
    action        text        NOT NULL,
    resource_type text        NOT NULL,
    resource_id   uuid,
    ip_address    inet,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE websocket_sessions (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL REFERENCES tenants (id),
    user_id           uuid        REFERENCES users (id),
    connection_id     text        NOT NULL,
    node              text        NOT NULL,                -- the API pod holding the socket
    subscriptions     text[]      NOT NULL DEFAULT '{}',
    connected_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    disconnected_at   timestamptz
);

CREATE TABLE notifications (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    user_id    uuid        NOT NULL REFERENCES users (id),
    type       text        NOT NULL,
    title      text        NOT NULL,
    body       text,
    link       text,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
