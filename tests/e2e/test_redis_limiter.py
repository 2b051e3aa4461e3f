"""The reference limiter against a real Redis, reading tables written by the operator's own
writer: burst, denial with retry-after, refill, a changed table followed from the next check,
a flushed script cache, pipelined checks, a restarted Redis, and the client's own connection
settings (a unix socket, a database)."""
from __future__ import annotations

import asyncio
import pathlib
import secrets
import tempfile

import pytest
from redis.asyncio import Redis

from perf_operator.api.profile import PerformanceProfileSpec
from perf_operator.api.tenant import TenantQuotaSpec, effective_limits
from perf_operator.devstack.processes import ManagedProcess, wait_until
from perf_operator.devstack.services import RedisServer
from perf_operator.ratelimit import Limiter, TableNotFound, check
from perf_operator.tenants.records import desired_record, observe_record, plan_record, write_record


async def write_table(redis: Redis, prefix: str, tenant: str, endpoints: list[dict],
                      default: dict | None = None, enabled: bool = True) -> int:
    """Write the tenant's table the way the operator does; returns its version."""
    profile = PerformanceProfileSpec.model_validate({
        "redis": {"connection": {"host": "127.0.0.1"}, "keyPrefix": prefix},
        "api": {"rateLimits": {"enabled": enabled,
                               "default": default or {"requests": 1000, "windowSeconds": 1}}}})
    spec = TenantQuotaSpec.model_validate({"tenantId": tenant, "profileRef": {"name": "p"},
                                           "rateLimits": endpoints})
    desired = desired_record(prefix, effective_limits(profile, spec), f"ns/{tenant}")
    observed = await observe_record(redis, desired.key)
    for step in plan_record(desired, observed, observed.version):
        observed = await write_record(redis, desired, step)
    return observed.version


async def drain(redis, prefix, tenant, path, method="GET", limit=1000):
    """Check until the first denial; the allowed decisions and the denial."""
    allowed = []
    for _ in range(limit):
        decision = await check(redis, prefix, tenant, path, method)
        if not decision.allowed:
            return allowed, decision
        allowed.append(decision)
    raise AssertionError(f"no denial after {limit} checks")


async def test_burst_then_denial_with_retry_after_then_refill(redis, redis_prefix):
    await write_table(redis, redis_prefix, "acme",
                      [{"pattern": "/api/search", "requests": 5, "windowSeconds": 1, "burst": 2}])
    allowed, denied = await drain(redis, redis_prefix, "acme", "/api/search")
    assert len(allowed) == 7  # requests + burst back to back
    assert [d.remaining for d in allowed] == [6, 5, 4, 3, 2, 1, 0]
    assert all(d.limit == 5 for d in allowed)
    assert denied.remaining == 0 and denied.limit == 5
    assert 0 < denied.retry_after_seconds <= 0.2  # one emission interval: 1 s / 5
    await asyncio.sleep(denied.retry_after_seconds + 0.02)
    assert (await check(redis, redis_prefix, "acme", "/api/search", "GET")).allowed
    assert not (await check(redis, redis_prefix, "acme", "/api/search", "GET")).allowed


async def test_each_rule_has_its_own_budget_and_the_default_covers_the_rest(redis, redis_prefix):
    await write_table(redis, redis_prefix, "acme",
                      [{"pattern": "/api/plugins/**", "methods": ["POST"], "requests": 2},
                       {"pattern": "/api/plugins/**", "methods": ["GET"], "requests": 4}],
                      default={"requests": 3, "windowSeconds": 60})
    posts, _ = await drain(redis, redis_prefix, "acme", "/api/plugins/x", "POST")
    gets, _ = await drain(redis, redis_prefix, "acme", "/api/plugins/x/y", "get")
    others, _ = await drain(redis, redis_prefix, "acme", "/api/search?q=1", "GET")
    assert (len(posts), len(gets), len(others)) == (2, 4, 3)


async def test_a_changed_table_is_enforced_from_the_next_check(redis, redis_prefix):
    v1 = await write_table(redis, redis_prefix, "acme",
                           [{"pattern": "/api/search", "requests": 3, "windowSeconds": 60}])
    allowed, denied = await drain(redis, redis_prefix, "acme", "/api/search")
    assert len(allowed) == 3 and denied.limit == 3
    v2 = await write_table(redis, redis_prefix, "acme",
                           [{"pattern": "/api/search", "requests": 8, "windowSeconds": 60}])
    assert v2 == v1 + 1
    allowed, denied = await drain(redis, redis_prefix, "acme", "/api/search")
    assert len(allowed) == 8 and denied.limit == 8


async def test_disabled_rate_limits_and_unknown_tenants(redis, redis_prefix):
    await write_table(redis, redis_prefix, "acme", [], enabled=False)
    decision = await check(redis, redis_prefix, "acme", "/api/search", "GET")
    assert decision.allowed and decision.limit is None and decision.remaining is None
    with pytest.raises(TableNotFound):
        await check(redis, redis_prefix, "nobody", "/api/search", "GET")


async def test_the_script_is_reloaded_after_the_script_cache_was_flushed(redis, redis_prefix):
    await write_table(redis, redis_prefix, "acme", [{"pattern": "/x", "requests": 2}])
    limiter = Limiter(redis)
    assert (await limiter.check(redis_prefix, "acme", "/x", "GET")).allowed
    await redis.script_flush()
    assert (await limiter.check(redis_prefix, "acme", "/x", "GET")).remaining == 0


async def test_pipelined_checks_decide_like_sequential_ones(redis, redis_prefix):
    await write_table(redis, redis_prefix, "acme", [{"pattern": "/x", "requests": 5}])
    await write_table(redis, redis_prefix, "beta", [{"pattern": "/x", "requests": 3}])
    requests = [("acme", "/x", "GET"), ("beta", "/x", "GET")] * 6
    decisions = await Limiter(redis).check_many(redis_prefix, requests)
    acme = [d.allowed for (t, _, _), d in zip(requests, decisions) if t == "acme"]
    beta = [d.allowed for (t, _, _), d in zip(requests, decisions) if t == "beta"]
    assert acme == [True] * 5 + [False]
    assert beta == [True] * 3 + [False] * 3


async def test_big_batches_read_in_many_chunks_decide_like_sequential_ones(redis, redis_prefix):
    """Thousands of replies arrive in many reads, and the denials start mid-batch."""
    await write_table(redis, redis_prefix, "acme",
                      [{"pattern": "/x", "requests": 3000, "windowSeconds": 3600}])
    decisions = await Limiter(redis).check_many(redis_prefix, [("acme", "/x", "GET")] * 5000)
    assert [d.remaining for d in decisions[:3000]] == list(range(2999, -1, -1))
    assert not any(d.allowed for d in decisions[3000:])
    assert all(d.retry_after_seconds > 0 for d in decisions[3000:])


async def test_a_restarted_redis_is_followed_without_a_new_client(tmp_path, redis_prefix):
    """The pooled connections died, the script cache and every key are gone: the next check
    reconnects, loads the script again and finds no table until the operator restores it."""
    server = RedisServer(tmp_path)
    server.start()
    client = Redis(host="127.0.0.1", port=server.port, password=server.password)
    try:
        await write_table(client, redis_prefix, "acme", [{"pattern": "/x", "requests": 2}])
        limiter = Limiter(client)
        assert (await limiter.check(redis_prefix, "acme", "/x", "GET")).remaining == 1
        await asyncio.to_thread(server.restart)
        with pytest.raises(TableNotFound):
            await limiter.check(redis_prefix, "acme", "/x", "GET")
        await write_table(client, redis_prefix, "acme", [{"pattern": "/x", "requests": 2}])
        decisions = await limiter.check_many(redis_prefix, [("acme", "/x", "GET")] * 3)
        assert [d.remaining for d in decisions] == [1, 0, 0]
        assert not decisions[2].allowed
    finally:
        await client.aclose()
        server.stop()


async def test_checks_use_the_clients_connection_settings_unix_socket_and_database(redis_prefix):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="rl-"))  # short: a socket path is <108 bytes
    socket_path, password = workdir / "redis.sock", secrets.token_urlsafe(12)
    server = ManagedProcess("redis", [
        "redis-server", "--port", "0", "--unixsocket", str(socket_path), "--requirepass",
        password, "--save", "", "--appendonly", "no", "--dir", str(workdir)], workdir)
    client = Redis(unix_socket_path=str(socket_path), password=password, db=3)
    database_zero = Redis(unix_socket_path=str(socket_path), password=password)
    try:
        wait_until(socket_path.exists, process=server, timeout=30,
                   what="Redis on a unix socket")
        await write_table(client, redis_prefix, "acme", [{"pattern": "/x", "requests": 2}])
        decisions = await Limiter(client).check_many(redis_prefix, [("acme", "/x", "GET")] * 3)
        assert [d.allowed for d in decisions] == [True, True, False]
        assert len(await client.keys(f"{redis_prefix}*:rl:*")) == 1  # the rule's bucket
        assert await database_zero.keys(f"{redis_prefix}*") == []
    finally:
        await client.aclose()
        await database_zero.aclose()
        server.stop()
