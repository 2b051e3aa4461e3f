"""Redis settings on a real Redis: applied and verified, written only when they differ,
corrected with an Event when changed behind the operator's back, rewritten to the config file
on request, and never sent when outside the allow-list."""
from __future__ import annotations

import json

import redis as sync_redis
from redis.asyncio import Redis

from perf_operator.redis import reconcile_profile
from tests.support.contexts import profile_context
from tests.support.kube import condition, eventually

SEED = {"maxmemory-policy": "allkeys-lru", "timeout": "300", "tcp-keepalive": "60"}


def redis_section(stack, credentials, **extra) -> dict:
    return {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                           "secretRef": {"name": credentials["redis"]}}, **extra}




async def config_set_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return stats.get("cmdstat_config|set", {}).get("calls", 0)


async def test_settings_are_applied_verified_and_not_resent(stack, credentials, namespace, redis):
    await redis.config_set("timeout", "0")
    settings = {**SEED, "maxmemory-samples": "7", "notify-keyspace-events": "Ex"}
    ctx = profile_context(namespace, {"redis": redis_section(stack, credentials,
                                                             settings=settings)})
    outcome = await reconcile_profile(ctx)
    assert outcome.condition == "RedisReady" and outcome.ready, outcome.message
    states = {s["name"]: s for s in outcome.status["redis"]["settings"]}
    assert {n: s["state"] for n, s in states.items()} == {n: "Applied" for n in settings}
    assert states["timeout"]["actual"] == "300"
    assert states["notify-keyspace-events"]["actual"] == "xE"  # as Redis spells it
    assert await redis.config_get("timeout") == {"timeout": "300"}
    assert ("Normal", "RedisSettingApplied", "set timeout to '300'") in ctx.events.events

    # Level-based: a second pass over the same state sends nothing and reports the same.
    before = await config_set_calls(redis)
    again = profile_context(namespace, {"redis": redis_section(stack, credentials,
                                                               settings=settings)},
                            status=outcome.status)
    second = await reconcile_profile(again)
    assert await config_set_calls(redis) == before
    assert second.status == outcome.status and again.events.events == []
    await redis.config_set("maxmemory-samples", "5")
    await redis.config_set("notify-keyspace-events", "")


async def test_a_parameter_outside_the_allow_list_is_rejected_and_never_sent(
        stack, credentials, namespace, redis):
    ctx = profile_context(namespace, {"redis": redis_section(stack, credentials)})
    await reconcile_profile(ctx)  # the seed settings are in place: nothing else to send
    dir_before = await redis.config_get("dir")
    sets_before = await config_set_calls(redis)
    # The API server refuses such a spec (next test); this is the operator's own guard.
    ctx.spec.redis.settings["dir"] = "/tmp"
    outcome = await reconcile_profile(ctx)
    assert await config_set_calls(redis) == sets_before
    assert await redis.config_get("dir") == dir_before
    assert not outcome.ready and outcome.reason == "SettingsRejected"
    rejected = next(s for s in outcome.status["redis"]["settings"] if s["name"] == "dir")
    assert rejected["state"] == "Rejected" and "allow-list" in rejected["message"]
    assert [e[1] for e in ctx.events.events] == ["RedisSettingRejected"]


def test_the_api_server_refuses_a_dangerous_parameter(crds, kubectl, namespace):
    manifest = json.dumps({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "dangerous"},
        "spec": {"redis": {"connection": {"host": "127.0.0.1"},
                           "settings": {"dir": "/tmp", "timeout": "300"}}}})
    result = kubectl.apply(manifest, namespace, check=False)
    assert result.returncode != 0
    assert "spec.redis.settings" in result.stderr


async def test_a_value_redis_refuses_is_rejected_with_its_message(stack, credentials, namespace):
    ctx = profile_context(namespace, {"redis": redis_section(
        stack, credentials, settings={**SEED, "maxmemory-samples": "many"})})
    outcome = await reconcile_profile(ctx)
    assert not outcome.ready and outcome.reason == "SettingsRejected"
    entry = next(s for s in outcome.status["redis"]["settings"]
                 if s["name"] == "maxmemory-samples")
    assert entry["state"] == "Rejected" and "Redis refused" in entry["message"]


async def test_a_missing_secret_is_reported_not_raised(stack, namespace):
    spec = {"redis": {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                                     "secretRef": {"name": "nope"}}}}
    outcome = await reconcile_profile(profile_context(namespace, spec))
    assert not outcome.ready and outcome.reason == "SecretNotFound"


def events(kubectl, namespace: str, reason: str) -> list[dict]:
    items = json.loads(kubectl.run("get", "events", "-o", "json", namespace=namespace).stdout)
    return [e for e in items["items"] if e.get("reason") == reason]


def profile_manifest(stack, credentials, **redis_extra) -> str:
    return json.dumps({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "platform"},
        "spec": {"redis": redis_section(stack, credentials, **redis_extra)}})


def redis_ready(kubectl, namespace: str) -> dict | None:
    obj = kubectl.get("performanceprofile", "platform", namespace)
    cond = condition(obj, "RedisReady")
    return obj if cond and cond["status"] == "True" else None


def test_drift_is_corrected_on_the_next_resync_with_an_event(operator, stack, kubectl,
                                                             namespace, credentials):
    kubectl.apply(profile_manifest(stack, credentials), namespace)
    eventually(lambda: redis_ready(kubectl, namespace), timeout=60, what="RedisReady")
    client = sync_redis.Redis(port=stack.redis.port, password=stack.redis.password,
                              decode_responses=True)
    client.config_set("maxmemory-policy", "noeviction")  # behind the operator's back
    eventually(lambda: client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru",
               timeout=20, what="the drift to be corrected")
    drift = eventually(lambda: events(kubectl, namespace, "RedisSettingDrifted"), timeout=20,
                       what="a RedisSettingDrifted event")
    assert "maxmemory-policy was 'noeviction'" in drift[0]["message"]
    assert drift[0]["type"] == "Warning"
    obj = redis_ready(kubectl, namespace)
    states = {s["name"]: s["state"] for s in obj["status"]["redis"]["settings"]}
    assert states == {"maxmemory-policy": "Applied", "timeout": "Applied",
                      "tcp-keepalive": "Applied"}
    client.close()


def test_persisted_settings_are_rewritten_to_the_config_file(operator, stack, kubectl, namespace,
                                                             credentials):
    config_file = stack.redis.workdir / "redis.conf"
    kubectl.apply(profile_manifest(stack, credentials, persistSettings=True), namespace)
    eventually(lambda: redis_ready(kubectl, namespace), timeout=60, what="RedisReady")
    text = config_file.read_text()
    assert "maxmemory-policy allkeys-lru" in text and "tcp-keepalive 60" in text
