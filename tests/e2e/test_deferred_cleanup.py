"""A namespace deleted while PostgreSQL is down: it terminates promptly (no finalizer waits on
the server), and what its profile and tenants left in the database (an index under
indexPrunePolicy Delete, the tenants' mirror rows) is remembered in the operator's namespace,
with copies of the credentials the namespace's teardown deleted, and removed once PostgreSQL is
back, with an Event in the operator's namespace saying so."""
from __future__ import annotations

import json
import time

import yaml

from tests.e2e.postgres_support import database_section
from tests.e2e.test_tenants_tables import profile_spec
from tests.support.kube import condition, eventually
from tests.support.rbac import OPERATOR_NAMESPACE

INDEX = "orders_tenant_idx"


def ready(kubectl, kind: str, name: str, namespace: str) -> bool:
    return (condition(kubectl.get(kind, name, namespace), "Ready") or {}).get("status") == "True"


def test_namespace_deleted_while_postgres_is_down_is_cleaned_up_later(
        operator, stack, kubectl, namespace, credentials, pg_database, psql, redis_prefix):
    db = pg_database["database"]
    psql(db, "CREATE TABLE orders AS SELECT g AS id, g % 10 AS tenant "
             "FROM generate_series(1, 1000) g")
    spec = profile_spec(stack, credentials, redis_prefix, pg_database)
    spec["database"] = database_section(
        pg_database, indexPrunePolicy="Delete",
        indexes=[{"name": INDEX, "table": "orders", "columns": [{"column": "tenant"}]}])
    docs = [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
             "metadata": {"name": "platform"}, "spec": spec}]
    docs += [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
              "metadata": {"name": tenant},
              "spec": {"tenantId": tenant, "profileRef": {"name": "platform"}}}
             for tenant in ("acme", "initech")]
    kubectl.apply(yaml.safe_dump_all(docs), namespace)
    eventually(lambda: ready(kubectl, "pp", "platform", namespace)
               and ready(kubectl, "tq", "acme", namespace)
               and ready(kubectl, "tq", "initech", namespace), timeout=90,
               what="the profile and its tenants Ready")

    def leftovers() -> tuple[int, int]:
        indexes = psql(db, f"SELECT count(*) FROM pg_indexes WHERE indexname = '{INDEX}'")
        rows = psql(db, "SELECT count(*) FROM perf_operator.tenant_limits "
                        f"WHERE profile_namespace = '{namespace}'")
        return int(indexes), int(rows)

    assert leftovers() == (1, 2)
    stack.postgres.stop()
    try:
        started = time.monotonic()
        kubectl.run("delete", "namespace", namespace, "--wait=false")
        try:
            eventually(lambda: kubectl.run("get", "namespace", namespace, check=False
                                           ).returncode != 0, timeout=60,
                       what="the namespace gone while PostgreSQL is down")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{operator.log_tail(60)}") from None
        print(f"namespace gone after {time.monotonic() - started:.1f} s")
        ledger = json.loads(kubectl.run("get", "configmap", "perf-operator-cleanup", "-o",
                                        "json", namespace=OPERATOR_NAMESPACE).stdout)
        assert any(f".{namespace}." in key for key in ledger.get("data") or {}), ledger
        assert stack.postgres.operator_password not in json.dumps(ledger)
    finally:
        stack.postgres.launch()

    eventually(lambda: leftovers() == (0, 0), timeout=90,
               what="the index and the mirror rows removed once PostgreSQL is back")

    def finished_event():
        items = json.loads(kubectl.run("get", "events", "-o", "json",
                                       namespace=OPERATOR_NAMESPACE).stdout)["items"]
        return [e for e in items if e["reason"] == "CleanupFinished"
                and f"{namespace}/platform" in e["message"]]

    events = eventually(finished_event, timeout=30, what="a CleanupFinished Event")
    assert events[0]["source"]["component"] == "perf-operator"
    eventually(lambda: not any(f".{namespace}." in key for key in (json.loads(kubectl.run(
        "get", "configmap", "perf-operator-cleanup", "-o", "json",
        namespace=OPERATOR_NAMESPACE).stdout).get("data") or {})), timeout=30,
        what="the ledger entries removed")


async def test_a_dropped_database_leaves_nothing_to_clean_up(stack, namespace, credentials,
                                                              psql):
    """A profile deleted after its database was dropped: its indexes went with the database,
    so the cleanup is done at once (it is not deferred and retried for ever)."""
    import secrets as tokens

    from perf_operator.postgres import cleanup_profile
    from tests.e2e.postgres_support import database_section, profile_context

    name = f"t_{tokens.token_hex(4)}"
    stack.postgres.create_database(name)
    psql("postgres", f"DROP DATABASE {name} WITH (FORCE)")
    pg = {"host": "127.0.0.1", "port": stack.postgres.port, "database": name}
    ctx = profile_context(namespace, database_section(pg, indexes=[
        {"name": "t_a_idx", "table": "t", "columns": [{"column": "a"}]}]))
    await cleanup_profile(ctx)  # returns: nothing raised, nothing to retry
