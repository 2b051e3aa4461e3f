"""Injection attempts in index names, tables, columns, operator classes, expressions and
``where`` are refused before anything reaches PostgreSQL: pg_stat_statements shows no
statement but the operator's catalog reads, and the catalog is unchanged.

The CRD's patterns and the admission webhook refuse these at ``kubectl apply``; here they are
put into the model unvalidated (``model_construct``), as if both were bypassed, to show the
reconciler's own checks."""
from __future__ import annotations

import pytest

from perf_operator.api.profile import Index, IndexColumn

from .postgres_support import (converge, database_section, phases, profile_context)

pytestmark = [pytest.mark.e2e]

DROP = "DROP TABLE users"


def column(**fields) -> IndexColumn:
    return IndexColumn.model_construct(**{"column": None, "expression": None, "order": None,
                                          "nulls": None, "opclass": None, **fields})


def index(name: str, **fields) -> Index:
    values = {"name": name, "schema_": "public", "table": "users",
              "columns": [column(column="email")], "where": None, "unique": False,
              "method": "btree", "include": None, "adopt": False, **fields}
    return Index.model_construct(**values)


ATTEMPTS = [
    index(f"users_x; {DROP}; --"),
    index("users_table_idx", table=f"users; {DROP}"),
    index("users_schema_idx", schema_=f"public; {DROP}; --"),
    index("users_column_idx", columns=[column(column=f"email); {DROP}; --")]),
    index("users_opclass_idx", columns=[column(column="email", opclass=f"text_ops); {DROP}")]),
    index("users_include_idx", include=[f"id) WHERE (true); {DROP}; --"]),
    index("users_method_idx", method=f"btree (email); {DROP}; --"),
    index("users_expression_idx", columns=[column(expression=f"lower(email)); {DROP}; --")]),
    index("users_subquery_idx", columns=[column(expression="(SELECT max(email) FROM users)")]),
    index("users_where_idx", where=f"deleted_at IS NULL); {DROP}; --"),
    index("users_where_stacked_idx", where=f"true; {DROP}"),
    index("users_where_subquery_idx", where="id IN (SELECT id FROM users)"),
    index("users_where_comment_idx", where="true /* */ ) ; DROP TABLE users; --"),
]


async def test_injection_attempts_are_refused_and_nothing_is_executed(pg_database, namespace,
                                                                     credentials, psql):
    db = pg_database["database"]
    psql(db, "CREATE TABLE users (id bigint PRIMARY KEY, email text, deleted_at timestamptz)")
    ctx = profile_context(namespace, database_section(pg_database))
    ctx.spec.database.indexes = ATTEMPTS
    psql(db, "SELECT pg_stat_statements_reset()")

    outcome = await converge(ctx, until=lambda o: not o.ready)

    assert set(phases(outcome).values()) == {"Failed"}
    errors = {i["name"]: i["lastError"] for i in outcome.status["database"]["indexes"]}
    assert len(errors) == len(ATTEMPTS) and all(errors.values())
    assert outcome.reason == "IndexFailed"
    # every statement the database ran is a read: the operator's catalog queries (read as
    # the superuser, who sees every role's statements; its SET ROLE left out)
    not_reads = r"""
        SET ROLE NONE;
        SELECT query FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query !~* '^\s*(SELECT|SET ROLE)'"""

    def statements() -> list[str]:
        return [line for line in psql(db, not_reads).splitlines() if line != "SET"]

    assert statements() == []
    psql(db, "COMMENT ON TABLE users IS 'control'")  # DDL does show up there
    assert "COMMENT ON TABLE" in "\n".join(statements())
    assert psql(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'users'").strip() == "1"
    assert psql(db, "SELECT to_regclass('users') IS NOT NULL").strip() == "t"


async def test_setting_names_and_values_cannot_inject(pg_database, namespace, credentials,
                                                      psql):
    """A name that is not a plain parameter name is refused unexecuted; a value is always one
    quoted literal, so the worst it can be is a value PostgreSQL rejects."""
    db = pg_database["database"]
    psql(db, "CREATE TABLE users (id bigint PRIMARY KEY)")
    ctx = profile_context(namespace, database_section(pg_database, parameters={
        "work_mem": f"4MB'; {DROP}; --"}))
    ctx.spec.database.settings.parameters[f"work_mem = 1; {DROP}; --"] = "1"
    outcome = await converge(ctx, until=lambda o: not o.ready)
    states = {s["name"]: (s["state"], s.get("message", ""))
              for s in outcome.status["database"]["settings"]}
    assert states["work_mem"][0] == "Rejected" and "invalid value" in states["work_mem"][1]
    assert states[f"work_mem = 1; {DROP}; --"] == (
        "Rejected", f"work_mem = 1; {DROP}; -- is not a performance parameter the operator may "
                    f"set; it was not sent")
    assert psql(db, "SELECT to_regclass('users') IS NOT NULL").strip() == "t"
    assert psql(db, "SELECT count(*) FROM pg_db_role_setting "
                    "WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())").strip() == "0"
