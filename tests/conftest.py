"""Fixtures: one real local stack per test session, and per-test isolation inside it
(a fresh namespace, PostgreSQL database and Redis key prefix for every test)."""
from __future__ import annotations

import os
import pathlib
import secrets
import subprocess

import pytest

from tests.support.kube import Kubectl
from tests.support.operator import INLINE_CONNECTIONS_ENV

REPO = pathlib.Path(__file__).resolve().parent.parent

# Reconcilers the tests call in-process read the same connection policy as the test operators.
for _name, _value in INLINE_CONNECTIONS_ENV.items():
    os.environ.setdefault(_name, _value)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack():
    from perf_operator.devstack.stack import LocalStack

    local = LocalStack().start()
    os.environ["KUBECONFIG"] = str(local.control_plane.kubeconfig)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kubectl(stack) -> Kubectl:
    return Kubectl(stack.control_plane.kubectl, str(stack.control_plane.kubeconfig))


@pytest.fixture(scope="session")
def crds(stack, kubectl) -> Kubectl:
    """The project's CRDs, installed once and established."""
    stack.control_plane.install_crds(REPO / "crds", field_manager="perf-operator-tests")
    return kubectl


#: Namespaces the session operator leaves alone: for tests that run operators of their own
#: (HA, as-deployed) and must know which process acted.
ISOLATED_PREFIX = "iso-"


@pytest.fixture
def namespace(kubectl, request) -> str:
    """A fresh namespace; tests marked ``isolated`` get one the session operator ignores."""
    prefix = ISOLATED_PREFIX if request.node.get_closest_marker("isolated") else "t-"
    name = f"{prefix}{secrets.token_hex(4)}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def pg_database(stack) -> dict:
    """A fresh database owned by the application's role, with pg_stat_statements and hypopg;
    the superuser's sessions in it run as the application's role, so what a test creates there
    (``psql``, ``stack.postgres.dsn``) belongs to the application, as in a real installation.
    The dict carries its name and the server's address (not credentials)."""
    name = f"t_{secrets.token_hex(4)}"
    stack.postgres.create_database(name)
    yield {"host": "127.0.0.1", "port": stack.postgres.port, "database": name}
    _psql(stack, "postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def redis_prefix() -> str:
    return f"t{secrets.token_hex(4)}:"


@pytest.fixture
async def redis(stack):
    """An asyncio client of the stack's Redis (decoded responses), closed after the test."""
    from redis.asyncio import Redis

    client = Redis(host="127.0.0.1", port=stack.redis.port, password=stack.redis.password,
                   decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def credentials(kubectl, stack, namespace) -> dict[str, str]:
    """Secrets holding the PostgreSQL and Redis credentials in the test's namespace. The
    PostgreSQL login is the operator's own role (sql/operator-role.sql), never a superuser:
    every test that touches PostgreSQL runs the operator with least privilege."""
    kubectl.run("create", "secret", "generic", "pg-credentials",
                "--from-literal=username=" + stack.postgres.operator_user,
                "--from-literal=password=" + stack.postgres.operator_password,
                namespace=namespace)
    kubectl.run("create", "secret", "generic", "redis-credentials",
                "--from-literal=password=" + stack.redis.password, namespace=namespace)
    return {"postgres": "pg-credentials", "redis": "redis-credentials"}


def _psql(stack, database: str, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": stack.postgres.password}
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(stack.postgres.port), "-U",
         stack.postgres.superuser, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AssertionError(f"psql failed: {result.stderr}")
    return result.stdout


@pytest.fixture(scope="session")
def psql(stack):
    """psql(database, sql) -> stdout, as the superuser of the test PostgreSQL (which runs as
    the application's role in a ``pg_database``: use database "postgres" for server-wide
    statements such as ALTER SYSTEM)."""
    return lambda database, sql: _psql(stack, database, sql)


@pytest.fixture(scope="session")
def operator(stack, crds):
    """The real operator, one process for the whole session, watching every namespace (but the
    isolated ones) and
    serving its validating admission webhook. It runs with its ServiceAccount's token and the
    RBAC from manifests/ (the cluster-wide overlay), not as
    cluster admin, so a missing permission fails a test."""
    from perf_operator.devstack.processes import free_port
    from tests.support.operator import start_operator
    from tests.support.rbac import OPERATOR_NAMESPACE, operator_kubeconfig

    cp = stack.control_plane
    kubeconfig = operator_kubeconfig(stack, crds, stack.root / "operator.kubeconfig")
    webhook = cp.serving_certificate("webhook", "perf-operator-webhook")
    proc = start_operator(kubeconfig, stack.root / "operator", env={
        "PERF_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE}, extra_args=(
        "--standalone", f"--namespace=!{ISOLATED_PREFIX}*", f"--webhook-listen=127.0.0.1:{free_port()}",
        f"--webhook-cert={webhook.cert}", f"--webhook-key={webhook.key}",
        f"--webhook-ca={cp.ca.pair.cert}"))
    from tests.support.kube import eventually

    # Every replica registers the webhook from its first startup handler, before it leads.
    eventually(lambda: crds.get("validatingwebhookconfiguration", "perf-operator.perf.idp.io"),
               timeout=60, what="the operator's webhook configuration")
    yield proc
    proc.stop()
