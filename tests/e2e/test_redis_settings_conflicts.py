"""Two PerformanceProfiles on one Redis server that disagree on a CONFIG parameter: the older one
owns it, the younger one reports Conflict and never sends its value, so the two do not set
their values in turn on every resync. Reconciled directly on the real Redis, and through the
real operator."""
from __future__ import annotations

import json
import time

import redis as sync_redis
from redis.asyncio import Redis

from perf_operator.redis import reconcile_profile, redis_peer
from tests.support.contexts import profile_context
from tests.support.kube import condition, eventually

OLD, NEW = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"


def spec(stack, credentials, db: int = 0, **settings: str) -> dict:
    return {"redis": {"connection": {"host": "127.0.0.1", "port": stack.redis.port, "db": db,
                                     "secretRef": {"name": credentials["redis"]}},
                      "settings": {"maxmemory-policy": "allkeys-lru", "tcp-keepalive": "60",
                                   **settings}}}


def contexts(namespace: str, specs: dict[str, tuple[str, dict]], statuses: dict[str, dict]):
    """A context per profile, each knowing every profile (as the handlers' index does)."""
    peers = [redis_peer(namespace, name, {"creationTimestamp": created}, body)
             for name, (created, body) in specs.items()]
    out = {}
    for name, (created, body) in specs.items():
        ctx = profile_context(namespace, body, name=name, status=statuses.get(name, {}))
        ctx.created, ctx.redis_peers = created, peers
        out[name] = ctx
    return out


async def config_set_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return stats.get("cmdstat_config|set", {}).get("calls", 0)


def states(outcome) -> dict[str, str]:
    return {s["name"]: s["state"] for s in outcome.status["redis"]["settings"]}


async def test_the_older_profile_owns_a_contested_parameter_and_nobody_fights(
        stack, credentials, namespace, redis):
    await redis.config_set("timeout", "0")
    specs = {"first": (OLD, spec(stack, credentials, timeout="300")),
             # another db of the same server: CONFIG is server-wide all the same
             "second": (NEW, spec(stack, credentials, db=1, timeout="600"))}
    statuses: dict[str, dict] = {}
    for round_ in range(3):  # resyncs, alternating
        for name, ctx in contexts(namespace, specs, statuses).items():
            before = await config_set_calls(redis)
            outcome = await reconcile_profile(ctx)
            statuses[name] = {"redis": outcome.status["redis"], "conditions": [
                {"type": "RedisReady", "reason": outcome.reason}]}
            sent = await config_set_calls(redis) - before
            if name == "first":
                assert outcome.ready, outcome.message
                assert states(outcome) == {"maxmemory-policy": "Applied", "timeout": "Applied",
                                           "tcp-keepalive": "Applied"}
                # set in the first round (timeout was 0), then never again: nobody changes
                # it behind its back
                assert sent >= 1 if round_ == 0 else sent == 0
                assert "RedisSettingDrifted" not in ctx.events.reasons()
            else:
                assert not outcome.ready and outcome.reason == "SettingsConflict"
                # agreeing values are no conflict
                assert states(outcome) == {"maxmemory-policy": "Applied", "timeout": "Conflict",
                                           "tcp-keepalive": "Applied"}
                entry = next(s for s in outcome.status["redis"]["settings"]
                             if s["name"] == "timeout")
                assert entry["actual"] == "300" and entry["desired"] == "600"
                assert f"{namespace}/first" in entry["message"]
                assert f"{namespace}/first" in outcome.message
                assert sent == 0
                # one Warning when the conflict starts, not one per resync
                assert ctx.events.reasons() == (["RedisSettingConflict"] if round_ == 0 else [])
            assert await redis.config_get("timeout") == {"timeout": "300"}

    # The younger profile comes round to the owner's value: no conflict any more.
    specs["second"] = (NEW, spec(stack, credentials, db=1, timeout="300"))
    ctx = contexts(namespace, specs, statuses)["second"]
    outcome = await reconcile_profile(ctx)
    assert outcome.ready and states(outcome)["timeout"] == "Applied", outcome.message


async def test_without_the_older_profile_the_younger_one_sets_its_value(
        stack, credentials, namespace, redis):
    specs = {"first": (OLD, spec(stack, credentials, timeout="300")),
             "second": (NEW, spec(stack, credentials, timeout="600"))}
    assert not (await reconcile_profile(contexts(namespace, specs, {})["second"])).ready
    del specs["first"]  # deleted (or paused, or pointed elsewhere)
    try:
        outcome = await reconcile_profile(contexts(namespace, specs, {})["second"])
        assert outcome.ready and states(outcome)["timeout"] == "Applied", outcome.message
        assert await redis.config_get("timeout") == {"timeout": "600"}
    finally:
        await redis.config_set("timeout", "300")


# ------------------------------------------------------------------ through the real operator

def profile_manifest(stack, credentials, name: str, **settings: str) -> str:
    return json.dumps({"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                       "metadata": {"name": name}, "spec": spec(stack, credentials, **settings)})


def redis_condition(kubectl, namespace: str, name: str, status: str) -> dict | None:
    cond = condition(kubectl.get("performanceprofile", name, namespace), "RedisReady")
    return cond if cond and cond["status"] == status else None


def test_profiles_applied_with_kubectl_do_not_fight_over_a_parameter(
        operator, stack, kubectl, namespace, credentials):
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                              decode_responses=True)
    kubectl.apply(profile_manifest(stack, credentials, "first", timeout="300"), namespace)
    eventually(lambda: redis_condition(kubectl, namespace, "first", "True"), timeout=60,
               what="first RedisReady")
    time.sleep(1.1)  # a younger creationTimestamp
    kubectl.apply(profile_manifest(stack, credentials, "second", timeout="600"), namespace)
    cond = eventually(lambda: redis_condition(kubectl, namespace, "second", "False"),
                      timeout=60, what="second RedisReady=False")
    assert cond["reason"] == "SettingsConflict"
    # the owner is first, or an older profile of another test agreeing with it
    assert "timeout is set to '300' by PerformanceProfile" in cond["message"]
    calls = client.info("commandstats").get("cmdstat_config|set", {}).get("calls", 0)
    time.sleep(6)  # three resyncs of each profile
    assert client.config_get("timeout") == {"timeout": "300"}
    assert client.info("commandstats").get("cmdstat_config|set", {}).get("calls", 0) == calls
    assert redis_condition(kubectl, namespace, "first", "True")
    items = json.loads(kubectl.run("get", "events", "-o", "json", namespace=namespace).stdout)
    reasons = [(e["involvedObject"]["name"], e["reason"], e.get("count", 1))
               for e in items["items"]]
    assert not [r for r in reasons if r[1] == "RedisSettingDrifted"]
    assert [r for r in reasons if r[1] == "RedisSettingConflict"] == [
        ("second", "RedisSettingConflict", 1)]

    kubectl.apply(profile_manifest(stack, credentials, "second", timeout="300"), namespace)
    eventually(lambda: redis_condition(kubectl, namespace, "second", "True"), timeout=30,
               what="second RedisReady once it agrees")
    client.close()
