"""The whole local stack in one object, used by the pytest fixtures and ``perf-operator dev``."""
from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from dataclasses import dataclass, field

from .controlplane import ControlPlane
from .services import PostgresServer, PrometheusServer, RedisServer


@dataclass
class LocalStack:
    root: pathlib.Path = field(
        default_factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix="perf-operator-stack-")))
    control_plane: ControlPlane | None = None
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    prometheus: PrometheusServer | None = None

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

    def pids(self) -> list[int]:
        procs = [s.process for s in (self.postgres, self.redis, self.prometheus) if s and s.process]
        if self.control_plane:
            procs += self.control_plane.processes
        return [p.pid for p in procs]

    def ports(self) -> list[int]:
        ports = [s.port for s in (self.postgres, self.redis, self.prometheus) if s]
        if self.control_plane:
            ports.append(self.control_plane.api_port)
        return ports

    def describe(self) -> dict:
        """Where everything listens; credentials stay in the files the stack wrote."""
        assert self.control_plane and self.postgres and self.redis and self.prometheus
        return {
            "kubeconfig": str(self.control_plane.kubeconfig),
            "kubectl": self.control_plane.kubectl,
            "apiserver": self.control_plane.server,
            "postgres": {"host": "127.0.0.1", "port": self.postgres.port},
            "redis": {"host": "127.0.0.1", "port": self.redis.port},
            "prometheus": self.prometheus.url,
            "root": str(self.root),
        }

    def write_description(self) -> pathlib.Path:
        path = self.root / "stack.json"
        path.write_text(json.dumps(self.describe(), indent=2))
        return path

    def stop(self) -> None:
        for part in (self.control_plane, self.prometheus, self.redis, self.postgres):
            if part is not None:
                part.stop()
        shutil.rmtree(self.root, ignore_errors=True)
