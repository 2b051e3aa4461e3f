"""Helpers of the optimizer's end-to-end tests.

* :class:`AppExporter`: a prometheus_client HTTP server standing in for the application. The
  test sets what it reports (requests with their latency and status code, heap usage) under
  the ``namespace``/``profile`` labels the optimizer's default queries group by, and the real
  Prometheus of the stack scrapes it every second.
* :class:`Profile`: a profile reconciled by calling the optimizer's two parts the way the
  handler does (concurrently, on one context), carrying the status between passes as the API
  server would after the handler's merge patch.
"""
from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from perf_operator import config
from perf_operator.api import PerformanceProfileSpec
from perf_operator.devstack.processes import free_port
from perf_operator.optimizer import reconcile_metrics, reconcile_optimization
from perf_operator.optimizer.state import OptimizerState, adjustments
from perf_operator.reconcile import Outcome, ProfileContext
from tests.support.contexts import apply_merge_patch, profile_context
from tests.support.events import RecordedEvents

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))
SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "sql" / "schema.sql"
#: A query of the reference schema that no index serves.
MISSING = ("SELECT id, name FROM plugins WHERE tenant_id = %s AND category = %s "
           "ORDER BY downloads DESC LIMIT 20")


def reference_plugins(psql: Callable[[str, str], str], database: str) -> list[str]:
    """The reference schema (sql/schema.sql) with 100,000 plugins of 200 tenants, analyzed;
    the tenants' ids by slug."""
    psql(database, SCHEMA.read_text())
    psql(database, """
        INSERT INTO tenants (slug, name) SELECT 't' || i, 'Tenant ' || i
        FROM generate_series(1, 200) AS i;
        INSERT INTO plugins (tenant_id, name, version, category, is_public, downloads)
        SELECT t.id, 'plugin-' || i, '1.0.0', 'category-' || (i % 20), i % 2 = 0, i
        FROM tenants AS t, generate_series(1, 500) AS i;
        ANALYZE plugins; ANALYZE tenants;
    """)
    return psql(database, "SELECT id FROM tenants ORDER BY slug").split()


@pytest.fixture(autouse=True)
def operator_test_mode(monkeypatch):
    """The operator's test mode: the optimizer evaluates every resync period (1 s here)
    instead of every interval (at least 15 s)."""
    monkeypatch.setattr(config, "CONFIG", replace(config.CONFIG, test_mode=True,
                                                  resync_seconds=1.0))


@dataclass
class _App:
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    seconds: float = 0.0
    requests: dict[str, float] = field(default_factory=dict)
    heap_used: float | None = None
    #: Steady traffic: (requests per second, latency, status) flows, counted since ``since``.
    flows: tuple[tuple[float, float, str], ...] = ()
    since: float = 0.0

    def add(self, count: float, seconds: float, status: str) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += count
        self.seconds += count * seconds
        self.requests[status] = self.requests.get(status, 0.0) + count

    def advance(self, now: float) -> None:
        for rps, seconds, status in self.flows:
            self.add(rps * (now - self.since), seconds, status)
        self.since = now


class AppExporter:
    """The application's metrics, as the test says they are: steady traffic (requests per
    second by latency and status code, counted continuously like a real application's
    counters, optionally of one tenant: a ``tenant`` label) and heap usage."""

    HEAP_TOTAL = 1 << 30

    def __init__(self) -> None:
        self._apps: dict[tuple[str, str, str], _App] = {}
        self._lock = threading.Lock()
        self.port = free_port()
        registry = CollectorRegistry()
        registry.register(self)
        self._server, _ = start_http_server(self.port, addr="127.0.0.1", registry=registry)

    def traffic(self, namespace: str, profile: str,
                *flows: tuple[float, float, str], tenant: str = "") -> None:
        """From now on, serve these flows: (requests per second, seconds each, status)."""
        with self._lock:
            app = self._apps.setdefault((namespace, profile, tenant),
                                        _App(since=time.monotonic()))
            app.advance(time.monotonic())
            app.flows = flows

    def memory(self, namespace: str, profile: str, ratio: float) -> None:
        with self._lock:
            self._apps.setdefault((namespace, profile, ""), _App(since=time.monotonic())
                                  ).heap_used = ratio * self.HEAP_TOTAL

    def collect(self):
        # An empty tenant is no label at all for Prometheus.
        latency = HistogramMetricFamily("http_request_duration_seconds", "API latency",
                                        labels=["namespace", "profile", "tenant"])
        requests = CounterMetricFamily("http_requests", "API requests",
                                       labels=["namespace", "profile", "tenant", "status"])
        used = GaugeMetricFamily("nodejs_heap_size_used_bytes", "heap used",
                                 labels=["namespace", "profile", "tenant"])
        total = GaugeMetricFamily("nodejs_heap_size_total_bytes", "heap size",
                                  labels=["namespace", "profile", "tenant"])
        with self._lock:
            now = time.monotonic()
            for (namespace, profile, tenant), app in self._apps.items():
                app.advance(now)
                labels = [namespace, profile, tenant]
                if app.requests:
                    latency.add_metric(labels, [(_le(b), c) for b, c in
                                                zip(BUCKETS, app.buckets, strict=True)],
                                       app.seconds)
                for status, count in app.requests.items():
                    requests.add_metric([*labels, status], count)
                if app.heap_used is not None:
                    used.add_metric(labels, app.heap_used)
                    total.add_metric(labels, self.HEAP_TOTAL)
        yield from (latency, requests, used, total)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)


@pytest.fixture
def exporter(stack):
    app = AppExporter()
    stack.prometheus.set_targets([f"127.0.0.1:{app.port}"])
    yield app
    stack.prometheus.set_targets([])
    app.close()


def optimized_profile(stack, *, mode: str = "Auto", rules: list[dict] | None = None,
                      redis: dict | None = None, database: dict | None = None,
                      **optimization: Any) -> dict:
    """A profile spec reading the stack's Prometheus, with short cooldowns and windows;
    ``optimization`` overrides fields of spec.optimization."""
    sections = {key: value for key, value in (("redis", redis), ("database", database))
                if value is not None}
    return {
        **sections,
        "prometheus": {"url": stack.prometheus.url, "timeoutSeconds": 5},
        "scaling": {"rules": rules if rules is not None else [
            {"name": "web", "target": {"name": "web"}, "minReplicas": 2, "maxReplicas": 6,
             "cpuUtilization": 70}]},
        "optimization": {"mode": mode, "intervalSeconds": 15, "cooldownSeconds": 2,
                         "healthyWindowSeconds": 3, "changeBudgetPerHour": 30,
                         **optimization},
    }


class Profile:
    """One PerformanceProfile driven through the optimizer's parts."""

    def __init__(self, namespace: str, name: str, spec: dict) -> None:
        self.namespace, self.name = namespace, name
        self.spec = PerformanceProfileSpec.model_validate(spec)
        self.status: dict[str, Any] = {}
        self.events = RecordedEvents()
        self.outcomes: dict[str, Outcome | None] = {}

    def context(self) -> ProfileContext:
        return profile_context(self.namespace, self.spec, name=self.name, status=self.status,
                               events=self.events)

    async def reconcile(self) -> None:
        ctx = self.context()
        optimizing, stale = await asyncio.gather(reconcile_optimization(ctx),
                                                 reconcile_metrics(ctx))
        self.outcomes = {"Optimizing": optimizing, "MetricsStale": stale}
        for outcome in (optimizing, stale):
            if outcome is not None:
                self.status = apply_merge_patch(self.status, outcome.status)

    @property
    def state(self) -> OptimizerState:
        return OptimizerState.from_status(self.status)

    @property
    def enforced(self):
        return adjustments(self.status)

    def signal(self, name: str) -> dict[str, Any]:
        return ((self.status.get("optimization") or {}).get("signals") or {}).get(name) or {}

    def history(self) -> list[tuple[str, str, str]]:
        return [(h.action, h.direction, h.cause) for h in self.state.history]


async def until(profiles: list[Profile], check: Callable[[], Any], *, timeout: float = 60,
                what: str | Callable[[], str] = "condition", interval: float = 0.5) -> Any:
    """Reconcile the profiles (as the resync timer does) until ``check()`` is truthy; ``what``
    names it in the error (a callable: computed then, with what it found)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for profile in profiles:
            await profile.reconcile()
        last = check()
        if last:
            return last
        await asyncio.sleep(interval)
    signals = [(p.status.get("optimization") or {}).get("signals") for p in profiles]
    what = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}; "
                         f"history: {[p.history() for p in profiles]}; signals: {signals}")


async def hold(profiles: list[Profile], seconds: float,
               each: Callable[[], Awaitable[None] | None] | None = None) -> None:
    """Keep reconciling for ``seconds`` (calling ``each`` after every pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for profile in profiles:
            await profile.reconcile()
        if each is not None:
            result = each()
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(0.5)
