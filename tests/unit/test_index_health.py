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
