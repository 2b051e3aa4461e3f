"""Crash safety of index builds: the index executor runs in a child process
(``python -m perf_operator.postgres``, the same reconcile the operator runs)
against a table of 2 M rows, so that CREATE INDEX CONCURRENTLY takes seconds, and is SIGKILLed
at several points. A fresh process must then converge: the declared index exists once, valid,
marked, with the declared definition; no INVALID index of ours, no temporary index; indexes the
operator does not own (one of them INVALID) untouched."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROWS = 2_000_000
OWNER = "crash-tests/platform"
V1 = {"name": "events_tenant_created_idx", "table": "events",
      "columns": [{"column": "tenant_id"}, {"column": "created_at"}]}
V2 = {**V1, "columns": [{"column": "tenant_id"}, {"column": "kind"},
                        {"column": "created_at", "order": "Desc"}]}
V1_DEFINITION = "USING btree (tenant_id, created_at)"
V2_DEFINITION = "USING btree (tenant_id, kind, created_at DESC)"


@pytest.fixture
def events_db(pg_database, psql):
    """A 2 M row table plus two indexes the operator does not own: a valid one with a comment
    and an INVALID one (a failed unique concurrent build)."""
    db = pg_database["database"]
    psql(db, f"""
        CREATE TABLE events AS
        SELECT g AS id, (g % 1000)::int AS tenant_id, (g % 7)::int AS kind,
               now() - g * interval '1 second' AS created_at
        FROM generate_series(1, {ROWS}) g;
        ALTER TABLE events ADD PRIMARY KEY (id);
        CREATE INDEX events_kind_dba_idx ON events (kind);
        COMMENT ON INDEX events_kind_dba_idx IS 'created by the DBA';""")
    with pytest.raises(AssertionError, match="could not create unique index"):
        psql(db, "CREATE UNIQUE INDEX CONCURRENTLY events_kind_dba_broken ON events (kind)")
    return pg_database


class Child:
    """One run of the index executor as its own process."""

    def __init__(self, stack, pg_database: dict, workdir: pathlib.Path, index: dict,
                 name: str) -> None:
        profile = workdir / f"{name}.yaml"
        profile.write_text(yaml.safe_dump({"spec": {"database": {
            "connection": {"host": "127.0.0.1", "port": stack.postgres.port,
                           "database": pg_database["database"],
                           "secretRef": {"name": "pg-credentials"}},
            "settings": {"parameters": {}}, "indexes": [index]}}}))
        self.log = workdir / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "perf_operator.postgres", "--profile",
             str(profile), "--owner", OWNER, "--port", str(stack.postgres.port), "--dbname",
             pg_database["database"], "--user", stack.postgres.operator_user],
            env={**os.environ, "PGPASSWORD": stack.postgres.operator_password},
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_first_reconcile(self) -> None:
        """Until the first plan ran and its jobs were launched (the interpreter starting up
        takes a second or more on a busy machine; kill delays count from here)."""
        wait_for(lambda: '"phases"' in self.log.read_text(), timeout=60,
                 what="the first reconcile")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def finish(self, timeout: float = 120) -> list[dict]:
        """Wait for it to exit after converging; its JSON lines (phases and events)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"not converged in {timeout}s:\n{self.log.read_text()}")
        assert code == 0, self.log.read_text()
        return [json.loads(line) for line in self.log.read_text().splitlines()
                if line.startswith("{")]


def wait_for(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def observed(psql, db: str, query: str) -> str:
    """One value, read as the superuser: the progress views show the details of other roles'
    sessions (the operator's builds) only to it."""
    return psql(db, f"SET ROLE NONE; {query}").split()[-1]


def building(psql, db: str) -> bool:
    return observed(psql, db, "SELECT count(*) FROM pg_stat_progress_create_index p "
                              "JOIN pg_database d ON d.oid = p.datid "
                              "WHERE d.datname = current_database() "
                              "AND p.phase LIKE 'building index%'") != "0"


def index_rows(psql, db: str) -> dict[str, tuple[str, str, bool, str]]:
    """name -> (oid, definition, valid, comment) for every index of events."""
    rows = psql(db, """
        SELECT c.relname, c.oid, pg_get_indexdef(c.oid), x.indisvalid,
               coalesce(obj_description(c.oid, 'pg_class'), '')
        FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
        WHERE x.indrelid = 'events'::regclass""")
    result = {}
    for line in rows.splitlines():
        name, oid, definition, valid, comment = line.split("|", 4)
        result[name] = (oid, definition, valid == "t", comment)
    return result


def unowned(rows: dict) -> dict:
    return {name: row for name, row in rows.items() if not row[3].startswith("perf-operator:")}


def assert_converged(psql, db: str, unowned_before: dict, definition: str) -> None:
    rows = index_rows(psql, db)
    assert unowned(rows) == unowned_before, "an index the operator does not own was touched"
    ours = {name: row for name, row in rows.items() if name not in unowned_before}
    assert list(ours) == [V1["name"]], f"expected exactly the declared index, got {list(ours)}"
    _, actual, valid, comment = ours[V1["name"]]
    assert valid and definition in actual and f'"owner":"{OWNER}"' in comment
    # and nothing is left running for it
    assert psql(db, "SELECT count(*) FROM pg_stat_progress_create_index").strip() == "0"


def converge(stack, events_db, tmp_path, index: dict, name: str) -> list[dict]:
    return Child(stack, events_db, tmp_path, index, name).finish()


def test_kill_during_the_first_build(stack, events_db, psql, tmp_path):
    db = events_db["database"]
    before = unowned(index_rows(psql, db))
    child = Child(stack, events_db, tmp_path, V1, "killed")
    wait_for(lambda: building(psql, db), timeout=60, what="the build to start scanning")
    child.kill()
    # the server may still be building for the dead client; the new process must cope
    lines = converge(stack, events_db, tmp_path, V1, "restarted")
    assert_converged(psql, db, before, V1_DEFINITION)
    events = {line.get("event") for line in lines}
    assert events & {"InterruptedBuildCancelled", "LeftoverDropped"}, lines


def test_kill_while_building_a_changed_definition(stack, events_db, psql, tmp_path):
    db = events_db["database"]
    converge(stack, events_db, tmp_path, V1, "v1")
    before = unowned(index_rows(psql, db))
    child = Child(stack, events_db, tmp_path, V2, "killed")
    wait_for(lambda: building(psql, db), timeout=60, what="the new build to start scanning")
    # the old definition stays in place, valid, while the new one is built aside
    rows = index_rows(psql, db)
    assert rows[V1["name"]][2] and V1_DEFINITION in rows[V1["name"]][1]
    child.kill()
    converge(stack, events_db, tmp_path, V2, "restarted")
    assert_converged(psql, db, before, V2_DEFINITION)


def test_kill_after_the_new_build_before_the_swap(stack, events_db, psql, tmp_path):
    """A reader's open transaction holds DROP INDEX CONCURRENTLY of the old index (it waits
    for every transaction using the table) after the new index is built and marked; the kill
    lands there: the old index INVALID, the new one valid under its temporary name."""
    import psycopg

    db = events_db["database"]
    converge(stack, events_db, tmp_path, V1, "v1")
    before = unowned(index_rows(psql, db))
    with psycopg.connect(stack.postgres.dsn(db)) as reader:
        reader.execute("SELECT 1 FROM events LIMIT 1")  # READ COMMITTED: a lock, no snapshot
        child = Child(stack, events_db, tmp_path, V2, "killed")

        def swap_in_progress():
            rows = index_rows(psql, db)
            temporary = [r for n, r in rows.items() if "__perfop_" in n]
            return (temporary and temporary[0][2] and temporary[0][3].startswith("perf-operator")
                    and not rows[V1["name"]][2])
        wait_for(swap_in_progress, timeout=60, what="the swap to wait for the reader")
        child.kill()
        reader.rollback()
    lines = converge(stack, events_db, tmp_path, V2, "restarted")
    assert_converged(psql, db, before, V2_DEFINITION)
    # the built index was reused, not built again
    assert "BuildStarted" not in {line.get("event") for line in lines}


@pytest.mark.parametrize("delay", [0.0, 0.5, 1.5, 2.5, 4.0])
def test_kill_at_arbitrary_moments_of_a_change(stack, events_db, psql, tmp_path, delay):
    """Seconds after the first reconcile launched the job: from before the build started to
    (the build taking 2-4 s here) during the swap or after it."""
    db = events_db["database"]
    converge(stack, events_db, tmp_path, V1, "v1")
    before = unowned(index_rows(psql, db))
    child = Child(stack, events_db, tmp_path, V2, "killed")
    child.wait_for_first_reconcile()
    time.sleep(delay)
    child.kill()
    converge(stack, events_db, tmp_path, V2, "restarted")
    assert_converged(psql, db, before, V2_DEFINITION)


def test_a_build_left_running_by_a_previous_operator_process_is_cancelled(stack, events_db,
                                                                          psql, tmp_path):
    """The server keeps building for a client that died until it notices; a build of our
    temporary index by a session that calls itself perf-operator but is not this process's
    job is such a build. Here it is a live session, held in CREATE INDEX CONCURRENTLY's
    wait for writers by an open transaction, so it cannot finish or fail on its own."""
    import threading

    import psycopg

    from perf_operator.postgres.connect import APPLICATION_NAME
    from perf_operator.postgres.indexes import temporary_name

    db = events_db["database"]
    before = unowned(index_rows(psql, db))
    temporary = temporary_name(OWNER, V1["name"])
    outcome: list[BaseException | None] = []

    def previous_process_build() -> None:  # with the operator's login, as it would be
        with psycopg.connect(stack.postgres.dsn(db, user=stack.postgres.operator_user),
                             autocommit=True,
                             application_name=APPLICATION_NAME) as conn:
            try:
                conn.execute(f"CREATE INDEX CONCURRENTLY {temporary} ON events (tenant_id)")
                outcome.append(None)
            except psycopg.Error as err:
                outcome.append(err)

    with psycopg.connect(stack.postgres.dsn(db)) as writer:
        writer.execute("UPDATE events SET kind = kind WHERE id = 1")  # open, uncommitted
        orphan = threading.Thread(target=previous_process_build)
        orphan.start()
        wait_for(lambda: observed(psql, db, "SELECT count(*) FROM pg_stat_progress_create_index "
                                            "WHERE index_relid <> 0") == "1",
                 timeout=30, what="the orphan build to wait for writers")
        child = Child(stack, events_db, tmp_path, V1, "restarted")
        wait_for(lambda: "InterruptedBuildCancelled" in child.log.read_text(), timeout=60,
                 what="the orphan build to be cancelled")
        orphan.join(30)
        writer.rollback()
    lines = child.finish()
    assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
    assert "LeftoverDropped" in {line.get("event") for line in lines}
    assert_converged(psql, db, before, V1_DEFINITION)
