"""The CRDs against the real API server: invalid objects are refused with a message naming the
field, every example is accepted, defaults and status round-trip, and `kubectl explain`
teaches the user."""
from __future__ import annotations

import copy
import json
import pathlib
import re
from datetime import datetime, UTC
from typing import Any

import pytest
import yaml

from perf_operator.api import (PerformanceProfileSpec, ProfileStatus, TenantQuotaSpec,
                               TenantStatus, set_condition)
from tests.support.kube import eventually

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

PROFILE: dict[str, Any] = {
    "apiVersion": "perf.idp.io/v1alpha1",
    "kind": "PerformanceProfile",
    "metadata": {"name": "subject"},
    "spec": {
        "database": {
            "connection": {"host": "127.0.0.1", "database": "idp",
                           "secretRef": {"name": "pg-credentials"}},
            "indexes": [{"name": "plugins_tenant_idx", "table": "plugins",
                         "columns": [{"column": "tenant_id"}, {"column": "updated_at"}]}],
        },
        "redis": {"connection": {"host": "127.0.0.1",
                                 "secretRef": {"name": "redis-credentials"}}},
        "api": {"rateLimits": {"endpoints": [{"pattern": "/api/search", "requests": 100}]}},
        "scaling": {"rules": [{"name": "api", "target": {"name": "api"}, "maxReplicas": 10,
                               "cpuUtilization": 70}]},
    },
}

TENANT: dict[str, Any] = {
    "apiVersion": "perf.idp.io/v1alpha1",
    "kind": "TenantQuota",
    "metadata": {"name": "subject"},
    "spec": {
        "tenantId": "acme",
        "profileRef": {"name": "subject"},
        "rateLimits": [{"pattern": "/api/search", "requests": 50}],
        "cache": {"quotaBytes": 1048576},
    },
}

_STEP = re.compile(r"([^.\[]+)|\[(\d+)\]")
DELETE = object()


def mutated(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``path`` (``spec.a.b[0].c``) set to ``value``, or removed when
    ``value`` is ``DELETE``."""
    doc = copy.deepcopy(base)
    steps = [int(index) if index else key for key, index in _STEP.findall(path)]
    parent = doc
    for step in steps[:-1]:
        parent = parent[step] if isinstance(step, int) else parent.setdefault(step, {})
    if value is DELETE:
        del parent[steps[-1]]
    else:
        parent[steps[-1]] = value
    return doc


INDEX = PROFILE["spec"]["database"]["indexes"][0]
RULE = PROFILE["spec"]["scaling"]["rules"][0]

# (id, base object, path, value, what the error must say: the field first)
INVALID = [
    ("port-not-integer", PROFILE, "spec.database.connection.port", "five",
     ["spec.database.connection.port", "integer"]),
    ("port-out-of-range", PROFILE, "spec.database.connection.port", 70000,
     ["spec.database.connection.port", "65535"]),
    ("ssl-mode-unknown", PROFILE, "spec.database.connection.sslMode", "always",
     ["spec.database.connection.sslMode", "Unsupported value"]),
    ("postgres-secret-namespace", PROFILE, "spec.database.connection.secretRef.namespace",
     "other", ['unknown field "spec.database.connection.secretRef.namespace"']),
    ("redis-secret-namespace", PROFILE, "spec.redis.connection.secretRef.namespace", "other",
     ['unknown field "spec.redis.connection.secretRef.namespace"']),
    ("unknown-spec-field", PROFILE, "spec.databse", {}, ['unknown field "spec.databse"']),
    ("index-name-not-identifier", PROFILE, "spec.database.indexes[0].name", "Plugins-Idx",
     ["spec.database.indexes[0].name", "should match"]),
    ("index-name-too-long", PROFILE, "spec.database.indexes[0].name", "i" * 64,
     ["spec.database.indexes[0].name"]),
    ("index-table-qualified", PROFILE, "spec.database.indexes[0].table", "public.plugins",
     ["spec.database.indexes[0].table", "should match"]),
    ("index-names-duplicate", PROFILE, "spec.database.indexes", [INDEX, {**INDEX, "table": "x"}],
     ["spec.database.indexes[1]", "Duplicate value"]),
    ("index-column-and-expression", PROFILE, "spec.database.indexes[0].columns[0]",
     {"column": "email", "expression": "lower(email)"},
     ["spec.database.indexes[0].columns[0]", "exactly one of column or expression"]),
    ("index-column-nor-expression", PROFILE, "spec.database.indexes[0].columns[0]",
     {"order": "Desc"}, ["spec.database.indexes[0].columns[0]", "exactly one of"]),
    ("index-hash-two-columns", PROFILE, "spec.database.indexes[0].method", "hash",
     ["spec.database.indexes[0].columns", "hash index has exactly one column"]),
    ("index-unique-gin", PROFILE, "spec.database.indexes[0]",
     {**INDEX, "method": "gin", "unique": True},
     ["spec.database.indexes[0].unique", "only btree indexes can be unique"]),
    ("index-order-on-brin", PROFILE, "spec.database.indexes[0]",
     {**INDEX, "method": "brin", "columns": [{"column": "created_at", "order": "Desc"}]},
     ["spec.database.indexes[0].columns", "btree indexes only"]),
    ("index-no-columns", PROFILE, "spec.database.indexes[0].columns", [],
     ["spec.database.indexes[0].columns", "at least 1 item"]),
    ("pool-min-above-max", PROFILE, "spec.database.pool", {"min": 50, "max": 10},
     ["spec.database.pool.min", "min must not exceed max"]),
    ("concurrent-builds-above-8", PROFILE, "spec.database.maxConcurrentBuilds", 9,
     ["spec.database.maxConcurrentBuilds", "less than or equal to 8"]),
    ("postgres-parameter-key", PROFILE, "spec.database.settings.parameters",
     {"Max-Connections": "10"}, ["spec.database.settings.parameters", "keys must match"]),
    ("postgres-parameter-not-string", PROFILE, "spec.database.settings.parameters",
     {"max_connections": 200},
     ["spec.database.settings.parameters.max_connections", "string"]),
    ("settings-scope-unknown", PROFILE, "spec.database.settings.scope", "Cluster",
     ["spec.database.settings.scope", "Unsupported value"]),
    ("redis-setting-dir", PROFILE, "spec.redis.settings", {"dir": "/tmp"},
     ["spec.redis.settings", "keys must be one of"]),
    ("redis-setting-requirepass", PROFILE, "spec.redis.settings",
     {"timeout": "300", "requirepass": "x"}, ["spec.redis.settings", "keys must be one of"]),
    ("redis-maxmemory-policy", PROFILE, "spec.redis.settings", {"maxmemory-policy": "lru"},
     ["spec.redis.settings", "maxmemory-policy must be one of"]),
    ("redis-key-prefix-no-colon", PROFILE, "spec.redis.keyPrefix", "saas-idp",
     ["spec.redis.keyPrefix", "should match"]),
    ("redis-db-above-15", PROFILE, "spec.redis.connection.db", 16,
     ["spec.redis.connection.db"]),
    ("latency-warning-above-critical", PROFILE, "spec.alerts.thresholds.apiResponseTimeMs",
     {"warning": 6000, "critical": 5000},
     ["spec.alerts.thresholds.apiResponseTimeMs.warning", "warning must be below critical"]),
    ("error-rate-warning-above-critical", PROFILE, "spec.alerts.thresholds.errorRate",
     {"warning": 0.2, "critical": 0.1},
     ["spec.alerts.thresholds.errorRate.warning", "warning must be below critical"]),
    ("error-rate-above-one", PROFILE, "spec.alerts.thresholds.errorRate",
     {"warning": 0.5, "critical": 1.5},
     ["spec.alerts.thresholds.errorRate.critical", "between 0 and 1"]),
    ("cache-hit-rate-warning-below-critical", PROFILE, "spec.alerts.thresholds.cacheHitRate",
     {"warning": 0.5, "critical": 0.6},
     ["spec.alerts.thresholds.cacheHitRate.warning", "warning must be above critical"]),
    ("threshold-for-not-duration", PROFILE, "spec.alerts.thresholds.dbQueryTimeMs",
     {"warning": 500, "critical": 2000, "for": "5 minutes"},
     ["spec.alerts.thresholds.dbQueryTimeMs.for", "should match"]),
    ("threshold-half-given", PROFILE, "spec.alerts.thresholds.poolUtilization",
     {"warning": 0.5}, ["spec.alerts.thresholds.poolUtilization.critical", "Required value"]),
    ("threshold-negative", PROFILE, "spec.alerts.thresholds.websocketConnections",
     {"warning": -1, "critical": 9500},
     ["spec.alerts.thresholds.websocketConnections.warning", "greater than or equal to 0"]),
    ("replicas-min-above-max", PROFILE, "spec.scaling.rules[0].minReplicas", 20,
     ["spec.scaling.rules[0].minReplicas", "minReplicas must not exceed maxReplicas"]),
    ("scaling-without-metric", PROFILE, "spec.scaling.rules[0].cpuUtilization", DELETE,
     ["spec.scaling.rules[0]", "at least one of cpuUtilization"]),
    ("scaling-same-workload", PROFILE, "spec.scaling.rules", [RULE, {**RULE, "name": "api2"}],
     ["spec.scaling.rules", "two rules scale the same workload"]),
    ("scaling-rule-name", PROFILE, "spec.scaling.rules[0].name", "API_rule",
     ["spec.scaling.rules[0].name", "should match"]),
    ("websocket-tenant-above-pool", PROFILE, "spec.websocket.perTenantDefault", 20000,
     ["spec.websocket.perTenantDefault", "must not exceed maxConnections"]),
    ("burst-negative", PROFILE, "spec.api.rateLimits.endpoints[0].burst", -1,
     ["spec.api.rateLimits.endpoints[0].burst", "greater than or equal to 0"]),
    ("requests-zero", PROFILE, "spec.api.rateLimits.default", {"requests": 0},
     ["spec.api.rateLimits.default.requests", "greater than or equal to 1"]),
    ("method-unknown", PROFILE, "spec.api.rateLimits.endpoints[0].methods", ["FETCH"],
     ["spec.api.rateLimits.endpoints[0].methods[0]", "Unsupported value"]),
    ("method-star-with-others", PROFILE, "spec.api.rateLimits.endpoints[0].methods",
     ["*", "GET"], ["spec.api.rateLimits.endpoints[0].methods", "list it alone"]),
    ("endpoint-rules-overlap", PROFILE, "spec.api.rateLimits.endpoints",
     [{"pattern": "/api/search", "requests": 10, "methods": ["GET", "POST"]},
      {"pattern": "/api/search", "requests": 20, "methods": ["POST"]}],
     ["spec.api.rateLimits.endpoints", "same pattern and a method in common"]),
    ("endpoint-rule-shadowed", PROFILE, "spec.api.rateLimits.endpoints",
     [{"pattern": "/**", "requests": 1000}, {"pattern": "/api/search", "requests": 20}],
     ["spec.api.rateLimits.endpoints", "RuleShadowed: a rule <prefix>/** is listed before"]),
    ("endpoint-rule-shadowed-by-prefix", PROFILE, "spec.api.rateLimits.endpoints",
     [{"pattern": "/api/**", "requests": 1000, "methods": ["GET", "POST"]},
      {"pattern": "/api", "requests": 20, "methods": ["GET"]}],
     ["spec.api.rateLimits.endpoints", "RuleShadowed"]),
    ("tenant-rule-shadowed", TENANT, "spec.rateLimits",
     [{"pattern": "/**", "requests": 60000}, {"pattern": "/api/search", "requests": 3000,
                                               "methods": ["GET"]}],
     ["spec.rateLimits", "RuleShadowed: a rule <prefix>/** is listed before"]),
    ("endpoint-pattern-relative", PROFILE, "spec.api.rateLimits.endpoints[0].pattern",
     "api/search", ["spec.api.rateLimits.endpoints[0].pattern", "should match"]),
    ("cache-ttl-zero", PROFILE, "spec.cache.ttlSeconds", {"sessions": 0},
     ["spec.cache.ttlSeconds.sessions", "greater than or equal to 1"]),
    ("auto-without-prometheus", PROFILE, "spec.optimization.mode", "Auto",
     ["spec.optimization.mode", "Auto optimization needs prometheus"]),
    ("signal-override-unknown", PROFILE, "spec.optimization.signals", {"latency": "up"},
     ["spec.optimization.signals", "keys must be one of"]),
    ("memory-pressure-not-rising", PROFILE, "spec.optimization.memoryPressure",
     {"cacheCleanup": 0.95, "connectionPruning": 0.9, "emergency": 0.97},
     ["spec.optimization.memoryPressure", "levels must rise"]),
    ("prometheus-url-no-scheme", PROFILE, "spec.prometheus", {"url": "prometheus:9090"},
     ["spec.prometheus.url", "should match"]),
    ("prometheus-secret-two-schemes", PROFILE, "spec.prometheus",
     {"url": "http://127.0.0.1:9090",
      "secretRef": {"name": "prom", "tokenKey": "token", "usernameKey": "user",
                    "passwordKey": "password"}},
     ["spec.prometheus.secretRef", "either tokenKey, or usernameKey and passwordKey"]),
    ("tenant-id-not-dns-label", TENANT, "spec.tenantId", "Tenant_1",
     ["spec.tenantId", "should match"]),
    ("tenant-id-too-long", TENANT, "spec.tenantId", "t" * 64, ["spec.tenantId"]),
    ("tenant-without-profile", TENANT, "spec.profileRef", DELETE,
     ["spec.profileRef", "Required value"]),
    ("tenant-tier-unknown", TENANT, "spec.tier", "Gold", ["spec.tier", "Unsupported value"]),
    ("tenant-burst-negative", TENANT, "spec.rateLimits[0].burst", -5,
     ["spec.rateLimits[0].burst", "greater than or equal to 0"]),
    ("tenant-ttl-zero", TENANT, "spec.cache.ttlSeconds", {"searchResults": 0},
     ["spec.cache.ttlSeconds.searchResults", "greater than or equal to 1"]),
    ("tenant-websocket-negative", TENANT, "spec.websocket", {"maxConnections": -1},
     ["spec.websocket.maxConnections", "greater than or equal to 0"]),
    ("tenant-profile-namespace", TENANT, "spec.profileRef.namespace", "other",
     ['unknown field "spec.profileRef.namespace"']),
]


def test_subjects_are_valid(crds, namespace):
    """The objects the table mutates are accepted as they are: every refusal below is the
    mutation's doing."""
    for doc in (PROFILE, TENANT):
        crds.apply(json.dumps(doc), namespace)


@pytest.mark.parametrize(("base", "path", "value", "expected"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_object_is_refused(crds, namespace, base, path, value, expected):
    result = crds.apply(json.dumps(mutated(base, path, value)), namespace, check=False)
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    for fragment in expected:
        assert fragment in result.stderr, result.stderr
    assert crds.get(base["kind"], "subject", namespace) is None


def test_table_has_enough_cases():
    assert len(INVALID) >= 25


def test_tenant_id_is_immutable(crds, namespace):
    crds.apply(json.dumps(TENANT), namespace)
    result = crds.apply(json.dumps(mutated(TENANT, "spec.tenantId", "globex")), namespace,
                        check=False)
    assert result.returncode != 0
    assert "spec.tenantId" in result.stderr and "immutable" in result.stderr, result.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_is_accepted(crds, namespace, example):
    path = EXAMPLES / example
    crds.run("apply", "-f", str(path), namespace=namespace)
    for doc in yaml.safe_load_all(path.read_text()):
        assert crds.get(doc["kind"], doc["metadata"]["name"], namespace) is not None


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


@pytest.mark.parametrize("subject", [PROFILE, TENANT], ids=["profile", "tenant"])
def test_server_defaults_are_the_models_defaults(crds, namespace, subject):
    """The API server's defaulting (from the CRD) and pydantic's (from the model) agree: the
    seed's defaults are written once and applied the same way on both sides."""
    crds.apply(json.dumps(subject), namespace)
    stored = crds.get(subject["kind"], "subject", namespace)["spec"]
    model = PerformanceProfileSpec if subject is PROFILE else TenantQuotaSpec
    expected = model.model_validate(subject["spec"]).model_dump(mode="json", exclude_none=True)
    assert _without_empty(stored) == _without_empty(expected)
    assert model.model_validate(stored) == model.model_validate(subject["spec"])


def test_explain_teaches_indexes(crds):
    def explained() -> str | None:
        result = crds.run("explain", "performanceprofile.spec.database.indexes", check=False)
        return result.stdout if result.returncode == 0 else None

    text = eventually(explained, timeout=60, what="kubectl explain")
    flat = " ".join(text.split())
    assert "CREATE INDEX CONCURRENTLY" in flat
    for field in ("adopt", "columns", "include", "method", "unique", "where"):
        assert re.search(rf"^\s+{field}\s+<", text, re.M), text


@pytest.mark.isolated  # the session operator, when running, would write this status too
def test_status_round_trips_with_kopf_bookkeeping(crds, namespace):
    """A status built with the models is stored as written (the schema keeps every field),
    kopf's own bookkeeping survives under status.kopf, and the printer columns read it."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = ProfileStatus.model_validate({
        "observedGeneration": 1,
        "conditions": [c.model_dump(mode="json") for c in set_condition(
            [], "Ready", "True", "Reconciled", "all good", 1, now)],
        "database": {"readyIndexes": 1,
                     "indexes": [{"name": "plugins_tenant_idx", "phase": "Ready",
                                  "sizeBytes": 8192, "scans": 3, "definitionHash": "abc"}],
                     "settings": [{"name": "work_mem", "desired": "4MB", "actual": "4MB",
                                   "state": "Applied"}],
                     "building": "plugins_tenant_idx 42%"},
        "redis": {"settings": [{"name": "timeout", "desired": "300", "state": "Drifted",
                                "actual": "0", "message": "changed outside"}]},
        "tenants": {"count": 2, "websocketCommitted": 2000},
        "scaling": {"rules": [{"name": "api", "state": "Applied"}]},
        "alerts": {"kind": "ConfigMap", "name": "subject-alerts"},
        "appConfig": {"name": "platform-config", "hash": "0123"},
        "optimization": {
            "mode": "Auto", "lastEvaluatedAt": now,
            "signals": {"apiResponseTimeP95Ms": {"value": 87.5, "target": 200,
                                                 "observedAt": now},
                        "errorRate": {"value": 0.01, "target": 0.05, "observedAt": now},
                        "cacheHitRate": {"value": 0.93, "target": 0.85, "observedAt": now},
                        # stale: no value at all, never 0
                        "dbQueryTimeMs": {"target": 500, "stale": True, "reason": "NoData",
                                          "observedAt": now}},
            "enforced": {"adjustments": {"hpaFloors": [{"rule": "api", "minReplicas": 4}],
                                         "loadShedding": 0.1,
                                         "indexes": [{"name": "perfop_plugins_status_idx",
                                                      "table": "plugins",
                                                      "columns": ["status"]}]},
                         "actions": [{"action": "ScalingFloor", "lastChangeAt": now,
                                      "causes": ["apiResponseTimeP95Ms"]}],
                         "changes": [now]},
            "healthy": [{"signal": "errorRate", "since": now}],
            "history": [{"at": now, "action": "ScalingFloor", "direction": "Apply",
                         "cause": "Breach", "signal": "apiResponseTimeP95Ms", "value": 912.5,
                         "threshold": 200, "change": "minReplicas api declared->4",
                         "applied": True},
                        {"at": now, "action": "CircuitBreaker", "direction": "Revert",
                         "cause": "ModeOff", "change": "circuit breaker off",
                         "applied": True}],
            "recommendations": [{"name": "perfop_plugins_status_idx", "table": "plugins",
                                 "columns": ["status"], "costBefore": 1000.5,
                                 "costAfter": 10.25, "saving": 0.99, "calls": 12,
                                 "totalTimeMs": 3.5, "query": "SELECT * FROM plugins WHERE "
                                                              "status = $1", "since": now}],
        },
    })
    body = {**status.model_dump(mode="json", exclude_none=True),
            "kopf": {"progress": {"reconcile": {"retries": 1}}}}
    crds.apply(json.dumps(PROFILE), namespace)
    crds.run("patch", "performanceprofile", "subject", "--subresource=status", "--type=merge",
             "-p", json.dumps({"status": body}), namespace=namespace)
    stored = crds.get("performanceprofile", "subject", namespace)["status"]
    assert stored["kopf"] == body["kopf"]
    assert ProfileStatus.model_validate(stored) == status

    wide = crds.run("get", "pp", "subject", "-o", "wide", namespace=namespace).stdout
    header, row = wide.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "REASON", "INDEXES", "BUILDING", "TENANTS",
                              "LATENCY", "ERRORRATE", "CACHEHITRATE", "MESSAGE", "AGE"]
    assert row.split()[:10] == ["subject", "True", "Reconciled", "1", "plugins_tenant_idx",
                                "42%", "2", "87.5", "0.01", "0.93"]


@pytest.mark.isolated  # the session operator, when running, would write this status too
def test_tenant_status_round_trips(crds, namespace):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = TenantStatus.model_validate({
        "observedGeneration": 1,
        "conditions": [c.model_dump(mode="json") for c in set_condition(
            [], "Ready", "False", "ProfileNotFound", "no profile subject", 1, now)],
        "table": {"version": 3, "writtenAt": now, "hash": "f00"},
        "cache": {"keys": 42, "memoryBytes": 4096, "sampled": False, "quotaBytes": 1048576},
    })
    crds.apply(json.dumps(TENANT), namespace)
    crds.run("patch", "tenantquota", "subject", "--subresource=status", "--type=merge",
             "-p", json.dumps({"status": status.model_dump(mode="json", exclude_none=True)}),
             namespace=namespace)
    assert TenantStatus.model_validate(
        crds.get("tenantquota", "subject", namespace)["status"]) == status
    header, row = crds.run("get", "tq", "subject", namespace=namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "TENANT", "PROFILE", "READY", "REASON", "KEYS", "MEMORY",
                              "AGE"]
    assert row.split()[:7] == ["subject", "acme", "subject", "False", "ProfileNotFound", "42",
                               "4096"]
