"""PostgreSQL, Redis and Prometheus from Debian's packages, each in a temporary directory on a
free loopback port, with generated credentials."""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field

import yaml

from .processes import ManagedProcess, free_port, unprivileged_user, wait_until

POSTGRES_BIN = pathlib.Path(os.environ.get("PERF_OPERATOR_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresServer:
    """A PostgreSQL cluster with pg_stat_statements preloaded and hypopg installable."""

    workdir: pathlib.Path
    port: int = field(default_factory=free_port)
    superuser: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    process: ManagedProcess | None = None

    @property
    def data_dir(self) -> pathlib.Path:
        return self.workdir / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return (f"host=127.0.0.1 port={self.port} dbname={dbname} "
                f"user={self.superuser} password={self.password}")

    def start(self) -> None:
        user = unprivileged_user()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if user:
            shutil.chown(self.workdir, user)
            shutil.chown(pwfile, user)
        subprocess.run([
            str(POSTGRES_BIN / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C.UTF-8",
            "--no-sync",
        ], check=True, capture_output=True, user=user)
        pwfile.unlink()
        self.launch()

    def launch(self) -> None:
        """Start the server on its existing data directory (after :meth:`stop`)."""
        user = unprivileged_user()
        self.process = ManagedProcess("postgres", [
            str(POSTGRES_BIN / "postgres"), "-D", str(self.data_dir),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.workdir}",
            "-c", "shared_preload_libraries=pg_stat_statements",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300", "-c", "log_min_messages=warning",
        ], self.workdir, user=user)
        wait_until(lambda: self.process.check_alive() or self._ready(), timeout=60,
                   what="PostgreSQL")

    def _ready(self) -> bool:
        return subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def stop(self) -> None:
        if self.process:
            self.process.stop()  # SIGTERM is PostgreSQL's "smart" shutdown; the group kill follows


@dataclass
class RedisServer:
    """A Redis without persistence, protected by a password."""

    workdir: pathlib.Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    process: ManagedProcess | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "redis.conf"
        config.write_text("\n".join([
            "bind 127.0.0.1", f"port {self.port}", f"dir {self.workdir}", 'save ""',
            "appendonly no", f"requirepass {self.password}", "daemonize no",
            "enable-debug-command local", "loglevel warning", "",
        ]))
        config.chmod(0o600)
        self.process = ManagedProcess("redis", ["redis-server", str(config)], self.workdir)
        wait_until(lambda: self.process.check_alive() or self.ping(), timeout=30, what="Redis")

    def ping(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning",
             "-a", self.password, "PING"], capture_output=True, text=True)
        return result.stdout.strip() == "PONG"

    def restart(self) -> None:
        """Stop and start on the same port: no persistence, so every key is gone."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None


@dataclass
class PrometheusServer:
    """Prometheus with short intervals, scraping the targets listed in a file-SD file that tests
    rewrite, and loading every rule file in ``rules_dir`` (reloaded through the lifecycle API)."""

    workdir: pathlib.Path
    port: int = field(default_factory=free_port)
    interval: str = "1s"
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rules_dir(self) -> pathlib.Path:
        return self.workdir / "rules"

    @property
    def targets_file(self) -> pathlib.Path:
        return self.workdir / "targets.json"

    def start(self) -> None:
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        if not self.targets_file.exists():
            self.set_targets([])
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(self.rules_dir / "*.yaml")],
            "scrape_configs": [{
                "job_name": "test-exporters",
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }],
        }))
        self.process = ManagedProcess("prometheus", [
            "prometheus", f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1h", "--log.level=warn",
        ], self.workdir)
        wait_until(lambda: self.process.check_alive() or self._ready(), timeout=60,
                   what="Prometheus")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def set_targets(self, targets: list[str], labels: dict[str, str] | None = None) -> None:
        """Point the scrape job at these host:port targets (picked up within a second)."""
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels or {}}]))
        tmp.replace(self.targets_file)

    def reload(self) -> None:
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None
