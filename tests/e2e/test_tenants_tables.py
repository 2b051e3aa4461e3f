"""Tenant tables on a real Redis, PostgreSQL and control plane: what the operator writes is what
the reference limiter enforces; tenants stay apart; a Redis that lost its data gets every table
back without a spec change; deleting a TenantQuota removes its tables and nothing else."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from perf_operator.handlers.deferred import STUCK_AFTER_ATTEMPTS
from perf_operator.ratelimit import check
from perf_operator.ratelimit.layout import cache_prefix, record_key
from perf_operator.tenants import usage as usage_module
from perf_operator.tenants.cleanup import remove_tenant
from perf_operator.tenants.tables import reconcile_tenant
from tests.support.contexts import tenant_context
from tests.support.kube import condition, eventually
from tests.support.metrics import scrape, total
from tests.support.rbac import OPERATOR_NAMESPACE


def profile_spec(stack, credentials, prefix: str, database: dict | None = None,
                 endpoints: list[dict] | None = None) -> dict:
    spec: dict = {
        "redis": {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                                 "secretRef": {"name": credentials["redis"]}},
                  "keyPrefix": prefix},
        "api": {"rateLimits": {"endpoints": endpoints or [
            {"pattern": "/api/plugins/**", "methods": ["GET"], "requests": 4,
             "windowSeconds": 60}]}},
    }
    if database:
        spec["database"] = {"connection": {"host": database["host"], "port": database["port"],
                                           "database": database["database"],
                                           "secretRef": {"name": credentials["postgres"]}},
                            "settings": {"scope": "Database", "parameters": {}}}
    return spec


async def drain(redis, prefix, tenant, path, method="GET", limit=1000):
    allowed = 0
    for _ in range(limit):
        decision = await check(redis, prefix, tenant, path, method)
        if not decision.allowed:
            return allowed, decision
        allowed += 1
    raise AssertionError(f"no denial after {limit} checks")


async def test_table_written_mirrored_and_enforced_then_changed(
        stack, credentials, namespace, pg_database, psql, redis, redis_prefix):
    profile = profile_spec(stack, credentials, redis_prefix, pg_database)
    tenant = {"tenantId": "acme",
              "rateLimits": [{"pattern": "/api/search", "requests": 5, "burst": 2}],
              "cache": {"quotaBytes": 1 << 20}}
    ctx = tenant_context(namespace, profile, tenant, name="acme")
    outcome = await reconcile_tenant(ctx)
    assert outcome.condition == "TablesReady" and outcome.ready, outcome.message
    assert outcome.status["table"]["version"] == 1
    assert outcome.status["cache"] == {"keys": 0, "memoryBytes": 0, "sampled": False,
                                       "quotaBytes": 1 << 20}
    assert ctx.events.events == []  # a first write is in the status, not worth an Event

    record = await redis.hgetall(record_key(redis_prefix, "acme"))
    assert record["version"] == "1" and record["owner"] == f"{namespace}/acme"
    assert record["digest"] == outcome.status["table"]["hash"]
    document = json.loads(record["limits"])
    assert document["endpoints"][0] == {"pattern": "/api/search", "methods": ["*"],
                                        "requests": 5, "windowSeconds": 60, "burst": 2,
                                        "critical": False}
    assert document["endpoints"][1]["pattern"] == "/api/plugins/**"  # inherited
    assert document["cache"]["keyPrefix"] == f"{redis_prefix}{{acme}}:cache:"

    row = psql(pg_database["database"],
               "SELECT profile_namespace, profile_name, tenant_id, owner, version, digest, "
               "limits::text FROM perf_operator.tenant_limits").strip().split("|")
    assert row[:6] == [namespace, "platform", "acme", f"{namespace}/acme", "1", record["digest"]]
    assert json.loads(row[6]) == document

    allowed, denied = await drain(redis, redis_prefix, "acme", "/api/search")
    assert allowed == 7 and denied.retry_after_seconds > 0  # 5 requests + burst 2
    allowed, _ = await drain(redis, redis_prefix, "acme", "/api/plugins/x")
    assert allowed == 4

    # Level-based: the same spec again writes nothing and reports the same status.
    same = tenant_context(namespace, profile, tenant, name="acme", status=outcome.status)
    again = await reconcile_tenant(same)
    assert again.status == outcome.status and same.events.events == []

    # A changed limit: a new version in Redis and PostgreSQL, enforced from the next check.
    tenant["rateLimits"][0]["requests"] = 9
    changed = tenant_context(namespace, profile, tenant, name="acme", status=outcome.status)
    third = await reconcile_tenant(changed)
    assert third.status["table"]["version"] == 2
    assert [e[1] for e in changed.events.events] == ["TableUpdated"]
    allowed, denied = await drain(redis, redis_prefix, "acme", "/api/search")
    assert allowed == 11 and denied.limit == 9
    assert psql(pg_database["database"],
                "SELECT version FROM perf_operator.tenant_limits").strip() == "2"


async def test_two_tenants_never_see_each_others_keys(stack, credentials, namespace, redis,
                                                      redis_prefix):
    profile = profile_spec(stack, credentials, redis_prefix)
    acme = tenant_context(namespace, profile, {"tenantId": "acme"}, name="acme")
    beta = tenant_context(namespace, profile, {"tenantId": "beta"}, name="beta")
    assert (await reconcile_tenant(acme)).ready and (await reconcile_tenant(beta)).ready
    for i in range(30):  # the application caches data for acme only
        await redis.set(f"{cache_prefix(redis_prefix, 'acme')}plugin:{i}", "x" * 100, ex=600)
    acme_status = (await reconcile_tenant(acme)).status["cache"]
    beta_status = (await reconcile_tenant(beta)).status["cache"]
    assert acme_status["keys"] == 30 and acme_status["memoryBytes"] > 30 * 100
    assert beta_status["keys"] == 0 and beta_status["memoryBytes"] == 0

    allowed, _ = await drain(redis, redis_prefix, "acme", "/api/plugins/x")
    assert allowed == 4
    beta_first = await check(redis, redis_prefix, "beta", "/api/plugins/x", "GET")
    assert beta_first.allowed and beta_first.remaining == 3  # acme's use is not beta's

    keys = [k async for k in redis.scan_iter(match=f"{redis_prefix}*")]
    assert {k.split("}")[0] + "}" for k in keys} == {f"{redis_prefix}{{acme}}",
                                                     f"{redis_prefix}{{beta}}"}

    await remove_tenant(acme)
    assert not await redis.exists(record_key(redis_prefix, "acme"))
    assert await redis.exists(record_key(redis_prefix, "beta"))
    # the application's cache keys are the application's: removing the table leaves them
    assert await redis.exists(f"{cache_prefix(redis_prefix, 'acme')}plugin:0")


async def test_a_tenant_id_owned_by_another_tenantquota_is_reported_not_overwritten(
        stack, credentials, namespace, redis, redis_prefix):
    profile = profile_spec(stack, credentials, redis_prefix)
    first = tenant_context(namespace, profile, {"tenantId": "acme"}, name="first")
    second = tenant_context(namespace, profile, {"tenantId": "acme", "plugins": {"maxPlugins": 1}},
                            name="second")
    assert (await reconcile_tenant(first)).ready
    outcome = await reconcile_tenant(second)
    assert not outcome.ready and outcome.reason == "TableConflict"
    assert f"{namespace}/first" in outcome.message
    assert (await redis.hget(record_key(redis_prefix, "acme"), "owner")) == f"{namespace}/first"
    await remove_tenant(second)  # not its record: left alone
    assert await redis.exists(record_key(redis_prefix, "acme"))


async def test_usage_of_a_large_keyspace_is_sampled_within_the_budget(
        stack, credentials, namespace, redis, redis_prefix, monkeypatch):
    monkeypatch.setattr(usage_module, "SCAN_COUNT", 100)
    monkeypatch.setattr(usage_module, "SCAN_CALLS", 5)
    tenant_prefix = cache_prefix(redis_prefix, "big")
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.set(f"{tenant_prefix}k:{i}", "v" * 50, ex=600)
            pipe.set(f"{redis_prefix}{{other}}:cache:k:{i}", "v", ex=600)
        await pipe.execute()
    total = await redis.dbsize()
    usage = await usage_module.measure_cache(redis, redis_prefix, "big")
    assert usage.sampled
    share = 3000 / total
    assert 0.5 * share * total < usage.keys < 1.5 * share * total
    assert usage.memory_bytes > usage.keys * 50


# ------------------------------------------------------------------ through the real operator

def manifests(stack, credentials, prefix: str, tenants: dict[str, int],
              database: dict | None = None) -> str:
    docs = [{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
         "metadata": {"name": "platform"},
         "spec": profile_spec(stack, credentials, prefix, database)},
        *({"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
           "metadata": {"name": tenant},
           "spec": {"tenantId": tenant, "profileRef": {"name": "platform"},
                    "rateLimits": [{"pattern": "/api/search", "requests": requests}]}}
          for tenant, requests in tenants.items()),
    ]}]
    return json.dumps(docs[0])


def tables_ready(kubectl, namespace: str, name: str, version: int | None = None) -> dict | None:
    obj = kubectl.get("tenantquota", name, namespace)
    cond = condition(obj, "TablesReady")
    if not cond or cond["status"] != "True":
        return None
    if version is not None and obj["status"]["table"]["version"] != version:
        return None
    return obj


def events(kubectl, namespace: str, reason: str) -> list[dict]:
    items = json.loads(kubectl.run("get", "events", "-o", "json", namespace=namespace).stdout)
    return [e for e in items["items"] if e.get("reason") == reason]


def drain_sync(stack, prefix: str, tenant: str, path: str) -> tuple[int, object]:
    async def run():
        client = Redis(host="127.0.0.1", port=stack.redis.port, password=stack.redis.password,
                       decode_responses=True)
        try:
            return await drain(client, prefix, tenant, path)
        finally:
            await client.aclose()
    return asyncio.run(run())


def test_tenants_applied_with_kubectl_are_enforced_and_follow_a_change(
        operator, stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix):
    kubectl.apply(manifests(stack, credentials, redis_prefix, {"acme": 3, "beta": 6},
                            pg_database), namespace)
    for tenant in ("acme", "beta"):
        eventually(lambda: tables_ready(kubectl, namespace, tenant), timeout=60,
                   what=f"{tenant} TablesReady")
    assert drain_sync(stack, redis_prefix, "acme", "/api/search")[0] == 3
    assert drain_sync(stack, redis_prefix, "beta", "/api/search")[0] == 6
    mirrored = psql(pg_database["database"], "SELECT tenant_id, version FROM "
                                             "perf_operator.tenant_limits ORDER BY 1")
    assert mirrored.split() == ["acme|1", "beta|1"]

    kubectl.apply(manifests(stack, credentials, redis_prefix, {"acme": 7, "beta": 6},
                            pg_database), namespace)
    obj = eventually(lambda: tables_ready(kubectl, namespace, "acme", version=2), timeout=30,
                     what="acme's table at version 2")
    allowed, denied = drain_sync(stack, redis_prefix, "acme", "/api/search")
    assert allowed == 7 and denied.limit == 7
    assert obj["status"]["cache"]["quotaBytes"] == 64 << 20
    assert tables_ready(kubectl, namespace, "beta", version=1)  # untouched

    kubectl.run("delete", "tenantquota", "acme", "--wait=true", "--timeout=60s",
                namespace=namespace)
    # No finalizer: the tables go on the DELETED event, just after the object.
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password)
    eventually(lambda: not client.exists(record_key(redis_prefix, "acme")), timeout=10,
               interval=0.1, what="acme's record deleted")
    assert client.exists(record_key(redis_prefix, "beta"))
    client.close()
    eventually(lambda: psql(pg_database["database"], "SELECT tenant_id FROM "
                                                     "perf_operator.tenant_limits").split()
               == ["beta"], timeout=10, interval=0.1, what="acme's mirror row deleted")


def test_redis_restart_restores_every_table_within_one_resync(
        operator, stack, kubectl, namespace, credentials, redis_prefix):
    tenants = {f"tenant-{i}": 5 + i for i in range(5)}
    kubectl.apply(manifests(stack, credentials, redis_prefix, tenants), namespace)
    for tenant in tenants:
        eventually(lambda: tables_ready(kubectl, namespace, tenant), timeout=60,
                   what=f"{tenant} TablesReady")
    stack.redis.restart()  # no persistence: every key is gone
    restarted = time.monotonic()
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                              decode_responses=True)
    eventually(lambda: all(client.exists(record_key(redis_prefix, t)) for t in tenants),
               timeout=30, interval=0.1, what="every table back")
    restored_after = time.monotonic() - restarted
    for tenant, requests in tenants.items():
        obj = eventually(lambda: tables_ready(kubectl, namespace, tenant, version=2),
                         timeout=30, what=f"{tenant}'s status at version 2")
        assert obj["status"]["table"]["hash"] == client.hget(record_key(redis_prefix, tenant),
                                                             "digest")
        assert client.hget(record_key(redis_prefix, tenant), "version") == "2"
        assert drain_sync(stack, redis_prefix, tenant, "/api/search")[0] == requests
    restored = eventually(lambda: len(events(kubectl, namespace, "TableRestored")) >= 5,
                          timeout=30, what="a TableRestored event per tenant")
    assert restored
    # the profile's settings were lost too, and are set again
    eventually(lambda: client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru",
               timeout=30, what="the Redis settings re-applied")
    client.close()
    print(f"tables restored {restored_after:.1f} s after the restart")
    assert restored_after < 15  # one resync is 2 s in test mode; generous for a loaded machine


def test_overcommitted_profile_and_a_tenant_without_profile(operator, stack, kubectl, namespace,
                                                            credentials, redis_prefix):
    spec = profile_spec(stack, credentials, redis_prefix)
    spec["websocket"] = {"maxConnections": 100, "perTenantDefault": 10}
    items = [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
              "metadata": {"name": "platform"}, "spec": spec}]
    items += [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
               "metadata": {"name": f"t{i}"},
               "spec": {"tenantId": f"t{i}", "profileRef": {"name": "platform"},
                        "websocket": {"maxConnections": 60}}} for i in range(2)]
    items.append({"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
                  "metadata": {"name": "on-default"},
                  "spec": {"tenantId": "on-default", "profileRef": {"name": "platform"}}})
    items.append({"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
                  "metadata": {"name": "orphan"},
                  "spec": {"tenantId": "orphan", "profileRef": {"name": "missing"}}})
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), namespace)

    def overcommitted():
        cond = condition(kubectl.get("performanceprofile", "platform", namespace),
                         "Overcommitted")
        # 60 + 60 of their own, and the profile's perTenantDefault for the one without
        return cond if cond and cond["status"] == "True" and "130" in cond["message"] else None
    cond = eventually(overcommitted, timeout=60, what="Overcommitted=True, 130 committed")
    assert "more than the profile's maximum of 100" in cond["message"]
    tenants = kubectl.get("performanceprofile", "platform", namespace)["status"]["tenants"]
    assert tenants == {"count": 3, "websocketCommitted": 130}

    def orphaned():
        cond = condition(kubectl.get("tenantquota", "orphan", namespace), "ProfileResolved")
        return cond if cond and cond["status"] == "False" else None
    assert eventually(orphaned, timeout=60, what="orphan ProfileResolved=False")[
        "reason"] == "ProfileNotFound"
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password)
    assert not client.exists(record_key(redis_prefix, "orphan"))
    client.close()


def test_deleting_a_tenant_whose_redis_is_gone_for_good_is_released(
        operator, stack, kubectl, namespace, credentials, redis_prefix):
    """...and its cleanup waits in the ledger, retried with a capped back-off, its attempts
    and last error in its entry, reported as failing (Warning Event, metric), never dropped."""
    from perf_operator.devstack.processes import free_port

    spec = profile_spec(stack, credentials, redis_prefix)
    spec["redis"]["connection"]["port"] = free_port()  # nothing listens there
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
         "metadata": {"name": "platform"}, "spec": spec},
        {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
         "metadata": {"name": "acme"},
         "spec": {"tenantId": "acme", "profileRef": {"name": "platform"}}}]}), namespace)

    def unavailable():
        cond = condition(kubectl.get("tenantquota", "acme", namespace), "TablesReady")
        return cond if cond and cond["reason"] == "RedisUnavailable" else None
    eventually(unavailable, timeout=60, what="TablesReady=False RedisUnavailable")
    kubectl.run("delete", "tenantquota", "acme", "--wait=false", namespace=namespace)
    eventually(lambda: kubectl.get("tenantquota", "acme", namespace) is None, timeout=60,
               what="the TenantQuota released")
    # The unfinished cleanup is not lost: it waits in the operator's ledger, said by an Event
    # in the operator's namespace (the tenant's own may be terminating).
    deferred = eventually(lambda: [e for e in events(kubectl, OPERATOR_NAMESPACE,
                                                     "CleanupDeferred")
                                   if f"{namespace}/acme" in e["message"]],
                          timeout=10, what="a CleanupDeferred event")
    assert deferred[0]["source"]["component"] == "perf-operator"
    first = eventually(lambda: ledger_entries(kubectl, namespace), timeout=10,
                       what="the ledger entry")[0]
    assert first["attempts"] >= 1 and first["nextAttemptAt"] > first["lastAttemptAt"]

    def failing(after: int = STUCK_AFTER_ATTEMPTS - 1):
        entries = ledger_entries(kubectl, namespace)
        return entries[0] if entries and entries[0]["attempts"] > after else None

    # test mode: one 2 s resync, doubling, capped at 20 s: the fifth failure within ~40 s
    entry = eventually(failing, timeout=120, what="the entry failing")
    assert "onnect" in entry["lastError"], entry
    assert entry["error"] == first["error"]  # why it was deferred stays
    for _ in range(2):  # attempts go on, never sooner than scheduled
        before = entry
        entry = eventually(lambda: failing(before["attempts"]), timeout=60,
                           what="one more attempt")
        assert entry["lastAttemptAt"] >= before["nextAttemptAt"], (before, entry)
    warnings = eventually(lambda: [e for e in events(kubectl, OPERATOR_NAMESPACE,
                                                     "CleanupFailing")
                                   if f"{namespace}/acme" in e["message"]],
                          timeout=30, what="a CleanupFailing Warning Event")
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["source"]["component"] == "perf-operator"
    assert stack.redis.password not in json.dumps(warnings) + json.dumps(entry)
    assert total(scrape(operator.metrics_port), "perf_operator_deferred_cleanups",
                 state="failing") >= 1


def ledger_entries(kubectl, namespace: str) -> list[dict]:
    """The entries of the operator's cleanup ledger for objects of ``namespace``."""
    ledger = json.loads(kubectl.run("get", "configmap", "perf-operator-cleanup", "-o", "json",
                                    namespace=OPERATOR_NAMESPACE).stdout)
    return [json.loads(text) for key, text in (ledger.get("data") or {}).items()
            if f".{namespace}." in key]


def test_a_tenant_outliving_its_profile_says_so_and_takes_its_tables_when_deleted(
        operator, stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix):
    """Deleted in that order, nothing stays behind: the tenant reports its profile gone as soon
    as it is, and its own deletion removes the record and mirror row its status reports."""
    items = [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
              "metadata": {"name": "platform"},
              "spec": profile_spec(stack, credentials, redis_prefix, pg_database)},
             {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
              "metadata": {"name": "acme"},
              "spec": {"tenantId": "acme", "profileRef": {"name": "platform"}}}]
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), namespace)
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password)
    key = record_key(redis_prefix, "acme")

    def mirror_rows() -> str:
        return psql(pg_database["database"],
                    "SELECT count(*) FROM perf_operator.tenant_limits "
                    f"WHERE profile_namespace = '{namespace}' AND tenant_id = 'acme'").strip()

    def tenant_ready():
        cond = condition(kubectl.get("tenantquota", "acme", namespace), "Ready")
        return cond if cond and cond["status"] == "True" else None
    eventually(tenant_ready, timeout=60, what="the tenant Ready")
    eventually(lambda: client.exists(key) and mirror_rows() == "1", timeout=30,
               what="the record and its mirror row")

    kubectl.run("delete", "performanceprofile", "platform", "--timeout=60s", namespace=namespace)
    deleted = time.monotonic()

    def profile_gone():
        cond = condition(kubectl.get("tenantquota", "acme", namespace), "ProfileResolved")
        return cond if cond and cond["status"] == "False" else None
    assert eventually(profile_gone, timeout=30, what="ProfileResolved=False")[
        "reason"] == "ProfileNotFound"
    print(f"the tenant reported its profile gone {time.monotonic() - deleted:.1f} s after")
    assert client.exists(key)  # the tenant still exists: its tables stay until it goes

    kubectl.run("delete", "tenantquota", "acme", "--timeout=60s", namespace=namespace)
    eventually(lambda: not client.exists(key) and mirror_rows() == "0", timeout=10,
               interval=0.1, what="the record and mirror row its status names deleted")
    client.close()


@pytest.mark.isolated
def test_a_profiles_tenant_summary_follows_its_tenants_between_resyncs(
        stack, kubectl, crds, namespace, credentials, redis_prefix, tmp_path, monkeypatch):
    """With the production resync (here 10 minutes, so only the tenants' own events can
    explain a change), a profile counts tenants created after it and stops counting a deleted
    one within seconds."""
    from tests.support.rbac import (lease_election_in, operator_kubeconfig,
                                    start_operator_as_deployed)

    monkeypatch.setenv("PERF_OPERATOR_RESYNC_SECONDS", "600")
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(kubeconfig, tmp_path, name="operator", namespace=namespace)
    try:
        spec = profile_spec(stack, credentials, redis_prefix)
        spec["websocket"] = {"maxConnections": 1000, "perTenantDefault": 100}
        kubectl.apply(json.dumps({"apiVersion": "perf.idp.io/v1alpha1",
                                  "kind": "PerformanceProfile", "metadata": {"name": "platform"},
                                  "spec": spec}), namespace)

        def summary() -> dict | None:
            return ((kubectl.get("performanceprofile", "platform", namespace) or {})
                    .get("status") or {}).get("tenants")

        eventually(lambda: summary() == {"count": 0, "websocketCommitted": 0}, timeout=60,
                   what="the profile reconciled without tenants")
        kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
             "metadata": {"name": name},
             "spec": {"tenantId": name, "profileRef": {"name": "platform"}, **extra}}
            for name, extra in (("acme", {"websocket": {"maxConnections": 300}}),
                                ("initech", {}))]}), namespace)
        eventually(lambda: summary() == {"count": 2, "websocketCommitted": 400}, timeout=20,
                   what="both tenants counted")
        kubectl.run("delete", "tenantquota", "acme", namespace=namespace)
        started = time.monotonic()
        eventually(lambda: summary() == {"count": 1, "websocketCommitted": 100}, timeout=15,
                   what="the deleted tenant no longer counted")
        print(f"summary refreshed {time.monotonic() - started:.1f} s after the deletion")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{proc.log_tail(40)}") from None
    finally:
        proc.stop()
