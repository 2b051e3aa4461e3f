"""Reference limiter throughput against what Redis itself can do with the same script.

Starts a Redis (the local stack's kind: no persistence, a password), writes one tenant's table
with the operator's own writer, then alternates rounds of

* the reference limiter, pipelined: ``--concurrency`` tasks, each checking batches of
  ``--batch`` requests with ``Limiter.check_many`` (one write and one read per batch);
* ``redis-benchmark`` running the same EVALSHA (same script, same keys, same arguments, built
  from the documented key layout) with ``--clients`` connections and ``-P --pipeline``.

Fair by construction: one Redis for both, the same command bytes, every check allowed so both
run the same path of the script (read the version, read and write the bucket), rounds of about
the same length alternated so that whatever else the machine runs weighs on both sides alike.
redis-benchmark keeps its usual ``-c 50 -P 16`` (800 commands in flight). Ours defaults to 16
tasks of 100 checks (1,600 in flight): an application batching the checks of its concurrent
requests, and on a 2-core machine where the client and redis-server share the CPU, the setting
that keeps redis-server busiest. Much larger batches (8 x 1000) finish in lockstep: every task
waits for its last replies at about the same moment and the server idles while the client
turns them into decisions and writes the next batches (redis-server about 0.8 busy, some
15-20% fewer checks per second).

Prints each round, each side's median checks per second and their ratio (goal: at least 0.8),
the spread of the per-round ratios, how busy redis-server was on each side (1.0: one core;
below it, the server waited for its client), and the limiter client's CPU per check.

    python bench/limiter.py [--rounds 5] [--seconds 3] [--concurrency 16] [--batch 100]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Coroutine

from redis.asyncio import Redis

from perf_operator.api.profile import PerformanceProfileSpec
from perf_operator.api.tenant import TenantQuotaSpec, effective_limits
from perf_operator.devstack.services import RedisServer
from perf_operator.ratelimit import Limiter
from perf_operator.ratelimit.layout import bucket_key, record_key
from perf_operator.ratelimit.limiter import SCRIPT_SHA
from perf_operator.ratelimit.rules import EndpointRule
from perf_operator.tenants.records import desired_record, observe_record, plan_record, write_record

PREFIX, TENANT, PATH = "bench:", "acme", "/api/plugins/catalog"
RULE = {"pattern": "/api/plugins/**", "methods": ["GET"], "requests": 1_000_000_000,
        "windowSeconds": 1}


async def write_table(redis: Redis) -> str:
    profile = PerformanceProfileSpec.model_validate(
        {"redis": {"connection": {"host": "127.0.0.1"}, "keyPrefix": PREFIX}})
    tenant = TenantQuotaSpec.model_validate(
        {"tenantId": TENANT, "profileRef": {"name": "bench"}, "rateLimits": [RULE]})
    desired = desired_record(PREFIX, effective_limits(profile, tenant), "bench/acme")
    observed = await observe_record(redis, desired.key)
    for step in plan_record(desired, observed, 0):
        observed = await write_record(redis, desired, step)
    return str(observed.version)


def benchmark_command(server: RedisServer, version: str, requests: int, clients: int,
                      pipeline: int) -> list[str]:
    rule = EndpointRule(pattern=RULE["pattern"], methods=tuple(RULE["methods"]),
                        requests=RULE["requests"], window_seconds=RULE["windowSeconds"], burst=0)
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-a", server.password,
            "-n", str(requests), "-c", str(clients), "-P", str(pipeline), "--csv",
            "EVALSHA", SCRIPT_SHA, "2", record_key(PREFIX, TENANT),
            bucket_key(PREFIX, TENANT, rule.bucket_name), version,
            repr(rule.emission_interval_us), str(rule.capacity)]


def run_redis_benchmark(argv: list[str]) -> float:
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    last = [line for line in result.stdout.splitlines() if line.startswith('"EVALSHA')][-1]
    return float(last.split(",")[1].strip('"'))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Side:
    """One side's rounds: checks per second, and how busy redis-server was meanwhile."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.server_busy: list[float] = []

    async def run(self, server_pid: int, measure: Coroutine[None, None, float]) -> float:
        cpu, start = cpu_seconds(server_pid), time.perf_counter()
        self.rates.append(await measure)
        self.server_busy.append((cpu_seconds(server_pid) - cpu) / (time.perf_counter() - start))
        return self.rates[-1]


async def limiter_round(limiter: Limiter, seconds: float, batch: int, concurrency: int
                        ) -> float:
    requests = [(TENANT, PATH, "GET")] * batch

    async def worker(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            decisions = await limiter.check_many(PREFIX, requests)
            assert decisions[-1].allowed
            done += len(decisions)
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    return sum(counts) / (time.perf_counter() - start)


async def main(args: argparse.Namespace) -> None:
    ours, theirs = Side(), Side()
    client_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-limiter-") as workdir:
        server = RedisServer(pathlib.Path(workdir))
        server.start()
        try:
            redis = Redis(host="127.0.0.1", port=server.port, password=server.password,
                          max_connections=args.concurrency + 2)
            version = await write_table(redis)
            limiter = Limiter(redis)
            await limiter_round(limiter, 0.5, args.batch, args.concurrency)  # warm up
            for round_ in range(args.rounds):
                before = os.times()
                rate = await ours.run(server.process.pid, limiter_round(
                    limiter, args.seconds, args.batch, args.concurrency))
                after = os.times()
                client_cpu += after.user - before.user + after.system - before.system
                argv = benchmark_command(server, version, max(10_000, int(rate * args.seconds)),
                                         args.clients, args.pipeline)
                their_rate = await theirs.run(
                    server.process.pid, asyncio.to_thread(run_redis_benchmark, argv))
                print(f"round {round_ + 1}: limiter {rate:,.0f}/s, redis-benchmark "
                      f"{their_rate:,.0f}/s, ratio {rate / their_rate:.2f}", flush=True)
            await redis.aclose()
        finally:
            server.stop()
    ratios = [a / b for a, b in zip(ours.rates, theirs.rates)]
    median_ours, median_theirs = statistics.median(ours.rates), statistics.median(theirs.rates)
    print(f"reference limiter, pipelined ({args.concurrency} x {args.batch}): "
          f"{median_ours:,.0f} checks/s (median of {args.rounds}), redis-server busy "
          f"{statistics.median(ours.server_busy):.2f}, client CPU per check "
          f"{client_cpu / (sum(ours.rates) * args.seconds) * 1e6:.1f} us")
    print(f"redis-benchmark EVALSHA (-c {args.clients} -P {args.pipeline}): "
          f"{median_theirs:,.0f} checks/s (median of {args.rounds}), redis-server busy "
          f"{statistics.median(theirs.server_busy):.2f}")
    print(f"ratio: {median_ours / median_theirs:.2f} (goal >= 0.8); per round "
          f"{min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a limiter round")
    parser.add_argument("--batch", type=int, default=100, help="checks per pipeline")
    parser.add_argument("--concurrency", type=int, default=16, help="pipelines in flight")
    parser.add_argument("--clients", type=int, default=50, help="redis-benchmark -c")
    parser.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P")
    asyncio.run(main(parser.parse_args()))
