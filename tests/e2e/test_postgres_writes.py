"""No blocked writes: writers keep inserting and updating a 1 M row table while the operator
builds an index on it, with zero errors and without a gap. Their throughput with and without
the build is printed (``pytest -s``); it is a figure, not an assertion."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import psycopg
import pytest

from perf_operator.postgres.connect import target_for_profile
from perf_operator.postgres.index_builds import wait_for_jobs

from .postgres_support import (RecordedEvents, converge, database_section,
                               phases, profile_context, reconcile)

pytestmark = [pytest.mark.e2e]

ROWS = 1_000_000
WRITERS = 2
INDEX = {"name": "orders_tenant_status_idx", "table": "orders",
         "columns": [{"column": "tenant_id"}, {"column": "status"},
                     {"column": "updated_at", "order": "Desc"}]}


@dataclass
class WriteLog:
    """When each write finished, how long it took, and what failed."""

    finished: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in self.finished if start <= t < end)


async def writer(dsn: str, log: WriteLog, stop: asyncio.Event) -> None:
    """Alternately insert a row and update a random one, each its own transaction."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            for statement, params in (
                    ("INSERT INTO orders (tenant_id, status, amount) VALUES (%s, 'new', %s)",
                     (random.randrange(1000), random.randrange(10_000))),
                    ("UPDATE orders SET status = 'paid', amount = amount + 1, "
                     "updated_at = now() WHERE id = %s", (random.randrange(1, ROWS),))):
                started = time.monotonic()
                try:
                    await conn.execute(statement, params)
                except psycopg.Error as err:
                    log.errors.append(str(err))
                now = time.monotonic()
                log.finished.append(now)
                log.latencies.append(now - started)


async def test_writers_are_never_blocked_by_a_build(pg_database, namespace, credentials, psql,
                                                    stack):
    db = pg_database["database"]
    psql(db, f"""
        CREATE TABLE orders (id bigserial PRIMARY KEY, tenant_id int NOT NULL,
                             status text NOT NULL, amount int NOT NULL,
                             updated_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO orders (tenant_id, status, amount)
        SELECT g % 1000, CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'new' END, g % 10000
        FROM generate_series(1, {ROWS}) g""")
    psql(db, "VACUUM ANALYZE orders")
    ctx = profile_context(namespace, database_section(pg_database, indexes=[INDEX]),
                          events=RecordedEvents())
    target = await target_for_profile(namespace, ctx.name, ctx.spec.database.resolved_connection)
    log, stop = WriteLog(), asyncio.Event()
    writers = [asyncio.create_task(writer(stack.postgres.dsn(db), log, stop))
               for _ in range(WRITERS)]
    try:
        await asyncio.sleep(1)  # warm up
        baseline_start = time.monotonic()
        await asyncio.sleep(4)
        baseline_end = build_start = time.monotonic()
        await reconcile(ctx)
        await wait_for_jobs(target)
        build_end = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*writers)

    assert log.errors == []
    assert phases(await converge(ctx)) == {"orders_tenant_status_idx": "Ready"}
    build = build_end - build_start
    assert build > 1, "the table should be large enough for the build to take a while"
    # writes completed in every tenth of the build: none of them waited for it
    tenths = [log.between(build_start + i * build / 10, build_start + (i + 1) * build / 10)
              for i in range(10)]
    assert all(tenths), tenths
    during = log.between(build_start, build_end) / build
    without = log.between(baseline_start, baseline_end) / (baseline_end - baseline_start)
    slowest = max(latency for t, latency in zip(log.finished, log.latencies)
                  if build_start <= t < build_end)
    print(f"\nwrites/s without a build: {without:.0f}; during the {build:.1f}s build: "
          f"{during:.0f} ({during / without:.0%}); slowest write during the build: "
          f"{slowest * 1000:.0f} ms; errors: {len(log.errors)}")
