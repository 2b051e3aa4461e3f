"""The API models without a cluster: seed defaults, naming, the tenant merge, conditions, and
the example manifests parsed by the models."""
from __future__ import annotations

import pathlib
from datetime import datetime, timedelta, UTC

import pytest
import yaml
from pydantic import ValidationError

from perf_operator.api import (ALERT_SIGNAL_NAMES, DEFAULT_SIGNAL_QUERIES, REDIS_ALLOWED_SETTINGS,
                               SIGNAL_NAMES,
                               Condition, PerformanceProfileSpec, ProfileStatus,
                               TenantQuotaSpec, effective_limits, set_condition, signal_queries)
from perf_operator.api.conditions import MAX_MESSAGE
from perf_operator.api.profile import SEED_POSTGRES_PARAMETERS, SEED_REDIS_SETTINGS
from perf_operator.api.schema import overlay, partial

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

CONNECTIONS = {
    "database": {"connection": {"host": "127.0.0.1", "database": "idp",
                                "secretRef": {"name": "pg-credentials"}}},
    "redis": {"connection": {"host": "127.0.0.1", "secretRef": {"name": "redis-credentials"}}},
}


def profile(**spec) -> PerformanceProfileSpec:
    return PerformanceProfileSpec.model_validate({**CONNECTIONS, **spec})


def tenant(**spec) -> TenantQuotaSpec:
    return TenantQuotaSpec.model_validate({"tenantId": "acme", "profileRef": {"name": "p"},
                                           **spec})


# ------------------------------------------------------------------------------ seed defaults

def test_database_defaults_are_the_seed():
    db = profile().database
    assert (db.pool.min, db.pool.max) == (20, 100)
    assert db.settings.scope == "System"
    assert db.settings.parameters == SEED_POSTGRES_PARAMETERS
    assert db.settings.parameters["shared_buffers"] == "256MB"
    assert db.settings.parameters["log_min_duration_statement"] == "1000"
    assert len(SEED_POSTGRES_PARAMETERS) == 10
    assert db.connection.port == 5432 and db.connection.ssl_mode == "prefer"
    assert db.connection.secret_ref.username_key == "username"
    assert db.connection.secret_ref.password_key == "password"
    assert (db.index_prune_policy, db.max_concurrent_builds) == ("Retain", 1)
    assert (db.lock_timeout_seconds, db.build_timeout_seconds) == (5, 3600)


def test_redis_defaults_are_the_seed():
    redis = profile().redis
    assert redis.key_prefix == "saas-idp:prod:"
    assert redis.settings == SEED_REDIS_SETTINGS == {
        "maxmemory-policy": "allkeys-lru", "timeout": "300", "tcp-keepalive": "60"}
    assert (redis.connection.port, redis.connection.db) == (6379, 0)
    assert redis.connection.secret_ref.username_key is None
    assert redis.persist_settings is False


def test_alert_thresholds_are_the_seed():
    thresholds = profile().alerts.thresholds
    levels = {name: (getattr(thresholds, field).warning, getattr(thresholds, field).critical)
              for name, field in zip(ALERT_SIGNAL_NAMES, type(thresholds).model_fields,
                                     strict=True)}
    assert levels == {
        "apiResponseTimeMs": (1000, 5000), "errorRate": (0.05, 0.10),
        "dbQueryTimeMs": (500, 2000), "poolUtilization": (0.8, 0.95),
        "memoryUsage": (0.8, 0.9), "memoryGrowthMB": (100, 500),
        "websocketConnections": (8000, 9500), "messageRatePerMinute": (10_000, 50_000),
        "cacheHitRate": (0.85, 0.60),
    }


def test_targets_and_limits_are_the_seed():
    spec = profile()
    assert spec.targets.model_dump() == {
        "apiResponseTimeMs": 100, "apiResponseTimeP95Ms": 200, "dbQueryTimeMs": 500,
        "dbQueryTimeP95Ms": 100, "memoryUsage": 0.8, "cacheHitRate": 0.85,
        "websocketConnections": 8000, "errorRate": 0.05}
    assert spec.websocket.max_connections == 10_000
    assert spec.api.compression.enabled and spec.api.compression.min_size_bytes == 1024
    assert spec.cache.compression_threshold_bytes == 1024
    memory = spec.optimization.memory_pressure
    assert (memory.cache_cleanup, memory.connection_pruning, memory.emergency) == (0.85, 0.9, 0.95)
    assert spec.optimization.mode == "Recommend"


@pytest.mark.parametrize(("field", "low", "high"), [
    ("sessions", 300, 3600), ("permissions", 300, 3600), ("plugin_metadata", 300, 3600),
    ("catalogs", 300, 3600), ("api_responses", 180, 300), ("search_results", 180, 300),
    ("health_checks", 30, 300), ("metrics", 30, 300)])
def test_cache_ttls_sit_in_the_seed_ranges(field, low, high):
    assert low <= getattr(profile().cache.ttl_seconds, field) <= high


def test_only_connections_are_required():
    spec = PerformanceProfileSpec()
    assert spec.database is None and spec.redis is None and spec.prometheus is None


# ---------------------------------------------------------------------------- wire format

def test_fields_are_camel_case_and_python_names_are_accepted():
    by_alias = profile(database={"connection": {"host": "db", "database": "idp", "sslMode":
                                                "require", "secretRef": {"name": "s"}}})
    by_name = profile(database={"connection": {"host": "db", "database": "idp", "ssl_mode":
                                               "require", "secret_ref": {"name": "s"}}})
    assert by_alias == by_name
    dumped = by_alias.model_dump()
    assert dumped["database"]["connection"]["sslMode"] == "require"
    assert "maxConcurrentBuilds" in dumped["database"]
    assert dumped["alerts"]["thresholds"]["memoryGrowthMB"]["for"] == "5m"


def test_keywords_and_reserved_names_keep_their_yaml_spelling():
    index = {"name": "i", "schema": "app", "table": "t", "columns": [{"column": "c"}]}
    spec = profile(database={**CONNECTIONS["database"], "indexes": [index]})
    assert spec.database.indexes[0].schema_ == "app"
    assert spec.model_dump()["database"]["indexes"][0]["schema"] == "app"


@pytest.mark.parametrize("spec", [
    {"database": {"connection": {**CONNECTIONS["database"]["connection"],
                                 "secretRef": {"name": "s", "namespace": "other"}}}},
    {"redis": {"connection": {"host": "r", "secretRef": {"name": "s", "namespace": "x"}}}},
    {"databse": {}},
    {"api": {"rateLimits": {"perIP": {"requests": 1}}}},
])
def test_unknown_fields_are_refused(spec):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PerformanceProfileSpec.model_validate(spec)


def test_status_ignores_fields_it_does_not_know():
    status = ProfileStatus.model_validate({"observedGeneration": 2, "fromTheFuture": 1,
                                           "kopf": {"progress": {}}})
    assert status.observed_generation == 2


# ------------------------------------------------------------------- Python-side constraints

@pytest.mark.parametrize("name", ["Plugins_idx", "1idx", "idx-1", "i" * 64, "schema.idx", ""])
def test_index_names_must_be_plain_postgres_identifiers(name):
    index = {"name": name, "table": "t", "columns": [{"column": "c"}]}
    with pytest.raises(ValidationError):
        profile(database={**CONNECTIONS["database"], "indexes": [index]})


@pytest.mark.parametrize("name", ["idx", "_i", "plugins_tenant_status_idx", "a$b", "i" * 63])
def test_postgres_identifiers_accepted(name):
    index = {"name": name, "table": "t", "columns": [{"column": "c"}]}
    profile(database={**CONNECTIONS["database"], "indexes": [index]})


@pytest.mark.parametrize("key", ["dir", "dbfilename", "requirepass", "masterauth",
                                 "rename-command", "replicaof", "bind", "enable-debug-command"])
def test_dangerous_redis_settings_are_not_allowed(key):
    assert key not in REDIS_ALLOWED_SETTINGS
    with pytest.raises(ValidationError):
        profile(redis={**CONNECTIONS["redis"], "settings": {key: "x"}})


def test_redis_allow_list_covers_the_seed_and_tuning():
    for key in (*SEED_REDIS_SETTINGS, "save", "maxmemory", "maxmemory-samples", "hz",
                "lazyfree-lazy-eviction", "slowlog-log-slower-than", "latency-monitor-threshold",
                "notify-keyspace-events", "active-expire-effort"):
        assert key in REDIS_ALLOWED_SETTINGS
    assert len(set(REDIS_ALLOWED_SETTINGS)) == len(REDIS_ALLOWED_SETTINGS)


@pytest.mark.parametrize(("tenant_id", "ok"), [
    ("acme", True), ("a", True), ("tenant-123", True), ("a" * 63, True),
    ("Acme", False), ("-acme", False), ("acme-", False), ("a_b", False), ("a" * 64, False),
    ("", False)])
def test_tenant_id_is_a_dns_label(tenant_id, ok):
    if ok:
        assert tenant(tenantId=tenant_id).tenant_id == tenant_id
    else:
        with pytest.raises(ValidationError):
            tenant(tenantId=tenant_id)


@pytest.mark.parametrize("prefix", ["saas-idp", "", ":x:", "a b:"])
def test_key_prefix_ends_with_a_colon(prefix):
    with pytest.raises(ValidationError):
        profile(redis={**CONNECTIONS["redis"], "keyPrefix": prefix})


def test_rate_limit_burst_cannot_be_negative():
    with pytest.raises(ValidationError):
        tenant(rateLimits=[{"pattern": "/api", "requests": 10, "burst": -1}])


# ---------------------------------------------------------------------------- signal queries

def test_every_signal_has_a_default_query():
    assert tuple(DEFAULT_SIGNAL_QUERIES) == SIGNAL_NAMES
    assert SIGNAL_NAMES == ("apiResponseTimeP95Ms", *ALERT_SIGNAL_NAMES)


def test_the_p95_latency_can_be_overridden_for_the_optimizer():
    spec = profile(optimization={"signals": {"apiResponseTimeP95Ms": "my_p95"}})
    assert signal_queries(spec, optimizer=True)["apiResponseTimeP95Ms"] == "my_p95"


def test_signal_queries_layer_alerts_then_optimizer_overrides():
    spec = profile(alerts={"metrics": {"errorRate": "alerts_q"}},
                   optimization={"signals": {"errorRate": "opt_q", "cacheHitRate": "opt_c"}})
    alerting = signal_queries(spec)
    assert alerting["errorRate"] == "alerts_q"
    assert alerting["cacheHitRate"] == DEFAULT_SIGNAL_QUERIES["cacheHitRate"]
    optimizer = signal_queries(spec, optimizer=True)
    assert (optimizer["errorRate"], optimizer["cacheHitRate"]) == ("opt_q", "opt_c")
    assert set(optimizer) == set(SIGNAL_NAMES)


def test_unknown_signal_overrides_are_refused():
    with pytest.raises(ValidationError):
        profile(optimization={"signals": {"latency": "up"}})


# --------------------------------------------------------------------------- effective limits

def test_tenant_without_overrides_gets_the_profile_defaults():
    spec = profile(api={"rateLimits": {"endpoints": [{"pattern": "/api/search",
                                                      "requests": 300}]}})
    limits = effective_limits(spec, tenant())
    assert limits.tenant_id == "acme" and limits.tier == "Standard"
    assert limits.rate_limits_enabled
    assert limits.default_limit == spec.api.rate_limits.default
    assert limits.per_ip == spec.api.rate_limits.per_ip
    assert limits.endpoints == spec.api.rate_limits.endpoints
    assert limits.websocket.max_connections == 1000
    assert limits.websocket.message_rate_per_minute == 5000
    assert limits.cache.quota_bytes == 64 << 20
    assert limits.cache.max_keys == 100_000
    assert limits.cache.ttl_seconds == spec.cache.ttl_seconds
    assert limits.plugins.max_plugins == 10_000


def test_tenant_overrides_replace_only_what_they_name():
    limits = effective_limits(profile(), tenant(
        websocket={"messageRatePerMinute": 100},
        cache={"maxKeys": 5, "ttlSeconds": {"catalogs": 1800}},
        plugins={"maxPlugins": 7}, tier="Enterprise"))
    assert limits.websocket.max_connections == 1000
    assert limits.websocket.message_rate_per_minute == 100
    assert limits.cache.max_keys == 5 and limits.cache.quota_bytes == 64 << 20
    assert limits.cache.ttl_seconds.catalogs == 1800
    assert limits.cache.ttl_seconds.sessions == 3600
    assert limits.plugins.max_plugins == 7 and limits.tier == "Enterprise"


def test_tenant_connections_are_capped_at_the_pool():
    spec = profile(websocket={"maxConnections": 3000, "perTenantDefault": 100})
    assert effective_limits(spec, tenant(websocket={"maxConnections": 5000})) \
        .websocket.max_connections == 3000
    assert effective_limits(spec, tenant(websocket={"maxConnections": 0})) \
        .websocket.max_connections == 0


def test_tenant_rules_replace_overlapping_profile_rules_and_come_first():
    spec = profile(api={"rateLimits": {"endpoints": [
        {"pattern": "/api/search", "methods": ["GET"], "requests": 300},
        {"pattern": "/api/search", "methods": ["POST"], "requests": 30},
        {"pattern": "/api/plugins/**", "requests": 100},
        {"pattern": "/api/health", "requests": 600, "critical": True},
    ]}})
    limits = effective_limits(spec, tenant(rateLimits=[
        {"pattern": "/api/search", "methods": ["POST"], "requests": 5},
        {"pattern": "/api/plugins/**", "methods": ["DELETE"], "requests": 1},
    ]))
    assert [(r.pattern, r.methods, r.requests) for r in limits.endpoints] == [
        ("/api/search", ["POST"], 5),
        ("/api/plugins/**", ["DELETE"], 1),
        ("/api/search", ["GET"], 300),      # no method in common: still applies
        ("/api/health", ["*"], 600),        # plugins '*' overlaps DELETE: replaced
    ]
    assert limits.endpoints[-1].critical


def test_effective_limits_do_not_change_their_inputs():
    spec, quota = profile(), tenant(cache={"ttlSeconds": {"sessions": 60}})
    before = (spec.model_dump(), quota.model_dump())
    effective_limits(spec, quota)
    assert (spec.model_dump(), quota.model_dump()) == before


def test_partial_keeps_constraints_and_descriptions_without_defaults():
    from perf_operator.api.limits import CacheTTLs
    override = partial(CacheTTLs)
    assert override().model_dump(exclude_none=True) == {}
    assert override.model_fields["sessions"].description == \
        CacheTTLs.model_fields["sessions"].description
    with pytest.raises(ValidationError):
        override(sessions=0)
    assert overlay(CacheTTLs(), override(sessions=42)).sessions == 42


# -------------------------------------------------------------------------------- conditions

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_set_condition_appends_a_new_type():
    other = set_condition([], "Degraded", "False", "Healthy", "", 1, NOW)
    conditions = set_condition(other, "Ready", "True", "Reconciled", "ok", 3, NOW)
    assert [c.type for c in conditions] == ["Degraded", "Ready"]
    ready = conditions[1]
    assert (ready.status, ready.reason, ready.message, ready.observed_generation) == \
        ("True", "Reconciled", "ok", 3)
    assert ready.last_transition_time == NOW.replace(microsecond=0)


def test_same_status_keeps_the_transition_time():
    first = set_condition([], "Ready", "False", "Building", "1 of 3", 1, NOW)
    later = set_condition(first, "Ready", "False", "Building", "2 of 3", 2,
                          NOW + timedelta(minutes=5))
    assert later[0].last_transition_time == first[0].last_transition_time
    assert (later[0].message, later[0].observed_generation) == ("2 of 3", 2)


def test_status_change_moves_the_transition_time_and_keeps_others():
    start = set_condition(set_condition([], "Ready", "False", "Building", "", 1, NOW),
                          "Degraded", "False", "Healthy", "", 1, NOW)
    later = NOW + timedelta(minutes=5)
    changed = set_condition(start, "Ready", "True", "Reconciled", "", 1, later)
    assert changed[0].last_transition_time == later.replace(microsecond=0)
    assert changed[1] == start[1]
    assert start[0].status == "False"  # input untouched


def test_condition_has_the_metav1_shape():
    condition = set_condition([], "Ready", "Unknown", "Starting", "x" * (MAX_MESSAGE + 10), None,
                              NOW)[0]
    assert len(condition.message) == MAX_MESSAGE
    dumped = condition.model_dump(mode="json", exclude_none=True)
    assert set(dumped) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert dumped["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    with pytest.raises(ValidationError):
        Condition(type="Ready", status="Yes", reason="R", message="",
                  last_transition_time=NOW)
    with pytest.raises(ValidationError):
        Condition(type="Ready", status="True", reason="not camel case", message="",
                  last_transition_time=NOW)


# ---------------------------------------------------------------------------------- examples

def _documents(name: str) -> list[dict]:
    return list(yaml.safe_load_all((EXAMPLES / name).read_text()))


ALL_EXAMPLES = ["profile-minimal.yaml", "profile-seed.yaml", "profile-indexes.yaml",
                "tenant-small.yaml", "tenant-large.yaml", "tenant-overrides.yaml"]


def test_the_examples_are_there():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(ALL_EXAMPLES)


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_example_parses_with_the_models(name):
    text = (EXAMPLES / name).read_text()
    assert text.startswith("#"), "comment header first"
    for doc in _documents(name):
        assert "namespace" not in doc["metadata"]
        model = {"PerformanceProfile": PerformanceProfileSpec,
                 "TenantQuota": TenantQuotaSpec}[doc["kind"]]
        spec = model.model_validate(doc["spec"])
        if isinstance(spec, PerformanceProfileSpec):
            # Every example connects the same way; profile-indexes.yaml manages the database only.
            assert spec.database.connection.secret_ref.name == "pg-credentials"
            assert spec.database.connection.host == "127.0.0.1"
            assert spec.database.connection.port == 5432
            if spec.redis is not None:
                assert spec.redis.connection.secret_ref.name == "redis-credentials"
                assert spec.redis.connection.host == "127.0.0.1"
                assert spec.redis.connection.port == 6379


@pytest.mark.parametrize("name", ["tenant-small.yaml", "tenant-large.yaml",
                                  "tenant-overrides.yaml"])
def test_tenant_examples_carry_the_minimal_profile(name):
    docs = _documents(name)
    assert docs[0] == _documents("profile-minimal.yaml")[0]
    profiles = {d["metadata"]["name"] for d in docs if d["kind"] == "PerformanceProfile"}
    assert all(d["spec"]["profileRef"]["name"] in profiles
               for d in docs if d["kind"] == "TenantQuota")


def test_seed_example_spells_out_every_section():
    spec = _documents("profile-seed.yaml")[0]["spec"]
    # all but targetRef, which excludes the connections the seed example writes out
    # (examples/profile-target.yaml uses it)
    assert set(spec) == set(PerformanceProfileSpec.model_fields[name].alias or name
                            for name in PerformanceProfileSpec.model_fields) - {"targetRef"}
    parsed = PerformanceProfileSpec.model_validate(spec)
    assert parsed.alerts.thresholds == PerformanceProfileSpec().alerts.thresholds
    assert parsed.database.settings.parameters == SEED_POSTGRES_PARAMETERS
    assert parsed.targets == PerformanceProfileSpec().targets


def test_a_tenants_websocket_connections_are_its_own_or_the_default_capped_at_the_pool():
    """One rule for effective_limits and the profile's tenant summary."""
    from perf_operator.api.profile import WebsocketSpec
    from perf_operator.api.tenant import websocket_connections

    pool = WebsocketSpec.model_validate({"maxConnections": 500, "perTenantDefault": 100})
    assert websocket_connections(pool, None) == 100
    assert websocket_connections(pool, 300) == 300
    assert websocket_connections(pool, 900) == 500
    assert websocket_connections(pool, 0) == 0
