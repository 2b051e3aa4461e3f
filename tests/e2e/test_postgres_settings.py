"""PostgreSQL parameters against the real server: Applied, PendingRestart, Drifted (changed
behind the operator's back, corrected, announced), Rejected with PostgreSQL's message; a
converged server gets no statement at all."""
from __future__ import annotations

import pytest

from perf_operator.api.status import DatabaseStatus

from .postgres_support import (RecordedEvents, converge, database_section,
                               profile_context, reconcile)

pytestmark = [pytest.mark.e2e]

ALTERS = r"""
SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query ~* '^\s*ALTER (SYSTEM|DATABASE)'"""


def states(outcome) -> dict[str, tuple[str, str | None]]:
    DatabaseStatus.model_validate(outcome.status["database"])  # the api status shape
    return {s["name"]: (s["state"], s.get("actual"))
            for s in outcome.status["database"]["settings"]}


@pytest.fixture
def statements_db(pg_database):
    """pg_database comes with pg_stat_statements."""
    return pg_database


async def test_database_scope(statements_db, namespace, credentials, psql):
    db = statements_db["database"]
    events = RecordedEvents()
    wanted = {"work_mem": "8MB", "random_page_cost": "1.1", "log_min_duration_statement": "1s"}
    ctx = profile_context(namespace, database_section(statements_db, parameters=wanted,
                                                      scope="Database"), events=events)
    outcome = await converge(ctx)
    assert states(outcome) == {"work_mem": ("Applied", "8MB"),
                               "random_page_cost": ("Applied", "1.1"),
                               "log_min_duration_statement": ("Applied", "1s")}
    recorded = psql(db, "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting "
                        "WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database())").strip()
    assert set(recorded.split(",")) == {"work_mem=8MB", "random_page_cost=1.1",
                                        "log_min_duration_statement=1s"}
    # new sessions get the values
    assert psql(db, "SHOW work_mem").strip() == "8MB"

    # converged: reconciling again writes nothing, even for another spelling of a value
    alters = psql(db, ALTERS).strip()
    ctx.spec.database.settings.parameters["work_mem"] = "8192kB"
    for _ in range(3):
        assert (await reconcile(ctx)).ready
    assert psql(db, ALTERS).strip() == alters

    # drift: changed behind the operator's back, corrected on the next (timer) reconcile
    psql("postgres", f"ALTER DATABASE {db} SET work_mem = '16MB'")
    outcome = await reconcile(ctx)
    assert states(outcome)["work_mem"][0] == "Drifted"
    assert ("Warning", "SettingDrifted") in [e[:2] for e in events.events]
    assert "'16MB'" in events.events[-1][2]
    assert psql(db, "SHOW work_mem").strip() == "8MB"
    assert states(await reconcile(ctx))["work_mem"][0] == "Applied"


async def test_rejected_parameters_carry_postgres_message(statements_db, namespace,
                                                          credentials, psql):
    events = RecordedEvents()
    wanted = {"work_mem": "lots", "no_such_parameter": "1", "shared_buffers": "256MB",
              "random_page_cost": "1.5"}
    ctx = profile_context(namespace, database_section(statements_db, parameters=wanted,
                                                      scope="Database"), events=events)
    outcome = await converge(ctx, until=lambda o: not o.ready)
    messages = {s["name"]: s.get("message", "") for s in outcome.status["database"]["settings"]}
    assert states(outcome)["random_page_cost"] == ("Applied", "1.5")
    assert 'invalid value for parameter "work_mem": "lots"' in messages["work_mem"]
    assert messages["no_such_parameter"] == (
        "no_such_parameter is not a performance parameter the operator may set; it was not "
        "sent")
    assert "cannot be changed without restarting" in messages["shared_buffers"]
    assert {states(outcome)[n][0] for n in ("work_mem", "no_such_parameter",
                                           "shared_buffers")} == {"Rejected"}
    assert outcome.reason == "SettingRejected" and not outcome.ready
    await reconcile(ctx)
    assert [e[1] for e in events.events].count("SettingRejected") == 3  # once each


async def test_system_scope_with_reload_pending_restart_and_drift(statements_db, namespace,
                                                                  credentials, psql):
    """ALTER SYSTEM changes the whole test server: the parameters are reset afterwards."""
    db = statements_db["database"]
    events = RecordedEvents()
    # Other tests restart the shared server, so a value some of them wrote may be live: ask for
    # one that is not.
    live_buffers = psql(db, "SHOW shared_buffers").strip()
    wanted = {"work_mem": "6MB", "log_min_duration_statement": "1000",
              "shared_buffers": "192MB" if live_buffers == "256MB" else "256MB"}
    ctx = profile_context(namespace, database_section(statements_db, parameters=wanted,
                                                      scope="System"), events=events)
    try:
        outcome = await converge(ctx)
        assert states(outcome) == {"work_mem": ("Applied", "6MB"),
                                   "log_min_duration_statement": ("Applied", "1s"),
                                   "shared_buffers": ("PendingRestart", live_buffers)}
        assert outcome.ready and "waiting for a PostgreSQL restart: shared_buffers" in \
            outcome.message
        assert psql(db, "SHOW work_mem").strip() == "6MB"  # reloaded, in effect everywhere

        alters = psql(db, ALTERS).strip()
        for _ in range(3):
            await reconcile(ctx)
        assert psql(db, ALTERS).strip() == alters

        psql("postgres", "ALTER SYSTEM SET work_mem = '32MB'")
        psql("postgres", "SELECT pg_reload_conf()")
        outcome = await reconcile(ctx)
        assert states(outcome)["work_mem"] == ("Drifted", "6MB")
        assert "SettingDrifted" in [e[1] for e in events.events]
        assert states(await reconcile(ctx))["work_mem"][0] == "Applied"

        # a per-database value hides the system one here: reported, not fought
        psql("postgres", f"ALTER DATABASE {db} SET work_mem = '64MB'")
        outcome = await reconcile(ctx)
        assert states(outcome)["work_mem"] == ("Drifted", "64MB")
        assert not outcome.ready and outcome.reason == "SettingOverridden"
        assert "ALTER DATABASE" in outcome.message
        assert "64MB" in psql(db, "SELECT array_to_string(setconfig, ',') "
                                  "FROM pg_db_role_setting WHERE setrole = 0")
    finally:
        for name in wanted:
            psql("postgres", f"ALTER SYSTEM RESET {name}")
        psql("postgres", "SELECT pg_reload_conf()")
