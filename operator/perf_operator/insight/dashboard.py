"""The per-profile and per-tenant Grafana dashboard
(``manifests/grafana/perf-profile-dashboard.json``, written by ``perf-operator dashboards``).

It is generated from the signals the optimizer reads (``api/signals.py``), so a panel shows
exactly the number the optimizer and the alerts act on:

* one panel per signal, its default query narrowed to the chosen profile (``for_profile``, as
  the alerting rules narrow it), with the seed's alert levels as threshold lines and its
  target, where the seed sets one, in the panel's description;
* the request signals per tenant of that profile, from the same queries grouped by a
  ``tenant`` label too, for an application whose series carry one (the panels stay empty
  otherwise: the operator's own reading never needs it).

The operator's own metrics are in the other dashboard, ``perf-operator-dashboard.json``.
"""
from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

from ..api.profile import PerformanceProfileSpec
from ..api.signals import (GROUP_LABELS, SIGNALS, TENANT_GROUP_LABELS, SignalDefinition,
                           for_profile, signals_grouped_by)

DEFAULT_OUTPUT = pathlib.Path("manifests/grafana/perf-profile-dashboard.json")
#: The series that say which namespaces, profiles and tenants exist.
INVENTORY_SERIES = "http_requests_total"
#: Signals shown per tenant: those measured from the application's request and cache series.
TENANT_SIGNALS = ("apiResponseTimeP95Ms", "errorRate", "apiResponseTimeMs", "cacheHitRate")
_TENANT_SERIES = "http_requests_total|http_request_duration_seconds_count|cache_hits_total"
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _unit(name: str) -> str:
    if name.endswith("Ms"):
        return "ms"
    if name in ("errorRate", "poolUtilization", "memoryUsage", "cacheHitRate"):
        return "percentunit"
    return "decmbytes" if name.endswith("MB") else "short"


def _thresholds(signal: SignalDefinition, levels: Any) -> dict[str, Any]:
    """Alert levels as coloured lines: warning orange, critical red (below them for a signal
    that hurts when low)."""
    if levels is None:
        return {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
    if signal.worse == "lower":
        steps = [{"color": "red", "value": None}, {"color": "orange", "value": levels.critical},
                 {"color": "green", "value": levels.warning}]
    else:
        steps = [{"color": "green", "value": None}, {"color": "orange", "value": levels.warning},
                 {"color": "red", "value": levels.critical}]
    return {"mode": "absolute", "steps": steps}


def _panel(panel_id: int, title: str, description: str, expr: str, legend: str, unit: str,
           thresholds: dict[str, Any], x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id, "type": "timeseries", "title": title, "description": description,
        "datasource": _DATASOURCE, "gridPos": {"h": 7, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {
            "unit": unit, "thresholds": thresholds,
            "custom": {"thresholdsStyle": {"mode": "line"}}}, "overrides": []},
        "targets": [{"refId": "A", "datasource": _DATASOURCE, "expr": expr,
                     "legendFormat": legend}],
    }


def _row(panel_id: int, title: str, y: int) -> dict[str, Any]:
    return {"id": panel_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}


def tenant_query(signal: SignalDefinition) -> str:
    """``signal`` grouped by tenant too, kept for the chosen profile's chosen tenants."""
    by = ", ".join(TENANT_GROUP_LABELS)
    return (f"({signal.query}) and on ({by}) group by ({by}) "
            f'({{__name__=~"{_TENANT_SERIES}", namespace="$namespace", profile="$profile", '
            f'tenant=~"$tenant"}})')


def _variable(name: str, label: str, selector: str, *, multi: bool = False) -> dict[str, Any]:
    query = f"label_values({INVENTORY_SERIES}{selector}, {name})"
    variable = {"name": name, "label": label, "type": "query", "datasource": _DATASOURCE,
                "query": {"query": query, "refId": name}, "definition": query,
                "refresh": 2, "hide": 0, "sort": 1}
    if multi:
        variable.update({"multi": True, "includeAll": True, "allValue": ".+",
                         "current": {"text": "All", "value": "$__all"}})
    return variable


def profile_dashboard() -> dict[str, Any]:
    defaults = PerformanceProfileSpec.model_validate({})
    thresholds = defaults.alerts.thresholds
    targets = defaults.targets.model_dump(by_alias=True)
    levels = {(field.alias or name): getattr(thresholds, name)
              for name, field in type(thresholds).model_fields.items()}
    panels: list[dict[str, Any]] = [_row(1, "Profile $namespace/$profile", 0)]
    panel_id, y = 2, 1
    for index, signal in enumerate(SIGNALS):
        level = levels.get(signal.name)
        notes = [f"The optimizer's and the alerts' {signal.name}, narrowed to this profile."]
        if level is not None:
            notes.append(f"Lines: the seed's alert levels (warning {level.warning:g}, "
                         f"critical {level.critical:g}; a profile may set its own).")
        if signal.name in targets:
            notes.append(f"Seed target: {targets[signal.name]:g}.")
        panels.append(_panel(panel_id, signal.name, " ".join(notes),
                             for_profile(signal.query, "$namespace", "$profile"), signal.name,
                             _unit(signal.name), _thresholds(signal, level),
                             x=8 * (index % 3), y=y + 7 * (index // 3)))
        panel_id += 1
    y += 7 * ((len(SIGNALS) + 2) // 3)
    panels.append(_row(panel_id, "Tenants of $namespace/$profile", y))
    panel_id, y = panel_id + 1, y + 1
    by_tenant = {s.name: s for s in signals_grouped_by(TENANT_GROUP_LABELS)}
    for index, name in enumerate(TENANT_SIGNALS):
        signal = by_tenant[name]
        panels.append(_panel(
            panel_id, f"{name} by tenant",
            f"{name} per tenant, for an application whose series carry a tenant label.",
            tenant_query(signal), "{{tenant}}", _unit(name),
            _thresholds(signal, levels.get(name)), x=8 * (index % 3),
            y=y + 7 * (index // 3)))
        panel_id += 1
    return {
        "title": "perf-operator: profiles and tenants",
        "uid": "perf-operator-profiles",
        "tags": ["perf-operator"],
        "description": "Generated by `perf-operator dashboards` from the signals the optimizer "
                       "reads; series must carry the labels " + ", ".join(GROUP_LABELS)
                       + " (and tenant for the tenant panels).",
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "timezone": "",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            _variable("namespace", "Namespace", ""),
            _variable("profile", "Profile", '{namespace="$namespace"}'),
            _variable("tenant", "Tenant", '{namespace="$namespace", profile="$profile"}',
                      multi=True),
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(profile_dashboard(), indent=2) + "\n"


def main_dashboards(output: pathlib.Path, *, check: bool) -> int:
    """Write the dashboard, or with ``check`` report whether the file is what the signals
    generate (1 when not)."""
    text = render()
    if check:
        if not output.exists() or output.read_text() != text:
            print(f"{output} is not what `perf-operator dashboards` generates", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(output)
    return 0
