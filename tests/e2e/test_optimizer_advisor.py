"""Index advice on a real workload: the sql/ schema in the real PostgreSQL, a query mix with a
missing index recorded by pg_stat_statements, a latency breach from the test exporter through
the real Prometheus, and hypothetical indexes from hypopg."""
from __future__ import annotations


import psycopg
import pytest

from perf_operator.api.profile import Index
from perf_operator.optimizer import advisor, redundant_indexes
from tests.e2e.optimizer_support import (  # noqa: F401 - fixtures
    MISSING, Profile, exporter, hold, operator_test_mode, optimized_profile, reference_plugins,
    until)
from tests.e2e.postgres_support import converge, phases
from tests.support.contexts import profile_context

#: Half the plugins are public, and the query reads a column the candidate index lacks: a
#: sequential scan stays cheaper than fetching half the table through an index on is_public.
#: (``count(*)`` would not do: an index-only scan of the small index needs no column from the
#: table and can be costed far below the table's scan; a CI run saw a 65 % saving for it.)
IRRELEVANT = "SELECT max(downloads) FROM plugins WHERE is_public = %s"
#: Served by the UNIQUE constraint's index already.
SERVED = "SELECT name FROM tenants WHERE slug = %s"


@pytest.fixture
def workload(stack, psql, pg_database):
    """The reference schema with 100,000 plugins of 200 tenants, and a query mix."""
    db = pg_database["database"]
    tenants = reference_plugins(psql, db)
    psql(db, "SELECT pg_stat_statements_reset()")
    with psycopg.connect(stack.postgres.dsn(db)) as conn:
        for i in range(200):
            conn.execute(MISSING, (tenants[i % len(tenants)], f"category-{i % 20}"))
        for i in range(50):
            conn.execute(IRRELEVANT, (i % 2 == 0,))
            conn.execute(SERVED, (f"t{i}",))
    return pg_database


def database_section(pg_database: dict) -> dict:
    return {"connection": {"host": pg_database["host"], "port": pg_database["port"],
                           "database": pg_database["database"],
                           "secretRef": {"name": "pg-credentials"}, "sslMode": "disable"},
            "settings": {"scope": "Database", "parameters": {}},
            "applicationRole": "perf_app"}


SLOW = (20_000, 2.0, "200")


async def test_a_latency_breach_recommends_the_missing_index_only(
        stack, namespace, credentials, psql, workload, exporter):
    web = Profile(namespace, "web", optimized_profile(stack, mode="Recommend",
                                                      database=database_section(workload)))
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", SLOW)
    await until([web], lambda: web.state.recommendations, what="an index recommendation")
    advice = next(h for h in web.state.history if h.action == "IndexAdvice")
    assert advice.signal == "apiResponseTimeP95Ms" and advice.value > 200
    assert advice.result.startswith("1 index recommendations: "
                                    "perfop_plugins_tenant_id_category_downloads_idx (saves ")
    (rec,) = web.state.recommendations
    assert (rec.table, rec.columns) == ("plugins", ["tenant_id", "category", "downloads"])
    assert rec.cost_after < rec.cost_before and rec.saving >= 0.3
    assert rec.calls == 200 and rec.total_time_ms > 0
    assert "category" in rec.query and rec.since is not None
    # Recommend: the advice is read-only and recorded; nothing is handed over to be built
    assert web.enforced.indexes == []

    # The irrelevant candidate was costed, not overlooked: without a minimum saving it shows,
    # saving too little to be advised; the served query has no candidate at all.
    async with await psycopg.AsyncConnection.connect(
            stack.postgres.dsn(workload["database"], user=stack.postgres.operator_user),
            autocommit=True) as conn:
        everything = await advisor.advise(conn, application_role=stack.postgres.app_user,
                                          min_saving=0.0)
    by_columns = {tuple(r.columns): r for r in everything}
    assert by_columns[("is_public",)].saving < advisor.DEFAULT_MIN_SAVING
    assert by_columns[("tenant_id", "category", "downloads")].saving >= 0.3
    assert not any(r.table == "tenants" for r in everything)
    # advice builds nothing (hypothetical indexes live only in the advisor's own session)
    assert psql(workload["database"], "SELECT count(*) FROM pg_indexes "
                                      "WHERE indexname LIKE 'perfop%'").strip() == "0"


async def test_auto_mode_hands_the_index_to_the_postgres_reconciler(
        stack, namespace, credentials, psql, workload, exporter):
    database = database_section(workload)
    web = Profile(namespace, "web", optimized_profile(stack, database=database,
                                                      allowIndexCreation=True))
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", SLOW)
    await until([web], lambda: web.enforced.indexes, what="an automatic index")
    (automatic,) = web.enforced.indexes
    creation = next(h for h in web.state.history if h.action == "IndexCreation")
    assert creation.applied and creation.change.startswith(
        "create index perfop_plugins_tenant_id_category_downloads_idx on public.plugins "
        "(tenant_id, category, downloads)")

    # What the PostgreSQL reconciler does with the adjustment: the automatic index joins the
    # declared ones (a valid spec.database.indexes entry) and is built through the same safe
    # path as every declared index.
    declared = Index.model_validate(automatic.index_spec())
    ctx = profile_context(namespace, {"database": {
        **database, "indexes": [declared.model_dump(by_alias=True, exclude_none=True)]}},
        name="web")
    outcome = await converge(ctx)
    assert phases(outcome) == {automatic.name: "Ready"}
    plan = psql(workload["database"],
                "EXPLAIN SELECT id, name FROM plugins WHERE tenant_id = "
                "(SELECT id FROM tenants LIMIT 1) AND category = 'category-3' "
                "ORDER BY downloads DESC LIMIT 20")
    assert automatic.name in plan


async def test_auto_mode_takes_back_an_index_that_serves_nothing(
        stack, namespace, credentials, psql, workload, exporter):
    """allowIndexRemoval: the index the optimizer added, built and then never scanned, is
    reported unused by the PostgreSQL reconciler's index health (unusedAfterDays 0), taken
    back by the optimizer and dropped under indexPrunePolicy Delete; the advisor still
    recommends it on the ongoing breach, and it is not built again."""
    database = {**database_section(workload), "indexPrunePolicy": "Delete",
                "indexHealth": {"unusedAfterDays": 0}}
    web = Profile(namespace, "web", optimized_profile(
        stack, database=database, allowIndexCreation=True, allowIndexRemoval=True))
    exporter.memory(namespace, "web", 0.5)
    exporter.traffic(namespace, "web", SLOW)
    await until([web], lambda: web.enforced.indexes, what="an automatic index")
    (automatic,) = web.enforced.indexes
    qualified = f"public.{automatic.name}"

    # the PostgreSQL reconciler (same status) builds it and judges it: nothing scanned it yet
    outcome = await converge(web.context(), until=lambda o: any(
        f["index"] == qualified for f in (o.status["database"].get("indexHealth") or {})
        .get("findings") or []))
    (finding,) = [f for f in outcome.status["database"]["indexHealth"]["findings"]
                  if f["index"] == qualified]
    assert finding["kind"] == "unused" and finding["owner"] == f"{namespace}/web"

    await until([web], lambda: web.enforced.retired_indexes,
                what=lambda: f"the index taken back (redundant: "
                             f"{redundant_indexes(web.context())}, notes: {web.state.notes})")
    removal = next(h for h in web.state.history if h.action == "IndexRemoval")
    assert (removal.direction, removal.cause, removal.applied) == ("Revert", "Redundant", True)
    assert removal.change.startswith(f"take back index {automatic.name}: unused")
    assert web.enforced.indexes == [] and web.enforced.retired_indexes == [automatic.name]

    await converge(web.context(), until=lambda o: not phases(o))
    assert psql(workload["database"], "SELECT count(*) FROM pg_indexes "
                                      "WHERE indexname LIKE 'perfop%'").strip() == "0"
    # the breach goes on and the advisor recommends it again once it is gone: it stays retired
    dropped_at = web.state.last_evaluated_at
    await until([web], lambda: any(
        h.action == "IndexAdvice" and h.at > dropped_at and automatic.name in (h.result or "")
        for h in web.state.history), what="the advice again, after the drop", timeout=90)
    await hold([web], 3)
    assert web.enforced.indexes == []
    assert not [h for h in web.state.history if h.action == "IndexCreation"
                and h.at > dropped_at]
