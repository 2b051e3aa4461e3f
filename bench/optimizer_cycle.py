"""What one optimizer cycle costs Prometheus and the operator, for 1 and for 100 profiles.

Starts a Prometheus (the local stack's kind: 1 s scrapes) scraping an exporter that serves the
application metrics of ``--profiles`` profiles (every series the default signal queries read,
labelled ``namespace``/``profile``, counters growing like a real application's), then measures
per cycle, for 1 and for 100 registered profiles:

* the operator's way: one poller for the Prometheus, one grouped query per signal
  (``sum by (namespace, profile)``), shared by every profile;
* the baseline, in the same run against the same Prometheus: a query set per profile (what a
  timer per object would do), each default query filtered to the profile's labels.

Prints, for each, the Prometheus queries per cycle and the median wall time of a cycle that
gives every profile its readings, and the ratios at the largest profile count.

    python bench/optimizer_cycle.py [--cycles 15] [--profiles 100]
"""
from __future__ import annotations

import argparse
import asyncio
import pathlib
import re
import statistics
import tempfile
import time
import urllib.request

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from perf_operator.devstack.processes import free_port
from perf_operator.devstack.services import PrometheusServer
from perf_operator.optimizer.signals import SIGNALS, PrometheusEndpoint, PrometheusPoller

NAMESPACE = "bench"
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf")
METRICS = ("http_request_duration_seconds_bucket", "http_request_duration_seconds_sum",
           "http_request_duration_seconds_count", "http_requests_total",
           "db_query_duration_seconds_sum", "db_query_duration_seconds_count",
           "db_pool_connections_in_use", "db_pool_connections_max",
           "nodejs_heap_size_used_bytes", "nodejs_heap_size_total_bytes",
           "websocket_connections_active", "websocket_messages_total", "cache_hits_total",
           "cache_misses_total")


class Application:
    """Every metric the default queries read, for ``profiles`` profiles."""

    def __init__(self, profiles: int) -> None:
        self.names = [f"profile-{i:03d}" for i in range(profiles)]
        self.started = time.monotonic()
        self.port = free_port()
        registry = CollectorRegistry()
        registry.register(self)
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=registry)

    def collect(self):
        t = time.monotonic() - self.started
        latency = HistogramMetricFamily("http_request_duration_seconds", "",
                                        labels=["namespace", "profile"])
        queries = HistogramMetricFamily("db_query_duration_seconds", "",
                                        labels=["namespace", "profile"])
        requests = CounterMetricFamily("http_requests", "",
                                       labels=["namespace", "profile", "status"])
        counters = {name: CounterMetricFamily(name, "", labels=["namespace", "profile"])
                    for name in ("websocket_messages", "cache_hits", "cache_misses")}
        gauges = {name: GaugeMetricFamily(name, "", labels=["namespace", "profile"])
                  for name in ("db_pool_connections_in_use", "db_pool_connections_max",
                               "nodejs_heap_size_used_bytes", "nodejs_heap_size_total_bytes",
                               "websocket_connections_active")}
        for i, name in enumerate(self.names):
            labels = [NAMESPACE, name]
            n = 100 * t * (1 + i % 7)
            cumulative = [n * share for share in (0.5, 0.7, 0.85, 0.93, 0.97, 0.99, 1.0)]
            latency.add_metric(labels, list(zip(BUCKETS, cumulative, strict=True)), n * 0.08)
            queries.add_metric(labels, list(zip(BUCKETS, cumulative, strict=True)), n * 0.01)
            requests.add_metric([*labels, "200"], n * 0.98)
            requests.add_metric([*labels, "500"], n * 0.02)
            for counter, rate in (("websocket_messages", 50), ("cache_hits", 90),
                                  ("cache_misses", 10)):
                counters[counter].add_metric(labels, rate * t)
            for gauge, value in (("db_pool_connections_in_use", 40),
                                 ("db_pool_connections_max", 100),
                                 ("nodejs_heap_size_used_bytes", 6e8 + i),
                                 ("nodejs_heap_size_total_bytes", 1e9),
                                 ("websocket_connections_active", 1000 + i)):
                gauges[gauge].add_metric(labels, value)
        yield from (latency, queries, requests, *counters.values(), *gauges.values())

    def close(self) -> None:
        self.server.shutdown()


def filtered(query: str, profile: str) -> str:
    """The default query restricted to one profile's series (the per-object baseline)."""
    matchers = f'namespace="{NAMESPACE}",profile="{profile}"'

    def add(match: re.Match) -> str:
        return f"{match[1]}{{{matchers}," if match[2] else f"{match[1]}{{{matchers}}}"

    return re.sub(r"\b(" + "|".join(METRICS) + r")\b(\{)?", add, query)


async def grouped_cycle(poller: PrometheusPoller, names: list[str]) -> tuple[int, float]:
    queries = {s.name: s.query for s in SIGNALS}
    started = time.perf_counter()
    results = await asyncio.gather(*(poller.readings(NAMESPACE, name, queries, max_age=0)
                                     for name in names))
    elapsed = time.perf_counter() - started
    assert all(not readings["memoryUsage"].stale for _, readings in results)
    return poller.last_query_count, elapsed


async def per_profile_cycle(pollers: dict[str, PrometheusPoller]) -> tuple[int, float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(
        poller.readings(NAMESPACE, name, {s.name: filtered(s.query, name) for s in SIGNALS},
                        max_age=0) for name, poller in pollers.items()))
    elapsed = time.perf_counter() - started
    assert all(not readings["memoryUsage"].stale for _, readings in results)
    return sum(p.last_query_count for p in pollers.values()), elapsed


async def measure(url: str, names: list[str], cycles: int) -> dict[str, tuple[int, float]]:
    endpoint = PrometheusEndpoint(url, 10)
    grouped = PrometheusPoller(endpoint)
    per_profile = {name: PrometheusPoller(endpoint) for name in names}
    runs: dict[str, list[tuple[int, float]]] = {"grouped": [], "per-profile": []}
    for _ in range(cycles):  # interleaved, so both see the same Prometheus load
        runs["grouped"].append(await grouped_cycle(grouped, names))
        runs["per-profile"].append(await per_profile_cycle(per_profile))
    for poller in (grouped, *per_profile.values()):
        poller.close()
    return {way: (round(statistics.median(q for q, _ in r)), statistics.median(t for _, t in r))
            for way, r in runs.items()}


def wait_for_data(url: str, profiles: int) -> None:
    query = urllib.request.quote("count(nodejs_heap_size_used_bytes)")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=5) as resp:
            body = resp.read().decode()
        if f'"{profiles}"' in body:
            time.sleep(3)  # a few scrapes, so rates have two samples
            return
        time.sleep(0.5)
    raise SystemExit("Prometheus never scraped the exporter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--profiles", type=int, default=100)
    args = parser.parse_args()
    app = Application(args.profiles)
    with tempfile.TemporaryDirectory(prefix="bench-optimizer-") as tmp:
        prometheus = PrometheusServer(pathlib.Path(tmp))
        prometheus.start()
        try:
            prometheus.set_targets([f"127.0.0.1:{app.port}"])
            wait_for_data(prometheus.url, args.profiles)
            results = {n: asyncio.run(measure(prometheus.url, app.names[:n], args.cycles))
                       for n in sorted({1, args.profiles})}
        finally:
            prometheus.stop()
            app.close()
    print(f"Prometheus queries and wall time per optimizer cycle (median of {args.cycles}), "
          f"{len(SIGNALS)} signals, {args.profiles} profiles' series in Prometheus")
    print(f"{'profiles':>8}  {'approach':<28}{'queries/cycle':>14}{'cycle (ms)':>12}")
    for n, ways in results.items():
        for way, label in (("grouped", "one grouped poller"),
                           ("per-profile", "query set per profile")):
            queries, seconds = ways[way]
            print(f"{n:>8}  {label:<28}{queries:>14}{seconds * 1000:>12.1f}")
    largest = results[max(results)]
    print(f"at {max(results)} profiles: the per-profile baseline sends "
          f"{largest['per-profile'][0] / largest['grouped'][0]:.0f}x the queries and takes "
          f"{largest['per-profile'][1] / largest['grouped'][1]:.1f}x the time of one grouped "
          f"cycle; grouped cycle at {max(results)} vs 1 profile: "
          f"{largest['grouped'][1] / results[1]['grouped'][1]:.2f}x")


if __name__ == "__main__":
    main()
