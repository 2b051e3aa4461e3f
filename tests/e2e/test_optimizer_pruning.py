"""Connection pruning on the real PostgreSQL: only the application role's connections to the
profile's database that sit idle past the bound are terminated."""
from __future__ import annotations

import secrets
import time

import psycopg
import pytest

from perf_operator.api import PerformanceProfileSpec
from perf_operator.optimizer import actions
from perf_operator.postgres.connect import target_for_profile


@pytest.fixture
def roles(psql):
    suffix = secrets.token_hex(3)
    names = {"app": f"app_{suffix}", "other": f"other_{suffix}"}
    password = secrets.token_urlsafe(12)
    for role in names.values():
        psql("postgres", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    yield names, password
    for role in names.values():
        psql("postgres", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         f"WHERE usename = '{role}'")
        psql("postgres", f"DROP ROLE IF EXISTS {role}")


def alive(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


async def test_pruning_terminates_only_the_app_roles_idle_connections(
        stack, namespace, credentials, pg_database, roles):
    names, password = roles
    db = pg_database["database"]

    def connect(role: str, database: str = db, **extra) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=stack.postgres.port, dbname=database,
                               user=names[role], password=password, autocommit=True, **extra)

    spec = PerformanceProfileSpec.model_validate({"database": {"connection": {
        "host": "127.0.0.1", "port": stack.postgres.port, "database": db,
        "secretRef": {"name": credentials["postgres"]}, "sslMode": "disable"}}})
    # the operator's pool
    await target_for_profile(namespace, "web", spec.database.resolved_connection)

    idle = [connect("app"), connect("app")]
    spared = {
        "named like the operator": connect("app", application_name="perf-operator"),
        "another role": connect("other"),
        "another database": connect("app", "postgres"),
        "in a transaction": connect("app"),
    }
    spared["in a transaction"].autocommit = False
    spared["in a transaction"].execute("SELECT 1")  # idle in transaction: holds a snapshot
    young = None
    try:
        time.sleep(2)
        young = connect("app")  # idle for less than the bound
        result = await actions.prune_connections(spec.database.connection, namespace, "web",
                                                 names["app"], idle_seconds=1)
        assert result == f"terminated 2 connections of role {names['app']} idle for more " \
                         f"than 1s"
        assert not any(alive(conn) for conn in idle)
        for why, conn in spared.items():
            assert alive(conn), why
        assert alive(young)
    finally:
        for conn in [*idle, *spared.values(), young]:
            if conn is not None:
                conn.close()
