"""The optimizer against the real stack: the application's metrics come from a test exporter
scraped by the real Prometheus, the actions land in the real Redis, and TenantQuotas live in
the real API server."""
from __future__ import annotations


import pytest

from perf_operator.optimizer.signals import SIGNALS, PrometheusEndpoint, poller_for
from perf_operator.ratelimit import check
from perf_operator.tenants.tables import reconcile_tenant
from tests.e2e.optimizer_support import (  # noqa: F401 - fixtures
    Profile, exporter, hold, operator_test_mode, optimized_profile, until)
from tests.support.contexts import tenant_context
from tests.support.kube import perf_object


def redis_section(stack, credentials, prefix):
    return {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                           "secretRef": {"name": credentials["redis"]}},
            "keyPrefix": prefix}


#: Steady traffic flows: (requests per second, seconds each, status). The signals are rates
#: over 5-minute windows, so an incident's share of the window grows while it lasts; its flow
#: is a thousand times the normal traffic so that the signal jumps to its level within a
#: second and stays there (a signal still creeping up would rightly count as made worse by the
#: first action). The recovery flood outweighs, within seconds, what the window still holds.
FAST = (20, 0.02, "200")
SLOW = (20_000, 2.0, "200")
FAILING = (20_000, 0.02, "503")
FLOOD = (2_000_000, 0.02, "200")


def floor(profile: Profile) -> int:
    return profile.enforced.min_replicas("web", 2, 6)


async def test_latency_breach_raises_the_hpa_floor_and_recovery_lowers_it(
        stack, namespace, exporter):
    web = Profile(namespace, "web", optimized_profile(stack))
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", FAST)
    await until([web], lambda: (web.signal("apiResponseTimeP95Ms").get("value") or 1e9) < 200,
                what="fresh, healthy latency")
    assert web.outcomes["MetricsStale"].condition_status == "False"
    assert web.signal("apiResponseTimeP95Ms")["target"] == 200
    assert web.history() == []

    exporter.traffic(namespace, "web", FAST, SLOW)  # most requests now take 2 s
    await until([web], lambda: floor(web) == 6, what="the floor raised to maxReplicas")
    applied = [h for h in web.state.history if h.direction == "Apply"]
    assert [(h.action, h.cause, h.signal) for h in applied] == [
        ("ScalingFloor", "Breach", "apiResponseTimeP95Ms")] * 2  # 2 -> 4 -> 6, step 2
    assert applied[0].value > 200 and applied[0].threshold == 200
    assert applied[0].change == "minReplicas web declared->4"
    assert web.outcomes["Optimizing"].message.startswith("Auto: in force: minReplicas web=6")

    exporter.traffic(namespace, "web", FLOOD)
    await until([web], lambda: web.enforced.neutral, what="the floor back to the rule's own")
    reverts = [h for h in web.state.history if h.direction == "Revert"]
    assert [(h.action, h.cause) for h in reverts] == [("ScalingFloor", "Healthy")] * 2
    assert reverts[0].value < 200
    assert ("Normal", "OptimizerApplied") in {e[:2] for e in web.events.events}
    assert ("Normal", "OptimizerReverted") in {e[:2] for e in web.events.events}
    assert len(web.events.events) == len(web.state.history) == 4


def tenant_manifest(name: str, profile: str, quota: int) -> str:
    return perf_object("TenantQuota", name, {
        "tenantId": name, "profileRef": {"name": profile},
        "cache": {"quotaBytes": quota, "maxKeys": 100000}})


async def seed_cache(redis, prefix, tenant, data_type, keys, size=200):
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(keys):
            pipe.set(f"{prefix}{{{tenant}}}:cache:{data_type}:{i}", "x" * size)
        await pipe.execute()


async def count(redis, prefix, tenant, data_type="*"):
    return len([k async for k in redis.scan_iter(f"{prefix}{{{tenant}}}:cache:{data_type}",
                                                 count=1000)])


async def test_memory_pressure_cleans_the_caches_of_over_quota_tenants_only(
        stack, crds, kubectl, namespace, credentials, redis, redis_prefix, exporter):
    for name, profile, quota in (("big", "web", 20_000), ("bigger", "web", 20_000),
                                 ("small", "web", 1 << 26), ("elsewhere", "other", 1000)):
        kubectl.apply(tenant_manifest(name, profile, quota), namespace)
    await seed_cache(redis, redis_prefix, "big", "apiResponses", 300)
    await seed_cache(redis, redis_prefix, "big", "searchResults", 100)
    await seed_cache(redis, redis_prefix, "big", "sessions", 50)
    await seed_cache(redis, redis_prefix, "bigger", "apiResponses", 600)
    await seed_cache(redis, redis_prefix, "small", "apiResponses", 20)
    await seed_cache(redis, redis_prefix, "elsewhere", "apiResponses", 300)
    await redis.hset(f"{redis_prefix}{{big}}:limits", mapping={"version": "1"})

    spec = optimized_profile(stack, redis=redis_section(stack, credentials, redis_prefix))
    web = Profile(namespace, "web", spec)
    exporter.traffic(namespace, "web", FAST)
    exporter.memory(namespace, "web", 0.87)
    await until([web], lambda: "CacheCleanup" in [a for a, _, _ in web.history()],
                what="a cache cleanup")
    cleanup = next(h for h in web.state.history if h.action == "CacheCleanup")
    assert cleanup.signal == "memoryUsage" and cleanup.value == pytest.approx(0.87)
    assert cleanup.threshold == 0.85 and cleanup.applied
    assert cleanup.result.startswith("unlinked 1000 keys of 2 over-quota tenants (bigger: 600, "
                                     "big: 400)"), cleanup.result
    assert await count(redis, redis_prefix, "big", "apiResponses:*") == 0
    assert await count(redis, redis_prefix, "big", "searchResults:*") == 0
    assert await count(redis, redis_prefix, "bigger") == 0
    # what is not the over-quota tenants' short-lived cache stays
    assert await count(redis, redis_prefix, "big", "sessions:*") == 50
    assert await count(redis, redis_prefix, "small") == 20
    assert await count(redis, redis_prefix, "elsewhere") == 300
    assert await redis.hgetall(f"{redis_prefix}{{big}}:limits") == {"version": "1"}
    # 87 % is below the emergency level: no scaling, and pruning is not configured
    assert {a for a, _, _ in web.history()} == {"CacheCleanup"}


async def allowed_until_denied(redis, prefix, path):
    for allowed in range(100):
        if not (await check(redis, prefix, "acme", path, "GET")).allowed:
            return allowed
    raise AssertionError("never denied")


async def test_error_spike_sheds_non_critical_load_then_recovers(
        stack, namespace, credentials, redis, redis_prefix, exporter):
    spec = optimized_profile(
        stack, redis=redis_section(stack, credentials, redis_prefix),
        maxStep={"loadShedding": 0.25}, bounds={"maxLoadSheddingFactor": 0.5})
    spec["api"] = {"rateLimits": {"endpoints": [
        {"pattern": "/api/plugins/**", "requests": 8, "windowSeconds": 600},
        {"pattern": "/health", "requests": 8, "windowSeconds": 600, "critical": True}]}}
    web = Profile(namespace, "web", spec)
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", FAST)
    await until([web], lambda: web.signal("errorRate").get("value") == 0.0,
                what="a fresh error rate of 0")

    exporter.traffic(namespace, "web", FAST, FAILING)  # most requests fail
    await until([web], lambda: web.enforced.load_shedding == 0.5, what="shedding at its bound")
    assert web.enforced.circuit_breaker
    assert web.history()[:3] == [("CircuitBreaker", "Apply", "Breach"),
                                 ("LoadShedding", "Apply", "Breach"),
                                 ("LoadShedding", "Apply", "Breach")]
    breaker = web.state.history[0]
    assert breaker.value > 0.1 and breaker.threshold == 0.1

    # The tenant's table as the tenant reconciler writes it with the profile's shedding, read
    # back by the reference limiter: the non-critical endpoint denies at half its budget.
    outcome = await reconcile_tenant(tenant_context(namespace, spec, profile_name="web",
                                                    profile_status=web.status))
    assert outcome.ready, outcome.message
    assert await allowed_until_denied(redis, redis_prefix, "/api/plugins/x") == 4
    assert await allowed_until_denied(redis, redis_prefix, "/health") == 8

    exporter.traffic(namespace, "web", FLOOD)
    await until([web], lambda: web.enforced.neutral, what="shedding and breaker undone")
    assert web.history()[3:] == [("CircuitBreaker", "Revert", "Healthy"),
                                 ("LoadShedding", "Revert", "Healthy"),
                                 ("LoadShedding", "Revert", "Healthy")] or sorted(
        web.history()[3:]) == sorted([("CircuitBreaker", "Revert", "Healthy"),
                                      ("LoadShedding", "Revert", "Healthy"),
                                      ("LoadShedding", "Revert", "Healthy")])
    outcome = await reconcile_tenant(tenant_context(namespace, spec, profile_name="web",
                                                    profile_status=web.status))
    assert outcome.ready, outcome.message
    assert await allowed_until_denied(redis, redis_prefix, "/api/plugins/x") == 8


async def test_prometheus_stopped_sets_metrics_stale_and_freezes_everything(
        stack, namespace, exporter):
    web = Profile(namespace, "web", optimized_profile(stack, healthyWindowSeconds=8))
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", SLOW)
    await until([web], lambda: floor(web) > 2, what="a raised floor")
    exporter.traffic(namespace, "web", FLOOD)  # healthy again from here
    history, raised = web.history(), floor(web)
    stack.prometheus.stop()
    try:
        await until([web], lambda: web.outcomes["MetricsStale"].condition_status == "True",
                    what="MetricsStale")
        stale = web.outcomes["MetricsStale"]
        assert stale.reason == "SignalsStale" and not stale.ready
        for signal in ("apiResponseTimeP95Ms", "errorRate", "memoryUsage"):
            assert f"{signal} (QueryFailed: " in stale.message
        assert web.signal("memoryUsage").get("value") is None  # missing, never 0
        assert web.signal("memoryUsage")["stale"] is True
        # longer than the healthy window: nothing is undone, nothing new is done
        await hold([web], 12)
        assert web.history() == history and floor(web) == raised
    finally:
        stack.prometheus.start()
    await until([web], lambda: web.outcomes["MetricsStale"].condition_status == "False",
                what="fresh signals after the restart", timeout=90)
    await until([web], lambda: web.enforced.neutral, what="the floor undone once healthy")


async def test_recommend_mode_records_the_same_decisions_and_changes_nothing(
        stack, crds, kubectl, namespace, credentials, redis, redis_prefix, exporter):
    profiles = []
    for mode, name in (("Auto", "auto"), ("Recommend", "shadow")):
        kubectl.apply(tenant_manifest(f"{name}-tenant", name, 1000), namespace)
        await seed_cache(redis, redis_prefix, f"{name}-tenant", "apiResponses", 100)
        profiles.append(Profile(namespace, name, optimized_profile(
            stack, mode=mode, redis=redis_section(stack, credentials, redis_prefix))))
        exporter.memory(namespace, name, 0.5)
        exporter.traffic(namespace, name, FAST)
    auto, shadow = profiles
    await until(profiles, lambda: all(p.signal("errorRate").get("value") == 0.0
                                      for p in profiles), what="fresh signals")
    endpoint = PrometheusEndpoint(stack.prometheus.url, 5)
    assert poller_for(endpoint).last_query_count == len(SIGNALS)  # two profiles, one query each

    for p in profiles:
        exporter.traffic(namespace, p.name, FAST, (20_000, 2.0, "503"))
        exporter.memory(namespace, p.name, 0.87)
    done = {"CacheCleanup", "ScalingFloor", "LoadShedding", "CircuitBreaker"}
    await until(profiles, lambda: all(done <= {a for a, _, _ in p.history()} and
                                      floor_of(p) == 6 for p in profiles),
                what="every action taken (or recorded)", timeout=90)
    for p in profiles:
        exporter.traffic(namespace, p.name, FLOOD)
        exporter.memory(namespace, p.name, 0.5)
    await until(profiles, lambda: auto.enforced.neutral and shadow.state.shadow is not None
                and shadow.state.shadow.adjustments.neutral, what="both back to neutral",
                timeout=90)

    assert shadow.history() == auto.history()
    assert all(h.applied for h in auto.state.history)
    assert not any(h.applied for h in shadow.state.history)
    assert shadow.enforced.neutral  # nothing was ever in force for the shadow profile
    assert {e[1] for e in shadow.events.events} == {"OptimizerRecommended"}
    assert await count(redis, redis_prefix, "auto-tenant") == 0
    assert await count(redis, redis_prefix, "shadow-tenant") == 100
    assert shadow.outcomes["Optimizing"].reason == "Recommend"


def floor_of(profile: Profile) -> int:
    track = profile.state.shadow if profile.state.mode == "Recommend" else profile.state.enforced
    return (track.adjustments if track else profile.enforced).min_replicas("web", 2, 6)
