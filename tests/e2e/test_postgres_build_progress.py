"""Build progress in status: during a build of a few seconds (an index on 2 M random text
values), status.database.indexes[].progress follows ``pg_stat_progress_create_index`` upward,
the Building printer column shows the percentage, and the BuildSucceeded Event gives the build
time."""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.test_postgres_operator import profile
from tests.support.kube import condition, eventually

pytestmark = pytest.mark.e2e

#: About 5 s of CREATE INDEX CONCURRENTLY on a 2-core machine.
EVENTS = """
CREATE TABLE events (id bigint, payload text);
INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 2000000) g;
ANALYZE events;
"""
PAYLOAD = {"name": "events_payload_idx", "table": "events", "columns": [{"column": "payload"}]}


def test_progress_moves_up_during_a_build(operator, kubectl, namespace, pg_database,
                                          credentials, psql):
    psql(pg_database["database"], EVENTS)
    kubectl.apply(profile("big", pg_database, [PAYLOAD]), namespace)
    seen: list[dict] = []
    columns: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        obj = kubectl.get("pp", "big", namespace) or {}
        database = (obj.get("status") or {}).get("database") or {}
        index = next(iter(database.get("indexes") or []), {})
        if index.get("progress"):
            seen.append(index["progress"])
            columns.add(database.get("building", ""))
            # a build under way is not an INVALID leftover to index health
            assert not (database.get("indexHealth") or {}).get("invalid"), database
        ready = condition(obj, "DatabaseReady")
        if ready and ready["status"] == "True":
            assert index["phase"] == "Ready" and "progress" not in index
            assert "building" not in database
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the build did not finish; progress seen: {seen}")

    percents = [p["percent"] for p in seen]
    assert len(set(percents)) >= 2, f"progress did not move: {seen}"
    assert percents == sorted(percents) and percents[-1] > percents[0]
    assert all(0 <= p <= 100 for p in percents)
    assert any(p["phase"].startswith("building index") and p["blocksTotal"] > 0 for p in seen)
    assert any(re.fullmatch(r"events_payload_idx \d+%", c) for c in columns), columns

    def build_event():
        events = json.loads(kubectl.run("get", "events", "-o", "json",
                                        namespace=namespace).stdout)
        return [e["message"] for e in events["items"] if e["reason"] == "BuildSucceeded"]
    built = eventually(build_event, timeout=30, what="the BuildSucceeded Event")
    match = re.search(r"built in ([\d.]+)s \(after ([\d.]+)s waiting for a build slot\)",
                      built[0])
    assert match, built
    assert float(match.group(1)) > 0.5
