"""SLO burn-rate alerts (spec.alerts.burnRate) against Prometheus itself: the generated
``promtool test rules`` cases pass for every window pair (fires just past its burn rate, silent
just short of it) and for the SLI-absent alert, and fail for a wrong rule file (levels,
labels, one leg's level; a changed window length goes unnoticed: the cases hold the error ratio
constant, so every window sees the same value); and in the
stack's real Prometheus, a failing application makes the page alert fire with its window pair
in the labels."""
from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pytest

from perf_operator.api import PerformanceProfileSpec
from perf_operator.kube.alerts import RuleTarget, profile_rule_group, rule_file
from perf_operator.insight.alerttests import write_files
from perf_operator.kube.alerts import alert_signals
from perf_operator.kube.burnrate import BurnRate
from tests.e2e.optimizer_support import exporter  # noqa: F401 - the fixture
from tests.support.kube import eventually

pytestmark = pytest.mark.e2e

DEFAULT = {"alerts": {"burnRate": {"enabled": True}}}
CUSTOM = {"targets": {"errorRate": 0.01},
          "alerts": {"labels": {"team": "platform"}, "burnRate": {
              "enabled": True, "absentFor": "5m",
              "windows": [{"severity": "page", "longWindow": "30m", "shortWindow": "5m",
                           "factor": 20},
                          {"severity": "ticket", "longWindow": "2h", "shortWindow": "10m",
                           "factor": 2}]}}}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True)


def _generate(spec: dict, directory):
    model = PerformanceProfileSpec.model_validate(spec)
    return write_files(alert_signals(model), RuleTarget.of_profile("shop", "prod", model),
                       directory, BurnRate.of_spec(model))


@pytest.mark.parametrize("spec", [DEFAULT, CUSTOM], ids=["default-windows", "custom"])
def test_every_window_pair_fires_at_its_rate_and_not_below(spec, tmp_path):
    rules, tests, _ = _generate(spec, tmp_path)
    assert _promtool("check", "rules", str(rules)).returncode == 0
    text = tests.read_text()
    pairs = len(spec["alerts"]["burnRate"].get("windows", [None] * 4))
    assert text.count("alertname: ErrorBudgetBurn") == 2 * pairs  # fires + silent per pair
    assert "alertname: ErrorRateSLIAbsent" in text
    result = _promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    # chained: every longer window averages the 5-minute rule
    assert "avg_over_time(perf_operator:error_ratio:rate5m{" in rules.read_text()


@pytest.mark.parametrize("pattern, replacement", [
    (r"> 0.72 and", "> 0.8 and"),                       # page level moved
    (r"long_window: 6h", "long_window: 1h"),            # wrong window label
    (r"(rate30m\{[^}]*\}) > 0.3$", r"\1 > 0.33"),        # short leg's level moved
    (r"severity: page", "severity: ticket"),
])
def test_generated_cases_catch_a_wrong_rule_file(pattern, replacement, tmp_path):
    rules, tests, _ = _generate(DEFAULT, tmp_path)
    mutated, count = re.subn(pattern, replacement, rules.read_text(), flags=re.M)
    assert count, pattern
    rules.write_text(mutated)
    result = _promtool("test", "rules", str(tests))
    assert result.returncode != 0, f"{pattern} went unnoticed"


def _alerts(stack) -> list[dict]:
    with urllib.request.urlopen(stack.prometheus.url + "/api/v1/alerts", timeout=5) as r:
        return json.load(r)["data"]["alerts"]


def test_page_alert_fires_in_the_real_prometheus(stack, namespace, exporter):
    spec = PerformanceProfileSpec.model_validate(DEFAULT)
    path = stack.prometheus.rules_dir / f"{namespace}-burn.yaml"
    path.write_text(rule_file(profile_rule_group(spec, RuleTarget("shop", namespace))))
    stack.prometheus.reload()
    try:
        # 90 % of requests failing: every window pair burns faster than its rate
        exporter.traffic(namespace, "shop", (10.0, 0.01, "200"), (90.0, 0.01, "500"))

        def page():
            return [a for a in _alerts(stack)
                    if a["labels"].get("alertname") == "ErrorBudgetBurn"
                    and a["labels"].get("profile_namespace") == namespace
                    and a["labels"].get("long_window") == "1h" and a["state"] == "firing"]
        [alert] = eventually(page, timeout=90, interval=1, what="the 1h/5m page alert")
        assert alert["labels"]["severity"] == "page"
        assert alert["labels"]["short_window"] == "5m"
        assert alert["labels"]["burn_factor"] == "14.4"
    finally:
        path.unlink()
        stack.prometheus.reload()
