"""Index health from catalog facts, without a database: unused, duplicate, left-prefix
overlap, bloated (estimate), invalid; what enforces something is never called unused."""
from __future__ import annotations

from perf_operator.postgres.health import IndexFacts, index_health
from perf_operator.postgres.indexes import Marker

DAY = 86400.0


def facts(name: str, *keys: str, scans: int = 5, unique: bool = False, valid: bool = True,
          method: str = "btree", predicate: str | None = None, size: int = 8192,
          estimated: int | None = None, age: float = 30 * DAY, comment: str | None = None
          ) -> IndexFacts:
    return IndexFacts("public", "orders", name, method, keys, predicate, unique, valid, scans,
                      size, estimated, age, comment)


def kinds(indexes, **options):
    return {(f.kind, f.index) for f in index_health(indexes, unused_min_age_seconds=7 * DAY,
                                                    **options)}


def test_unused_needs_enough_statistics_and_spares_unique_indexes():
    assert kinds([facts("a", "x", scans=0)]) == {("unused", "public.a")}
    assert kinds([facts("a", "x", scans=0, age=DAY)]) == set()  # stats reset yesterday
    assert kinds([facts("pk", "id", scans=0, unique=True)]) == set()


def test_duplicates_keep_the_unique_or_first_one():
    assert kinds([facts("b", "x"), facts("a", "x")]) == {("duplicate", "public.b")}
    assert kinds([facts("a", "x"), facts("b", "x", unique=True)]) == {("duplicate", "public.a")}
    # another predicate or method is another index
    assert kinds([facts("a", "x"), facts("b", "x", predicate="x > 0")]) == set()
    assert kinds([facts("a", "x"), facts("b", "x", method="hash")]) == set()


def test_left_prefix_overlap_only_for_non_unique_btree():
    assert kinds([facts("a", "x"), facts("ab", "x", "y")]) == {("overlap", "public.a")}
    assert kinds([facts("a", "x", unique=True), facts("ab", "x", "y")]) == set()
    assert kinds([facts("b", "y"), facts("ab", "x", "y")]) == set()


def test_bloat_is_an_estimate_above_a_megabyte_and_invalid_is_reported():
    big = 10 << 20
    assert kinds([facts("a", "x", size=big, estimated=big // 4)]) == {("bloated", "public.a")}
    assert kinds([facts("a", "x", size=big, estimated=big * 3 // 4)]) == set()
    assert kinds([facts("a", "x", size=1000, estimated=10)]) == set()
    assert kinds([facts("a", "x", valid=False)]) == {("invalid", "public.a")}


def test_owner_comes_from_the_operator_marker():
    marker = Marker("team-a/platform", "a", "abc").render()
    [finding] = index_health([facts("a", "x", scans=0, comment=marker)],
                             unused_min_age_seconds=0)
    assert finding.owner == "team-a/platform"
    [other] = index_health([facts("a", "x", scans=0, comment="DBA's")],
                           unused_min_age_seconds=0)
    assert other.owner is None


def test_status_counts_everything_lists_the_largest_first_and_leaves_sizes_out():
    from perf_operator.postgres.health import (STATUS_FINDINGS_LIMIT, Finding, health_status,
                                               new_findings)

    findings = [Finding("unused", f"public.i{n}", "public.t", n, "0 scans in 7 days of statistics")
                for n in range(STATUS_FINDINGS_LIMIT + 5)]
    findings.append(Finding("duplicate", "public.d", "public.t", 10 ** 9, "same", owner="ns/p"))
    health = health_status(findings)
    assert health["unused"] == STATUS_FINDINGS_LIMIT + 5 and health["duplicate"] == 1
    assert health["overlap"] == health["bloated"] == health["invalid"] == 0
    assert len(health["findings"]) == STATUS_FINDINGS_LIMIT
    assert health["findings"][0] == {"kind": "duplicate", "index": "public.d",
                                     "table": "public.t", "detail": "same", "owner": "ns/p"}
    assert all("sizeBytes" not in f and "owner" not in f for f in health["findings"][1:])

    assert new_findings(health, None)[0] == "duplicate public.d"
    assert new_findings(health, health) == []


def test_details_round_their_figures_so_the_status_stays_put():
    [before] = index_health([facts("a", "x", scans=0, age=7 * DAY + 100)],
                            unused_min_age_seconds=7 * DAY)
    [after] = index_health([facts("a", "x", scans=0, age=7 * DAY + 5000)],
                           unused_min_age_seconds=7 * DAY)
    assert before.detail == after.detail == "0 scans in 7 days of statistics"
    big = 10 << 20
    [bloated] = index_health([facts("a", "x", size=big, estimated=big // 5 + 1000)],
                             unused_min_age_seconds=7 * DAY)
    assert bloated.detail == "about 80% of it beyond its freshly built size (estimate)"
