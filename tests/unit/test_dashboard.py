"""The Grafana dashboard of profiles and tenants is what the optimizer's signals generate."""
from __future__ import annotations

import pathlib

from perf_operator.api.signals import SIGNALS
from perf_operator.insight.dashboard import (DEFAULT_OUTPUT, TENANT_SIGNALS, main_dashboards,
                                             profile_dashboard)

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_committed_dashboard_is_generated(capsys):
    assert main_dashboards(REPO / DEFAULT_OUTPUT, check=True) == 0, capsys.readouterr().err


def test_a_changed_file_is_reported(tmp_path):
    stale = tmp_path / "dashboard.json"
    stale.write_text("{}\n")
    assert main_dashboards(stale, check=True) == 1
    assert main_dashboards(stale, check=False) == 0
    assert main_dashboards(stale, check=True) == 0


def test_every_signal_has_a_profile_panel_with_its_query_and_alert_levels():
    panels = {p["title"]: p for p in profile_dashboard()["panels"] if p["type"] != "row"}
    assert set(panels) == {s.name for s in SIGNALS} | {f"{n} by tenant" for n in TENANT_SIGNALS}
    for signal in SIGNALS:
        expr = panels[signal.name]["targets"][0]["expr"]
        assert signal.query in expr and '"$namespace"' in expr and '"$profile"' in expr
    steps = panels["errorRate"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [("green", None), ("orange", 0.05),
                                                         ("red", 0.1)]
    # the cache hit rate hurts when low: red below critical, green above warning
    steps = panels["cacheHitRate"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [("red", None), ("orange", 0.6),
                                                         ("green", 0.85)]
    tenant = panels["errorRate by tenant"]["targets"][0]["expr"]
    assert "sum by (namespace, profile, tenant)" in tenant and 'tenant=~"$tenant"' in tenant
