"""The alert rule builder and the promtool test generator, without Prometheus."""
from __future__ import annotations

import pytest

from perf_operator.api import (ALERT_SIGNAL_NAMES, DEFAULT_SIGNAL_QUERIES, SIGNAL_NAMES,
                               PerformanceProfileSpec)
from perf_operator.api.schema import parse_duration
from perf_operator.api.signals import for_profile
from perf_operator.insight import alerttests
from perf_operator.kube.alerts import (SIGNALS, RuleTarget, alert_signals, humanize, rule_file,
                                       rule_group, rules_not_loaded)

TARGET = RuleTarget("shop", "prod", (("team", "platform"),))


def _group(spec: dict | None = None) -> dict:
    model = PerformanceProfileSpec.model_validate(spec or {})
    return rule_group(alert_signals(model), TARGET)


def _rules(group: dict, alert: str) -> list[dict]:
    return [r for r in group["rules"] if r.get("alert") == alert]


def test_every_signal_of_the_api_has_rules_advice_and_a_feed():
    assert set(SIGNALS) == set(ALERT_SIGNAL_NAMES) == set(alerttests.FEEDS)
    assert set(ALERT_SIGNAL_NAMES) <= set(DEFAULT_SIGNAL_QUERIES) == set(SIGNAL_NAMES)


def test_one_group_with_a_recording_rule_and_two_levels_per_signal():
    group = _group()
    assert group["name"] == "perf-operator.prod.shop"
    assert len(group["rules"]) == 3 * len(ALERT_SIGNAL_NAMES)
    record = group["rules"][0]
    assert record == {"record": "perf_operator:api_response_time_ms",
                      "expr": for_profile(DEFAULT_SIGNAL_QUERIES["apiResponseTimeMs"], "prod",
                                          "shop"),
                      "labels": {"profile": "shop", "profile_namespace": "prod"}}


def test_grouped_defaults_are_narrowed_to_the_profile_and_overrides_kept():
    group = _group({"alerts": {"metrics": {"errorRate": "sum(my_errors)"}}})
    records = {r["record"]: r["expr"] for r in group["rules"] if "record" in r}
    memory = records["perf_operator:memory_usage"]
    assert memory.startswith("sum without (namespace, profile) ((")
    assert '"namespace", "prod"' in memory and '"profile", "shop"' in memory
    assert DEFAULT_SIGNAL_QUERIES["memoryUsage"] in memory
    assert records["perf_operator:error_rate"] == "sum(my_errors)"


@pytest.mark.parametrize("alert,warning_expr,critical_expr", [
    ("ApiResponseTimeHigh", "> 1000 <= 5000", "> 5000"),
    ("ApiErrorRateHigh", "> 0.05 <= 0.1", "> 0.1"),
    ("DatabaseQueryTimeHigh", "> 500 <= 2000", "> 2000"),
    ("DatabasePoolUtilizationHigh", "> 0.8 <= 0.95", "> 0.95"),
    ("MemoryUsageHigh", "> 0.8 <= 0.9", "> 0.9"),
    ("MemoryGrowthHigh", "> 100 <= 500", "> 500"),
    ("WebSocketConnectionsHigh", "> 8000 <= 9500", "> 9500"),
    ("WebSocketMessageRateHigh", "> 10000 <= 50000", "> 50000"),
    ("CacheHitRateLow", "< 0.85 >= 0.6", "< 0.6"),
])
def test_seed_thresholds_as_warning_band_and_critical(alert, warning_expr, critical_expr):
    warning, critical = _rules(_group(), alert)
    assert warning["expr"].endswith(warning_expr) and critical["expr"].endswith(critical_expr)
    assert '{profile="shop",profile_namespace="prod"}' in warning["expr"]
    assert (warning["labels"], critical["labels"]) == (
        {"team": "platform", "severity": "warning"},
        {"team": "platform", "severity": "critical"})
    assert warning["for"] == critical["for"] == "5m"
    assert set(warning["annotations"]) == {"summary", "value", "recommendation"}
    assert "$value" in warning["annotations"]["value"]


def test_summaries_name_the_level_in_the_signals_unit():
    group = _group()
    summaries = [r["annotations"]["summary"] for r in group["rules"] if "alert" in r]
    assert "API average response time of profile prod/shop is above 1000ms (warning)" in \
        summaries
    assert "API server error rate of profile prod/shop is above 10% (critical)" in summaries
    assert "Cache hit rate of profile prod/shop is below 85% (warning)" in summaries
    assert "Heap growth over the last hour of profile prod/shop is above 500MB (critical)" in \
        summaries
    assert "WebSocket message rate of profile prod/shop is above 50k/min (critical)" in summaries


def test_recommendations_are_the_seeds_troubleshooting_advice():
    group = _group()
    advice = {r["alert"]: r["annotations"]["recommendation"] for r in group["rules"]
              if "alert" in r}
    assert "POST /api/monitoring/gc" in advice["MemoryUsageHigh"]
    assert "POST /api/cache/warm" in advice["CacheHitRateLow"]
    assert "EXPLAIN ANALYZE" in advice["DatabaseQueryTimeHigh"]
    assert "POST /api/websocket/cleanup" in advice["WebSocketConnectionsHigh"]
    assert "circuit breaker" in advice["ApiErrorRateHigh"]


def test_profile_overrides_levels_for_labels_and_queries():
    group = _group({"alerts": {
        "labels": {"severity": "ignored", "route": "pager"},
        "thresholds": {"errorRate": {"warning": 0.01, "critical": 0.03, "for": "30s"}},
        "metrics": {"errorRate": "sum(rate(errors_total[1m])) / sum(rate(requests_total[1m]))"},
    }})
    warning, critical = _rules(group, "ApiErrorRateHigh")
    assert warning["expr"].endswith("> 0.01 <= 0.03") and warning["for"] == "30s"
    assert critical["labels"]["severity"] == "critical"  # ours wins over an extra label
    record = next(r for r in group["rules"] if r.get("record") == "perf_operator:error_rate")
    assert record["expr"] == "sum(rate(errors_total[1m])) / sum(rate(requests_total[1m]))"


def test_rule_file_is_byte_stable():
    assert rule_file(_group()) == rule_file(_group())


@pytest.mark.parametrize("value,text", [
    # What Prometheus's Go template functions print (templates.go), 4 significant digits.
    (8001, "8.001k"), (9600, "9.6k"), (50050, "50.05k"), (999, "999"), (0, "0"),
    (0.5, "500m"), (1_500_000, "1.5M"), (104962457.6, "105M"),
])
def test_humanize_matches_prometheus(value, text):
    assert humanize(value) == text


def test_durations():
    assert parse_duration("1h30m") == 5_400_000
    assert parse_duration("500ms") == 500
    assert parse_duration("0s") == 0
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def _generated(spec: dict | None = None) -> tuple[dict, list[str]]:
    model = PerformanceProfileSpec.model_validate(spec or {})
    return alerttests.generate(alert_signals(model), TARGET, "shop.rules.yaml")


def test_four_tests_per_signal_on_a_step_that_divides_every_duration():
    tests, skipped = _generated()
    assert skipped == []
    assert tests["rule_files"] == ["shop.rules.yaml"]
    assert tests["evaluation_interval"] == "60s"
    assert len(tests["tests"]) == 4 * len(ALERT_SIGNAL_NAMES)
    short, _ = _generated({"alerts": {"thresholds": {"errorRate": {
        "warning": 0.05, "critical": 0.1, "for": "90s"}}}})
    assert short["evaluation_interval"] == "30s"


def test_firing_case_checks_one_step_before_and_at_the_end_of_for():
    tests, _ = _generated()
    gauge = [t for t in tests["tests"]
             if t["input_series"][0]["series"] ==
             'websocket_connections_active{namespace="prod",profile="shop"}']
    silent_warning, fires_warning, silent_critical, fires_critical = gauge
    before, at = fires_warning["alert_rule_test"]
    # baseline until 60 s, then 8008: active from 60 s, firing from 60 s + 5 m
    assert (before["eval_time"], before["exp_alerts"]) == ("300s", [])
    assert at["eval_time"] == "360s"
    [alert] = at["exp_alerts"]
    assert alert["exp_labels"] == {"team": "platform", "profile": "shop",
                                   "profile_namespace": "prod", "severity": "warning"}
    assert alert["exp_annotations"]["value"] == "8.008k"
    # just short of critical the warning band holds: the warning fires, the critical does not
    assert [a["exp_labels"]["severity"] for a in
            silent_critical["alert_rule_test"][-1]["exp_alerts"]] == ["warning"]
    assert silent_warning["alert_rule_test"][-1]["exp_alerts"] == []
    assert [a["exp_labels"]["severity"] for a in
            fires_critical["alert_rule_test"][-1]["exp_alerts"]] == ["critical"]


def test_replaced_query_is_tested_through_its_recorded_series():
    tests, _ = _generated({"alerts": {"metrics": {"memoryUsage": "max(rss / limit)"}}})
    series = {s["series"] for t in tests["tests"] for s in t["input_series"]}
    assert 'perf_operator:memory_usage{profile="shop",profile_namespace="prod"}' in series
    assert not any(s.startswith("nodejs_heap_size_total_bytes") for s in series)
    assert 'cache_hits_total{namespace="prod",profile="shop"}' in series  # a default's feed


def test_levels_that_cannot_be_fed_are_reported_not_faked():
    _, skipped = _generated({"alerts": {"thresholds": {"cacheHitRate": {
        "warning": 1.0, "critical": 0.5}}}})
    assert len(skipped) == 4  # a hit rate is never healthy above 100%: nothing to test from
    assert skipped[0] == ("cacheHitRate warning short of the level: no healthy value above a "
                          "warning level of 1")
    _, skipped = _generated({"alerts": {"thresholds": {"errorRate": {
        "warning": 0.999, "critical": 1.0}}}})
    assert skipped == ["errorRate critical past the level: 1.001 is not a ratio"]


def _rules_object(kind: str) -> dict:
    return {"kind": kind, "metadata": {"name": "shop-alerts", "namespace": "team-a", "labels": {
        "app.kubernetes.io/managed-by": "perf-operator", "perf.idp.io/profile": "shop"}}}


def test_loaded_group_with_every_rule_is_loaded():
    group = {"name": "perf-operator.team-a.shop", "rules": [{}, {}, {}]}
    assert rules_not_loaded(group, {"perf-operator.team-a.shop": 3, "other": 1},
                            "http://prom:9090", _rules_object("PrometheusRule")) is None


def test_missing_group_names_the_rule_and_its_labels():
    group = {"name": "perf-operator.team-a.shop", "rules": [{}]}
    message = rules_not_loaded(group, {"other": 4}, "http://prom:9090",
                               _rules_object("PrometheusRule"))
    assert message == (
        "rule group perf-operator.team-a.shop is not loaded by the Prometheus at "
        "http://prom:9090 (1 other groups are): PrometheusRule team-a/shop-alerts is not "
        "selected; its Prometheus object's ruleSelector and ruleNamespaceSelector must select "
        "it (labels app.kubernetes.io/managed-by=perf-operator, perf.idp.io/profile=shop)")
    config_map = rules_not_loaded(group, {}, "http://prom:9090", _rules_object("ConfigMap"))
    assert "ConfigMap team-a/shop-alerts is not selected" in config_map
    assert "rule_files must include the perf-operator.rules.yaml file" in config_map


def test_older_version_of_the_group_is_not_loaded_yet():
    group = {"name": "g", "rules": [{}, {}, {}]}
    message = rules_not_loaded(group, {"g": 5}, "http://prom:9090",
                               _rules_object("PrometheusRule"))
    assert "another version of rule group g (5 rules" in message and "has 3" in message


def test_burn_rate_rules_are_chained_from_the_short_window_and_label_the_pair():
    from perf_operator.kube.alerts import profile_rule_group
    from perf_operator.kube.burnrate import BurnRate

    model = PerformanceProfileSpec.model_validate({"alerts": {"burnRate": {"enabled": True}}})
    rules = profile_rule_group(model, TARGET)["rules"]
    records = {r["record"]: r["expr"] for r in rules if "record" in r}
    assert 'rate(http_requests_total{namespace="prod",profile="shop",status=~"5.."}[5m])' in \
        records["perf_operator:error_ratio:rate5m"]
    assert records["perf_operator:error_ratio:rate3d"].startswith(
        "avg_over_time(perf_operator:error_ratio:rate5m{")
    burns = [r for r in rules if r.get("alert") == "ErrorBudgetBurn"]
    assert [(r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"])
            for r in burns] == [("page", "1h", "5m"), ("page", "6h", "30m"),
                                ("ticket", "1d", "2h"), ("ticket", "3d", "6h")]
    assert burns[0]["expr"].endswith("> 0.72")  # 14.4 x the 5 % budget
    assert any(r.get("alert") == "ErrorRateSLIAbsent" for r in rules)
    assert BurnRate.of_spec(PerformanceProfileSpec.model_validate({})) is None  # off by default
    bad = PerformanceProfileSpec.model_validate({"alerts": {"burnRate": {
        "enabled": True, "windows": [{"severity": "page", "longWindow": "1m",
                                      "shortWindow": "2m", "factor": 2}]}}})
    assert BurnRate.of_spec(bad).errors() == [
        "spec.alerts.burnRate.windows[0].shortWindow: at least 5m",
        "spec.alerts.burnRate.windows[0].longWindow: must be longer than shortWindow"]


def test_alert_tests_refuses_a_manifest_without_a_profile(tmp_path, capsys):
    from perf_operator.insight.cli import main as kubectl_perf

    manifest = tmp_path / "tenant.yaml"
    manifest.write_text("apiVersion: perf.idp.io/v1alpha1\nkind: TenantQuota\n"
                        "metadata: {name: acme}\nspec: {}\n")
    assert kubectl_perf(["alert-tests", str(manifest), str(tmp_path / "out")]) == 2
    assert "no PerformanceProfile in" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
