"""The generated alert rules against Prometheus's own tool: every rule file passes
``promtool check rules``, and the generated ``promtool test rules`` cases pass for every
threshold (silent just short of it, firing just past it once ``for`` has elapsed, with the right
severity). The generated tests have teeth: a rule file with a moved level, a shorter ``for`` or
a swapped severity fails them."""
from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

from perf_operator.api import ALERT_SIGNAL_NAMES, PerformanceProfileSpec
from perf_operator.kube.alerts import RuleTarget, alert_signals
from perf_operator.insight.alerttests import write_files
from perf_operator.insight.cli import main as kubectl_perf

PROFILES = {
    "seed-defaults": {},
    "customised": {"alerts": {
        "labels": {"team": "platform", "route": "pager"},
        "thresholds": {
            "apiResponseTimeMs": {"warning": 250, "critical": 750, "for": "90s"},
            "errorRate": {"warning": 0.01, "critical": 0.02, "for": "30s"},
            "memoryGrowthMB": {"warning": 64, "critical": 256, "for": "10m"},
            "cacheHitRate": {"warning": 0.9, "critical": 0.5, "for": "2m"},
            "websocketConnections": {"warning": 900, "critical": 990, "for": "0s"},
        },
        # A replaced query: the generated tests feed its recorded series directly.
        "metrics": {"poolUtilization": "max(pgbouncer_pools_sv_active / "
                                       "pgbouncer_pools_sv_max)"},
    }},
}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True)


def _generate(spec: dict, directory: pathlib.Path, name: str = "shop"):
    model = PerformanceProfileSpec.model_validate(spec)
    return write_files(alert_signals(model), RuleTarget.of_profile(name, "prod", model),
                       directory)


@pytest.mark.parametrize("profile", PROFILES)
def test_generated_rules_pass_promtool_check_and_their_tests(profile, tmp_path):
    rules, tests, skipped = _generate(PROFILES[profile], tmp_path)

    check = _promtool("check", "rules", str(rules))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(ALERT_SIGNAL_NAMES) * 3} rules found" in check.stdout

    assert skipped == []
    assert tests.read_text().count("alert_rule_test:") == len(ALERT_SIGNAL_NAMES) * 4
    result = _promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


MUTATIONS = {
    "a warning level moved up by 0.5%": (r"> 1000 <= 5000", "> 1005 <= 5000"),
    "a critical level moved down by 1%": (r"_ms\{(.*)\} > 2000$", r"_ms{\1} > 1980"),
    "a falling level moved": (r"< 0.85 >= 0.6", "< 0.8 >= 0.6"),
    "a shorter for": (r"for: 5m", "for: 4m"),
    "a longer for": (r"for: 5m", "for: 6m"),
    "swapped severities": (r"severity: (warning|critical)",
                           lambda m: "severity: " + {"warning": "critical",
                                                     "critical": "warning"}[m[1]]),
    "a warning without the critical bound": (r" <= 9500$", ""),
    "a different recommendation": (r"recommendation: 'Database", "recommendation: 'DB"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_generated_tests_fail_for_a_wrong_rule_file(mutation, tmp_path):
    rules, tests, _ = _generate({}, tmp_path)
    pattern, replacement = MUTATIONS[mutation]
    mutated, count = re.subn(pattern, replacement, rules.read_text(), flags=re.M)
    assert count, f"the mutation {mutation!r} matched nothing"
    rules.write_text(mutated)
    assert _promtool("check", "rules", str(rules)).returncode == 0  # still a valid file

    result = _promtool("test", "rules", str(tests))

    assert result.returncode != 0, f"{mutation} went unnoticed"
    assert "FAILED" in result.stdout + result.stderr


EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[2] / "examples").glob("profile-*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_profile_gets_rules_that_pass_their_generated_tests(example, tmp_path,
                                                                          capsys):
    assert kubectl_perf(["alert-tests", str(example), str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no case skipped
    result = subprocess.run(captured.out.strip(), shell=True, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubectl_perf_alert_tests_reads_a_profile_manifest(tmp_path, capsys):
    manifest = tmp_path / "profile.yaml"
    manifest.write_text("apiVersion: perf.idp.io/v1alpha1\nkind: PerformanceProfile\n"
                        "metadata: {name: shop, namespace: prod}\n"
                        "spec: {alerts: {thresholds: {errorRate: {warning: 0.02, "
                        "critical: 0.04, for: 1m}}}}\n")

    assert kubectl_perf(["alert-tests", str(manifest), str(tmp_path / "out")]) == 0

    command = capsys.readouterr().out.strip()
    assert command.startswith("promtool check rules ")
    result = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "> 0.02 <= 0.04" in (tmp_path / "out" / "shop.rules.yaml").read_text()
