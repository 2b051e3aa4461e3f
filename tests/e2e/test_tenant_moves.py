"""A tenant whose record moves (another profile, keyPrefix, Redis or database): the record and
mirror row it leaves behind are deleted if the TenantQuota owns them, once the new ones are
written; an unreachable old Redis is retried, and a record someone else owns is left alone."""
from __future__ import annotations

import json

import redis as sync_redis

from perf_operator.devstack.services import RedisServer
from perf_operator.ratelimit.layout import record_key
from perf_operator.tenants.cleanup import remove_tenant
from perf_operator.tenants.tables import reconcile_tenant
from tests.e2e.test_tenants_tables import drain_sync, events, profile_spec
from tests.support.contexts import tenant_context
from tests.support.kube import condition, eventually


async def test_a_move_deletes_the_old_record_and_row_and_reports_where_the_new_ones_are(
        stack, credentials, namespace, pg_database, psql, redis, redis_prefix):
    a, b = f"{redis_prefix}a:", f"{redis_prefix}b:"
    first = await reconcile_tenant(tenant_context(
        namespace, profile_spec(stack, credentials, a, pg_database), profile_name="pa"))
    table = first.status["table"]
    assert first.ready and table["profile"] == "pa" and table["key"] == record_key(a, "acme")
    assert table["redis"]["port"] == stack.redis.port
    assert table["mirror"]["profile"] == "pa"
    assert table["mirror"]["connection"]["database"] == pg_database["database"]

    ctx = tenant_context(namespace, profile_spec(stack, credentials, b, pg_database),
                         profile_name="pb", status=first.status)
    moved = await reconcile_tenant(ctx)
    assert moved.ready, moved.message
    assert moved.status["table"]["key"] == record_key(b, "acme")
    assert moved.status["table"]["mirror"]["profile"] == "pb"
    assert moved.status["table"]["staleRecords"] is None
    assert not await redis.exists(record_key(a, "acme"))
    assert await redis.hget(record_key(b, "acme"), "owner") == f"{namespace}/acme"
    rows = psql(pg_database["database"], "SELECT profile_name FROM perf_operator.tenant_limits")
    assert rows.split() == ["pb"]
    [(kind, reason, message)] = ctx.events.events
    assert (kind, reason) == ("Normal", "TableMoved")
    assert f"deleted the old record {record_key(a, 'acme')}" in message
    assert "deleted the old mirror row of profile pa" in message

    # Level-based: the next pass has nothing left to move.
    again = tenant_context(namespace, profile_spec(stack, credentials, b, pg_database),
                           profile_name="pb", status=moved.status)
    assert (await reconcile_tenant(again)).status == moved.status and again.events.events == []


async def test_an_unreachable_old_redis_is_reported_and_retried(
        stack, credentials, namespace, redis, redis_prefix, tmp_path):
    old_server = RedisServer(tmp_path / "old-redis", password=stack.redis.password)
    old_server.start()
    try:
        old = profile_spec(stack, credentials, redis_prefix)
        old["redis"]["connection"]["port"] = old_server.port
        first = await reconcile_tenant(tenant_context(namespace, old, profile_name="old"))
        assert first.ready, first.message
        old_server.stop()

        new = profile_spec(stack, credentials, redis_prefix)  # same prefix, another Redis
        ctx = tenant_context(namespace, new, profile_name="new", status=first.status)
        moved = await reconcile_tenant(ctx)
        # the new record is written and the tenant is served from it; the old one is reported
        assert moved.ready and moved.reason == "TablesWritten", moved.message
        assert await redis.exists(record_key(redis_prefix, "acme"))
        [stale] = moved.status["table"]["staleRecords"]
        assert stale["key"] == record_key(redis_prefix, "acme")
        assert stale["redis"]["port"] == old_server.port
        assert stale["message"].startswith("Redis unavailable")
        assert f"on Redis 127.0.0.1:{old_server.port}/0 not deleted yet" in moved.message
        assert ctx.events.reasons() == ["TableMoveIncomplete"]

        still = tenant_context(namespace, new, profile_name="new", status=moved.status)
        assert (await reconcile_tenant(still)).status["table"]["staleRecords"] == [stale]
        assert still.events.events == []  # one Warning, not one per resync

        old_server.start()  # back, with the record (the test server has no persistence)
        client = sync_redis.Redis(port=old_server.port, password=old_server.password)
        client.hset(stale["key"], mapping={"owner": f"{namespace}/acme", "version": 1})
        back = tenant_context(namespace, new, profile_name="new", status=moved.status)
        done = await reconcile_tenant(back)
        assert done.ready and done.status["table"]["staleRecords"] is None
        assert "not deleted" not in done.message
        assert not client.exists(stale["key"])
        assert back.events.reasons() == ["TableMoved"]
        client.close()
    finally:
        old_server.stop()


async def test_the_same_server_under_another_name_is_no_move(stack, credentials, namespace,
                                                             redis, redis_prefix):
    first = await reconcile_tenant(tenant_context(
        namespace, profile_spec(stack, credentials, redis_prefix), profile_name="pa"))
    renamed = profile_spec(stack, credentials, redis_prefix)
    renamed["redis"]["connection"]["host"] = "localhost"
    ctx = tenant_context(namespace, renamed, profile_name="pa", status=first.status)
    outcome = await reconcile_tenant(ctx)
    assert outcome.ready and outcome.status["table"]["redis"]["host"] == "localhost"
    assert await redis.exists(record_key(redis_prefix, "acme"))  # not deleted as "the old one"
    assert ctx.events.events == []


async def test_an_old_record_owned_by_another_tenantquota_is_left_alone(
        stack, credentials, namespace, redis, redis_prefix):
    a, b = f"{redis_prefix}a:", f"{redis_prefix}b:"
    first = await reconcile_tenant(tenant_context(namespace, profile_spec(stack, credentials, a),
                                                  profile_name="pa"))
    await redis.hset(record_key(a, "acme"), "owner", f"{namespace}/other")
    ctx = tenant_context(namespace, profile_spec(stack, credentials, b), profile_name="pb",
                         status=first.status)
    assert (await reconcile_tenant(ctx)).ready
    assert await redis.hget(record_key(a, "acme"), "owner") == f"{namespace}/other"
    [(_, reason, message)] = ctx.events.events
    assert reason == "TableMoved"
    assert f"alone: it belongs to TenantQuota {namespace}/other" in message


async def test_deleting_a_tenant_also_deletes_where_its_status_says_it_is(
        stack, credentials, namespace, redis, redis_prefix):
    a, b = f"{redis_prefix}a:", f"{redis_prefix}b:"
    first = await reconcile_tenant(tenant_context(namespace, profile_spec(stack, credentials, a),
                                                  profile_name="pa"))
    # moved to pb and deleted before the move was reconciled
    await remove_tenant(tenant_context(namespace, profile_spec(stack, credentials, b),
                                       profile_name="pb", status=first.status))
    assert not await redis.exists(record_key(a, "acme"))


async def test_a_profile_without_redis_leaves_no_record_behind(stack, credentials, namespace,
                                                              redis, redis_prefix):
    first = await reconcile_tenant(tenant_context(
        namespace, profile_spec(stack, credentials, redis_prefix), profile_name="pa"))
    ctx = tenant_context(namespace, {}, profile_name="plain", status=first.status)
    outcome = await reconcile_tenant(ctx)
    assert outcome.ready and outcome.reason == "NoTables" and outcome.status == {"table": None}
    assert not await redis.exists(record_key(redis_prefix, "acme"))
    assert ctx.events.reasons() == ["TableMoved"]
    assert await reconcile_tenant(tenant_context(namespace, {}, profile_name="plain",
                                                 status={})) is None


# ------------------------------------------------------------------ through the real operator

def manifests(stack, credentials, prefixes: dict[str, str], tenants: dict[str, str],
              database: dict) -> str:
    items = []
    for profile, prefix in prefixes.items():
        spec = profile_spec(stack, credentials, prefix, database, endpoints=[
            {"pattern": "/api/plugins/**", "requests": 3 if profile == "pa" else 6}])
        items.append({"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                      "metadata": {"name": profile}, "spec": spec})
    items += [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
               "metadata": {"name": tenant},
               "spec": {"tenantId": tenant, "profileRef": {"name": profile}}}
              for tenant, profile in tenants.items()]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def written_under(kubectl, namespace: str, tenant: str, profile: str) -> dict | None:
    obj = kubectl.get("tenantquota", tenant, namespace)
    cond = condition(obj, "TablesReady")
    if not cond or cond["status"] != "True" or obj["status"]["table"].get("profile") != profile:
        return None
    return obj


def test_tenants_moved_to_another_profile_with_kubectl_follow_it(
        operator, stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix):
    prefixes = {"pa": f"{redis_prefix}a:", "pb": f"{redis_prefix}b:"}
    kubectl.apply(manifests(stack, credentials, prefixes, {"acme": "pa", "beta": "pa"},
                            pg_database), namespace)
    for tenant in ("acme", "beta"):
        eventually(lambda: written_under(kubectl, namespace, tenant, "pa"), timeout=60,
                   what=f"{tenant} written under pa")
    assert drain_sync(stack, prefixes["pa"], "acme", "/api/plugins/x")[0] == 3
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                              decode_responses=True)
    # beta's old record is taken by someone else before the move: it must survive it
    client.hset(record_key(prefixes["pa"], "beta"), "owner", f"{namespace}/intruder")

    kubectl.apply(manifests(stack, credentials, prefixes, {"acme": "pb", "beta": "pb"},
                            pg_database), namespace)
    for tenant in ("acme", "beta"):
        obj = eventually(lambda: written_under(kubectl, namespace, tenant, "pb"), timeout=60,
                         what=f"{tenant} written under pb")
        assert obj["status"]["table"]["key"] == record_key(prefixes["pb"], tenant)
        assert obj["status"]["table"]["mirror"]["profile"] == "pb"
        assert "staleRecords" not in obj["status"]["table"]
        assert client.hget(record_key(prefixes["pb"], tenant), "owner") == f"{namespace}/{tenant}"
    assert not client.exists(record_key(prefixes["pa"], "acme"))
    assert client.hget(record_key(prefixes["pa"], "beta"), "owner") == f"{namespace}/intruder"
    client.close()
    # the limiter follows: the new profile's inherited budget, read under the new prefix
    assert drain_sync(stack, prefixes["pb"], "acme", "/api/plugins/x")[0] == 6
    assert psql(pg_database["database"], "SELECT profile_name, tenant_id FROM "
                                         "perf_operator.tenant_limits ORDER BY 2").split() == [
        "pb|acme", "pb|beta"]

    def moved_events() -> dict[str, str] | None:
        found = {e["involvedObject"]["name"]: e["message"]
                 for e in events(kubectl, namespace, "TableMoved")}
        return found if {"acme", "beta"} <= found.keys() else None
    messages = eventually(moved_events, timeout=20, what="a TableMoved Event per tenant")
    assert "deleted the old record" in messages["acme"]
    assert f"belongs to TenantQuota {namespace}/intruder" in messages["beta"]
