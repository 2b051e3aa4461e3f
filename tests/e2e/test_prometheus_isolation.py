"""One profile's Prometheus must not slow anybody else down or exhaust the operator's memory:
one profile reads from an endpoint that accepts connections and never answers, another from
one that streams 1 GB. Profiles and tenants in other namespaces reconcile as fast as a
baseline measured in the same test, and the operator's peak RSS stays bounded."""
from __future__ import annotations

import pathlib
import socket
import threading
import time

import pytest

from tests.support.kube import condition, eventually
from tests.support.rbac import lease_election_in, operator_kubeconfig, start_operator_as_deployed

#: These tests run an operator of their own (its peak memory is measured).
pytestmark = pytest.mark.isolated

GIGABYTE = 1024 ** 3
#: The operator's peak resident memory: far below the streamed gigabyte, and below the
#: Deployment's 512 MiB limit with room to spare.
RSS_LIMIT_KIB = 400 * 1024
TENANTS = 3

PROFILE = """
apiVersion: perf.idp.io/v1alpha1
kind: PerformanceProfile
metadata: {{name: {name}}}
spec:
  websocket: {{maxConnections: 1000, perTenantDefault: 100}}
"""

OPTIMIZED = """
apiVersion: perf.idp.io/v1alpha1
kind: PerformanceProfile
metadata: {{name: {name}}}
spec:
  websocket: {{maxConnections: 1000}}
  prometheus: {{url: "{url}", timeoutSeconds: 5}}
  optimization: {{mode: Recommend, intervalSeconds: 15}}
"""

TENANT = """
apiVersion: perf.idp.io/v1alpha1
kind: TenantQuota
metadata: {{name: {name}}}
spec:
  tenantId: {name}
  profileRef: {{name: {profile}}}
"""


class Listener:
    """A TCP server on loopback whose connections are handled by ``serve`` in threads."""

    def __init__(self, serve) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.serve = serve
        self.sent = 0
        #: Most bytes one connection took before the operator hung up.
        self.largest = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.serve(self, conn)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.socket.close()


def never_answer(listener: Listener, conn: socket.socket) -> None:
    conn.recv(65536)
    listener.stopped.wait()


def stream_a_gigabyte(listener: Listener, conn: socket.socket) -> None:
    """A body without Content-Length (it ends when the connection does): only reading it
    tells its size."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close"
                 b"\r\n\r\n{\"status\":\"success\",\"data\":{\"result\":[\"")
    chunk, sent = b"x" * (1024 * 1024), 0
    while sent < GIGABYTE and not listener.stopped.is_set():
        conn.sendall(chunk)
        sent += len(chunk)
        listener.sent += len(chunk)
        listener.largest = max(listener.largest, sent)


def peak_rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def ready(kubectl, kind: str, name: str, namespace: str) -> bool:
    cond = condition(kubectl.get(kind, name, namespace), "Ready")
    return bool(cond and cond["status"] == "True")


def time_to_ready(kubectl, namespace: str) -> float:
    """Create a profile and its tenants; seconds until all are Ready."""
    started = time.monotonic()
    kubectl.apply(PROFILE.format(name="plain"), namespace)
    for i in range(TENANTS):
        kubectl.apply(TENANT.format(name=f"tenant-{i}", profile="plain"), namespace)
    for kind, name in [("pp", "plain")] + [("tq", f"tenant-{i}") for i in range(TENANTS)]:
        eventually(lambda: ready(kubectl, kind, name, namespace), timeout=120,
                   interval=0.1, what=f"{kind} {name} Ready in {namespace}")
    return time.monotonic() - started


def test_a_hanging_or_huge_prometheus_slows_no_one_else(stack, kubectl, crds, namespace,
                                                        tmp_path):
    others = {role: f"{namespace}-{role}"
              for role in ("warmup", "baseline", "hang", "huge", "after")}
    for name in others.values():
        kubectl.run("create", "namespace", name)
    hang, huge = Listener(never_answer), Listener(stream_a_gigabyte)
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(
        kubeconfig, tmp_path, name="operator", namespace=namespace,
        extra_args=tuple(f"--namespace={n}" for n in others.values()))
    try:
        time_to_ready(kubectl, others["warmup"])  # the operator has started and leads
        baseline = time_to_ready(kubectl, others["baseline"])
        kubectl.apply(OPTIMIZED.format(name="hang", url=f"http://127.0.0.1:{hang.port}"),
                      others["hang"])
        kubectl.apply(OPTIMIZED.format(name="huge", url=f"http://127.0.0.1:{huge.port}"),
                      others["huge"])
        # Both are being read: a connection is open to each.
        eventually(lambda: huge.sent > 0, timeout=60, what="the operator to read the stream")
        during = time_to_ready(kubectl, others["after"])

        def stale(role: str) -> str | None:
            cond = condition(kubectl.get("pp", role, others[role]), "MetricsStale")
            return cond and cond["status"] == "True" and cond["message"]

        hang_message = eventually(lambda: stale("hang"), timeout=60, what="hang stale")
        huge_message = eventually(lambda: stale("huge"), timeout=60, what="huge stale")
        peak = peak_rss_kib(proc.pid)
        print(f"\ntime to Ready of a profile and {TENANTS} tenants: baseline {baseline:.2f}s, "
              f"with a hanging and a 1 GB Prometheus {during:.2f}s "
              f"(ratio {during / baseline:.2f}); operator peak RSS {peak / 1024:.0f} MiB; "
              f"streamed {huge.sent / 1024 ** 2:.0f} MiB in all, at most "
              f"{huge.largest / 1024 ** 2:.0f} MiB on one connection before the operator hung up")
        assert "no answer within 5s" in hang_message
        assert "larger than" in huge_message
        assert during <= max(3 * baseline, baseline + 5)
        assert peak < RSS_LIMIT_KIB
        assert huge.largest < 64 * 1024 ** 2  # the 4 MiB cap, plus what socket buffers hold
    finally:
        hang.close()
        huge.close()
        proc.stop()
        for name in others.values():
            kubectl.run("delete", "namespace", name, "--wait=false", check=False)
