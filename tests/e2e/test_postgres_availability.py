"""PostgreSQL's availability as profiles see it: a restart is reported as the server being
unreachable and recovered from within a few resyncs; a host that black-holes connections
delays only the profiles that point at it; a profile that moves to another database leaves
no connections behind to the old one."""
from __future__ import annotations

import socket
import threading
import time

import yaml

from tests.support.kube import condition, eventually

RESYNC = 2.0


def profile(name: str, database: dict, *, port: int | None = None) -> str:
    return yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": name},
        "spec": {"database": {"connection": {
            "host": "127.0.0.1", "port": port or database["port"],
            "database": database["database"], "secretRef": {"name": "pg-credentials"}}}},
    })


def database_ready(kubectl, name: str, namespace: str) -> dict | None:
    return condition(kubectl.get("pp", name, namespace), "DatabaseReady")


def wait_ready(kubectl, name: str, namespace: str, timeout: float = 60) -> float:
    started = time.monotonic()
    eventually(lambda: (database_ready(kubectl, name, namespace) or {}).get("status") == "True",
               timeout=timeout, interval=0.1, what=f"{name} DatabaseReady")
    return time.monotonic() - started


def operator_backends(psql, database: str) -> int:
    return int(psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE "
                                f"application_name = 'perf-operator' AND datname = '{database}'"))


def test_a_restarted_server_is_reported_unreachable_then_recovered(operator, stack, kubectl,
                                                                   namespace, credentials,
                                                                   pg_database):
    kubectl.apply(profile("db", pg_database), namespace)
    wait_ready(kubectl, "db", namespace)
    stack.postgres.shut_down()
    try:
        def unavailable():
            cond = database_ready(kubectl, "db", namespace) or {}
            return cond if cond.get("status") == "False" else None

        cond = eventually(unavailable, timeout=60, what="DatabaseReady False")
        assert cond["reason"] == "DatabaseUnavailable", cond
        assert "administrator command" not in cond["message"]
        time.sleep(3 * RESYNC)  # and it stays so while the server is down
        cond = database_ready(kubectl, "db", namespace)
        assert cond["reason"] == "DatabaseUnavailable", cond
    finally:
        stack.postgres.launch()
    recovered = wait_ready(kubectl, "db", namespace, timeout=60)
    print(f"\nDatabaseReady again {recovered:.1f}s after PostgreSQL was back")
    # Stale pooled connections are discarded by the pool's check, not reported as errors: a
    # couple of resyncs, plus a connect.
    assert recovered <= 3 * RESYNC + 5


class BlackHole:
    """Accepts TCP connections and never answers (a host whose packets vanish after the
    handshake)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.socket.close()
        for conn in self.accepted:
            conn.close()


def test_a_black_holed_host_delays_no_other_profile(operator, kubectl, namespace, credentials,
                                                    pg_database):
    """Connecting to the black hole takes the whole connect timeout (10 s), again on every
    resync; the other profile's connects must not queue behind it."""
    hole = BlackHole()
    try:
        kubectl.apply(profile("stuck", pg_database, port=hole.port), namespace)
        eventually(lambda: hole.accepted, timeout=30, what="a connect to the black hole")
        kubectl.apply(profile("fine", pg_database), namespace)
        seconds = wait_ready(kubectl, "fine", namespace, timeout=60)
        print(f"\nDatabaseReady of a profile while another connects to a black hole: "
              f"{seconds:.1f}s")
        assert seconds < 6
    finally:
        hole.close()


def test_the_old_pool_is_closed_when_the_database_changes(operator, kubectl, namespace,
                                                          credentials, pg_database, psql):
    kubectl.apply(profile("moving", pg_database), namespace)
    wait_ready(kubectl, "moving", namespace)
    old = pg_database["database"]
    assert operator_backends(psql, old) > 0
    new = f"{old}_moved"
    psql("postgres", f"CREATE DATABASE {new}")
    try:
        kubectl.apply(profile("moving", {**pg_database, "database": new}), namespace)
        eventually(lambda: operator_backends(psql, new) > 0, timeout=60,
                   what="the profile on its new database")
        wait_ready(kubectl, "moving", namespace)
        eventually(lambda: operator_backends(psql, old) == 0, timeout=15,
                   what="no operator connection left to the old database")
    finally:
        kubectl.run("delete", "pp", "moving", namespace=namespace, check=False)
        psql("postgres", f"DROP DATABASE IF EXISTS {new} WITH (FORCE)")
