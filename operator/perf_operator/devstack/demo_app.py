"""A stand-in for the platform's application in ``perf-operator dev``: the series the profiles'
default signal queries read (``http_request_duration_seconds``, ``http_requests_total``,
``cache_hits_total``/``cache_misses_total``, ``websocket_connections_active``), labelled with
each profile's namespace and name as the application's series must be, at a steady synthetic
load. Without it the demo's Prometheus has nothing for the optimizer to read and the LATENCY,
ERRORS and CACHE columns of ``kubectl get perf -o wide`` stay empty. Tests never use it; they
feed Prometheus from exporters whose values they set."""
from __future__ import annotations

import random
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .processes import free_port

#: Per second and profile: requests, their share of 5xx, the cache hit ratio, open sockets.
REQUESTS_PER_SECOND = 50
ERROR_SHARE = 0.01
CACHE_HIT_SHARE = 0.9
WEBSOCKET_CONNECTIONS = 1200


class DemoApplication:
    """The synthetic application's metrics endpoint (``127.0.0.1:<port>/metrics``)."""

    def __init__(self, namespace: str, profiles: list[str]) -> None:
        self.namespace, self.profiles = namespace, profiles
        self.port = free_port()
        self.registry = CollectorRegistry()
        labels = ["namespace", "profile"]
        self.latency = Histogram("http_request_duration_seconds", "Request duration",
                                 labels, registry=self.registry,
                                 buckets=(0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6))
        self.requests = Counter("http_requests_total", "Requests", [*labels, "status"],
                                registry=self.registry)
        self.hits = Counter("cache_hits_total", "Cache hits", labels, registry=self.registry)
        self.misses = Counter("cache_misses_total", "Cache misses", labels,
                              registry=self.registry)
        self.sockets = Gauge("websocket_connections_active", "Open WebSocket connections",
                             labels, registry=self.registry)
        self._stop = threading.Event()
        self._random = random.Random(0)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DemoApplication:
        self._server, self._server_thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry)
        threading.Thread(target=self._run, name="demo-application", daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for profile in self.profiles:
                self._one_second(profile)

    def _one_second(self, profile: str) -> None:
        labels = {"namespace": self.namespace, "profile": profile}
        for _ in range(REQUESTS_PER_SECOND):
            self.latency.labels(**labels).observe(self._random.lognormvariate(-2.6, 0.5))
            failed = self._random.random() < ERROR_SHARE
            self.requests.labels(**labels, status="500" if failed else "200").inc()
            hit = self._random.random() < CACHE_HIT_SHARE
            (self.hits if hit else self.misses).labels(**labels).inc()
        self.sockets.labels(**labels).set(WEBSOCKET_CONNECTIONS)

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server_thread.join(timeout=5)
