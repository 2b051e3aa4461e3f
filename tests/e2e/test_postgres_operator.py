"""The PostgreSQL reconciler inside the running operator, driven by ``kubectl apply``: index
create, change, remove (Retain), prune (Delete), conflict and adoption reported in
status.database and the DatabaseReady condition with Events; and SIGKILL of the operator
process in the middle of a build, then a restart that converges."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.support.kube import condition, eventually

pytestmark = pytest.mark.e2e

USERS = """
CREATE TABLE users (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, email text NOT NULL,
                    status text NOT NULL DEFAULT 'active', deleted_at timestamptz);
INSERT INTO users (tenant_id, email)
SELECT g % 50, 'user' || g || '@example.com' FROM generate_series(1, 20000) g;
"""
TENANT_EMAIL = {"name": "users_tenant_email_idx", "table": "users",
                "columns": [{"column": "tenant_id"}, {"column": "email"}]}


def profile(name: str, pg_database: dict, indexes: list[dict], **database) -> str:
    return yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": name},
        "spec": {"database": {
            "connection": {"host": pg_database["host"], "port": pg_database["port"],
                           "database": pg_database["database"], "sslMode": "disable",
                           "secretRef": {"name": "pg-credentials"}},
            "settings": {"scope": "Database", "parameters": {}},
            "indexes": indexes, **database}}})


def database_state(kubectl, namespace: str, name: str) -> tuple[dict | None, dict]:
    obj = kubectl.get("pp", name, namespace) or {}
    return condition(obj, "DatabaseReady"), (obj.get("status") or {}).get("database") or {}


def wait_database(kubectl, namespace: str, name: str, check, what: str, timeout: float = 90):
    def probe():
        cond, status = database_state(kubectl, namespace, name)
        return (cond, status) if cond and check(cond, status) else None
    return eventually(probe, timeout=timeout, interval=0.5, what=what)


def phases(status: dict) -> dict[str, str]:
    return {i["name"]: i["phase"] for i in status.get("indexes") or []}


def index_comment(psql, db: str, name: str) -> str | None:
    out = psql(db, f"SELECT coalesce(obj_description(to_regclass('{name}'), 'pg_class'), '') "
                   f"WHERE to_regclass('{name}') IS NOT NULL")
    return out.strip() if out else None


def event_reasons(kubectl, namespace: str) -> list[str]:
    events = json.loads(kubectl.run("get", "events", "-o", "json", namespace=namespace).stdout)
    return [e["reason"] for e in events["items"]]


def test_index_lifecycle_through_kubectl(operator, kubectl, namespace, pg_database, credentials,
                                         psql):
    db = pg_database["database"]
    psql(db, USERS)
    ready = lambda cond, _: cond["status"] == "True"  # noqa: E731

    # create
    kubectl.apply(profile("db", pg_database, [TENANT_EMAIL]), namespace)
    cond, status = wait_database(kubectl, namespace, "db", ready, "the index to be built")
    assert phases(status) == {"users_tenant_email_idx": "Ready"}
    assert status["readyIndexes"] == 1 and status["indexes"][0]["sizeBytes"] > 0
    assert index_comment(psql, db, "users_tenant_email_idx").startswith("perf-operator:")
    eventually(lambda: {"BuildStarted", "BuildSucceeded"} <= set(event_reasons(kubectl,
                                                                                namespace)),
               timeout=30, what="build Events")
    first_hash = status["indexes"][0]["definitionHash"]

    # change: rebuilt aside and swapped in
    changed = {**TENANT_EMAIL, "where": "deleted_at IS NULL"}
    kubectl.apply(profile("db", pg_database, [changed]), namespace)
    wait_database(kubectl, namespace, "db",
                  lambda c, s: c["status"] == "True" and s["indexes"][0].get(
                      "definitionHash") not in (None, first_hash), "the changed index")
    assert "WHERE (deleted_at IS NULL)" in psql(
        db, "SELECT pg_get_indexdef('users_tenant_email_idx'::regclass)")

    # remove, prune policy Retain: kept, released
    second = {"name": "users_status_idx", "table": "users", "columns": [{"column": "status"}]}
    kubectl.apply(profile("db", pg_database, [second]), namespace)
    wait_database(kubectl, namespace, "db",
                  lambda c, s: c["status"] == "True" and phases(s) == {"users_status_idx":
                                                                         "Ready"}, "removal")
    eventually(lambda: index_comment(psql, db, "users_tenant_email_idx") == "", timeout=30,
               what="the retained index to be released")

    # remove, prune policy Delete: dropped
    kubectl.apply(profile("db", pg_database, [], indexPrunePolicy="Delete"), namespace)
    eventually(lambda: index_comment(psql, db, "users_status_idx") is None, timeout=60,
               what="the pruned index to be dropped")
    assert index_comment(psql, db, "users_tenant_email_idx") == ""  # released: not ours

    # conflict, then adoption, of the index released above (same definition)
    kubectl.apply(profile("db", pg_database, [changed]), namespace)
    cond, status = wait_database(kubectl, namespace, "db",
                                 lambda c, s: c["reason"] == "IndexConflict", "a conflict")
    assert phases(status) == {"users_tenant_email_idx": "Conflict"} and "adopt" in cond["message"]
    kubectl.apply(profile("db", pg_database, [{**changed, "adopt": True}]), namespace)
    wait_database(kubectl, namespace, "db", ready, "adoption")
    assert index_comment(psql, db, "users_tenant_email_idx").startswith("perf-operator:")
    assert {"IndexConflict", "IndexAdopted", "IndexRetained", "IndexPruned"} <= set(
        event_reasons(kubectl, namespace))


@pytest.mark.isolated
def test_operator_killed_during_a_build_converges_after_restart(stack, crds, kubectl, namespace,
                                                                pg_database, credentials, psql,
                                                                tmp_path):
    """The operator process (its own, watching only this namespace) is SIGKILLed while
    CREATE INDEX CONCURRENTLY runs on a 2 M row table, then started again."""
    from tests.support.operator import start_operator

    db = pg_database["database"]
    psql(db, "CREATE TABLE events AS SELECT g AS id, (g % 1000)::int AS tenant_id, "
             "now() - g * interval '1 second' AS created_at FROM generate_series(1, 2000000) g;"
             "CREATE INDEX events_dba_idx ON events (id)")
    dba_before = psql(db, "SELECT 'events_dba_idx'::regclass::oid")
    index = {"name": "events_tenant_created_idx", "table": "events",
             "columns": [{"column": "tenant_id"}, {"column": "created_at"}]}
    arguments = ("--standalone", f"--namespace={namespace}")
    kubeconfig = str(stack.control_plane.kubeconfig)
    first = start_operator(kubeconfig, tmp_path / "first", extra_args=arguments)
    try:
        kubectl.apply(profile("crash", pg_database, [index]), namespace)
        # read as the superuser: only it sees the phase of the operator's session
        eventually(lambda: psql(db, "SET ROLE NONE; SELECT count(*) "
                                    "FROM pg_stat_progress_create_index "
                                    "WHERE phase LIKE 'building index%'").split()[-1] == "1",
                   timeout=90, interval=0.05, what="the build to be scanning the table")
    finally:
        first.kill()
    second = start_operator(kubeconfig, tmp_path / "second", extra_args=arguments)
    try:
        cond, status = wait_database(kubectl, namespace, "crash",
                                     lambda c, _: c["status"] == "True", "convergence",
                                     timeout=120)
        assert phases(status) == {"events_tenant_created_idx": "Ready"}
    finally:
        second.stop()
    rows = psql(db, "SELECT c.relname, x.indisvalid FROM pg_index x "
                    "JOIN pg_class c ON c.oid = x.indexrelid "
                    "WHERE x.indrelid = 'events'::regclass ORDER BY 1").split()
    assert rows == ["events_dba_idx|t", "events_tenant_created_idx|t"]
    assert psql(db, "SELECT 'events_dba_idx'::regclass::oid") == dba_before
    assert psql(db, "SELECT count(*) FROM pg_stat_progress_create_index").strip() == "0"


def test_index_health_reports_every_index_and_touches_none(operator, kubectl, namespace,
                                                           pg_database, credentials, psql):
    """status.database.indexHealth judges the whole database: the team's own duplicate and
    left-prefix overlap (not the operator's: reported, never dropped), and with
    unusedAfterDays 0 the operator's fresh index, unscanned, as unused with its owner; one
    Warning Event names the findings, and a fixed finding leaves the status."""
    db = pg_database["database"]
    psql(db, USERS + """
        CREATE INDEX users_email_a ON users (email);
        CREATE INDEX users_email_b ON users (email);
        CREATE INDEX users_tenant_only ON users (tenant_id);
    """)
    kubectl.apply(profile("health", pg_database, [TENANT_EMAIL],
                          indexHealth={"unusedAfterDays": 0}), namespace)
    _, status = wait_database(
        kubectl, namespace, "health",
        lambda cond, status: cond["status"] == "True"
        and (status.get("indexHealth") or {}).get("overlap"),
        "the index health in status")
    health = status["indexHealth"]
    found = {(f["kind"], f["index"]): f for f in health["findings"]}
    assert ("duplicate", "public.users_email_b") in found
    assert ("overlap", "public.users_tenant_only") in found
    assert "users_tenant_email_idx" in found[("overlap", "public.users_tenant_only")]["detail"]
    owned = found[("unused", "public.users_tenant_email_idx")]
    assert owned["owner"] == f"{namespace}/health"
    assert "owner" not in found[("duplicate", "public.users_email_b")]
    assert health["duplicate"] == 1 and health["overlap"] == 1
    assert health["unused"] == sum(1 for kind, _ in found if kind == "unused")
    assert "sizeBytes" not in owned  # moves with every write: not in status

    eventually(lambda: "IndexHealth" in event_reasons(kubectl, namespace), timeout=30,
               what="the IndexHealth Warning Event")
    assert psql(db, "SELECT count(*) FROM pg_indexes WHERE indexname IN "
                    "('users_email_a', 'users_email_b', 'users_tenant_only')").strip() == "3"

    psql(db, "DROP INDEX users_email_b")
    wait_database(kubectl, namespace, "health",
                  lambda _, status: (status.get("indexHealth") or {}).get("duplicate") == 0,
                  "the fixed duplicate to leave the status")
