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
#: The operator's PostgreSQL role as docs/deploy.md creates it (no superuser): once per server,
#: then once per database.
SQL_DIR = pathlib.Path(__file__).resolve().parents[3] / "sql"
OPERATOR_ROLE_SQL = SQL_DIR / "operator-role.sql"
OPERATOR_DATABASE_SQL = SQL_DIR / "operator-database.sql"


@dataclass
class PostgresServer:
    """A PostgreSQL cluster with pg_stat_statements preloaded and hypopg installable, and the
    roles of a real installation: the application's role (``app_user``, which owns the
    tables) and the operator's login (``operator_user``), no superuser, created by
    ``sql/operator-role.sql`` exactly as docs/deploy.md tells an administrator to.

    ``max_locks_per_transaction`` is set on the command line (a restart-only parameter a
    profile may set, overridden by a source the operator does not own); the rest of the
    server's own configuration is in postgresql.conf, below postgresql.auto.conf."""

    workdir: pathlib.Path
    port: int = field(default_factory=free_port)
    superuser: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    app_user: str = "perf_app"
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    operator_user: str = "perf_operator"
    operator_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    process: ManagedProcess | None = None

    @property
    def data_dir(self) -> pathlib.Path:
        return self.workdir / "data"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        """libpq connection string, as the superuser unless ``user`` (one of the stack's
        roles) is given."""
        login = user or self.superuser
        return (f"host=127.0.0.1 port={self.port} dbname={dbname} "
                f"user={login} password={self._passwords()[login]}")

    def _passwords(self) -> dict[str, str]:
        return {self.superuser: self.password, self.app_user: self.app_password,
                self.operator_user: self.operator_password}

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
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("max_connections = 300\n")
        self.launch()
        self._create_roles()

    def launch(self) -> None:
        """Start the server on its existing data directory (after :meth:`stop` or
        :meth:`shut_down`)."""
        user = unprivileged_user()
        self.process = ManagedProcess("postgres", [
            str(POSTGRES_BIN / "postgres"), "-D", str(self.data_dir),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.workdir}",
            "-c", "shared_preload_libraries=pg_stat_statements",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_locks_per_transaction=128", "-c", "log_min_messages=warning",
        ], self.workdir, user=user)
        wait_until(self._ready, process=self.process, timeout=60,
                   what="PostgreSQL")

    def psql(self, database: str, sql: str, *, user: str | None = None,
             variables: dict[str, str] | None = None) -> str:
        """Run ``sql`` (a script: psql ``:variables`` are interpolated) in ``database``, as
        the superuser unless ``user`` is given; its unaligned output."""
        login = user or self.superuser
        password = self._passwords()[login]
        options = [f"--set={key}={value}" for key, value in (variables or {}).items()]
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", login, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Aqt", *options, "-f", "-"], input=sql,
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password})
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout

    def _create_roles(self) -> None:
        self.psql("postgres", 'CREATE ROLE :"app" LOGIN PASSWORD :\'password\';',
                  variables={"app": self.app_user, "password": self.app_password})
        self.psql("postgres", OPERATOR_ROLE_SQL.read_text(), variables={
            "operator": self.operator_user, "password": self.operator_password,
            "owner": self.app_user})
        self.grant_database("postgres")

    def grant_database(self, name: str) -> None:
        """What the operator needs in one more database (sql/operator-database.sql)."""
        self.psql(name, OPERATOR_DATABASE_SQL.read_text(),
                  variables={"operator": self.operator_user})

    def create_database(self, name: str) -> None:
        """A database owned by the application's role, with pg_stat_statements and hypopg
        (extensions only a superuser may create). Sessions of the superuser in it run as the
        application's role (``ALTER ROLE ... IN DATABASE ... SET role``), so what test set-up
        and the demo create there belongs to the application, as in a real installation, and
        the operator can index it."""
        self.psql("postgres", f'CREATE DATABASE "{name}" OWNER "{self.app_user}"')
        # set-up (tests, demo) resets the statistics as the application
        self.psql(name, "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hypopg; "
                        f'GRANT EXECUTE ON FUNCTION pg_stat_statements_reset TO "{self.app_user}"')
        self.grant_database(name)
        self.psql("postgres", f'ALTER ROLE "{self.superuser}" IN DATABASE "{name}" '
                              f'SET role = "{self.app_user}"')

    def _ready(self) -> bool:
        return subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def stop(self) -> None:
        if self.process:
            self.process.stop()  # SIGTERM is PostgreSQL's "smart" shutdown; the group kill follows

    def shut_down(self) -> None:
        """A "fast" shutdown, as an administrator or a restart would: every session is
        terminated ("terminating connection due to administrator command")."""
        subprocess.run([str(POSTGRES_BIN / "pg_ctl"), "stop", "-D", str(self.data_dir),
                        "-m", "fast", "-w"], check=True, capture_output=True,
                       user=unprivileged_user())
        self.stop()  # reaps it and closes its log


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
        wait_until(self.ping, process=self.process, timeout=30, what="Redis")

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
        wait_until(self._ready, process=self.process, timeout=60,
                   what="Prometheus")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def restart(self) -> None:
        """SIGKILL, then start again on the same port and data directory (Prometheus replays
        its write-ahead log): a crash, for fault-injection runs (bench/chaos.py)."""
        if self.process:
            self.process.kill()
            self.process.stop()  # reaps it and closes its log
        self.start()

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
