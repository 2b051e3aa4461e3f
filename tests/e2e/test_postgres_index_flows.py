"""Declarative index flows against the real PostgreSQL, through ``reconcile_profile`` called
the way the handler calls it (credentials from the real Secret in the test namespace):
create, change, remove (retain), prune, adopt, conflict, failure, deadline, build slots."""
from __future__ import annotations

import asyncio
import time

import pytest

from perf_operator.postgres.index_builds import BuildOptions, reconcile_indexes, wait_for_jobs
from .postgres_support import (RecordedEvents, converge, database_section,
                               phases, profile_context, reconcile,
                               with_database)

pytestmark = [pytest.mark.e2e]

USERS = """
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL,
    email text NOT NULL,
    status text NOT NULL DEFAULT 'active',
    deleted_at timestamptz
);
INSERT INTO users (tenant_id, email, status)
SELECT g % 50, 'user' || g || '@example.com', CASE WHEN g % 10 = 0 THEN 'disabled' ELSE 'active' END
FROM generate_series(1, 20000) g;
"""

TENANT_EMAIL = {"name": "users_tenant_email_idx", "table": "users",
                "columns": [{"column": "tenant_id"}, {"column": "email"}]}


def catalog(psql, database: str) -> dict[str, tuple[str, bool, str]]:
    """index name -> (definition, valid, comment) of every index on public tables."""
    rows = psql(database, """
        SELECT c.relname, pg_get_indexdef(c.oid), x.indisvalid,
               coalesce(obj_description(c.oid, 'pg_class'), '')
        FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'""")
    result = {}
    for line in rows.splitlines():
        name, definition, valid, comment = line.split("|", 3)
        result[name] = (definition, valid == "t", comment)
    return result


@pytest.fixture
def users_db(pg_database, psql):
    psql(pg_database["database"], USERS)
    return pg_database


async def test_create_change_retain_and_prune(users_db, namespace, credentials, psql):
    db = users_db["database"]
    events = RecordedEvents()
    ctx = profile_context(namespace, database_section(users_db, indexes=[TENANT_EMAIL]),
                          events=events)

    # create
    first = await reconcile(ctx)
    assert phases(first) == {"users_tenant_email_idx": "Pending"}
    assert not first.ready and first.requeue_after
    outcome = await converge(ctx)
    status = outcome.status["database"]
    assert status["readyIndexes"] == 1
    [entry] = status["indexes"]
    assert entry["phase"] == "Ready" and entry["sizeBytes"] > 0 and "definitionHash" in entry
    definition, valid, comment = catalog(psql, db)["users_tenant_email_idx"]
    assert "(tenant_id, email)" in definition and valid
    assert comment.startswith('perf-operator:{"hash":') and f"{namespace}/platform" in comment
    assert {"BuildStarted", "BuildSucceeded"} <= set(events.reasons())

    # converged: a further reconcile changes nothing
    before = catalog(psql, db)
    again = await reconcile(ctx)
    assert again.ready and again.requeue_after is None and catalog(psql, db) == before

    # change: partial, unique on lower(email); built aside then swapped in
    changed = {**TENANT_EMAIL, "unique": True,
               "columns": [{"column": "tenant_id"}, {"expression": "lower(email)"}],
               "where": "deleted_at IS NULL"}
    with_database(ctx, database_section(users_db, indexes=[changed]))
    outcome = await converge(ctx)
    indexes = catalog(psql, db)
    definition, valid, _ = indexes["users_tenant_email_idx"]
    assert definition.startswith("CREATE UNIQUE INDEX") and "lower(email)" in definition
    assert "WHERE (deleted_at IS NULL)" in definition and valid
    assert not [n for n in indexes if "__perfop_" in n]
    assert outcome.status["database"]["indexes"][0]["definitionHash"] != entry["definitionHash"]

    # remove with the default policy Retain: kept, marker removed
    with_database(ctx, database_section(users_db, indexes=[]))
    outcome = await converge(ctx)
    assert outcome.status["database"]["indexes"] == []
    definition, valid, comment = catalog(psql, db)["users_tenant_email_idx"]
    assert valid and comment == ""
    assert "IndexRetained" in events.reasons()

    # once released, a later prune policy Delete leaves it alone: it is the user's now
    with_database(ctx, database_section(users_db, indexes=[], indexPrunePolicy="Delete"))
    await converge(ctx)
    assert "users_tenant_email_idx" in catalog(psql, db)

    # remove with Delete: dropped concurrently
    second = {"name": "users_status_idx", "table": "users", "columns": [{"column": "status"}]}
    with_database(ctx, database_section(users_db, indexes=[second], indexPrunePolicy="Delete"))
    await converge(ctx)
    assert "users_status_idx" in catalog(psql, db)
    with_database(ctx, database_section(users_db, indexes=[], indexPrunePolicy="Delete"))
    await converge(ctx)
    assert "users_status_idx" not in catalog(psql, db)
    assert "IndexPruned" in events.reasons()


async def test_conflict_then_adoption(users_db, namespace, credentials, psql):
    db = users_db["database"]
    psql(db, "CREATE INDEX users_tenant_email_idx ON users (tenant_id, email)")
    psql(db, "COMMENT ON INDEX users_tenant_email_idx IS 'the DBA''s index'")
    events = RecordedEvents()
    ctx = profile_context(namespace, database_section(users_db, indexes=[TENANT_EMAIL]),
                          events=events)

    outcome = await converge(ctx, until=lambda o: not o.ready)
    assert phases(outcome) == {"users_tenant_email_idx": "Conflict"}
    assert outcome.reason == "IndexConflict" and "adopt: true" in outcome.message
    await reconcile(ctx)
    assert events.reasons().count("IndexConflict") == 1  # once per transition
    assert catalog(psql, db)["users_tenant_email_idx"][2] == "the DBA's index"

    # adopt with a different definition: still a conflict, nothing touched
    different = {**TENANT_EMAIL, "adopt": True, "columns": [{"column": "email"}]}
    with_database(ctx, database_section(users_db, indexes=[different]))
    outcome = await converge(ctx, until=lambda o: not o.ready)
    assert phases(outcome) == {"users_tenant_email_idx": "Conflict"}
    assert "cannot adopt" in outcome.message and "(tenant_id, email)" in outcome.message
    assert catalog(psql, db)["users_tenant_email_idx"][2] == "the DBA's index"

    # adopt with the same definition: marked, not rebuilt
    oid = psql(db, "SELECT 'users_tenant_email_idx'::regclass::oid").strip()
    with_database(ctx, database_section(users_db, indexes=[{**TENANT_EMAIL, "adopt": True}]))
    outcome = await converge(ctx)
    assert phases(outcome) == {"users_tenant_email_idx": "Ready"}
    assert psql(db, "SELECT 'users_tenant_email_idx'::regclass::oid").strip() == oid
    assert catalog(psql, db)["users_tenant_email_idx"][2].startswith("perf-operator:")
    assert "IndexAdopted" in events.reasons() and "BuildStarted" not in events.reasons()


async def test_adoption_compares_definitions_as_postgres_prints_them(users_db, namespace,
                                                                     credentials, psql):
    """Casts and parentheses PostgreSQL adds do not make equal definitions differ."""
    db = users_db["database"]
    psql(db, "CREATE INDEX users_active_idx ON users (tenant_id) WHERE status = 'active'")
    declared = {"name": "users_active_idx", "table": "users", "adopt": True,
                "columns": [{"column": "tenant_id"}], "where": "(status)::text = 'active'"}
    ctx = profile_context(namespace, database_section(users_db, indexes=[declared]))
    outcome = await converge(ctx)
    assert phases(outcome) == {"users_active_idx": "Ready"}


async def test_failed_build_reports_the_error_and_leaves_no_invalid_index(users_db, namespace,
                                                                          credentials, psql):
    db = users_db["database"]
    unique_tenant = {"name": "users_tenant_key", "table": "users", "unique": True,
                     "columns": [{"column": "tenant_id"}]}
    events = RecordedEvents()
    ctx = profile_context(namespace, database_section(users_db, indexes=[unique_tenant]),
                          events=events)
    outcome = await converge(ctx, until=lambda o: phases(o) == {"users_tenant_key": "Failed"})
    entry = outcome.status["database"]["indexes"][0]
    assert "could not create unique index" in entry["lastError"]
    assert outcome.reason == "IndexFailed" and not outcome.ready
    assert "BuildFailed" in events.reasons()
    # the INVALID leftover of the failed concurrent build is dropped while backing off
    await converge(ctx, until=lambda o: not [n for n in catalog(psql, db) if "__perfop_" in n])
    assert all(valid for _, valid, _ in catalog(psql, db).values())

    # fixing the spec (a different definition) builds at once, without waiting for back-off
    fixed = {**unique_tenant, "unique": False}
    with_database(ctx, database_section(users_db, indexes=[fixed]))
    outcome = await converge(ctx)
    assert phases(outcome) == {"users_tenant_key": "Ready"}


async def test_build_past_its_deadline_is_cancelled_and_cleaned_up(users_db, namespace,
                                                                   credentials, psql, stack):
    """buildTimeoutSeconds is at least 60 in the CRD; the executor's options take less so the
    test does not wait a minute. A transaction that updated a row keeps CREATE INDEX
    CONCURRENTLY waiting (for writers to finish) past the deadline."""
    import psycopg

    from perf_operator.postgres.connect import target_for_profile

    db = users_db["database"]
    ctx = profile_context(namespace, database_section(users_db, indexes=[TENANT_EMAIL]))
    target = await target_for_profile(namespace, ctx.name, ctx.spec.database.resolved_connection)
    events = RecordedEvents()
    options = BuildOptions(build_timeout_seconds=1.5, lock_timeout_seconds=30)
    async with await psycopg.AsyncConnection.connect(stack.postgres.dsn(db)) as blocker:
        await blocker.execute("UPDATE users SET status = status WHERE id = 1")  # opens a txn
        started = time.monotonic()
        await reconcile_indexes(target, ctx.spec.database.indexes, options, events)
        await wait_for_jobs(target)
        elapsed = time.monotonic() - started
        await blocker.rollback()
    assert 1.5 <= elapsed < 10
    reason, message = events.events[-1][1:]
    assert reason == "BuildFailed" and "buildTimeoutSeconds" in message
    assert psql(db, "SELECT count(*) FROM pg_stat_progress_create_index").strip() == "0"
    # the next reconcile reports the failure and drops the INVALID leftover while backing off
    outcome = await converge(ctx, until=lambda o: set(catalog(psql, db)) == {"users_pkey"})
    assert phases(outcome) == {"users_tenant_email_idx": "Failed"}
    assert "buildTimeoutSeconds" in outcome.status["database"]["indexes"][0]["lastError"]


async def test_build_slots_bound_concurrent_builds_per_database(users_db, namespace,
                                                                credentials, psql, stack):
    """With maxConcurrentBuilds 1, two declared indexes never build at the same time; with 2
    they do. Sampled from pg_stat_progress_create_index while the builds run."""
    import psycopg

    db = users_db["database"]
    for table in ("bulk_a", "bulk_b"):  # builds on one table are serialised anyway
        psql(db, f"CREATE TABLE {table} AS SELECT g AS id, g % 50 AS tenant_id, "
                 f"md5(g::text) AS email FROM generate_series(1, 300000) g")
    indexes = [{"name": f"{table}_email_idx", "table": table,
                "columns": [{"column": "email"}, {"column": "tenant_id"}]}
               for table in ("bulk_a", "bulk_b")]

    async def peak_builds(limit: int, suffix: str) -> int:
        declared = [{**i, "name": i["name"] + suffix} for i in indexes]
        ctx = profile_context(namespace, database_section(
            users_db, indexes=declared, maxConcurrentBuilds=limit), name="slots" + suffix)
        peak = 0
        async with await psycopg.AsyncConnection.connect(stack.postgres.dsn(db),
                                                         autocommit=True) as watcher:
            task = asyncio.create_task(converge(ctx))
            while not task.done():
                row = await (await watcher.execute(
                    "SELECT count(*) FROM pg_stat_progress_create_index")).fetchone()
                peak = max(peak, row[0])
                await asyncio.sleep(0.02)
            outcome = await task
        assert set(phases(outcome).values()) == {"Ready"}
        return peak

    assert await peak_builds(1, "_a") == 1
    assert await peak_builds(2, "_b") == 2


async def test_a_slow_build_does_not_hold_up_another_database(users_db, namespace,
                                                              credentials, psql, stack):
    """Profile A's build waits on a lock in its database; profile B on another database
    converges meanwhile, and A's reconciles keep returning at once with phase Building."""
    import psycopg

    other = {**users_db, "database": users_db["database"] + "_b"}
    stack.postgres.create_database(other["database"])
    try:
        psql(other["database"], USERS)
        slow = profile_context(namespace, database_section(
            users_db, indexes=[TENANT_EMAIL], lockTimeoutSeconds=60), name="slow")
        fast = profile_context(namespace, database_section(other, indexes=[TENANT_EMAIL]),
                               name="fast")
        async with await psycopg.AsyncConnection.connect(
                stack.postgres.dsn(users_db["database"])) as blocker:
            await blocker.execute("UPDATE users SET status = status WHERE id = 1")
            await reconcile(slow)
            await converge(fast, timeout=30)
            started = time.monotonic()
            outcome = await reconcile(slow)
            assert time.monotonic() - started < 1.0
            assert phases(outcome) == {"users_tenant_email_idx": "Building"}
            await blocker.rollback()
        assert phases(await converge(slow)) == {"users_tenant_email_idx": "Ready"}
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {other['database']} WITH (FORCE)")


async def test_deleting_the_profile_applies_the_prune_policy(users_db, namespace, credentials,
                                                             psql):
    """cleanup_profile (the profile's delete handler): a build in flight is cancelled, owned
    indexes are dropped (Delete) or released (Retain), and nothing is left half-done."""
    from perf_operator.postgres import cleanup_profile

    db = users_db["database"]
    psql(db, "INSERT INTO users (tenant_id, email) SELECT g % 50, 'bulk' || g "
             "FROM generate_series(1, 300000) g")
    status = {"name": "users_status_idx", "table": "users", "columns": [{"column": "status"}]}
    events = RecordedEvents()
    ctx = profile_context(namespace, database_section(
        users_db, indexes=[TENANT_EMAIL, status], indexPrunePolicy="Delete"), events=events)
    await converge(ctx)
    in_flight = {"name": "users_email_tenant_idx", "table": "users",
                 "columns": [{"column": "email"}, {"column": "tenant_id"}]}
    with_database(ctx, database_section(users_db, indexes=[TENANT_EMAIL, status, in_flight],
                                        indexPrunePolicy="Delete"))
    assert phases(await reconcile(ctx))["users_email_tenant_idx"] == "Pending"
    while psql(db, "SELECT count(*) FROM pg_stat_progress_create_index").strip() == "0":
        await asyncio.sleep(0.02)  # until CREATE INDEX CONCURRENTLY is running
    await cleanup_profile(ctx)
    assert set(catalog(psql, db)) == {"users_pkey"}
    assert "IndexPruned" in events.reasons()

    keeper = profile_context(namespace, database_section(users_db, indexes=[status]),
                             name="keeper")
    await converge(keeper)
    await cleanup_profile(keeper)
    assert catalog(psql, db)["users_status_idx"][1:] == (True, "")


async def test_connection_problems_are_reported_without_credentials(users_db, namespace,
                                                                    kubectl):
    wrong_password = "not-the-password-8c1d"
    kubectl.run("create", "secret", "generic", "wrong-credentials",
                "--from-literal=username=postgres", f"--from-literal=password={wrong_password}",
                namespace=namespace)
    for secret, reason, text in (("absent", "SecretNotFound", "not found"),
                                 ("wrong-credentials", "DatabaseUnavailable",
                                  "password authentication failed")):
        section = database_section(users_db, indexes=[TENANT_EMAIL])
        section["connection"]["secretRef"]["name"] = secret
        outcome = await reconcile(profile_context(namespace, section))
        assert (outcome.ready, outcome.reason) == (False, reason)
        assert text in outcome.message and wrong_password not in outcome.message
