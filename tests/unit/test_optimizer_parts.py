"""Pure parts of the optimizer besides the policy: reading a snapshot, the advisor's candidate
indexes, the cache cleanup plan and the adjustments other reconcilers apply."""
from __future__ import annotations

from datetime import datetime, timezone

from perf_operator.api import PerformanceProfileSpec, TenantQuotaSpec, effective_limits
from perf_operator.optimizer.actions import TenantCache, cleaned, plan_cache_cleanup
from perf_operator.optimizer.advisor import (Candidate, Measurement, QueryStat, Table,
                                             candidates, parameter_count, parse_select,
                                             recommend)
from perf_operator.optimizer.signals import SIGNALS, QueryResult, Snapshot, profile_queries
from perf_operator.optimizer.state import Adjustments, HpaFloor, adjustments

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def snapshot(**results):
    return Snapshot(at=NOW, results=results)


def test_a_grouped_result_is_matched_by_namespace_and_profile():
    result = QueryResult(series=(({"namespace": "a", "profile": "web"}, "0.25"),
                                 ({"namespace": "b", "profile": "web"}, "0.75")))
    snap = snapshot(q=result)
    assert snap.reading("q", "b", "web").value == 0.75
    missing = snap.reading("q", "c", "web")
    assert missing.stale and missing.value is None and missing.reason == "NoData"


def test_missing_data_is_stale_never_zero():
    snap = snapshot(empty=QueryResult(), failed=QueryResult(error="ConnectionError: refused"),
                    nan=QueryResult(series=(({"namespace": "a", "profile": "p"}, "NaN"),)))
    for query, reason in (("empty", "NoData"), ("failed", "QueryFailed: ConnectionError"),
                          ("nan", "NotANumber"), ("never", "NotQueried")):
        reading = snap.reading(query, "a", "p")
        assert reading.stale and reading.value is None
        assert reading.reason.startswith(reason)


def test_an_ungrouped_override_belongs_to_the_profile_that_asked():
    snap = snapshot(q=QueryResult(series=(({}, "42"),)))
    assert snap.reading("q", "any", "one").value == 42.0


def test_defaults_are_grouped_and_overrides_replace_them():
    for signal in SIGNALS:
        assert "by (namespace, profile" in signal.query, signal.name
    spec = PerformanceProfileSpec.model_validate({
        "alerts": {"metrics": {"errorRate": "my_errors", "memoryUsage": "alert_memory"}},
        "optimization": {"signals": {"memoryUsage": "optimizer_memory"}}})
    queries = profile_queries(spec)
    assert queries["errorRate"] == "my_errors"
    assert queries["memoryUsage"] == "optimizer_memory"
    assert queries["cacheHitRate"] == next(s.query for s in SIGNALS if s.name == "cacheHitRate")


CATALOG = {
    ("public", "plugins"): Table("public", "plugins", frozenset(
        {"id", "tenant_id", "status", "name", "created_at"}), (("id",), ("name", "status"))),
    ("public", "tenants"): Table("public", "tenants", frozenset({"id", "slug"}), (("id",),)),
}


def found(query):
    return [c.columns for c in candidates(parse_select(query), CATALOG)]


def test_candidates_from_equality_range_and_order():
    assert found("SELECT * FROM plugins WHERE tenant_id = $1 AND status = $2 "
                 "ORDER BY created_at DESC LIMIT $3") == [("tenant_id", "status", "created_at")]
    assert found("SELECT p.id FROM plugins p JOIN tenants t ON t.id = p.tenant_id "
                 "WHERE t.slug = $1 AND p.created_at > $2") == [("tenant_id", "created_at"),
                                                                 ("slug",)]
    assert found("SELECT * FROM plugins WHERE status IN ($1, $2)") == [("status",)]
    assert found("SELECT * FROM plugins WHERE created_at BETWEEN $1 AND $2") == [
        ("created_at",)]


def test_no_candidate_when_served_or_not_indexable():
    assert found("SELECT * FROM plugins WHERE id = $1") == []  # the primary key serves it
    assert found("SELECT * FROM plugins WHERE name = $1") == []  # prefix of (name, status)
    assert found("SELECT * FROM plugins WHERE status = $1 OR tenant_id = $2") == []
    assert found("SELECT * FROM unknown WHERE a = $1") == []
    for statement in ("UPDATE plugins SET name = $1", "SELECT * FROM plugins FOR UPDATE",
                      "WITH d AS (DELETE FROM plugins RETURNING *) SELECT * FROM d",
                      "SELECT 1; SELECT 2", "SELECT * FROM plugins WHERE tenant_id = $1 AND"):
        assert parse_select(statement) is None, statement


def test_parameter_count():
    assert parameter_count(parse_select("SELECT * FROM t WHERE a = $1 AND b = $3 LIMIT $2")) == 3


def test_recommend_above_the_saving_and_prefer_the_longer_index():
    heavy = QueryStat("SELECT heavy", calls=100, total_time_ms=5000.0)
    light = QueryStat("SELECT light", calls=10, total_time_ms=100.0)
    wide = Candidate("public", "plugins", ("tenant_id", "status"))
    narrow = Candidate("public", "plugins", ("tenant_id",))
    useless = Candidate("public", "plugins", ("status",))
    recs = recommend([Measurement(heavy, wide, 1000.0, 10.0),
                      Measurement(light, narrow, 1000.0, 50.0),
                      Measurement(heavy, useless, 1000.0, 900.0)], min_saving=0.3, now=NOW)
    assert [(r.table, r.columns) for r in recs] == [("plugins", ["tenant_id", "status"])]
    assert recs[0].saving == 0.99 and recs[0].cost_before == 1000.0
    assert recs[0].name == "perfop_plugins_tenant_id_status_idx"
    assert len(Candidate("public", "t" * 40, ("c" * 30,)).name) == 63


def test_cleanup_plan_takes_only_over_quota_tenants_largest_excess_first():
    assert plan_cache_cleanup([
        TenantCache("small", memory_bytes=10, keys=1, quota_bytes=100, max_keys=10),
        TenantCache("big", memory_bytes=5000, keys=5, quota_bytes=1000, max_keys=10),
        TenantCache("bigger", memory_bytes=9000, keys=5, quota_bytes=1000, max_keys=10),
        TenantCache("many-keys", memory_bytes=10, keys=50, quota_bytes=100, max_keys=10),
    ]) == ["bigger", "big", "many-keys"]
    assert len(plan_cache_cleanup([TenantCache(f"t{i}", 10, 1, 1, 1) for i in range(50)])) == 20


def test_only_short_lived_caches_are_cleaned():
    assert cleaned("app:{acme}:cache:apiResponses:/api/x", "app:", "acme")
    assert cleaned("app:{acme}:cache:searchResults:q=1", "app:", "acme")
    assert not cleaned("app:{acme}:cache:sessions:abc", "app:", "acme")
    assert not cleaned("app:{acme}:cache:apiResponsesOld:x", "app:", "acme")


def test_adjustments_for_other_reconcilers():
    assert adjustments({}) == Adjustments()
    assert adjustments({"optimization": {"shadow": {"adjustments": {"circuitBreaker": True}}}}
                       ) == Adjustments()  # Recommend mode's shadow is never enforced
    adj = Adjustments(hpa_floors=[HpaFloor(rule="web", min_replicas=5)], load_shedding=0.25)
    status = {"optimization": {"enforced": {"adjustments": adj.model_dump(by_alias=True)}}}
    assert adjustments(status) == adj
    assert adj.min_replicas("web", 2, 4) == 4 and adj.min_replicas("other", 2, 4) == 2
    profile = PerformanceProfileSpec.model_validate({"api": {"rateLimits": {
        "default": {"requests": 100, "burst": 10},
        "endpoints": [{"pattern": "/health", "requests": 50, "critical": True},
                      {"pattern": "/api/search/**", "requests": 40, "burst": 4}]}}})
    tenant = TenantQuotaSpec.model_validate({"tenantId": "acme", "profileRef": {"name": "p"}})
    shed = effective_limits(profile, tenant, adj.load_shedding)
    by_pattern = {rule.pattern: rule for rule in shed.endpoints}
    assert by_pattern["/health"].requests == 50
    assert (by_pattern["/api/search/**"].requests, by_pattern["/api/search/**"].burst) == (30, 3)
    assert (shed.default_limit.requests, shed.default_limit.burst) == (75, 7)
    assert effective_limits(profile, tenant, Adjustments().load_shedding) == effective_limits(
        profile, tenant)
    assert effective_limits(profile, tenant).default_limit.requests == 100


def test_the_status_written_is_stable_once_the_api_server_dropped_its_nulls():
    """Nulls remove fields at the top of the merge patch, but inside a list (replaced whole)
    the API server drops them: the next pass must find nothing to write."""
    from perf_operator.api.optimization import HistoryEntry, OptimizerState
    from perf_operator.status import merge_patch

    state = OptimizerState(mode="Recommend", history=[HistoryEntry(
        at=NOW, action="ScalingFloor", direction="Apply", cause="Breach",
        change="minReplicas web declared->4", applied=False)])
    written = state.to_status()
    assert written["optimization"]["shadow"] is None  # removes a shadow written before
    assert "signal" not in written["optimization"]["history"][0]

    def stored(value):
        if isinstance(value, dict):
            return {k: stored(v) for k, v in value.items() if v is not None}
        return [stored(v) for v in value] if isinstance(value, list) else value

    assert merge_patch(stored(written), written) == {}
