"""How much of the cache a tenant uses, measured at a bounded cost.

Counting a tenant's keys exactly would mean walking the whole keyspace for every tenant on every
resync: 10,000 tenants times millions of keys. Instead one measurement costs at most
``SCAN_CALLS`` SCAN calls of ``SCAN_COUNT`` slots each (MATCH ``<prefix>{<tenant>}:cache:*``; one
call of 4,000 by default, a round trip each) and ``MEMORY_SAMPLES`` MEMORY USAGE calls
(pipelined):

* If the SCAN finishes within the budget, the key count is exact; otherwise it is extrapolated
  from the share of the keyspace visited (matches x DBSIZE / slots visited).
* If the tenant has at most ``MEMORY_SAMPLES`` keys their memory is summed; otherwise the mean
  of a sample, spread over the keys found, is multiplied by the key count, and ``sampled`` is
  set. (An unfinished SCAN that found nothing reports 0 keys, not sampled: the flag must not
  flip for every empty tenant as the shared keyspace grows, which would be a status write each.) On Redis Cluster all of a tenant's keys share a slot
(the ``{tenant}`` hash tag); the SCAN is then done on the node serving it.

Usage moves slowly and is only reported, so it is measured at most every
``MEASURE_INTERVAL_SECONDS`` (every reconcile in test mode); the resyncs in between cost one
HMGET per tenant instead of six round trips.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from ..config import CONFIG
from ..ratelimit.layout import cache_prefix, glob_escape

SCAN_COUNT = 4000
SCAN_CALLS = 1
MEMORY_SAMPLES = 16
MEASURE_INTERVAL_SECONDS = 0.0 if CONFIG.test_mode else 300.0

#: When each (prefix, tenant) was last measured, by this process.
_measured_at: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class CacheUsage:
    keys: int
    memory_bytes: int
    sampled: bool


def estimate_keys(matched: int, visited: int, total: int, complete: bool) -> int:
    """The tenant's key count from a SCAN that saw ``matched`` keys in ``visited`` slots of a
    database of ``total`` keys; exact when the SCAN completed."""
    if complete or visited >= total:
        return matched
    return round(matched * total / max(visited, 1))


def estimate_memory(sample_sizes: list[int], keys: int) -> tuple[int, bool]:
    """Total memory from the MEMORY USAGE of a sample of the tenant's keys."""
    if not sample_sizes:
        return 0, False
    if len(sample_sizes) >= keys:
        return sum(sample_sizes), False
    return round(sum(sample_sizes) / len(sample_sizes) * keys), True


def spread_sample(keys: list[str], size: int) -> list[str]:
    """``size`` keys evenly spread over ``keys`` (SCAN order is hash order, so this samples
    across the keyspace rather than the first few keys written)."""
    if len(keys) <= size:
        return keys
    step = len(keys) / size
    return [keys[int(i * step)] for i in range(size)]


def measurement_due(prefix: str, tenant: str) -> bool:
    last = _measured_at.get((prefix, tenant))
    return last is None or time.monotonic() - last >= MEASURE_INTERVAL_SECONDS


def forget(prefix: str, tenant: str) -> None:
    _measured_at.pop((prefix, tenant), None)


async def measure_cache(redis: Redis, prefix: str, tenant: str) -> CacheUsage:
    match = glob_escape(cache_prefix(prefix, tenant)) + "*"
    # DBSIZE rides along with the first SCAN: one round trip for most measurements (a new
    # tenant's among them), where a DBSIZE after an unfinished SCAN was one more.
    async with redis.pipeline(transaction=False) as pipe:
        pipe.dbsize()
        pipe.scan(0, match=match, count=SCAN_COUNT)
        total, (cursor, found) = await pipe.execute()
    calls = 1
    while cursor != 0 and calls < SCAN_CALLS:
        cursor, batch = await redis.scan(cursor, match=match, count=SCAN_COUNT)
        found.extend(batch)
        calls += 1
    keys = estimate_keys(len(found), calls * SCAN_COUNT, total, cursor == 0)
    sample = spread_sample(found, MEMORY_SAMPLES)
    sizes: list[int] = []
    if sample:
        async with redis.pipeline(transaction=False) as pipe:
            for key in sample:
                pipe.memory_usage(key)
            # a key that expired between SCAN and MEMORY USAGE reports None
            sizes = [size for size in await pipe.execute() if size is not None]
    memory, sampled = estimate_memory(sizes, keys)
    _measured_at[(prefix, tenant)] = time.monotonic()
    return CacheUsage(keys=keys, memory_bytes=memory, sampled=sampled)
