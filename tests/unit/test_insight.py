"""The pure parts of ``kubectl perf``: the status tree from objects, its rendering (colour only
when asked), and the plan's rendering with destructive steps marked."""
from __future__ import annotations

import datetime

from perf_operator.insight.plan import Plan, PlannedStep, render as render_plan
from perf_operator.insight.tree import age, profile_tree, render

NOW = datetime.datetime(2026, 1, 2, 12, 0, tzinfo=datetime.UTC)


def condition(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message}


PROFILE = {
    "metadata": {"name": "platform", "namespace": "team-a",
                 "creationTimestamp": "2026-01-02T11:00:00Z"},
    "status": {
        "conditions": [condition("Ready", "False", "IndexBuilding"),
                       condition("DatabaseReady", "False", "IndexBuilding", "1/2 ready")],
        "database": {"indexes": [
            {"name": "a_idx", "phase": "Ready", "sizeBytes": 16384, "scans": 7},
            {"name": "b_idx", "phase": "Building",
             "progress": {"phase": "building index: scanning table", "percent": 42,
                          "blocksDone": 42, "blocksTotal": 100, "tuplesDone": 0,
                          "tuplesTotal": 0}}]},
        "optimization": {"signals": {
            "apiResponseTimeP95Ms": {"value": 250.0, "target": 200},
            "cacheHitRate": {"value": 0.9, "target": 0.85},
            "errorRate": {"stale": True, "reason": "NoData"}}},
        "tenants": {"count": 1, "websocketCommitted": 100},
    },
}
TENANT = {"metadata": {"name": "acme", "namespace": "team-a",
                       "creationTimestamp": "2026-01-02T11:59:30Z"},
          "spec": {"tenantId": "acme", "profileRef": {"name": "platform"}},
          "status": {"conditions": [condition("Ready", "True", "Reconciled")],
                     "table": {"version": 3},
                     "cache": {"keys": 10, "memoryBytes": 2048, "quotaBytes": 1048576}}}


def test_tree_shows_parts_progress_readings_against_targets_and_tenants():
    root = profile_tree(PROFILE, [TENANT], NOW)
    text = render([root], colour=False)
    assert "✗ PerformanceProfile team-a/platform  Ready=False IndexBuilding, age 1h" in text
    assert "index b_idx  Building 42% (building index: scanning table)" in text
    assert "✓ index a_idx  Ready, 16.0 KiB, 7 scans" in text
    assert "✗ signal apiResponseTimeP95Ms  250 (target ≤ 200)" in text
    assert "✓ signal cacheHitRate  0.9 (target ≥ 0.85)" in text
    assert "signal errorRate  stale: NoData" in text
    assert "✓ tenant acme (acme)  Reconciled, age 30s, record v3, cache 10 keys, 2.0 KiB of " \
           "1.0 MiB" in text
    assert "\x1b[" not in text
    assert "\x1b[32m✓" in render([root], colour=True)
    data = root.as_data()
    assert [c["name"] for c in data["children"]] == ["database", "optimizer", "tenants (1)"]


def test_age_like_kubectl():
    assert [age(t, NOW) for t in ("2026-01-02T11:59:15Z", "2026-01-02T11:30:00Z",
                                  "2025-12-30T12:00:00Z", None)] == ["45s", "30m", "3d", "?"]


def test_plan_marks_destructive_steps():
    plan = Plan("team-a/platform", (
        PlannedStep("postgres", "public.a_idx", 'DROP INDEX CONCURRENTLY IF EXISTS "a_idx"',
                    destructive=True, note="drop: pruned"),
        PlannedStep("redis", "maxmemory-policy", "CONFIG SET maxmemory-policy allkeys-lru")),
        unknown=("alerts: not observed: forbidden",))
    text = render_plan(plan)
    assert '  ! [postgres] public.a_idx: DROP INDEX CONCURRENTLY IF EXISTS "a_idx"   # drop: ' \
           'pruned' in text
    assert "  + [redis] maxmemory-policy: CONFIG SET" in text
    assert "  ? alerts: not observed" in text and "(! marks a destructive step)" in text
    assert "nothing to do" in render_plan(Plan("x/y", ()))


def test_report_time_over_target_and_html_escapes_database_text():
    import datetime as dt

    from perf_operator.insight.report import ReportData, Series, render_html, summarise

    latency = Series("apiResponseTimeP95Ms", ((0, 100), (10, 300), (20, 300), (30, 100)),
                     200, 1000, "apiResponseTimeP95Ms")
    summary = summarise(latency)
    assert (summary.seconds_over, summary.peak, summary.last) == (20, 300, 100)
    hits = summarise(Series("cacheHitRate", ((0, 0.9), (10, 0.5), (20, 0.9)), 0.85, 0.7,
                            "cacheHitRate"))
    assert (hits.seconds_over, hits.peak) == (10, 0.5)  # lower is worse
    data = ReportData("a/b", "hour", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), series=[latency],
                      slow_queries=[{"query": "SELECT '<script>alert(1)</script>'",
                                     "calls": 1, "meanMs": 1.0, "totalMs": 1.0, "rows": 1}])
    page = render_html(data)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<svg") == 2 and "<polyline" in page  # the chart and the usage bars
