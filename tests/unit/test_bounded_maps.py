"""The operator's in-memory maps return to empty once what they are about is gone: per-key
locks when nobody holds or awaits them, pools and clients when their profile is forgotten,
cached Secrets and vetted addresses when they expire, build failures when their index is no
longer declared. Pure: no service is connected (pools and clients are built, never opened)."""
from __future__ import annotations

import asyncio
import gc
import time

import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from perf_operator import secrets
from perf_operator.postgres import connect as pg_connect
from perf_operator.postgres import index_builds
from perf_operator.postgres.indexes import BuildFailure, IndexDefinition
from perf_operator.redis import connect as redis_connect
from perf_operator.targets import policy

#: The module-level maps these tests fill and expect empty at the start.
SHARED_MAPS = [
    lambda: index_builds._failures, lambda: pg_connect._targets, lambda: redis_connect._clients,
    lambda: redis_connect._target_uses, lambda: secrets._cache, lambda: policy._admitted,
]


@pytest.fixture(autouse=True)
def empty_maps():
    """Each test starts from empty maps: in one pytest process the end-to-end tests (which run
    first in CI) leave their own entries there. Theirs are set aside and put back after."""
    saved = [(shared(), dict(shared())) for shared in SHARED_MAPS]
    for shared, _ in saved:
        shared.clear()
    yield
    for shared, entries in saved:
        shared.clear()
        shared.update(entries)


LOCK_MAPS = [
    pytest.param(lambda: redis_connect._locks, id="redis.connect"),
    pytest.param(lambda: pg_connect._locks, id="postgres.connect"),
    pytest.param(lambda: index_builds._plan_locks, id="index_builds.plan"),
    pytest.param(lambda: index_builds._table_locks, id="index_builds.table"),
]


@pytest.mark.parametrize("locks", LOCK_MAPS)
async def test_a_per_key_lock_lives_only_while_held_or_awaited(locks):
    locks = locks()
    before = len(locks)
    holding: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def hold(key: str) -> None:
        async with locks.setdefault(key, asyncio.Lock()):
            holding[key] += 1
            most[key] = max(most[key], holding[key])
            assert locks[key].locked()
            await asyncio.sleep(0.01)
            holding[key] -= 1

    # two holders of one key share one lock (the second waits for it): never both inside
    await asyncio.gather(hold("a"), hold("a"), hold("b"))
    assert most == {"a": 1, "b": 1}
    gc.collect()
    assert len(locks) == before


def test_build_slots_live_only_while_a_job_holds_them():
    slots = index_builds._slots.setdefault(("db", 5432, "x"), index_builds.BuildSlots(1))
    assert ("db", 5432, "x") in index_builds._slots
    del slots
    gc.collect()
    assert ("db", 5432, "x") not in index_builds._slots


def _definition(name: str) -> IndexDefinition:
    return IndexDefinition(name=name, schema="public", table="t", keys=())


def test_build_failures_go_with_the_declaration():
    database = ("db", 5432, "app")
    failure = BuildFailure("hash", "boom", 3, time.monotonic() + 60)
    index_builds._failures.update({
        (database, "public", "kept"): index_builds.OwnedFailure("ns/p", failure),
        (database, "public", "withdrawn"): index_builds.OwnedFailure("ns/p", failure),
        (database, "public", "other"): index_builds.OwnedFailure("ns/q", failure),
    })
    try:
        index_builds.forget_undeclared_failures(database, "ns/p", [_definition("kept")])
        assert set(index_builds._failures) == {(database, "public", "kept"),
                                               (database, "public", "other")}
        # a deleted profile declares nothing: its failures go, another profile's stay
        index_builds.forget_undeclared_failures(database, "ns/p", [])
        assert set(index_builds._failures) == {(database, "public", "other")}
    finally:
        index_builds._failures.clear()


#: A monotonic clock reading for the idle rules: integral, so ``now + idle - now == idle``
#: exactly (time.monotonic() made these tests fail on rounding, now and then).
EXACT_NOW = 100_000.0


def _unopened_target(profile: str, dbname: str) -> pg_connect.DatabaseTarget:
    key = pg_connect.TargetKey(namespace="ns", profile=profile, host="127.0.0.1", port=5432,
                               dbname=dbname, user="app")
    return pg_connect.DatabaseTarget(key=key, pool=AsyncConnectionPool("", open=False),
                                     credential_fingerprint="f", connect_kwargs={})


async def test_a_profiles_pools_close_with_it_and_only_its_own():
    mine, moved, other = (_unopened_target("p", "app"), _unopened_target("p", "old"),
                          _unopened_target("q", "app"))
    for target in (mine, moved, other):
        pg_connect._targets[target.key] = target
    try:
        await pg_connect.close_profile_pools("ns", "p", keep=mine.key)  # p points at app now
        assert set(pg_connect._targets) == {mine.key, other.key}
        await pg_connect.close_profile_pools("ns", "p")  # p deleted, or has no database
        assert set(pg_connect._targets) == {other.key}
    finally:
        await pg_connect.close_all()


async def test_a_pool_nobody_asks_for_is_closed():
    """A deleted profile's pool reopened once more (its tenant's mirror row removed later)."""
    used, forgotten = _unopened_target("p", "app"), _unopened_target("gone", "app")
    used.used_at = EXACT_NOW  # a clock reading whose differences are exact (no rounding)
    forgotten.used_at = used.used_at - pg_connect.POOL_IDLE_SECONDS
    for target in (used, forgotten):
        pg_connect._targets[target.key] = target
    try:
        await pg_connect.close_idle_pools(used.used_at)
        assert set(pg_connect._targets) == {used.key}
        await pg_connect.close_idle_pools(used.used_at + pg_connect.POOL_IDLE_SECONDS)
        assert pg_connect._targets == {}
    finally:
        await pg_connect.close_all()


def _redis_target(namespace: str) -> redis_connect.RedisTarget:
    return redis_connect.RedisTarget(namespace=namespace, host="127.0.0.1", port=6379, db=0,
                                     tls=False, secret=None, password_key=None,
                                     username_key=None)


async def test_redis_clients_close_when_no_recent_target_uses_them():
    now = EXACT_NOW
    shared: redis_connect.ClientKey = ("127.0.0.1", 6379, 0, False, (None, None))
    rotated: redis_connect.ClientKey = ("127.0.0.1", 6379, 0, False, ("u", "old"))
    redis_connect._clients.update({shared: Redis(), rotated: Redis()})
    redis_connect._target_uses.update({
        _redis_target("live"): redis_connect._TargetUse(shared, now),
        _redis_target("deleted"): redis_connect._TargetUse(
            shared, now - redis_connect.TARGET_IDLE_SECONDS),
    })
    try:
        await redis_connect.close_unused(now)  # the rotated login's client nobody uses
        assert set(redis_connect._clients) == {shared}
        assert set(redis_connect._target_uses) == {_redis_target("live")}
        await redis_connect.close_unused(now + redis_connect.TARGET_IDLE_SECONDS)
        assert redis_connect._clients == {} and redis_connect._target_uses == {}
    finally:
        await redis_connect.close_all()


async def test_cached_secrets_are_dropped_once_too_old_to_serve(monkeypatch):
    async def read(namespace, name, keys, identity_keys):
        return [f"{namespace}/{name}"]

    monkeypatch.setattr(secrets, "_decoded", read)
    secrets._cache.clear()
    try:
        await secrets.read_secret_keys("gone", "secret", "password")
        secrets._cache[("gone", "secret", ("password",), ())].read_at -= \
            secrets.CREDENTIALS_MAX_AGE
        assert await secrets.read_secret_keys("ns", "s", "password") == ["ns/s"]
        assert list(secrets._cache) == [("ns", "s", ("password",), ())]
    finally:
        secrets._cache.clear()


async def test_a_refresh_reads_the_secret_again_but_not_twice_in_a_second(monkeypatch):
    """What a profile's reconcile and a refused login ask for: a rotated password is read,
    and many tenants refused at once read it once."""
    reads = []

    async def read(namespace, name, keys, identity_keys):
        reads.append(name)
        return [f"v{len(reads)}"]

    monkeypatch.setattr(secrets, "_decoded", read)
    secrets._cache.clear()
    try:
        assert await secrets.read_secret_keys("ns", "s", "password") == ["v1"]
        assert await secrets.read_secret_keys("ns", "s", "password") == ["v1"]
        assert await secrets.read_secret_keys("ns", "s", "password", refresh=True) == ["v1"]
        secrets._cache[("ns", "s", ("password",), ())].read_at -= secrets.REFRESH_MIN_AGE
        assert await secrets.read_secret_keys("ns", "s", "password", refresh=True) == ["v2"]
        assert reads == ["s", "s"]
    finally:
        secrets._cache.clear()


async def test_vetted_addresses_are_dropped_once_expired(monkeypatch):
    monkeypatch.setattr(policy, "POLICY", policy.ConnectionPolicy.from_settings(True, ["127.0.0.1"]))
    policy._admitted.clear()
    policy._admitted[("gone.example", 5432, None)] = policy._Admitted("127.0.0.2", 0.0)
    assert await policy.admit("127.0.0.1", 6379, granted_by=None) == "127.0.0.1"
    assert list(policy._admitted) == [("127.0.0.1", 6379, None)]
    policy._admitted.clear()
