"""Chaos run: the real operator (two replicas electing a leader) on a fresh local stack, faults
injected at random for a bounded time while a client keeps changing what is declared; then,
faults stopped, everything is checked against what is declared. A benchmark that prints
figures, not a timed test (``tests/e2e/test_chaos_short.py`` runs a short variant).

Faults (one every ``--interval`` seconds on average, chosen with the printed ``--seed``):

* ``operator``: SIGKILL of a random operator replica, restarted at once;
* ``postgres``: PostgreSQL stopped for a few seconds, then started on the same data;
* ``redis``: Redis restarted without persistence (every record gone);
* ``namespace-while-postgres-down``: PostgreSQL stopped, one namespace deleted (its profile
  has indexes under ``indexPrunePolicy: Delete`` and its tenants mirror rows), PostgreSQL
  started again once the namespace is gone (or after 60 s).

Throughout, a client creates, changes and deletes TenantQuotas. At the end it waits for
convergence and checks: every object Ready; every tenant's Redis record and mirror row carry the
digest its status reports; no record or row of a deleted tenant or namespace; no INVALID or
temporary index; no index left of a deleted profile; no namespace stuck in Terminating. Prints
faults per kind, time to converge after each (p50, max), objects lost / orphaned / stuck,
operator restarts and the operators' peak RSS.

Not injected yet: SIGKILL of kube-apiserver and of Prometheus (the stack cannot restart them in
place); 1 M-row tables (``--rows`` sets the size, 100,000 by default).

    python bench/chaos.py --minutes 10 --seed 7
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script from anywhere

from perf_operator.devstack.stack import LocalStack  # noqa: E402
from perf_operator.ratelimit.layout import DIGEST_FIELD, record_key  # noqa: E402
from tests.support.kube import Kubectl  # noqa: E402
from tests.support.operator import start_operator  # noqa: E402

OPERATOR_NAMESPACE = "perf-operator-system"
FAULTS = ("operator", "postgres", "redis", "namespace-while-postgres-down")


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.random = random.Random(args.seed)
        self.stack = LocalStack().start()
        cp = self.stack.control_plane
        self.kubectl = Kubectl(cp.kubectl, str(cp.kubeconfig))
        self.operators: dict[str, object] = {}
        self.restarts = 0
        self.peak_rss_kib = 0
        self.faults: list[tuple[str, float]] = []  # (kind, when it ended)
        self.converge: dict[str, list[float]] = {kind: [] for kind in FAULTS}
        self.namespaces: list[str] = []
        self.deleted_namespaces: list[str] = []
        self.tenants: dict[tuple[str, str], str] = {}  # (namespace, name) -> tenant id
        self.deleted_tenants: list[tuple[str, str, str]] = []
        self.serial = 0

    # ------------------------------------------------------------------ setup
    def psql(self, database: str, sql: str) -> str:
        pg = self.stack.postgres
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.superuser, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True,
            env={**os.environ, "PGPASSWORD": pg.password})
        if result.returncode:
            raise RuntimeError(result.stderr)
        return result.stdout

    def setup(self) -> None:
        self.stack.control_plane.install_crds(REPO / "crds")
        self.kubectl.run("create", "namespace", OPERATOR_NAMESPACE)
        for i in range(self.args.namespaces):
            ns = f"chaos-{i:02d}"
            self.namespaces.append(ns)
            db = f"chaos_{i:02d}"
            self.psql("postgres", f"CREATE DATABASE {db}")
            self.psql(db, f"CREATE TABLE orders AS SELECT g AS id, g % 500 AS tenant, "
                          f"g % 7 AS kind FROM generate_series(1, {self.args.rows}) g")
            self.kubectl.run("create", "namespace", ns)
            self.kubectl.run("create", "secret", "generic", "pg-credentials",
                             f"--from-literal=username={self.stack.postgres.superuser}",
                             f"--from-literal=password={self.stack.postgres.password}",
                             namespace=ns)
            self.kubectl.run("create", "secret", "generic", "redis-credentials",
                             f"--from-literal=password={self.stack.redis.password}",
                             namespace=ns)
            self.kubectl.apply(json.dumps(self.profile(ns, db)), ns)
        for n in range(self.args.tenants):
            self.create_tenant(self.namespaces[n % len(self.namespaces)])
        for i in range(2):
            self.start_operator(f"operator-{i}")

    def profile(self, ns: str, db: str) -> dict:
        return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                "metadata": {"name": "platform"}, "spec": {
                    "database": {"connection": {"host": "127.0.0.1",
                                                "port": self.stack.postgres.port,
                                                "database": db, "sslMode": "disable",
                                                "secretRef": {"name": "pg-credentials"}},
                                 "indexPrunePolicy": "Delete",
                                 "settings": {"scope": "Database", "parameters": {}},
                                 "indexes": [{"name": "orders_tenant_idx", "table": "orders",
                                              "columns": [{"column": "tenant"}]},
                                             {"name": "orders_kind_idx", "table": "orders",
                                              "columns": [{"column": "kind"},
                                                          {"column": "id"}]}]},
                    "redis": {"connection": {"host": "127.0.0.1",
                                             "port": self.stack.redis.port,
                                             "secretRef": {"name": "redis-credentials"}},
                              "keyPrefix": f"{ns}:"}}}

    def start_operator(self, name: str) -> None:
        self.operators[name] = start_operator(
            str(self.stack.control_plane.kubeconfig), self.stack.root / name, name=name,
            extra_args=("--standalone",), verbose=False,
            env={"POD_NAME": name, "PERF_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE})

    # ------------------------------------------------------------------ client
    def create_tenant(self, ns: str) -> None:
        self.serial += 1
        name = f"t{self.serial:05d}"
        self.kubectl.apply(json.dumps({
            "apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
            "metadata": {"name": name},
            "spec": {"tenantId": name, "profileRef": {"name": "platform"},
                     "websocket": {"maxConnections": 10}}}), ns)
        self.tenants[(ns, name)] = name

    def churn(self) -> None:
        """One client step: create, change or delete a tenant."""
        live = [key for key in self.tenants if key[0] not in self.deleted_namespaces]
        step = self.random.choice(("create", "change", "delete"))
        try:
            if step == "create" or not live:
                self.create_tenant(self.random.choice(self.live_namespaces()))
            elif step == "change":
                ns, name = self.random.choice(live)
                self.kubectl.run("patch", "tq", name, "--type=merge", "-p", json.dumps(
                    {"spec": {"websocket": {"maxConnections": self.random.randint(1, 50)}}}),
                    namespace=ns)
            else:
                ns, name = self.random.choice(live)
                self.kubectl.run("delete", "tq", name, "--wait=false", namespace=ns)
                self.deleted_tenants.append((ns, name, self.tenants.pop((ns, name))))
        except AssertionError:
            pass  # the API server said no (a webhook, a race): the client moves on

    def live_namespaces(self) -> list[str]:
        return [ns for ns in self.namespaces if ns not in self.deleted_namespaces]

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str) -> None:
        if kind == "operator":
            name = self.random.choice(sorted(self.operators))
            proc = self.operators[name]
            self.sample_rss()
            os.killpg(proc.pid, signal.SIGKILL)
            self.start_operator(name)
            self.restarts += 1
        elif kind == "postgres":
            self.stack.postgres.stop()
            time.sleep(self.random.uniform(2, 8))
            self.stack.postgres.launch()
        elif kind == "redis":
            self.stack.redis.stop()
            self.stack.redis.process = None
            self.stack.redis.start()
        else:
            candidates = self.live_namespaces()
            if len(candidates) <= 1:
                return
            ns = self.random.choice(candidates)
            self.stack.postgres.stop()
            self.kubectl.run("delete", "namespace", ns, "--wait=false")
            self.deleted_namespaces.append(ns)
            for key in [key for key in self.tenants if key[0] == ns]:
                self.deleted_tenants.append((*key, self.tenants.pop(key)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.namespace_exists(ns):
                time.sleep(1)
            self.stack.postgres.launch()
        self.faults.append((kind, time.monotonic()))

    def namespace_exists(self, ns: str) -> bool:
        return self.kubectl.run("get", "namespace", ns, check=False).returncode == 0

    def sample_rss(self) -> None:
        for proc in self.operators.values():
            try:
                status = pathlib.Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))

    # ------------------------------------------------------------------ checks
    def problems(self) -> dict[str, list[str]]:
        """What differs from what is declared, by kind: lost, orphaned, stuck."""
        lost: list[str] = []
        orphaned: list[str] = []
        stuck = [ns for ns in self.deleted_namespaces if self.namespace_exists(ns)]
        objects = json.loads(self.kubectl.run("get", "pp,tq", "-A", "-o", "json").stdout)["items"]
        by_key = {(o["metadata"]["namespace"], o["kind"], o["metadata"]["name"]): o
                  for o in objects}
        import redis as redis_client

        r = redis_client.Redis(port=self.stack.redis.port, password=self.stack.redis.password,
                               decode_responses=True)
        for ns in self.live_namespaces():
            profile = by_key.get((ns, "PerformanceProfile", "platform"))
            if not profile or not ready(profile):
                lost.append(f"{ns}/platform not Ready")
        for (ns, name), tenant_id in self.tenants.items():
            obj = by_key.get((ns, "TenantQuota", name))
            if not obj or not ready(obj):
                lost.append(f"{ns}/{name} not Ready")
                continue
            digest = r.hget(record_key(f"{ns}:", tenant_id), DIGEST_FIELD)
            if digest is None or digest != (obj["status"].get("table") or {}).get("hash"):
                lost.append(f"{ns}/{name} record {digest!r}")
            row = self.psql(f"chaos_{self.namespaces.index(ns):02d}",
                            "SELECT digest FROM perf_operator.tenant_limits WHERE "
                            f"profile_namespace = '{ns}' AND tenant_id = '{tenant_id}'").strip()
            if row != digest:
                lost.append(f"{ns}/{name} mirror row {row!r}")
        for ns, name, tenant_id in self.deleted_tenants:
            if r.exists(record_key(f"{ns}:", tenant_id)):
                orphaned.append(f"record of deleted tenant {ns}/{name}")
            row = self.psql(f"chaos_{self.namespaces.index(ns):02d}",
                            "SELECT count(*) FROM perf_operator.tenant_limits WHERE "
                            f"profile_namespace = '{ns}' AND tenant_id = '{tenant_id}'")
            if row.strip() not in ("0", ""):
                orphaned.append(f"mirror row of deleted tenant {ns}/{name}")
        for i, ns in enumerate(self.namespaces):
            db = f"chaos_{i:02d}"
            invalid = self.psql(db, "SELECT c.relname FROM pg_index x JOIN pg_class c ON "
                                    "c.oid = x.indexrelid WHERE NOT x.indisvalid").split()
            orphaned += [f"{db}: INVALID index {name}" for name in invalid]
            ours = self.psql(db, "SELECT indexname FROM pg_indexes WHERE tablename = 'orders'"
                             ).split()
            if ns in self.deleted_namespaces:
                orphaned += [f"{db}: index {name} of a deleted profile" for name in ours]
                rows = self.psql(db, "SELECT count(*) FROM pg_tables WHERE tablename = "
                                     "'tenant_limits'").strip()
                if rows == "1" and self.psql(db, "SELECT count(*) FROM "
                                                 "perf_operator.tenant_limits").strip() != "0":
                    orphaned.append(f"{db}: mirror rows of deleted namespace {ns}")
            else:
                orphaned += [f"{db}: unexpected index {name}" for name in ours
                             if name not in ("orders_tenant_idx", "orders_kind_idx")]
        return {"lost": lost, "orphaned": orphaned, "stuck": stuck}

    def wait_converged(self, timeout: float) -> tuple[float | None, dict[str, list[str]]]:
        started = time.monotonic()
        while True:
            try:
                found = self.problems()
            except Exception as err:  # noqa: BLE001 - a server still restarting
                found = {"lost": [f"check failed: {err}"], "orphaned": [], "stuck": []}
            if not any(found.values()):
                return time.monotonic() - started, found
            if time.monotonic() - started > timeout:
                return None, found
            time.sleep(2)

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, list[str]]:
        print(f"seed {self.args.seed}, {self.args.minutes} min, {self.args.namespaces} "
              f"namespaces, {self.args.tenants} tenants, {self.args.rows} rows per table",
              flush=True)
        self.setup()
        took, found = self.wait_converged(600)
        print(f"initial convergence: {took if took is None else round(took, 1)} s", flush=True)
        end = time.monotonic() + self.args.minutes * 60
        while time.monotonic() < end:
            for _ in range(self.random.randint(1, 4)):
                self.churn()
            if self.random.random() < self.args.fault_rate:
                kind = self.random.choice(FAULTS)
                print(f"{time.monotonic() - end + self.args.minutes * 60:6.0f} s  fault "
                      f"{kind}", flush=True)
                self.inject(kind)
                took, _ = self.wait_converged(self.args.converge_timeout)
                if self.faults and self.faults[-1][0] == kind and took is not None:
                    self.converge[kind].append(took)
            self.sample_rss()
            time.sleep(1)
        took, found = self.wait_converged(self.args.converge_timeout * 2)
        self.sample_rss()
        self.report(took, found)
        return found

    def report(self, took: float | None, found: dict[str, list[str]]) -> None:
        print("\nfaults injected (kind: count, converged after p50 / max s)")
        for kind in FAULTS:
            times = self.converge[kind]
            count = sum(1 for k, _ in self.faults if k == kind)
            figures = (f"{statistics.median(times):.1f} / {max(times):.1f}" if times
                       else "-")
            print(f"  {kind:32s} {count:3d}   {figures}")
        print(f"final convergence: {'not converged' if took is None else f'{took:.1f} s'}")
        print(f"lost: {len(found['lost'])}  orphaned: {len(found['orphaned'])}  "
              f"stuck namespaces: {len(found['stuck'])}")
        for kind, items in found.items():
            for item in items[:10]:
                print(f"  {kind}: {item}")
        print(f"operator restarts: {self.restarts}; operators' peak RSS: "
              f"{self.peak_rss_kib / 1024:.0f} MiB")

    def stop(self) -> None:
        for proc in self.operators.values():
            proc.stop()
        self.stack.stop()


def ready(obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--fault-rate", type=float, default=0.1,
                        help="chance of a fault per client step (about one a second)")
    parser.add_argument("--converge-timeout", type=float, default=180)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 16)
    return args


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    chaos = Chaos(parse_args(argv))
    try:
        return chaos.run()
    finally:
        chaos.stop()


if __name__ == "__main__":
    found = main()
    sys.exit(1 if any(found.values()) else 0)
