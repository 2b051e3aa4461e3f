-- The strategic index set of the performance optimization guide ("50+ optimized indexes for
-- high-traffic queries": multi-tenant composites leading with tenant_id, partial indexes on
-- active rows), for the tables of schema.sql. 61 indexes.
--
-- This is the by-hand form (the guide's prisma/migrations/001_performance_indexes.sql). With
-- the operator, apply examples/profile-indexes.yaml instead: it declares exactly these indexes
-- (tests/e2e/test_postgres_schema.py checks that the two build identical indexes), builds them
-- without blocking writes, marks them as its own and rebuilds them when a definition changes.
--
-- CREATE INDEX CONCURRENTLY cannot run in a transaction block: run this file with psql without
-- --single-transaction.
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/performance_indexes.sql

-- tenants
-- Tenant directory: active tenants by status (admin console).
CREATE INDEX CONCURRENTLY IF NOT EXISTS tenants_status_idx
    ON tenants (status)
    WHERE deleted_at IS NULL;
-- Billing and reporting: tenants per plan, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tenants_plan_created_idx
    ON tenants (plan, created_at DESC);

-- users
-- Login inside a tenant: case-insensitive e-mail, unique among live accounts.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_tenant_email_key
    ON users (tenant_id, (lower(email)))
    WHERE deleted_at IS NULL;
-- Member lists filtered by status.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_tenant_status_idx
    ON users (tenant_id, status)
    WHERE deleted_at IS NULL;
-- Member lists filtered by role (owners, admins).
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_tenant_role_idx
    ON users (tenant_id, role)
    WHERE deleted_at IS NULL;
-- Recently active members of a tenant.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_tenant_last_login_idx
    ON users (tenant_id, last_login_at DESC NULLS LAST)
    WHERE status = 'active';
-- Login before the tenant is known (e-mail first, then tenant picker).
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_lower_idx
    ON users ((lower(email)));

-- sessions
-- Session lookup by token hash: equality only, so a hash index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_token_idx
    ON sessions USING hash (token);
-- A user's live sessions (sign out everywhere).
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_tenant_user_active_idx
    ON sessions (tenant_id, user_id)
    WHERE revoked_at IS NULL;
-- Expiry sweep of live sessions.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_expires_at_idx
    ON sessions (expires_at)
    WHERE revoked_at IS NULL;
-- Last-seen listing of a user's devices.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_user_last_seen_idx
    ON sessions (user_id, last_seen_at DESC);

-- teams
-- Team names are unique per tenant, case-insensitively.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS teams_tenant_name_key
    ON teams (tenant_id, (lower(name)))
    WHERE deleted_at IS NULL;
-- The teams of a user (permission resolution).
CREATE INDEX CONCURRENTLY IF NOT EXISTS team_members_tenant_user_idx
    ON team_members (tenant_id, user_id)
    INCLUDE (team_id, role);

-- permissions
-- Permission check of a user: index-only with the resource type and action.
CREATE INDEX CONCURRENTLY IF NOT EXISTS permissions_tenant_user_idx
    ON permissions (tenant_id, user_id)
    INCLUDE (resource_type, action)
    WHERE user_id IS NOT NULL;
-- Permission check of a team.
CREATE INDEX CONCURRENTLY IF NOT EXISTS permissions_tenant_team_idx
    ON permissions (tenant_id, team_id)
    INCLUDE (resource_type, action)
    WHERE team_id IS NOT NULL;
-- Who may access a resource.
CREATE INDEX CONCURRENTLY IF NOT EXISTS permissions_tenant_resource_idx
    ON permissions (tenant_id, resource_type, resource_id);
-- Role-based grants.
CREATE INDEX CONCURRENTLY IF NOT EXISTS permissions_tenant_role_idx
    ON permissions (tenant_id, role)
    WHERE role IS NOT NULL;
-- Expiry sweep of temporary grants.
CREATE INDEX CONCURRENTLY IF NOT EXISTS permissions_expires_at_idx
    ON permissions (expires_at)
    WHERE expires_at IS NOT NULL;

-- plugins
-- Plugin lists: by tenant and status, most recently updated first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_tenant_status_idx
    ON plugins (tenant_id, status, updated_at DESC NULLS LAST);
-- Active plugins only: small, and what the hot list reads (index-only with name, version).
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_active_tenant_idx
    ON plugins (tenant_id)
    INCLUDE (name, version)
    WHERE status = 'active';
-- Plugin names are unique per tenant among live plugins.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS plugins_tenant_name_key
    ON plugins (tenant_id, name)
    WHERE deleted_at IS NULL;
-- Name prefix search (LIKE 'abc%') inside a tenant.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_tenant_name_prefix_idx
    ON plugins (tenant_id, name text_pattern_ops)
    WHERE deleted_at IS NULL;
-- Category browsing of active plugins.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_tenant_category_idx
    ON plugins (tenant_id, category)
    WHERE status = 'active';
-- Marketplace: public active plugins by popularity.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_public_downloads_idx
    ON plugins (downloads DESC)
    WHERE is_public AND status = 'active';
-- Tag filters (tags @> '{...}').
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_tags_idx
    ON plugins USING gin (tags);
-- Metadata containment queries (metadata @> '{...}').
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugins_metadata_idx
    ON plugins USING gin (metadata jsonb_path_ops);

-- plugin_versions
-- Version numbers are unique per plugin.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS plugin_versions_plugin_version_key
    ON plugin_versions (plugin_id, version);
-- Version history of a plugin, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugin_versions_tenant_plugin_created_idx
    ON plugin_versions (tenant_id, plugin_id, created_at DESC);
-- The latest version of a plugin.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugin_versions_latest_idx
    ON plugin_versions (plugin_id)
    WHERE is_latest;
-- Recently published versions of a tenant (release feed).
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugin_versions_tenant_published_idx
    ON plugin_versions (tenant_id, published_at DESC)
    WHERE status = 'published';

-- plugin_installations
-- One live installation of a plugin per tenant.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS plugin_installations_tenant_plugin_key
    ON plugin_installations (tenant_id, plugin_id)
    WHERE uninstalled_at IS NULL;
-- Installed plugins of a tenant by state.
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugin_installations_tenant_status_idx
    ON plugin_installations (tenant_id, status, updated_at DESC)
    WHERE uninstalled_at IS NULL;
-- Which tenants run a version (upgrade campaigns).
CREATE INDEX CONCURRENTLY IF NOT EXISTS plugin_installations_version_idx
    ON plugin_installations (version_id)
    WHERE uninstalled_at IS NULL;

-- catalog_entities
-- Entity references (kind:namespace/name) are unique per tenant among live entities.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_tenant_ref_key
    ON catalog_entities (tenant_id, kind, namespace, name)
    WHERE deleted_at IS NULL;
-- Catalog lists by kind, most recently updated first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_tenant_kind_updated_idx
    ON catalog_entities (tenant_id, kind, updated_at DESC)
    WHERE deleted_at IS NULL;
-- Entities owned by a team.
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_tenant_owner_idx
    ON catalog_entities (tenant_id, owner_team_id)
    WHERE deleted_at IS NULL;
-- Entities by lifecycle (experimental, production, deprecated).
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_tenant_lifecycle_idx
    ON catalog_entities (tenant_id, lifecycle)
    WHERE deleted_at IS NULL;
-- Full-text search over the catalog.
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_search_idx
    ON catalog_entities USING gin (search_vector);
-- Tag filters.
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_tags_idx
    ON catalog_entities USING gin (tags);
-- Spec containment queries (spec @> '{"type": "service"}').
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_entities_spec_idx
    ON catalog_entities USING gin (spec jsonb_path_ops);

-- catalog_relations
-- Outgoing relations of an entity.
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_relations_tenant_source_idx
    ON catalog_relations (tenant_id, source_id, type);
-- Incoming relations of an entity (dependents).
CREATE INDEX CONCURRENTLY IF NOT EXISTS catalog_relations_tenant_target_idx
    ON catalog_relations (tenant_id, target_id, type);

-- services
-- Service names are unique per tenant.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS services_tenant_name_key
    ON services (tenant_id, name)
    WHERE deleted_at IS NULL;
-- Services of a team.
CREATE INDEX CONCURRENTLY IF NOT EXISTS services_tenant_owner_idx
    ON services (tenant_id, owner_team_id)
    WHERE status = 'active';
-- Services by tier and lifecycle (incident views).
CREATE INDEX CONCURRENTLY IF NOT EXISTS services_tenant_tier_idx
    ON services (tenant_id, tier, lifecycle)
    WHERE deleted_at IS NULL;
-- The service behind a catalog entity.
CREATE INDEX CONCURRENTLY IF NOT EXISTS services_entity_idx
    ON services (entity_id)
    WHERE entity_id IS NOT NULL;

-- deployments
-- Deployment history of a service, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS deployments_tenant_service_created_idx
    ON deployments (tenant_id, service_id, created_at DESC);
-- Deployments in flight (dashboards poll these).
CREATE INDEX CONCURRENTLY IF NOT EXISTS deployments_in_flight_idx
    ON deployments (tenant_id, environment)
    WHERE status IN ('pending', 'running');

-- api_keys
-- Authentication by API key hash.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS api_keys_key_hash_key
    ON api_keys (key_hash);
-- A tenant's live keys, per user.
CREATE INDEX CONCURRENTLY IF NOT EXISTS api_keys_tenant_user_active_idx
    ON api_keys (tenant_id, user_id)
    WHERE revoked_at IS NULL;
-- Key lookup by the prefix users see.
CREATE INDEX CONCURRENTLY IF NOT EXISTS api_keys_prefix_idx
    ON api_keys (key_prefix)
    INCLUDE (tenant_id, status)
    WHERE revoked_at IS NULL;
-- Expiry sweep of live keys.
CREATE INDEX CONCURRENTLY IF NOT EXISTS api_keys_expires_at_idx
    ON api_keys (expires_at)
    WHERE revoked_at IS NULL AND expires_at IS NOT NULL;

-- audit_logs
-- A tenant's audit trail, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_tenant_created_idx
    ON audit_logs (tenant_id, created_at DESC);
-- What one actor did.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_tenant_actor_created_idx
    ON audit_logs (tenant_id, actor_id, created_at DESC);
-- The history of one resource.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_tenant_resource_idx
    ON audit_logs (tenant_id, resource_type, resource_id, created_at DESC);
-- Append-only, in time order: a BRIN index is tiny and serves time-range scans and retention.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_created_brin
    ON audit_logs USING brin (created_at);

-- websocket_sessions
-- Reconnects find their session by connection id.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS websocket_sessions_connection_key
    ON websocket_sessions (connection_id);
-- Per-tenant connection limits count live connections.
CREATE INDEX CONCURRENTLY IF NOT EXISTS websocket_sessions_tenant_live_idx
    ON websocket_sessions (tenant_id, user_id)
    WHERE disconnected_at IS NULL;
-- Stale connection removal: live connections by last heartbeat.
CREATE INDEX CONCURRENTLY IF NOT EXISTS websocket_sessions_stale_idx
    ON websocket_sessions (last_heartbeat_at)
    WHERE disconnected_at IS NULL;
-- Live connections of one API pod (drain on shutdown).
CREATE INDEX CONCURRENTLY IF NOT EXISTS websocket_sessions_node_live_idx
    ON websocket_sessions (node)
    WHERE disconnected_at IS NULL;

-- notifications
-- Unread notifications of a user, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_tenant_user_unread_idx
    ON notifications (tenant_id, user_id, created_at DESC)
    WHERE read_at IS NULL;
