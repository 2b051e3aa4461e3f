"""SLO burn-rate alerts on the error rate (``spec.alerts.burnRate``), multi-window and
multi-burn-rate as in Sloth and Pyrra.

The objective is the profile's ``targets.errorRate``: the error budget is that share of
requests. The SLI, the share of ``http_requests_total`` with a 5xx status, is recorded once
over 5 minutes (``perf_operator:error_ratio:rate5m``); every longer window is chained from it
(``avg_over_time`` of the 5-minute ratio), so a 3-day window costs Prometheus one average over
stored samples, not a 3-day ``rate`` over raw counters.

Each window pair fires ``ErrorBudgetBurn`` while both windows burn faster than ``factor``
times the budget, with the pair in the labels (``long_window``, ``short_window``,
``burn_factor``) and ``severity`` page or ticket. ``ErrorRateSLIAbsent`` fires when the SLI's
series have been missing for ``absentFor``: without it, no burn alert could ever fire.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.schema import parse_duration
from ..api.signals import GROUP_LABELS

SHORTEST = "5m"
SHORTEST_MS = 300_000
BURN_ALERT = "ErrorBudgetBurn"
ABSENT_ALERT = "ErrorRateSLIAbsent"
REQUESTS = "http_requests_total"

@dataclass(frozen=True)
class Window:
    severity: str
    long: str
    short: str
    factor: float


@dataclass(frozen=True)
class BurnRate:
    """What the rules are generated from: the budget and the window pairs."""

    budget: float
    windows: tuple[Window, ...]
    absent_for: str

    @classmethod
    def of_spec(cls, spec: Any) -> BurnRate | None:
        burn = spec.alerts.burn_rate
        if not burn.enabled:
            return None
        return cls(spec.targets.error_rate,
                   tuple(Window(w.severity, w.long_window, w.short_window, w.factor)
                         for w in burn.windows), burn.absent_for)

    def errors(self) -> list[str]:
        """Window pairs that cannot work; the rules are not written while there are any."""
        problems = []
        for i, w in enumerate(self.windows):
            where = f"spec.alerts.burnRate.windows[{i}]"
            if parse_duration(w.short) < SHORTEST_MS:
                problems.append(f"{where}.shortWindow: at least {SHORTEST}")
            if parse_duration(w.long) <= parse_duration(w.short):
                problems.append(f"{where}.longWindow: must be longer than shortWindow")
        return problems


def record(window: str) -> str:
    return f"perf_operator:error_ratio:rate{window}"


def burn_rules(burn: BurnRate, namespace: str, profile: str,
               series_labels: dict[str, str], extra_labels: dict[str, str]) -> list[dict]:
    """The recording and alerting rules of one profile's burn-rate alerts."""
    raw = ",".join(f'{label}="{value}"' for label, value in
                   zip(GROUP_LABELS, (namespace, profile), strict=True))
    mine = ",".join(f'{k}="{v}"' for k, v in series_labels.items())
    rules: list[dict[str, Any]] = [{
        "record": record(SHORTEST),
        "expr": f'(sum({_rate(raw, error=True)}) or sum({_rate(raw)}) * 0) / '
                f'sum({_rate(raw)})',
        "labels": dict(series_labels)}]
    windows = sorted({w for pair in burn.windows for w in (pair.long, pair.short)} - {SHORTEST},
                     key=parse_duration)
    rules += [{"record": record(w), "expr": f"avg_over_time({record(SHORTEST)}{{{mine}}}[{w}])",
               "labels": dict(series_labels)} for w in windows]
    for pair in burn.windows:
        level = pair.factor * burn.budget
        rules.append({
            "alert": BURN_ALERT,
            "expr": f"{record(pair.long)}{{{mine}}} > {level:g} and "
                    f"{record(pair.short)}{{{mine}}} > {level:g}",
            "labels": {**extra_labels, "severity": pair.severity, "long_window": pair.long,
                       "short_window": pair.short, "burn_factor": f"{pair.factor:g}"},
            "annotations": {"summary": burn_summary(burn, pair, namespace, profile)}})
    rules.append({
        "alert": ABSENT_ALERT,
        "expr": f"absent({REQUESTS}{{{raw}}})",
        "for": burn.absent_for,
        "labels": {**extra_labels, "severity": "ticket", **series_labels},
        "annotations": {"summary": absent_summary(namespace, profile)}})
    return rules


def burn_summary(burn: BurnRate, pair: Window, namespace: str, profile: str) -> str:
    return (f"Error budget of profile {namespace}/{profile} burning {pair.factor:g}x too fast "
            f"over {pair.long} and {pair.short} (objective: errors below {burn.budget:g})")


def absent_summary(namespace: str, profile: str) -> str:
    return f"No {REQUESTS} for profile {namespace}/{profile}: its error budget is not measured"


def _rate(selector: str, *, error: bool = False) -> str:
    status = ',status=~"5.."' if error else ""
    return f"rate({REQUESTS}{{{selector}{status}}}[{SHORTEST}])"
