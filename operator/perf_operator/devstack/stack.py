"""The whole local stack in one object, used by the pytest fixtures and ``perf-operator dev``."""
from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from .argocd import ArgoCD
from .controlplane import ControlPlane
from .prometheus_operator import PrometheusOperator
from .services import PostgresServer, PrometheusServer, RedisServer


@dataclass
class LocalStack:
    root: pathlib.Path = field(
        default_factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix="perf-operator-stack-")))
    #: Set by :meth:`start` (which stops what it started if one of them fails): a started
    #: stack always has all four.
    control_plane: ControlPlane = field(init=False)
    postgres: PostgresServer = field(init=False)
    redis: RedisServer = field(init=False)
    prometheus: PrometheusServer = field(init=False)
    #: Added on request (``add_argocd``, ``add_prometheus_operator``): Go clients built on
    #: first use, which most tests do not need.
    argocd: ArgoCD | None = None
    prometheus_operator: PrometheusOperator | None = None

    def add_argocd(self) -> ArgoCD:
        self.argocd = ArgoCD(self.root / "argocd", self.control_plane).start()
        return self.argocd

    def add_prometheus_operator(self) -> PrometheusOperator:
        self.prometheus_operator = PrometheusOperator(
            self.root / "prometheus-operator", self.control_plane, self.prometheus).start()
        return self.prometheus_operator

    def start(self) -> LocalStack:
        self.root.chmod(0o755)  # PostgreSQL runs as another user when we are root
        try:
            self.postgres = PostgresServer(self.root / "postgres")
            self.postgres.start()
            self.redis = RedisServer(self.root / "redis")
            self.redis.start()
            self.prometheus = PrometheusServer(self.root / "prometheus")
            self.prometheus.start()
            self.control_plane = ControlPlane(self.root / "controlplane")
            self.control_plane.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _started(self, part: str) -> Any:
        """One of the four parts, or None before :meth:`start` got to it."""
        return getattr(self, part, None)

    def pids(self) -> list[int]:
        procs = [s.process for s in map(self._started, ("postgres", "redis", "prometheus"))
                 if s and s.process]
        procs += self.control_plane.processes
        if self.argocd:
            procs += self.argocd.processes
        if self.prometheus_operator and self.prometheus_operator.process:
            procs.append(self.prometheus_operator.process)
        return [p.pid for p in procs]

    def ports(self) -> list[int]:
        return [self.postgres.port, self.redis.port, self.prometheus.port,
                self.control_plane.api_port]

    def describe(self) -> dict:
        """Where everything listens; credentials stay in the files the stack wrote."""
        return {
            "kubeconfig": str(self.control_plane.kubeconfig),
            "kubectl": self.control_plane.kubectl,
            "apiserver": self.control_plane.server,
            "postgres": {"host": "127.0.0.1", "port": self.postgres.port},
            "redis": {"host": "127.0.0.1", "port": self.redis.port},
            "prometheus": self.prometheus.url,
            "root": str(self.root),
            **({"argocd": {"namespace": "argocd", "cli": self.argocd.argocd,
                           "controllerMetrics":
                               f"http://127.0.0.1:{self.argocd.controller_metrics_port}/metrics"}}
               if self.argocd else {}),
            **({"prometheusOperator": {"prometheus": f"{self.prometheus_operator.namespace}/"
                                                     f"{self.prometheus_operator.name}"}}
               if self.prometheus_operator else {}),
        }

    def write_description(self) -> pathlib.Path:
        path = self.root / "stack.json"
        path.write_text(json.dumps(self.describe(), indent=2))
        return path

    def stop(self) -> None:
        for part in (self.argocd, self.prometheus_operator,
                     *map(self._started, ("control_plane", "prometheus", "redis", "postgres"))):
            if part is not None:
                part.stop()
        shutil.rmtree(self.root, ignore_errors=True)
