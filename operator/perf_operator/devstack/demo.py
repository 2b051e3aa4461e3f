"""``perf-operator dev``: the local stack, the CRDs, the examples, and the operator on them."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

import yaml

from ..kube.apply import COMPONENT_LABEL, MANAGED_BY
from .controlplane import repository_root
from .demo_app import DemoApplication
from .processes import ManagedProcess, free_port
from .rulesync import RuleFileSync
from .stack import LocalStack

DEMO_NAMESPACE = "perf-demo"
#: The operator's rule-file ConfigMaps (its alerts without the Prometheus Operator).
RULE_CONFIG_MAPS = f"{MANAGED_BY[0]}={MANAGED_BY[1]},{COMPONENT_LABEL}=alerts"


def demo_database(profile: str) -> str:
    """Each profile gets a database of its own holding the reference schema (sql/schema.sql):
    an index belongs to one profile, and the examples share some index names."""
    return "idp_" + profile.replace("-", "_")


def point_at_stack(document: dict, stack: LocalStack) -> dict:
    """Examples name the usual ports; in the demo they point at the stack's own."""
    spec = document.get("spec") or {}
    if document.get("kind") == "PerformanceProfile":
        if "database" in spec:
            spec["database"]["connection"].update(
                host="127.0.0.1", port=stack.postgres.port,
                database=demo_database(document["metadata"]["name"]))
        if "redis" in spec:
            spec["redis"]["connection"].update(host="127.0.0.1", port=stack.redis.port)
        if "prometheus" in spec:
            spec["prometheus"]["url"] = stack.prometheus.url
    return document


def run_demo(examples: pathlib.Path, keep_running: bool, argocd: bool = False) -> int:
    stack = LocalStack().start()
    operator: ManagedProcess | None = None
    application: DemoApplication | None = None
    rules: RuleFileSync | None = None
    try:
        cp = stack.control_plane
        if argocd:
            stack.add_argocd()
        kubectl = [cp.kubectl, f"--kubeconfig={cp.kubeconfig}"]
        root = repository_root() or pathlib.Path.cwd()
        cp.install_crds(root / "crds")
        subprocess.run(kubectl + ["create", "namespace", DEMO_NAMESPACE], check=True)
        # the operator's own login, no superuser (sql/operator-role.sql, docs/deploy.md)
        _create_secret(kubectl, "pg-credentials", username=stack.postgres.operator_user,
                       password=stack.postgres.operator_password)
        _create_secret(kubectl, "redis-credentials", password=stack.redis.password)
        metrics_port = free_port()
        operator = ManagedProcess("operator", [
            sys.executable, "-m", "perf_operator.cli", "run", "--standalone"],
            stack.root, env=_env(cp.kubeconfig, metrics_port))
        documents = [point_at_stack(doc, stack) for path in sorted(examples.glob("*.yaml"))
                     for doc in yaml.safe_load_all(path.read_text()) if doc]
        # Prometheus scrapes the operator and the stand-in application, and loads every
        # profile's rule file.
        profiles = sorted({d["metadata"]["name"] for d in documents
                           if d["kind"] == "PerformanceProfile"})
        application = DemoApplication(DEMO_NAMESPACE, profiles).start()
        stack.prometheus.set_targets([f"127.0.0.1:{metrics_port}", application.target])
        rules = RuleFileSync(cp, stack.prometheus, RULE_CONFIG_MAPS, "perf-operator-")
        rules.start()
        for database in sorted({doc["spec"]["database"]["connection"]["database"]
                                for doc in documents if "database" in doc.get("spec", {})}):
            _create_database(stack, database, root / "sql" / "schema.sql")
        # Profiles first, so tenants find theirs.
        documents.sort(key=lambda d: d.get("kind") != "PerformanceProfile")
        subprocess.run(kubectl + ["apply", "-n", DEMO_NAMESPACE, "-f", "-"],
                       input=yaml.safe_dump_all(documents), text=True, check=True)
        waited = subprocess.run(kubectl + ["wait", "-n", DEMO_NAMESPACE,
                                           "--for=condition=Ready", "--timeout=180s", "pp,tq",
                                           "--all"])
        print(_wait_for_prometheus(stack, targets=2, rule_groups=len(profiles)), flush=True)
        subprocess.run(kubectl + ["get", "-n", DEMO_NAMESPACE, "pp,tq", "-o", "wide"])
        print(f"""
The local stack is up and the operator runs on the examples in namespace {DEMO_NAMESPACE}.
Point kubectl at it:
    export KUBECONFIG={cp.kubeconfig}
    alias kubectl={cp.kubectl}
    kubectl get perf -n {DEMO_NAMESPACE} -o wide
{endpoints(stack, metrics_port, application)}
Operator log: {operator.log_path}
""", flush=True)
        if keep_running:
            print("Ctrl-C stops everything and removes its temporary files.", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while operator.alive():
                time.sleep(1)
            print(operator.log_tail(), file=sys.stderr)
            return 1
        return waited.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if rules:
            rules.stop()
        if application:
            application.stop()
        if operator:
            operator.stop()
        stack.stop()


def endpoints(stack: LocalStack, metrics_port: int, application: DemoApplication) -> str:
    """Every address a user of the demo needs (credentials are in the Secrets of the demo
    namespace, not printed)."""
    cp = stack.control_plane
    lines = [
        f"API server:       {cp.server}",
        f"PostgreSQL:       127.0.0.1:{stack.postgres.port} (user {stack.postgres.superuser}, "
        f"password in Secret {DEMO_NAMESPACE}/pg-credentials)",
        f"Redis:            127.0.0.1:{stack.redis.port} "
        f"(password in Secret {DEMO_NAMESPACE}/redis-credentials)",
        f"Prometheus:       {stack.prometheus.url} (alerts: {stack.prometheus.url}/alerts)",
        f"Operator metrics: http://127.0.0.1:{metrics_port}/metrics",
        f"Demo application: http://{application.target}/metrics (synthetic load)",
    ]
    if stack.argocd:
        lines += [
            f"Argo CD:          headless in namespace argocd; CLI {stack.argocd.argocd}",
            "                  kubectl get applications -n argocd",
            f"Argo CD metrics:  http://127.0.0.1:{stack.argocd.controller_metrics_port}/metrics",
        ]
    return "\n".join(lines)


def _wait_for_prometheus(stack: LocalStack, *, targets: int, rule_groups: int,
                         timeout: float = 60) -> str:
    """Wait (bounded) until Prometheus scrapes every target and has loaded every profile's rule
    group; what it has, as one line."""
    deadline = time.monotonic() + timeout
    while True:
        up = loaded = 0
        with contextlib.suppress(OSError, ValueError, KeyError):
            up = sum(1 for t in _prometheus(stack, "/api/v1/targets")["activeTargets"]
                     if t["health"] == "up")
            loaded = sum(1 for g in _prometheus(stack, "/api/v1/rules")["groups"]
                         if g["name"].startswith(f"perf-operator.{DEMO_NAMESPACE}."))
        if (up >= targets and loaded >= rule_groups) or time.monotonic() > deadline:
            return (f"Prometheus: {up}/{targets} targets up, {loaded}/{rule_groups} profiles' "
                    f"rule groups loaded")
        time.sleep(1)


def _prometheus(stack: LocalStack, path: str) -> dict:
    with urllib.request.urlopen(stack.prometheus.url + path, timeout=5) as response:
        return json.load(response)["data"]


def _env(kubeconfig: pathlib.Path, metrics_port: int) -> dict[str, str]:
    """The demo's operator: the stack's kubeconfig, its metrics on a free port (8080 may be
    taken on a developer's machine), and inline connections to the stack's address allowed
    (the examples write their connections; a cluster-wide install refuses them)."""
    return {**os.environ, "KUBECONFIG": str(kubeconfig),
            "PERF_OPERATOR_METRICS_PORT": str(metrics_port),
            "PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS": "1",
            "PERF_OPERATOR_INLINE_HOSTS": "127.0.0.1"}


def _create_database(stack: LocalStack, name: str, schema: pathlib.Path) -> None:
    """The database and its tables, owned by the application's role."""
    stack.postgres.create_database(name)
    stack.postgres.psql(name, schema.read_text())


def _create_secret(kubectl: list[str], name: str, **values: str) -> None:
    literals = [f"--from-literal={key}={value}" for key, value in values.items()]
    subprocess.run(kubectl + ["create", "secret", "generic", name, "-n", DEMO_NAMESPACE,
                              *literals], check=True, capture_output=True)
