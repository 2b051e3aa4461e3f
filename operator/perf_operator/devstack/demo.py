"""``perf-operator dev``: the local stack, the CRDs, the examples, and the operator on them."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import yaml

from .controlplane import repository_root
from .processes import ManagedProcess, free_port
from .stack import LocalStack

DEMO_NAMESPACE = "perf-demo"


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


def run_demo(examples: pathlib.Path, keep_running: bool) -> int:
    stack = LocalStack().start()
    operator: ManagedProcess | None = None
    try:
        cp = stack.control_plane
        kubectl = [cp.kubectl, f"--kubeconfig={cp.kubeconfig}"]
        root = repository_root() or pathlib.Path.cwd()
        cp.install_crds(root / "crds")
        subprocess.run(kubectl + ["create", "namespace", DEMO_NAMESPACE], check=True)
        _create_secret(kubectl, "pg-credentials", username=stack.postgres.superuser,
                       password=stack.postgres.password)
        _create_secret(kubectl, "redis-credentials", password=stack.redis.password)
        operator = ManagedProcess("operator", [
            sys.executable, "-m", "perf_operator.cli", "run", "--standalone"],
            stack.root, env=_env(cp.kubeconfig))
        documents = [point_at_stack(doc, stack) for path in sorted(examples.glob("*.yaml"))
                     for doc in yaml.safe_load_all(path.read_text()) if doc]
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
        subprocess.run(kubectl + ["get", "-n", DEMO_NAMESPACE, "pp,tq", "-o", "wide"])
        print(f"""
The local stack is up and the operator runs on the examples in namespace {DEMO_NAMESPACE}.
Point kubectl at it:
    export KUBECONFIG={cp.kubeconfig}
    alias kubectl={cp.kubectl}
    kubectl get perf -n {DEMO_NAMESPACE} -o wide
Operator log: {operator.log_path}
Prometheus: {stack.prometheus.url}
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
        if operator:
            operator.stop()
        stack.stop()


def _env(kubeconfig: pathlib.Path) -> dict[str, str]:
    """The demo's operator: the stack's kubeconfig, its metrics on a free port (8080 may be
    taken on a developer's machine), and inline connections to the stack's address allowed
    (the examples write their connections; a cluster-wide install refuses them)."""
    return {**os.environ, "KUBECONFIG": str(kubeconfig),
            "PERF_OPERATOR_METRICS_PORT": str(free_port()),
            "PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS": "1",
            "PERF_OPERATOR_INLINE_HOSTS": "127.0.0.1"}


def _create_database(stack: LocalStack, name: str, schema: pathlib.Path) -> None:
    env = _env_password(stack.postgres.password)
    base = ["psql", "-h", "127.0.0.1", "-p", str(stack.postgres.port), "-U",
            stack.postgres.superuser, "-v", "ON_ERROR_STOP=1", "-q"]
    subprocess.run(base + ["-d", "postgres", "-c", f'CREATE DATABASE "{name}"'], check=True,
                   env=env)
    subprocess.run(base + ["-d", name, "-f", str(schema)], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def _env_password(password: str) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": password}


def _create_secret(kubectl: list[str], name: str, **values: str) -> None:
    literals = [f"--from-literal={key}={value}" for key, value in values.items()]
    subprocess.run(kubectl + ["create", "secret", "generic", name, "-n", DEMO_NAMESPACE,
                              *literals], check=True, capture_output=True)
