"""How long an index takes to build through the operator's executor, against the same
CREATE INDEX CONCURRENTLY typed into psql, in the same run on the same table.

Starts a PostgreSQL of its own (perf_operator.devstack), fills a table with --rows rows, then
--repetitions times, in alternating order, builds the same index both ways and drops it:

* psql: ``psql -c "CREATE INDEX CONCURRENTLY ..."``, timed from starting psql to its exit;
* operator: ``reconcile_indexes`` (observe the catalog, plan, launch the job: build under the
  temporary name, mark, rename) until the next reconcile reports the index Ready.

Prints each run, the medians and the ratio operator/psql (goal: within 10%, i.e. <= 1.10).

    python bench/index_build.py [--rows 1000000] [--repetitions 7]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time

from perf_operator.api.profile import Index
from perf_operator.devstack.services import PostgresServer
from perf_operator.postgres.connect import TargetKey, close_all, open_target
from perf_operator.postgres.index_builds import BuildOptions, reconcile_indexes, wait_for_jobs
from perf_operator.postgres.indexes import Phase

DATABASE = "bench"
INDEX = Index(name="events_tenant_created_idx", table="events",
              columns=[{"column": "tenant_id"}, {"column": "created_at"}])
MANUAL = "CREATE INDEX CONCURRENTLY events_tenant_created_idx ON events (tenant_id, created_at)"


class QuietEvents:
    def normal(self, reason: str, message: str) -> None:
        pass

    def warning(self, reason: str, message: str) -> None:
        raise RuntimeError(f"{reason}: {message}")


def psql(server: PostgresServer, sql: str, database: str = DATABASE) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", server.superuser,
                    "-d", database, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True,
                   capture_output=True, env={**os.environ, "PGPASSWORD": server.password})


def by_hand(server: PostgresServer) -> float:
    started = time.perf_counter()
    psql(server, MANUAL)
    return time.perf_counter() - started


async def through_operator(target) -> float:
    started = time.perf_counter()
    result = await reconcile_indexes(target, [INDEX], BuildOptions(), QuietEvents())
    assert result.plan.jobs, "nothing to build: the previous index was not dropped"
    await wait_for_jobs(target)
    result = await reconcile_indexes(target, [INDEX], BuildOptions(), QuietEvents())
    elapsed = time.perf_counter() - started
    assert [r.phase for r in result.plan.reports] == [Phase.READY], result.plan.reports
    return elapsed


async def main(rows: int, repetitions: int) -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="perf-operator-bench-"))
    workdir.chmod(0o755)  # PostgreSQL runs as another user when we are root
    server = PostgresServer(workdir / "postgres")
    server.start()
    try:
        server.create_database(DATABASE)  # owned by the application's role
        psql(server, f"CREATE TABLE events AS SELECT g AS id, (g % 1000)::int AS tenant_id, "
                     f"(g % 7)::int AS kind, now() - g * interval '1 second' AS created_at "
                     f"FROM generate_series(1, {rows}) g")
        psql(server, "VACUUM ANALYZE events")
        target = await open_target(TargetKey("bench", "index-build", "127.0.0.1", server.port,
                                             DATABASE, server.operator_user),
                                   server.operator_password,  # the operator's own login
                                   granted_by="benchmark")
        manual, operator = [], []
        for repetition in range(repetitions):
            order = ("psql", "operator") if repetition % 2 == 0 else ("operator", "psql")
            for way in order:
                if way == "psql":
                    manual.append(by_hand(server))
                else:
                    operator.append(await through_operator(target))
                psql(server, "DROP INDEX events_tenant_created_idx")
            print(f"run {repetition + 1}: psql {manual[-1]:.3f}s  operator {operator[-1]:.3f}s",
                  flush=True)
        await close_all()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    psql_median, operator_median = statistics.median(manual), statistics.median(operator)
    print(f"\nindex on {rows:,} rows, {repetitions} runs each")
    print(f"psql      median {psql_median:.3f}s  (min {min(manual):.3f}s, "
          f"max {max(manual):.3f}s)")
    print(f"operator  median {operator_median:.3f}s  (min {min(operator):.3f}s, "
          f"max {max(operator):.3f}s)")
    ratio = operator_median / psql_median
    print(f"ratio operator/psql: {ratio:.3f}  (goal <= 1.10: "
          f"{'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.repetitions))
