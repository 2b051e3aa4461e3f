"""``kubectl perf`` through the real kubectl (plugin discovery on PATH) against the local stack
and the running operator: ``status`` shows the profile's tree, ``tenant`` matches the record in
Redis, ``plan`` of a changed profile writes nothing (catalog, Redis and API objects unchanged)
and lists exactly the DDL the operator then runs."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from tests.support.kube import condition, eventually

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
USERS = """
CREATE TABLE users (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, email text NOT NULL,
                    status text NOT NULL DEFAULT 'active', deleted_at timestamptz);
INSERT INTO users (tenant_id, email)
SELECT g % 50, 'user' || g || '@example.com' FROM generate_series(1, 5000) g;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
"""
EMAIL = {"name": "users_tenant_email_idx", "table": "users",
         "columns": [{"column": "tenant_id"}, {"column": "email"}]}
STATUS = {"name": "users_status_idx", "table": "users", "columns": [{"column": "status"}]}


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """A directory holding ``kubectl-perf``: ``pip install`` puts the console script on PATH;
    here a shim runs this checkout's code the same way (``python -m perf_operator.insight``)."""
    directory = tmp_path_factory.mktemp("plugin")
    shim = directory / "kubectl-perf"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m perf_operator.insight \"$@\"\n")
    shim.chmod(0o755)
    return str(directory)


@pytest.fixture
def perf(kubectl, plugin_path):
    """Run ``kubectl perf ...`` through the real kubectl binary."""
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{plugin_path}{os.pathsep}{os.environ['PATH']}",
               "KUBECONFIG": kubectl.kubeconfig,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "operator"),
                                                           os.environ.get("PYTHONPATH")]))}
        result = subprocess.run([kubectl.binary, "perf", *args], capture_output=True,
                                text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl perf {' '.join(args)}: {result.stderr}")
        return result
    return run


def manifests(stack, pg_database, redis_prefix, indexes, **database) -> str:
    profile = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
               "metadata": {"name": "platform"},
               "spec": {"database": {
                   "connection": {"host": pg_database["host"], "port": pg_database["port"],
                                  "database": pg_database["database"], "sslMode": "disable",
                                  "secretRef": {"name": "pg-credentials"}},
                   "settings": {"scope": "Database", "parameters": {"work_mem": "8MB"}},
                   "indexes": indexes, **database},
                   "redis": {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                                            "secretRef": {"name": "redis-credentials"}},
                             "keyPrefix": redis_prefix}}}
    tenant = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
              "metadata": {"name": "acme"},
              "spec": {"tenantId": "acme", "profileRef": {"name": "platform"},
                       "rateLimits": [{"pattern": "/api/search", "methods": ["GET"],
                                       "requests": 50}]}}
    return yaml.safe_dump_all([profile, tenant])


def ready(kubectl, namespace, kind, name):
    cond = condition(kubectl.get(kind, name, namespace), "Ready")
    return cond if cond and cond["status"] == "True" else None


def catalog(psql, db: str) -> str:
    return psql(db, "SELECT indexname, indexdef, coalesce(obj_description(format('%I.%I', "
                    "schemaname, indexname)::regclass), '') FROM pg_indexes "
                    "WHERE schemaname = 'public' ORDER BY 1; "
                    "SELECT coalesce(array_to_string(setconfig, ','), '') FROM "
                    "pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())")


def operator_ddl(psql, db: str) -> dict[str, int]:
    """Index and settings DDL run in the database so far: statement -> times run."""
    # read as the superuser: the statements are the operator's login's, not the application's
    rows = psql(db, "SET ROLE NONE; "
                    "SELECT calls || ' ' || query FROM pg_stat_statements s JOIN pg_database d ON "
                    "d.oid = s.dbid WHERE d.datname = current_database() AND "
                    "(query LIKE 'CREATE INDEX%' OR query LIKE 'DROP INDEX%' OR "
                    "query LIKE 'ALTER INDEX%' OR query LIKE 'COMMENT ON INDEX%' OR "
                    "query LIKE 'ALTER DATABASE%')")
    return {query: int(calls) for calls, query in
            (row.split(" ", 1) for row in rows.split("\n") if row and row != "SET")}


async def redis_dump(redis, prefix: str) -> dict:
    return {key: await redis.hgetall(key) for key in sorted(await redis.keys(prefix + "*"))
            if await redis.type(key) == "hash"}


async def test_status_tenant_and_plan(operator, kubectl, namespace, stack, pg_database,
                                      credentials, redis, redis_prefix, psql, perf, tmp_path):
    db = pg_database["database"]
    psql(db, USERS)
    kubectl.apply(manifests(stack, pg_database, redis_prefix, [EMAIL]), namespace)
    eventually(lambda: ready(kubectl, namespace, "pp", "platform"), timeout=90,
               what="the profile to be Ready")
    eventually(lambda: ready(kubectl, namespace, "tq", "acme"), timeout=60,
               what="the tenant to be Ready")

    # status: the tree, as text and as data
    text = perf("status", "-n", namespace).stdout
    assert f"PerformanceProfile {namespace}/platform" in text
    assert "index users_tenant_email_idx  Ready" in text.replace("✓ ", "")
    assert "tenant acme (acme)" in text and "\x1b[" not in text  # no colour off a terminal
    tree = json.loads(perf("status", "platform", "-n", namespace, "-o", "json").stdout)
    parts = {child["name"]: child for child in tree[0]["children"]}
    assert parts["database"]["ok"] and parts["redis"]["ok"]
    assert yaml.safe_load(perf("status", "-A", "-o", "yaml").stdout)

    # tenant: what Redis holds
    view = json.loads(perf("tenant", "acme", "-n", namespace, "-o", "json").stdout)
    record = await redis.hgetall(view["record"]["key"])
    assert view["record"]["version"] == int(record["version"]) >= 1
    assert view["record"]["current"] and view["record"]["digest"] == record["digest"]
    assert view["record"]["limits"] == json.loads(record["limits"])
    assert view["effectiveLimits"]["endpoints"][0]["pattern"] == "/api/search"
    assert "GET      /api/search" in perf("tenant", "acme", "-n", namespace).stdout

    # plan of a changed profile: new index, changed definition, pruned nothing yet
    changed = {**EMAIL, "where": "deleted_at IS NULL"}
    changed_file = tmp_path / "changed.yaml"
    changed_file.write_text(manifests(stack, pg_database, redis_prefix, [changed, STATUS],
                                      settings={"scope": "Database",
                                                "parameters": {"work_mem": "16MB"}}))
    before = (catalog(psql, db), await redis_dump(redis, redis_prefix),
              kubectl.get("pp", "platform", namespace)["metadata"]["resourceVersion"])
    ddl_before = operator_ddl(psql, db)
    plans = json.loads(perf("plan", str(changed_file), "-n", namespace, "-o", "json").stdout)
    text = perf("plan", str(changed_file), "-n", namespace).stdout
    after = (catalog(psql, db), await redis_dump(redis, redis_prefix),
             kubectl.get("pp", "platform", namespace)["metadata"]["resourceVersion"])
    assert after == before, "plan wrote something"
    assert plans[0]["unknown"] == []
    planned = [s["action"] for s in plans[0]["steps"] if s["system"] == "postgres"]
    assert any(s.startswith('CREATE INDEX CONCURRENTLY "users_status_idx__perfop_')
               for s in planned), planned
    assert any("WHERE (deleted_at IS NULL)" in s for s in planned)
    assert any(s.startswith("DROP INDEX CONCURRENTLY") for s in planned)
    assert "ALTER DATABASE" in text and "16MB" in text and "! [postgres]" in text

    # the operator then runs exactly that DDL
    kubectl.apply(changed_file.read_text(), namespace)

    def converged():
        obj = kubectl.get("pp", "platform", namespace)
        database = (obj.get("status") or {}).get("database") or {}
        return database.get("readyIndexes") == 2 and ready(kubectl, namespace, "pp",
                                                           "platform")
    eventually(converged, timeout=90, what="the changed profile to converge")
    ran = {query for query, calls in operator_ddl(psql, db).items()
           if calls > ddl_before.get(query, 0)}
    assert ran == set(planned), (sorted(ran), sorted(planned))
    # and nothing is left to do
    again = json.loads(perf("plan", "platform", "-n", namespace, "-o", "json").stdout)
    assert [s for s in again[0]["steps"] if s["system"] == "postgres"] == []


def test_pyproject_declares_the_plugin():
    text = (REPO / "pyproject.toml").read_text()
    assert 'kubectl-perf = "perf_operator.insight.cli:main"' in text
