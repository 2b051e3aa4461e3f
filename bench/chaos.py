"""Chaos run: the real operator (two replicas electing a leader) on a fresh local stack, faults
injected at random for a bounded time while a client keeps changing what is declared; then,
faults stopped, everything is checked against what is declared. A benchmark that prints
figures, not a timed test (``tests/e2e/test_chaos_short.py`` runs a short variant).

The stack starts with ``--namespaces`` namespaces (10), ``--tenants`` TenantQuotas spread over
them (500) and a PerformanceProfile ``platform`` in the first ``--profiles`` of them (5): two
indexes on a ``--rows``-row table (1,000,000) under ``indexPrunePolicy: Delete``, Redis tables,
and signals read from Prometheus. A namespace without a profile holds tenants that wait for one
(``ProfileNotFound``) until the client creates it.

Faults (about ``--fault-rate`` per client step, kinds dealt from a shuffled deck so that every
kind comes once before any comes again, with the printed ``--seed``):

* ``operator``: SIGKILL of a random operator replica, restarted at once;
* ``apiserver``: SIGKILL of kube-apiserver, restarted in place (same port, etcd data,
  certificates and flags); the leader, unable to renew its lease, exits, and is restarted as
  the kubelet would;
* ``postgres``: PostgreSQL stopped for a few seconds, then started on the same data;
* ``redis``: Redis restarted without persistence (every record gone);
* ``prometheus``: SIGKILL of Prometheus, restarted on the same port and data;
* ``namespace-while-postgres-down``: PostgreSQL stopped, one namespace deleted (its profile
  has indexes under ``indexPrunePolicy: Delete`` and its tenants mirror rows), PostgreSQL
  started again once the namespace is gone (or after 60 s).

Throughout, a client creates, changes and deletes TenantQuotas and, less often (``--profile-
churn``), PerformanceProfiles: a profile is created where none is, changed (a third index
added or dropped, the tenants' default connection limit moved) or deleted while its tenants
stay. At the end it waits for convergence and checks against what is declared: every profile
Ready with exactly its declared indexes; every tenant Ready, or ``ProfileNotFound`` where its
profile is gone; every Ready tenant's Redis record and mirror row carry the digest its status
reports; no record or row of a deleted tenant or namespace; no INVALID or temporary index; no
index of a deleted profile; no deleted profile or namespace stuck. Prints faults per kind, time
to converge after each (p50, max), objects lost / orphaned / stuck, operator restarts (ours and
exits on their own) and the operators' peak RSS.

    python bench/chaos.py --minutes 10 --seed 7
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
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
FAULTS = ("operator", "apiserver", "postgres", "redis", "prometheus",
          "namespace-while-postgres-down")
PROFILE = "platform"
#: Every profile's indexes; ``EXTRA_INDEX`` comes and goes with profile changes.
INDEXES = {"orders_tenant_idx": ["tenant"], "orders_kind_idx": ["kind", "id"]}
EXTRA_INDEX = ("orders_id_tenant_idx", ["id", "tenant"])


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.random = random.Random(args.seed)
        self.stack = LocalStack().start()
        cp = self.stack.control_plane
        self.kubectl = Kubectl(cp.kubectl, str(cp.kubeconfig))
        self.operators: dict[str, object] = {}
        self.restarts = 0
        self.exits: list[str] = []  # replicas that exited on their own: why, from their log
        self.peak_rss_kib = 0
        self.faults: list[tuple[str, float]] = []  # (kind, when it ended)
        self.converge: dict[str, list[float]] = {kind: [] for kind in FAULTS}
        self.unconverged = dict.fromkeys(FAULTS, 0)
        self.namespaces: list[str] = []
        self.deleted_namespaces: list[str] = []
        self.tenants: dict[tuple[str, str], str] = {}  # (namespace, name) -> tenant id
        self.deleted_tenants: list[tuple[str, str, str]] = []
        #: namespace -> the declared profile's variable part; absent: no profile declared
        self.profiles: dict[str, dict] = {}
        self.profile_steps = {"create": 0, "change": 0, "delete": 0}
        self.serial = 0
        self.deck: list[str] = []

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
            if i < self.args.profiles:
                self.profiles[ns] = {"extraIndex": False, "perTenantDefault": 40}
                self.kubectl.apply(json.dumps(self.profile(ns)), ns)
        for ns in self.namespaces:  # one apply per namespace: 500 kubectl runs would take minutes
            count = len(range(self.namespaces.index(ns), self.args.tenants, len(self.namespaces)))
            self.kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
                self.new_tenant(ns) for _ in range(count)]}), ns)
        for i in range(2):
            self.start_operator(f"operator-{i}")

    def database(self, ns: str) -> str:
        return f"chaos_{self.namespaces.index(ns):02d}"

    def declared_indexes(self, ns: str) -> dict[str, list[str]]:
        declared = self.profiles.get(ns)
        if declared is None:
            return {}
        return {**INDEXES, **(dict([EXTRA_INDEX]) if declared["extraIndex"] else {})}

    def profile(self, ns: str) -> dict:
        """The profile declared in ``ns`` (``self.profiles[ns]`` holds what changes). Its
        tenants' default connection limit stays within 10-60, so that even a namespace that
        churn grew to 150 tenants does not overcommit its 10,000 connections (Overcommitted
        would be a declared, not a lost, state)."""
        return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                "metadata": {"name": PROFILE}, "spec": {
                    "database": {"connection": {"host": "127.0.0.1",
                                                "port": self.stack.postgres.port,
                                                "database": self.database(ns),
                                                "sslMode": "disable",
                                                "secretRef": {"name": "pg-credentials"}},
                                 "indexPrunePolicy": "Delete",
                                 "settings": {"scope": "Database", "parameters": {}},
                                 "indexes": [{"name": name, "table": "orders",
                                              "columns": [{"column": c} for c in columns]}
                                             for name, columns
                                             in self.declared_indexes(ns).items()]},
                    "redis": {"connection": {"host": "127.0.0.1",
                                             "port": self.stack.redis.port,
                                             "secretRef": {"name": "redis-credentials"}},
                              "keyPrefix": f"{ns}:"},
                    "websocket": {"perTenantDefault": self.profiles[ns]["perTenantDefault"]},
                    "prometheus": {"url": self.stack.prometheus.url, "timeoutSeconds": 5}}}

    def start_operator(self, name: str) -> None:
        self.operators[name] = start_operator(
            str(self.stack.control_plane.kubeconfig), self.stack.root / name, name=name,
            extra_args=("--standalone",), verbose=False,
            env={"POD_NAME": name, "PERF_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE})

    def supervise(self) -> None:
        """Restart a replica that exited on its own, as the kubelet would (the leader exits
        when it cannot renew its lease, e.g. while kube-apiserver is down)."""
        for name, proc in list(self.operators.items()):
            if not proc.alive():
                last = proc.log_tail(3).splitlines()
                self.exits.append(f"{name}: {last[-1] if last else proc.process.returncode}")
                proc.stop()
                self.start_operator(name)

    # ------------------------------------------------------------------ client
    def new_tenant(self, ns: str) -> dict:
        """A new TenantQuota in ``ns``, recorded as declared; every other one on its profile's
        default connection limit."""
        self.serial += 1
        name = f"t{self.serial:05d}"
        self.tenants[(ns, name)] = name
        websocket = {"maxConnections": 10} if self.serial % 2 else {}
        return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
                "metadata": {"name": name},
                "spec": {"tenantId": name, "profileRef": {"name": PROFILE},
                         **({"websocket": websocket} if websocket else {})}}

    def create_tenant(self, ns: str) -> None:
        tenant = self.new_tenant(ns)
        try:
            self.kubectl.apply(json.dumps(tenant), ns)
        except AssertionError:
            del self.tenants[(ns, tenant["metadata"]["name"])]
            raise

    def churn_profile(self) -> None:
        """One client step on profiles: create one where none is declared, change one (a third
        index, the tenants' default limit) or delete one (its tenants stay)."""
        step = self.random.choice(("create", "change", "delete"))
        declared = [ns for ns in self.live_namespaces() if ns in self.profiles]
        undeclared = [ns for ns in self.live_namespaces() if ns not in self.profiles]
        if (step == "create" and undeclared) or not declared:
            ns = self.random.choice(undeclared)
            self.profiles[ns] = {"extraIndex": self.random.random() < 0.5,
                                 "perTenantDefault": self.random.randint(10, 60)}
            try:  # create, not apply: a profile still being deleted must not be resurrected
                self.kubectl.run("create", "-f", "-", input=json.dumps(self.profile(ns)),
                                 namespace=ns)
            except AssertionError:
                del self.profiles[ns]
                raise
            self.profile_steps["create"] += 1
        elif step != "delete":
            ns = self.random.choice(declared)
            before = self.profiles[ns]
            self.profiles[ns] = ({**before, "extraIndex": not before["extraIndex"]}
                                 if self.random.random() < 0.5 else
                                 {**before, "perTenantDefault": self.random.randint(10, 60)})
            try:
                self.kubectl.apply(json.dumps(self.profile(ns)), ns)
            except AssertionError:
                self.profiles[ns] = before
                raise
            self.profile_steps["change"] += 1
        else:
            ns = self.random.choice(declared)
            self.kubectl.run("delete", "pp", PROFILE, "--wait=false", namespace=ns)
            del self.profiles[ns]
            self.profile_steps["delete"] += 1

    def churn(self) -> None:
        """One client step: create, change or delete a tenant, or now and then a profile."""
        live = [key for key in self.tenants if key[0] not in self.deleted_namespaces]
        step = self.random.choice(("create", "change", "delete"))
        try:
            if self.random.random() < self.args.profile_churn:
                self.churn_profile()
            elif step == "create" or not live:
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
            proc.kill()
            proc.stop()  # closes its log; the new replica appends to it
            self.start_operator(name)
            self.restarts += 1
        elif kind == "apiserver":
            self.stack.control_plane.restart_apiserver()
        elif kind == "prometheus":
            self.stack.prometheus.restart()
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
            self.profiles.pop(ns, None)
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
        import redis as redis_client

        lost: list[str] = []
        orphaned: list[str] = []
        stuck = [f"namespace {ns} still there" for ns in self.deleted_namespaces
                 if self.namespace_exists(ns)]
        objects = json.loads(self.kubectl.run("get", "pp,tq", "-A", "-o", "json").stdout)["items"]
        by_key = {(o["metadata"]["namespace"], o["kind"], o["metadata"]["name"]): o
                  for o in objects}
        r = redis_client.Redis(port=self.stack.redis.port, password=self.stack.redis.password,
                               decode_responses=True)
        deleted_by_namespace: dict[str, list[tuple[str, str]]] = {}
        for ns, name, tenant_id in self.deleted_tenants:
            deleted_by_namespace.setdefault(ns, []).append((name, tenant_id))
        for ns in self.namespaces:
            db = self.database(ns)
            live = ns not in self.deleted_namespaces
            declared = self.declared_indexes(ns)
            profile = by_key.get((ns, "PerformanceProfile", PROFILE))
            if live and ns in self.profiles and not ready(profile):
                lost.append(f"{ns}/{PROFILE} not Ready: {reason(profile, 'Ready')}")
            elif live and ns not in self.profiles and profile is not None:
                stuck.append(f"{ns}/{PROFILE} deleted but still there")
            for name in self.psql(db, "SELECT indexname FROM pg_indexes WHERE tablename = "
                                      "'orders'").split():
                if name not in declared:
                    whose = "a deleted profile" if ns not in self.profiles else "no profile"
                    orphaned.append(f"{db}: index {name} of {whose}")
            rows = self.mirror_rows(db, ns)
            tenants = [(name, tenant_id) for (tns, name), tenant_id in self.tenants.items()
                       if tns == ns]
            digests = pipeline_hget(r, [record_key(f"{ns}:", t) for _, t in tenants])
            for (name, tenant_id), digest in zip(tenants, digests, strict=True):
                obj = by_key.get((ns, "TenantQuota", name))
                if ns not in self.profiles:
                    if reason(obj, "ProfileResolved") != "ProfileNotFound":
                        lost.append(f"{ns}/{name} without its profile says "
                                    f"{reason(obj, 'ProfileResolved')}")
                    continue  # its record and row stay until it is deleted
                if not ready(obj):
                    lost.append(f"{ns}/{name} not Ready: {reason(obj, 'Ready')}")
                    continue
                if digest is None or digest != (obj["status"].get("table") or {}).get("hash"):
                    lost.append(f"{ns}/{name} record {digest!r}")
                if rows.get(tenant_id) != digest:
                    lost.append(f"{ns}/{name} mirror row {rows.get(tenant_id)!r}")
            gone = deleted_by_namespace.get(ns, [])
            records = pipeline_exists(r, [record_key(f"{ns}:", t) for _, t in gone])
            for (name, tenant_id), exists in zip(gone, records, strict=True):
                if exists:
                    orphaned.append(f"record of deleted tenant {ns}/{name}")
                if tenant_id in rows:
                    orphaned.append(f"mirror row of deleted tenant {ns}/{name}")
            invalid = self.psql(db, "SELECT c.relname FROM pg_index x JOIN pg_class c ON "
                                    "c.oid = x.indexrelid WHERE NOT x.indisvalid").split()
            orphaned += [f"{db}: INVALID index {name}" for name in invalid]
        return {"lost": lost, "orphaned": orphaned, "stuck": stuck}

    def mirror_rows(self, db: str, ns: str) -> dict[str, str]:
        """tenant id -> digest of the mirror rows of ``ns``'s profile (none before the operator
        created the table)."""
        if self.psql(db, "SELECT to_regclass('perf_operator.tenant_limits') IS NULL").strip() \
                == "t":
            return {}
        out = self.psql(db, "SELECT tenant_id || ' ' || digest FROM perf_operator.tenant_limits "
                            f"WHERE profile_namespace = '{ns}' AND profile_name = '{PROFILE}'")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def wait_converged(self, timeout: float) -> tuple[float | None, dict[str, list[str]]]:
        started = time.monotonic()
        while True:
            self.supervise()
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
              f"namespaces, {self.args.profiles} profiles, {self.args.tenants} tenants, "
              f"{self.args.rows} rows per table", flush=True)
        self.setup()
        took, found = self.wait_converged(600)
        print(f"initial convergence: {took if took is None else round(took, 1)} s", flush=True)
        if took is None:
            print_problems(found)
        end = time.monotonic() + self.args.minutes * 60
        while time.monotonic() < end:
            for _ in range(self.random.randint(1, 4)):
                self.churn()
            if self.random.random() < self.args.fault_rate:
                kind = self.next_fault()
                print(f"{time.monotonic() - end + self.args.minutes * 60:6.0f} s  fault "
                      f"{kind}", flush=True)
                self.inject(kind)
                took, found = self.wait_converged(self.args.converge_timeout)
                if self.faults and self.faults[-1][0] == kind:
                    if took is None:
                        self.unconverged[kind] += 1
                        print_problems(found)
                    else:
                        self.converge[kind].append(took)
            self.supervise()
            self.sample_rss()
            time.sleep(1)
        took, found = self.wait_converged(self.args.converge_timeout * 2)
        self.sample_rss()
        self.report(took, found)
        return found

    def next_fault(self) -> str:
        """The next kind from a shuffled deck: every kind once before any comes again."""
        if not self.deck:
            self.deck = list(FAULTS)
            self.random.shuffle(self.deck)
        return self.deck.pop()

    def report(self, took: float | None, found: dict[str, list[str]]) -> None:
        print("\nfaults injected (kind: count, converged after p50 / max s, not converged "
              f"within {self.args.converge_timeout:.0f} s)")
        for kind in FAULTS:
            times = self.converge[kind]
            count = sum(1 for k, _ in self.faults if k == kind)
            figures = (f"{statistics.median(times):.1f} / {max(times):.1f}" if times
                       else "-")
            print(f"  {kind:32s} {count:3d}   {figures:>13s}   {self.unconverged[kind]}")
        steps = ", ".join(f"{count} {step}d" for step, count in self.profile_steps.items())
        print(f"profiles: {steps}; tenants: {len(self.tenants)} declared at the end, "
              f"{len(self.deleted_tenants)} deleted")
        print(f"final convergence: {'not converged' if took is None else f'{took:.1f} s'}")
        print(f"lost: {len(found['lost'])}  orphaned: {len(found['orphaned'])}  "
              f"stuck: {len(found['stuck'])}")
        print_problems(found)
        print(f"operator restarts: {self.restarts} SIGKILLed, {len(self.exits)} exited on their "
              f"own; operators' peak RSS: {self.peak_rss_kib / 1024:.0f} MiB")
        for line in self.exits[:10]:
            print(f"  exited: {line}")

    def stop(self) -> None:
        for proc in self.operators.values():
            proc.stop()
        self.stack.stop()


def print_problems(found: dict[str, list[str]]) -> None:
    for kind, items in found.items():
        for item in items[:10]:
            print(f"  {kind}: {item}")
        if len(items) > 10:
            print(f"  {kind}: ... {len(items) - 10} more")


def condition(obj: dict | None, type_: str) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or []
                 if c.get("type") == type_), {})


def ready(obj: dict | None) -> bool:
    return condition(obj, "Ready").get("status") == "True"


def reason(obj: dict | None, type_: str) -> str:
    """The condition's reason, or why there is none."""
    if obj is None:
        return "(object missing)"
    return condition(obj, type_).get("reason") or f"(no {type_} condition)"


def pipeline_hget(client, keys: list[str]) -> list[str | None]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, DIGEST_FIELD)
    return pipe.execute()


def pipeline_exists(client, keys: list[str]) -> list[bool]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [bool(n) for n in pipe.execute()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--profiles", type=int, default=5,
                        help="namespaces that start with a profile (the others wait for one)")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the indexed table in each namespace's database")
    parser.add_argument("--profile-churn", type=float, default=0.05,
                        help="share of client steps that create, change or delete a profile")
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
