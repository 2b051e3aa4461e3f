"""The reference schema (sql/schema.sql) and the strategic index set: the profile in
examples/profile-indexes.yaml, reconciled by the operator, leaves the catalog holding exactly
its indexes, and they are the same indexes sql/performance_indexes.sql builds by hand."""
from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
import yaml

from .postgres_support import (converge, database_section, phases, profile_context)

pytestmark = [pytest.mark.e2e]

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "profile-indexes.yaml"

#: Indexes of the schema's own constraints (primary keys, UNIQUE), not part of the index set.
NON_CONSTRAINT_INDEXES = """
SELECT c.relname, pg_get_indexdef(c.oid), x.indisvalid,
       coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
"""


def run_sql_file(stack, database: str, path: pathlib.Path) -> None:
    env = {**os.environ, "PGPASSWORD": stack.postgres.password}
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(stack.postgres.port), "-U",
                    stack.postgres.superuser, "-d", database, "-v", "ON_ERROR_STOP=1", "-q",
                    "-f", str(path)], check=True, capture_output=True, env=env)


def indexes(psql, database: str) -> dict[str, tuple[str, bool, str]]:
    result = {}
    for line in psql(database, NON_CONSTRAINT_INDEXES).splitlines():
        name, definition, valid, comment = line.split("|", 3)
        result[name] = (definition, valid == "t", comment)
    return result


def example_database_section(pg_database: dict) -> dict:
    """The example's spec.database, pointed at the test database."""
    document = yaml.safe_load(EXAMPLE.read_text())
    section = document["spec"]["database"]
    section["connection"].update(host=pg_database["host"], port=pg_database["port"],
                                 database=pg_database["database"], sslMode="disable")
    return section


def test_the_example_is_accepted_by_the_api_server(crds, namespace):
    crds.run("apply", "--dry-run=server", "-f", str(EXAMPLE), namespace=namespace)


async def test_profile_builds_exactly_the_declared_index_set(pg_database, namespace,
                                                             credentials, psql, stack):
    db = pg_database["database"]
    run_sql_file(stack, db, REPO / "sql" / "schema.sql")
    section = example_database_section(pg_database)
    declared = {i["name"] for i in section["indexes"]}
    ctx = profile_context(namespace, section, name="platform-indexes")
    outcome = await converge(ctx, timeout=300)

    assert set(phases(outcome).values()) == {"Ready"}
    assert outcome.status["database"]["readyIndexes"] == len(declared)
    built = indexes(psql, db)
    assert set(built) == declared  # exactly: nothing missing, no temporary or extra index
    assert all(valid for _, valid, _ in built.values())
    assert all(comment.startswith("perf-operator:") for _, _, comment in built.values())

    # the hand-run SQL file builds the very same indexes
    by_hand = f"{db}_by_hand"
    psql("postgres", f"CREATE DATABASE {by_hand}")
    try:
        run_sql_file(stack, by_hand, REPO / "sql" / "schema.sql")
        run_sql_file(stack, by_hand, REPO / "sql" / "performance_indexes.sql")
        assert {name: d for name, (d, _, _) in indexes(psql, by_hand).items()} == \
            {name: d for name, (d, _, _) in built.items()}
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {by_hand} WITH (FORCE)")


async def test_the_seed_profiles_indexes_build_on_the_reference_schema(pg_database, namespace,
                                                                       credentials, psql, stack):
    """examples/profile-seed.yaml names tables and columns; the reference schema has them."""
    run_sql_file(stack, pg_database["database"], REPO / "sql" / "schema.sql")
    seed = yaml.safe_load((REPO / "examples" / "profile-seed.yaml").read_text())
    seed_indexes = seed["spec"]["database"]["indexes"]
    ctx = profile_context(namespace, database_section(pg_database, indexes=seed_indexes),
                          name="seed")
    outcome = await converge(ctx, timeout=120)
    assert set(phases(outcome).values()) == {"Ready"}
    assert len(phases(outcome)) == len(seed_indexes)
