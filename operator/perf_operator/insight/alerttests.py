"""promtool unit tests proving that a profile's alerts fire where its thresholds say.

For every signal and both levels (warning, critical), two tests:

* **silent just short of the level**: the signal settles a hair on the healthy side of the
  level and the alert of that severity never fires;
* **fires just past the level, after its ``for``**: the signal settles a hair past the level;
  one evaluation before ``for`` has elapsed the alert is not firing yet, at ``for`` it is, with
  the right ``severity`` label and annotations (including the rendered ``$value``).

The inputs are raw application metrics, labelled with the profile's namespace and name, when
the signal uses its default query (so the query, its narrowing to the profile, the recording
rule and the alert are all tested together), and the recorded series itself when
the profile replaced the query (promtool then proves levels, ``for`` and labels; the custom query
is checked by ``promtool check rules`` only).

Each series runs on a healthy baseline first, then moves to the tested value. A query over a
range (``rate(...[5m])``) moves linearly from one to the other over that range; the margin past
the level is kept smaller than one evaluation step of that ramp, so the alert becomes active
exactly when the ramp ends. The expected alerts at every checked time come from replaying the
alert rules over that known sequence of values (``_replay``), so a test also proves the
warning/critical bands (e.g. just short of critical, the warning fires instead).

Use (e.g. in a CI pipeline next to the profile; offline, no cluster needed)::

    kubectl perf alert-tests profile.yaml out/
    promtool check rules out/<name>.rules.yaml && promtool test rules out/<name>.test.yaml
"""
from __future__ import annotations

import math
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from ..api.schema import parse_duration
from ..kube.alerts import (AlertSignal, RuleTarget, promql_number, rule_file, rule_group,
                           summary)
from ..kube.burnrate import (ABSENT_ALERT, BURN_ALERT, REQUESTS, SHORTEST_MS, BurnRate,
                             absent_summary, burn_summary)

#: Relative distance from a level of the "just short" and "just past" values.
MARGIN = 0.001
#: Requests per second behind the request-based defaults; any positive rate would do.
_RATE = 10.0


@dataclass(frozen=True)
class Feed:
    """Input series for which a default query evaluates to a chosen value.

    ``series(value)`` gives each series as ("gauge", level) or ("counter", increase per
    second); ``window_ms`` is the range the query looks back over (0: an instant value)."""

    window_ms: int
    series: Callable[[float], dict[str, tuple[str, float]]]


def _ratio(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"{value} is not a ratio")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _latency(metric: str) -> Feed:
    return Feed(300_000, lambda ms: {
        f"{metric}_sum": ("counter", _non_negative(ms) / 1000 * _RATE),
        f"{metric}_count": ("counter", _RATE)})


def _share(part: str, rest: str) -> Feed:
    return Feed(300_000, lambda v: {part: ("counter", _ratio(v) * _RATE),
                                    rest: ("counter", (1 - v) * _RATE)})


def _gauge_ratio(used: str, total: str, capacity: float) -> Feed:
    return Feed(0, lambda v: {used: ("gauge", _non_negative(v) * capacity),
                              total: ("gauge", capacity)})


#: One feed per default query of ``api.DEFAULT_SIGNAL_QUERIES`` that has alerts, in series
#: without the namespace and profile labels (``_feed`` adds them).
FEEDS: dict[str, Feed] = {
    "apiResponseTimeMs": _latency("http_request_duration_seconds"),
    "errorRate": _share('http_requests_total{status="500"}', 'http_requests_total{status="200"}'),
    "dbQueryTimeMs": _latency("db_query_duration_seconds"),
    "poolUtilization": _gauge_ratio("db_pool_connections_in_use", "db_pool_connections_max", 100),
    "memoryUsage": _gauge_ratio("nodejs_heap_size_used_bytes", "nodejs_heap_size_total_bytes",
                                2.0 ** 30),
    "memoryGrowthMB": Feed(3_600_000, lambda mb: {
        "nodejs_heap_size_used_bytes": ("counter", _non_negative(mb) * 2 ** 20 / 3600)}),
    "websocketConnections": Feed(0, lambda n: {
        "websocket_connections_active": ("gauge", _non_negative(n))}),
    "messageRatePerMinute": Feed(300_000, lambda per_minute: {
        "websocket_messages_total": ("counter", _non_negative(per_minute) / 60)}),
    "cacheHitRate": _share("cache_hits_total", "cache_misses_total"),
}


@dataclass(frozen=True)
class Case:
    """One generated test: a signal settling at ``value``, next to ``severity``'s level."""

    signal: AlertSignal
    severity: str
    fires: bool
    value: float


def generate(signals: list[AlertSignal], target: RuleTarget, rule_file_name: str
             ) -> tuple[dict[str, Any], list[str]]:
    """The promtool test file (as data) for these signals, and the cases that cannot be
    expressed (e.g. "just above" a ratio level of 1), each with the reason."""
    feeds = {s.name: _feed(s, target) for s in signals}
    step = _step(signals, feeds)
    tests, skipped = [], []
    for signal in signals:
        for severity in ("warning", "critical"):
            for fires in (False, True):
                level = signal.warning if severity == "warning" else signal.critical
                case = Case(signal, severity, fires,
                            _settled_value(signal, level, fires, feeds[signal.name], step))
                try:
                    tests.append(_test(case, feeds[signal.name], target, step))
                except ValueError as err:
                    skipped.append(f"{signal.name} {severity} "
                                   f"{'past' if fires else 'short of'} the level: {err}")
    return {"rule_files": [rule_file_name], "evaluation_interval": _duration(step),
            "tests": tests}, skipped


def _feed(signal: AlertSignal, target: RuleTarget) -> Feed:
    if signal.grouped and signal.name in FEEDS:
        # The application's series, labelled with the profile as the default queries expect.
        return _labelled(FEEDS[signal.name], {"namespace": target.namespace,
                                              "profile": target.profile})
    labels = ",".join(f'{k}="{v}"' for k, v in target.series_labels.items())
    return Feed(0, lambda v: {f"{signal.record}{{{labels}}}": ("gauge", v)})


def _labelled(feed: Feed, labels: dict[str, str]) -> Feed:
    """``feed`` with ``labels`` added to every series."""
    extra = ",".join(f'{k}="{v}"' for k, v in labels.items())

    def name(series: str) -> str:
        return f"{series[:-1]},{extra}}}" if series.endswith("}") else f"{series}{{{extra}}}"

    return Feed(feed.window_ms, lambda value: {name(series): sample for series, sample
                                               in feed.series(value).items()})


def _step(signals: list[AlertSignal], feeds: dict[str, Feed]) -> int:
    """One evaluation and sample interval for the whole file (promtool has one per file): the
    largest that divides every ``for`` and every query range, at most a minute."""
    step = 60_000
    for signal in signals:
        step = math.gcd(step, parse_duration(signal.for_), feeds[signal.name].window_ms)
    return step


def _settled_value(signal: AlertSignal, level: float, fires: bool, feed: Feed,
                   step: int) -> float:
    """A hair past (``fires``) or short of ``level`` on the side the signal goes bad. Over a
    ramp, the hair is less than one step of it, so the level is crossed only where the ramp
    ends; and the value is moved off rounding edges of its rendered form."""
    margin = MARGIN
    if feed.window_ms:
        margin = min(margin, step / feed.window_ms / 4)
    bad = -1 if signal.falling else 1
    sign = bad if fires else -bad
    value = level * (1 + sign * margin) if level else sign * margin
    render = signal.info.format.render
    while render(value * (1 - 1e-9)) != render(value * (1 + 1e-9)):
        value *= 1 + sign * 1e-6
    return value


def _baseline(signal: AlertSignal) -> float:
    """A healthy value, where no alert of the signal is active. Signals that are bad when low
    are ratios (the API says so), so their healthy side ends at 1."""
    baseline = (signal.warning + 1) / 2 if signal.falling else signal.warning / 2
    if baseline == signal.warning:
        raise ValueError(f"no healthy value {'above' if signal.falling else 'below'} a "
                         f"warning level of {promql_number(signal.warning)}")
    return baseline


def _test(case: Case, feed: Feed, target: RuleTarget, step: int) -> dict[str, Any]:
    signal, baseline = case.signal, _baseline(case.signal)
    start = feed.window_ms + step * math.ceil(60_000 / step)  # baseline established
    crossed = start + feed.window_ms  # the query sees only the tested value from here on
    hold = parse_duration(signal.for_)
    checks = [crossed + hold] if case.fires else [crossed + hold, crossed + hold + step]
    if case.fires and hold:
        checks.insert(0, crossed + hold - step)
    end = checks[-1]
    values = [_signal_value(t, start, feed.window_ms, baseline, case.value)
              for t in range(0, end + step, step)]
    firing = _replay(signal, values, step)
    index = {"warning": 0, "critical": 1}[case.severity]
    for t in checks:  # the case must show what it claims before promtool checks Prometheus
        if firing[t // step][index] != (case.fires and t == checks[-1]):
            raise ValueError(f"the ramp from {baseline} crosses the level before it ends")
    return {
        "interval": _duration(step),
        "input_series": [
            {"series": name, "values": _series_values(kind, base, now, start, end, step)}
            for name, ((kind, base), (_, now)) in _paired(feed, baseline, case.value).items()],
        "alert_rule_test": [
            {"eval_time": _duration(t), "alertname": signal.info.alert,
             "exp_alerts": [
                 _expected(signal, target, severity, case.value)
                 for severity, on in zip(("warning", "critical"), firing[t // step], strict=True)
                 if on]}
            for t in checks],
    }


def _paired(feed: Feed, baseline: float, value: float
            ) -> dict[str, tuple[tuple[str, float], tuple[str, float]]]:
    before, after = feed.series(baseline), feed.series(value)
    return {name: (before[name], after[name]) for name in before}


def _signal_value(t: int, start: int, window: int, baseline: float, value: float) -> float:
    """What the query returns at ``t``: the baseline, then a linear ramp over the query's
    range to the tested value (a range query mixes old and new samples in proportion)."""
    if t < start:
        return baseline
    if not window:
        return value
    share = min(1.0, (t - start) / window)
    return baseline + (value - baseline) * share


def _series_values(kind: str, before: float, after: float, start: int, end: int,
                   step: int) -> str:
    values, total = [], 0.0
    for t in range(0, end + step, step):
        if kind == "gauge":
            values.append(after if t >= start else before)
            continue
        if t:
            total += (after if t > start else before) * step / 1000
        values.append(total)
    return " ".join(repr(round(v, 9)) for v in values)


def _replay(signal: AlertSignal, values: list[float], step: int) -> list[tuple[bool, bool]]:
    """Prometheus's alert state machine over a known sequence of values: a rule becomes active
    the first evaluation its expression holds, fires once it has held for ``for``, and resets
    when it stops holding. Returns (warning firing, critical firing) per evaluation."""
    hold = parse_duration(signal.for_)
    if signal.falling:
        conditions = (lambda v: signal.critical <= v < signal.warning,
                      lambda v: v < signal.critical)
    else:
        conditions = (lambda v: signal.warning < v <= signal.critical,
                      lambda v: v > signal.critical)
    since: list[int | None] = [None, None]
    out = []
    for i, value in enumerate(values):
        now = []
        for rule, holds in enumerate(conditions):
            if holds(value):
                start = since[rule]
                if start is None:
                    start = since[rule] = i * step
                now.append(i * step - start >= hold)
            else:
                since[rule] = None
                now.append(False)
        out.append((now[0], now[1]))
    return out


def _expected(signal: AlertSignal, target: RuleTarget, severity: str,
              value: float) -> dict[str, Any]:
    level = signal.warning if severity == "warning" else signal.critical
    return {
        "exp_labels": {**dict(target.extra_labels), **target.series_labels,
                       "severity": severity},
        "exp_annotations": {"summary": summary(signal, target, severity, level),
                            "value": signal.info.format.render(value),
                            "recommendation": signal.info.recommendation},
    }


def _duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def write_files(signals: list[AlertSignal], target: RuleTarget, directory: pathlib.Path,
                burn: BurnRate | None = None) -> tuple[pathlib.Path, pathlib.Path, list[str]]:
    """Write ``<profile>.rules.yaml`` and ``<profile>.test.yaml`` (with the burn-rate cases
    when ``burn``); returns both paths and the skipped cases."""
    directory.mkdir(parents=True, exist_ok=True)
    rules = directory / f"{target.profile}.rules.yaml"
    rules.write_text(rule_file(rule_group(signals, target, burn)))
    tests, skipped = generate(signals, target, rules.name)
    if burn is not None:
        tests["tests"] += burn_tests(burn, target.namespace, target.profile,
                                     target.series_labels, dict(target.extra_labels))
    test_file = directory / f"{target.profile}.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False, width=1 << 16))
    return rules, test_file, skipped


# ------------------------------------------------------------- burn-rate alerts

#: Requests per minute behind the generated tests.
_PER_MINUTE = 1000


def burn_tests(burn: BurnRate, namespace: str, profile: str, series_labels: dict[str, str],
               extra_labels: dict[str, str]) -> list[dict[str, Any]]:
    """promtool tests, per window pair: an error ratio a little past ``factor x budget`` from
    the start fires that pair (and every pair with a lower level), one a little short of it
    does not; and with no requests at all, the SLI-absent alert fires after ``absentFor``.
    Levels at or above a ratio of 1 cannot be reached and get no firing test."""
    tests = []
    raw = {"namespace": namespace, "profile": profile}
    longest = max(parse_duration(w.long) for w in burn.windows)
    at_ms = max(parse_duration(w.short) for w in burn.windows) + SHORTEST_MS
    minutes = (max(at_ms, longest) // 60_000) + 5
    for pair in burn.windows:
        level = pair.factor * burn.budget
        for fires, ratio in ((True, level * 1.05), (False, level * 0.95)):
            if ratio >= 1:
                continue
            errors = round(_PER_MINUTE * ratio)
            firing = [w for w in burn.windows if errors / _PER_MINUTE > w.factor * burn.budget]
            assert (pair in firing) is fires
            tests.append({
                "interval": "1m",
                "input_series": [
                    {"series": _burn_series(raw, "500"), "values": f"0+{errors}x{minutes}"},
                    {"series": _burn_series(raw, "200"),
                     "values": f"0+{_PER_MINUTE - errors}x{minutes}"}],
                "alert_rule_test": [{
                    "eval_time": f"{at_ms // 60_000}m", "alertname": BURN_ALERT,
                    "exp_alerts": [{"exp_labels": {
                        **extra_labels, **series_labels, "severity": w.severity,
                        "long_window": w.long, "short_window": w.short,
                        "burn_factor": f"{w.factor:g}"},
                        "exp_annotations": {"summary": burn_summary(burn, w, namespace,
                                                                     profile)}}
                        for w in firing]}],
            })
    tests.append({
        "interval": "1m",
        "input_series": [{"series": f'other_metric{{namespace="{namespace}"}}',
                          "values": f"0x{minutes}"}],
        "alert_rule_test": [{
            "eval_time": f"{parse_duration(burn.absent_for) // 60_000 + 1}m",
            "alertname": ABSENT_ALERT,
            "exp_alerts": [{"exp_labels": {**extra_labels, **series_labels, **raw,
                                           "severity": "ticket"},
                            "exp_annotations": {"summary": absent_summary(namespace,
                                                                           profile)}}]}]})
    return tests


def _burn_series(labels: dict[str, str], status: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in {**labels, "status": status}.items())
    return f"{REQUESTS}{{{inner}}}"


def write_manifest_tests(manifest: pathlib.Path, output_dir: pathlib.Path) -> int:
    """``kubectl perf alert-tests``: the rule and test files of every PerformanceProfile in
    ``manifest``, written to ``output_dir``; prints the promtool commands that run them."""
    from ..api import PerformanceProfileSpec
    from ..kube.alerts import alert_signals

    profiles = [doc for doc in yaml.safe_load_all(manifest.read_text())
                if doc and doc.get("kind") == "PerformanceProfile"]
    if not profiles:
        print(f"error: no PerformanceProfile in {manifest}", file=sys.stderr)
        return 2
    for document in profiles:
        meta = document.get("metadata") or {}
        spec = PerformanceProfileSpec.model_validate(document.get("spec") or {})
        target = RuleTarget.of_profile(meta["name"], meta.get("namespace", "default"), spec)
        rules, tests, skipped = write_files(alert_signals(spec), target, output_dir,
                                            BurnRate.of_spec(spec))
        for reason in skipped:
            print(f"skipped: {reason}", file=sys.stderr)
        print(f"promtool check rules {rules} && promtool test rules {tests}")
    return 0
