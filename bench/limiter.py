"""Reference limiter throughput against what Redis itself can do with the same script.

Starts a Redis (the local stack's kind: no persistence, a password), writes one tenant's table
with the operator's own writer, then alternates rounds of

* the reference limiter, pipelined: ``--concurrency`` tasks, each checking batches of
  ``--batch`` requests with ``Limiter.check_many`` (one round trip per batch);
* ``redis-benchmark`` running the same EVALSHA (same script, same keys, same arguments, built
  from the documented key layout) with ``--clients`` connections and ``-P --pipeline``.

The rule's limit is high enough that every check is allowed, so both sides run the same path of
the script (read the version, read and write the bucket). Prints each side's median checks per
second over the rounds and their ratio (goal: at least 0.8), and which reply parser redis-py
used (hiredis, or its pure-Python one, which costs the client about half its throughput).

    python bench/limiter.py [--rounds 5] [--seconds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import subprocess
import tempfile
import time

from redis.asyncio import Redis
from redis.utils import HIREDIS_AVAILABLE

from perf_operator.api.profile import PerformanceProfileSpec
from perf_operator.api.tenant import TenantQuotaSpec, effective_limits
from perf_operator.devstack.services import RedisServer
from perf_operator.ratelimit import Limiter
from perf_operator.ratelimit.layout import bucket_key, record_key
from perf_operator.ratelimit.limiter import SCRIPT_SHA
from perf_operator.ratelimit.rules import EndpointRule
from perf_operator.redis.tables import desired_record, observe_record, plan_record, write_record

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
    with tempfile.TemporaryDirectory(prefix="bench-limiter-") as workdir:
        server = RedisServer(pathlib.Path(workdir))
        server.start()
        try:
            redis = Redis(host="127.0.0.1", port=server.port, password=server.password,
                          max_connections=args.concurrency + 2)
            version = await write_table(redis)
            limiter = Limiter(redis)
            await limiter_round(limiter, 0.5, args.batch, args.concurrency)  # warm up
            ours, theirs = [], []
            for round_ in range(args.rounds):
                ours.append(await limiter_round(limiter, args.seconds, args.batch,
                                                args.concurrency))
                requests = max(10_000, int(ours[-1] * args.seconds))
                theirs.append(await asyncio.to_thread(run_redis_benchmark, benchmark_command(
                    server, version, requests, args.clients, args.pipeline)))
                print(f"round {round_ + 1}: limiter {ours[-1]:,.0f}/s, "
                      f"redis-benchmark {theirs[-1]:,.0f}/s", flush=True)
            await redis.aclose()
        finally:
            server.stop()
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"reply parser: {'hiredis' if HIREDIS_AVAILABLE else 'pure Python (no hiredis)'}")
    print(f"reference limiter, pipelined ({args.concurrency} x {args.batch}): "
          f"{median_ours:,.0f} checks/s (median of {args.rounds})")
    print(f"redis-benchmark EVALSHA (-c {args.clients} -P {args.pipeline}): "
          f"{median_theirs:,.0f} checks/s (median of {args.rounds})")
    print(f"ratio: {median_ours / median_theirs:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a limiter round")
    parser.add_argument("--batch", type=int, default=1000, help="checks per pipeline")
    parser.add_argument("--concurrency", type=int, default=8, help="pipelines in flight")
    parser.add_argument("--clients", type=int, default=50, help="redis-benchmark -c")
    parser.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P")
    asyncio.run(main(parser.parse_args()))
