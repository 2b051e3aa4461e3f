"""Prometheus alerting rules from a profile's ``alerts`` section.

One rule group per profile. Each signal (API response time, error rate, ...) becomes a recording
rule that evaluates the signal's PromQL once (``perf_operator:<signal>``, labelled with the
profile; a default query, grouped by namespace and profile, is narrowed to this profile's
series), and two alerting rules on that series:

* ``warning`` while the value is past the warning level but not past the critical one,
* ``critical`` once it is past the critical level.

Warning and critical share the alert name and differ by the ``severity`` label, and the warning
covers only the band up to the critical level: the alert escalates instead of doubling, which is
the seed's "automatic alert escalation". ``for`` is the seed's cooldown: the value must stay past
the level that long before the alert fires. Annotations carry a summary, the measured value
(rendered by Prometheus from ``$value``) and the seed's troubleshooting advice.

The rules go into a ``monitoring.coreos.com/v1`` PrometheusRule when the Prometheus Operator's
CRD is served, otherwise into a ConfigMap holding a rule file (key ``perf-operator.rules.yaml``)
for a Prometheus that loads rule files. ``kubectl perf alert-tests`` (``insight/alerttests.py``)
generates promtool unit tests proving that every threshold fires where it says.

Writing the rules proves nothing about alerting: a Prometheus Operator whose ``ruleSelector``
wants a label the PrometheusRule lacks loads nothing, silently. So when the profile names a
Prometheus (``spec.prometheus``), AlertsReady also asks it (``/api/v1/rules``) whether the group
is loaded, and says ``RulesNotLoaded`` with the object's labels when it is not. That condition
leaves Ready alone: the operator's part is done, the monitoring stack's selection is not.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml

from ..api import DEFAULT_SIGNAL_QUERIES, signal_queries
from ..api.conditions import (ALERTS_DISABLED, ALERTS_READY, BURN_RATE_WINDOWS_INVALID,
                              RULES_APPLIED, RULES_NOT_LOADED)
from ..api.signals import for_profile
from ..reconcile import Outcome, ProfileContext
from .burnrate import BurnRate, burn_rules
from . import apply as k8s

#: Key of the rule file in the fallback ConfigMap.
RULE_FILE_KEY = "perf-operator.rules.yaml"


@dataclass(frozen=True)
class SignalFormat:
    """How a signal reads to a person; ``template`` (Go, rendered by Prometheus) and
    :meth:`render` (Python) must produce the same text, the promtool tests compare them."""

    kind: str  # "ms", "ratio", "mb", "count", "per-minute"

    @property
    def template(self) -> str:
        return {"ms": '{{ printf "%.4g" $value }}ms',
                "ratio": "{{ $value | humanizePercentage }}",
                "mb": '{{ printf "%.4g" $value }}MB',
                "count": "{{ $value | humanize }}",
                "per-minute": "{{ $value | humanize }}/min"}[self.kind]

    def render(self, value: float) -> str:
        return {"ms": lambda v: f"{_go_g4(v)}ms",
                "ratio": lambda v: f"{_go_g4(v * 100)}%",
                "mb": lambda v: f"{_go_g4(v)}MB",
                "count": humanize,
                "per-minute": lambda v: f"{humanize(v)}/min"}[self.kind](value)


@dataclass(frozen=True)
class SignalInfo:
    """What the operator knows about one signal besides its thresholds and query."""

    alert: str
    title: str
    format: SignalFormat
    recommendation: str


_DB_ADVICE = ("Check slow queries (GET /api/monitoring/database) and analyze their plans with "
              "EXPLAIN ANALYZE.")
_MEMORY_ADVICE = ("Check memory metrics (GET /api/monitoring/memory) and force garbage "
                  "collection (POST /api/monitoring/gc).")
_WEBSOCKET_ADVICE = ("Check connection stats (GET /api/monitoring/websocket) and force "
                     "connection cleanup (POST /api/websocket/cleanup).")

#: Every signal with alert thresholds (``api.ALERT_SIGNAL_NAMES``); recommendations are the
#: seed's troubleshooting guide and auto-optimization triggers.
SIGNALS: dict[str, SignalInfo] = {
    "apiResponseTimeMs": SignalInfo(
        "ApiResponseTimeHigh", "API average response time", SignalFormat("ms"),
        "Response time degradation: warm the cache for slow endpoints (POST /api/cache/warm), "
        "scale the connection pool and review query optimization recommendations "
        "(GET /api/performance/report)."),
    "errorRate": SignalInfo(
        "ApiErrorRateHigh", "API server error rate", SignalFormat("ratio"),
        "Error rate spike: activate the circuit breaker, serve cached fallback responses and "
        "shed load for non-critical requests."),
    "dbQueryTimeMs": SignalInfo(
        "DatabaseQueryTimeHigh", "Database average query time", SignalFormat("ms"),
        "Database performance: " + _DB_ADVICE),
    "poolUtilization": SignalInfo(
        "DatabasePoolUtilizationHigh", "Database connection pool utilization",
        SignalFormat("ratio"),
        "Connection pool pressure: " + _DB_ADVICE + " Then raise the pool maximum "
        "(database.pool.max, seed DB_POOL_MAX) within PostgreSQL's max_connections."),
    "memoryUsage": SignalInfo(
        "MemoryUsageHigh", "Heap memory usage", SignalFormat("ratio"),
        "High memory usage: " + _MEMORY_ADVICE),
    "memoryGrowthMB": SignalInfo(
        "MemoryGrowthHigh", "Heap growth over the last hour", SignalFormat("mb"),
        "Possible memory leak: " + _MEMORY_ADVICE + " Remove stale WebSocket connections "
        "(POST /api/websocket/cleanup)."),
    "websocketConnections": SignalInfo(
        "WebSocketConnectionsHigh", "Open WebSocket connection count", SignalFormat("count"),
        "WebSocket issues: " + _WEBSOCKET_ADVICE),
    "messageRatePerMinute": SignalInfo(
        "WebSocketMessageRateHigh", "WebSocket message rate", SignalFormat("per-minute"),
        "WebSocket issues: " + _WEBSOCKET_ADVICE + " Lower the tenants' message rate limits "
        "if one tenant dominates."),
    "cacheHitRate": SignalInfo(
        "CacheHitRateLow", "Cache hit rate", SignalFormat("ratio"),
        "Cache miss rate: check cache statistics (GET /api/monitoring/cache) and warm the cache "
        "for the affected tenant (POST /api/cache/warm)."),
}


@dataclass(frozen=True)
class AlertSignal:
    """One signal as the profile configures it."""

    name: str
    info: SignalInfo
    query: str
    warning: float
    critical: float
    for_: str

    @property
    def falling(self) -> bool:
        """Bad when low (cache hit rate): the API's threshold rules make warning > critical."""
        return self.warning > self.critical

    @property
    def grouped(self) -> bool:
        """The default query, grouped by namespace and profile (an override yields one
        number)."""
        return self.query == DEFAULT_SIGNAL_QUERIES.get(self.name)

    def expression(self, target: RuleTarget) -> str:
        """The recording rule's PromQL: one number for the target's profile."""
        return for_profile(self.query, target.namespace, target.profile) if self.grouped \
            else self.query

    @property
    def record(self) -> str:
        return "perf_operator:" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", self.name).lower()


@dataclass(frozen=True)
class RuleTarget:
    """Whose rules these are: the labels that tell one profile's alerts from another's."""

    profile: str
    namespace: str
    extra_labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of_profile(cls, name: str, namespace: str, spec: Any) -> RuleTarget:
        return cls(name, namespace, tuple(sorted((spec.alerts.labels or {}).items())))

    @property
    def series_labels(self) -> dict[str, str]:
        return {"profile": self.profile, "profile_namespace": self.namespace}


def alert_signals(spec: Any) -> list[AlertSignal]:
    """The profile's signals with their thresholds and PromQL (defaults, then alerts.metrics)."""
    queries = signal_queries(spec)
    thresholds = spec.alerts.thresholds
    signals = []
    for field_name, field in type(thresholds).model_fields.items():
        name = field.alias or field_name
        level = getattr(thresholds, field_name)
        signals.append(AlertSignal(name=name, info=SIGNALS[name], query=queries[name],
                                   warning=level.warning, critical=level.critical,
                                   for_=level.for_))
    return signals


def profile_rule_group(spec: Any, target: RuleTarget) -> dict[str, Any]:
    """The profile's rule group: its threshold alerts, and its burn-rate alerts if enabled."""
    return rule_group(alert_signals(spec), target, BurnRate.of_spec(spec))


def rule_group(signals: list[AlertSignal], target: RuleTarget, burn: BurnRate | None = None
               ) -> dict[str, Any]:
    """The rule group of one profile, in the shape both a rule file and a PrometheusRule use."""
    rules: list[dict[str, Any]] = []
    selector = ",".join(f'{k}="{v}"' for k, v in target.series_labels.items())
    for signal in signals:
        rules.append({"record": signal.record, "expr": signal.expression(target),
                      "labels": dict(target.series_labels)})
        series = f"{signal.record}{{{selector}}}"
        past, short_of = ("<", ">=") if signal.falling else (">", "<=")
        bands = (("warning", f"{series} {past} {promql_number(signal.warning)} "
                             f"{short_of} {promql_number(signal.critical)}", signal.warning),
                 ("critical", f"{series} {past} {promql_number(signal.critical)}", signal.critical))
        for severity, expr, level in bands:
            rules.append({
                "alert": signal.info.alert,
                "expr": expr,
                "for": signal.for_,
                "labels": {**dict(target.extra_labels), "severity": severity},
                "annotations": {
                    "summary": summary(signal, target, severity, level),
                    "value": signal.info.format.template,
                    "recommendation": signal.info.recommendation,
                },
            })
    if burn is not None:
        rules += burn_rules(burn, target.namespace, target.profile, target.series_labels,
                            dict(target.extra_labels))
    return {"name": f"perf-operator.{target.namespace}.{target.profile}", "rules": rules}


def summary(signal: AlertSignal, target: RuleTarget, severity: str, level: float) -> str:
    direction = "below" if signal.falling else "above"
    return (f"{signal.info.title} of profile {target.namespace}/{target.profile} is {direction} "
            f"{signal.info.format.render(level)} ({severity})")


#: libyaml's emitter when PyYAML has it: the same text, six times faster, and the rule file is
#: rendered on every resync to be compared.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def rule_file(group: dict[str, Any]) -> str:
    """A Prometheus rule file; byte-stable for the same group (no write when nothing changed)."""
    return yaml.dump({"groups": [group]}, Dumper=_DUMPER, sort_keys=False, width=1 << 16)


def alert_rule_count(group: dict[str, Any]) -> int:
    return sum(1 for rule in group["rules"] if "alert" in rule)


def desired_rules_object(kind: k8s.Kind, ctx: ProfileContext, group: dict[str, Any]
                         ) -> dict[str, Any]:
    body = k8s.owned_object(kind, rules_object_name(ctx.name), ctx.name, ctx.namespace,
                            ctx.owner_reference(), component="alerts")
    if kind == k8s.PROMETHEUS_RULE:
        body["spec"] = {"groups": [group]}
    else:
        body["data"] = {RULE_FILE_KEY: rule_file(group)}
    return body


def rules_object_name(profile: str) -> str:
    return k8s.object_name(profile, "alerts")


# --- executor -------------------------------------------------------------------------------

CONDITION = ALERTS_READY


async def reconcile_alerts(ctx: ProfileContext) -> Outcome | None:
    """Keep the profile's rule group in a PrometheusRule (or the fallback ConfigMap)."""
    previous = ctx.status.get("alerts") or {}
    if not ctx.spec.alerts.enabled:
        if not previous:
            return None
        await _remove(_KINDS.get(str(previous.get("kind"))), ctx)
        return Outcome(condition=CONDITION, ready=True, reason=ALERTS_DISABLED,
                       message="alerts.enabled is false: the operator's rules were removed",
                       status={"alerts": None})
    kind = (k8s.PROMETHEUS_RULE if await k8s.served(k8s.PROMETHEUS_RULE.api_version,
                                                    k8s.PROMETHEUS_RULE.plural)
            else k8s.CONFIG_MAP)
    if previous.get("kind") not in (None, kind.kind):
        await _remove(_KINDS[previous["kind"]], ctx)
    burn = BurnRate.of_spec(ctx.spec)
    if burn is not None and burn.errors():
        return Outcome(condition=CONDITION, ready=False, reason=BURN_RATE_WINDOWS_INVALID,
                       message="; ".join(burn.errors()))
    group = profile_rule_group(ctx.spec, RuleTarget.of_profile(ctx.name, ctx.namespace,
                                                               ctx.spec))
    desired = desired_rules_object(kind, ctx, group)
    name = desired["metadata"]["name"]
    where = f"{kind.kind} {name}"
    observed = await k8s.get_object(kind, ctx.namespace, name)
    step = k8s.plan_owned(desired, observed, ctx.uid,
                          top_level="data" if kind == k8s.CONFIG_MAP else "spec",
                          previously_applied=previous.get("kind") == kind.kind)
    failed = await k8s.carry_out(step, status=ctx.status, events=ctx.events,
                                 condition=CONDITION, where=where,
                                 conflict_hint="delete it to let the operator write its own")
    if failed is not None:
        return failed
    alerting = alert_rule_count(group)
    status = {"alerts": {"kind": kind.kind, "name": name}}
    if ctx.spec.prometheus is not None:
        loaded = await _loaded_rule_groups(ctx)
        if loaded is not None:
            missing = rules_not_loaded(group, loaded, ctx.spec.prometheus.url, desired)
            if missing:
                return Outcome(condition=CONDITION, ready=False, reason=RULES_NOT_LOADED,
                               message=missing, status=status, affects_ready=False)
    return Outcome(condition=CONDITION, ready=True, reason=RULES_APPLIED,
                   message=f"{alerting} alerting rules for {len(group['rules']) - alerting} "
                           f"signals in {where}",
                   status=status)


def rules_not_loaded(group: dict[str, Any], loaded: dict[str, int], url: str,
                     rules_object: dict[str, Any]) -> str | None:
    """Why the Prometheus at ``url`` (whose loaded groups and their rule counts are ``loaded``)
    does not evaluate ``group``, or None when it does. A rules object that nothing selects is
    the usual cause (a Prometheus Operator's ``ruleSelector`` wanting a label the object does
    not carry), so the message names the object's labels."""
    name, expected = group["name"], len(group["rules"])
    metadata = rules_object["metadata"]
    where = f"{rules_object['kind']} {metadata['namespace']}/{metadata['name']}"
    if name not in loaded:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(metadata["labels"].items()))
        selects = ("its Prometheus object's ruleSelector and ruleNamespaceSelector must select "
                   f"it (labels {labels})" if rules_object["kind"] == "PrometheusRule"
                   else f"its rule_files must include the {RULE_FILE_KEY} file of this ConfigMap")
        return (f"rule group {name} is not loaded by the Prometheus at {url} "
                f"({len(loaded)} other groups are): {where} is not selected; {selects}")
    if loaded[name] != expected:
        return (f"the Prometheus at {url} has another version of rule group {name} "
                f"({loaded[name]} rules, {where} has {expected}): it has not reloaded yet")
    return None


#: Upper bound of a /api/v1/rules answer the operator reads (one group per profile).
_RULES_RESPONSE_LIMIT = 16 * 1024 * 1024


async def _loaded_rule_groups(ctx: ProfileContext) -> dict[str, int] | None:
    """Rule group name -> rule count as the profile's Prometheus has loaded them, or None when
    it cannot be asked (unreachable, refused: MetricsStale reports that)."""
    # the optimizer imports this package, and the Secret reader the kube client
    from ..optimizer import prometheus_endpoint
    from ..secrets import SecretError
    from ..targets.policy import ConnectionRefused

    try:
        endpoint = await prometheus_endpoint(ctx.namespace, ctx.spec.prometheus)
        timeout = aiohttp.ClientTimeout(total=endpoint.timeout_seconds)
        async with endpoint.session(timeout=timeout) as session:
            async with session.get(endpoint.url.rstrip("/") + "/api/v1/rules",
                                   allow_redirects=False) as response:
                if response.status != 200:
                    return None
                body = await response.content.read(_RULES_RESPONSE_LIMIT + 1)
    except (aiohttp.ClientError, TimeoutError, ConnectionRefused, SecretError):
        return None
    if len(body) > _RULES_RESPONSE_LIMIT:
        return None
    try:
        groups = json.loads(body)["data"]["groups"]
        return {g["name"]: len(g.get("rules") or []) for g in groups}
    except (ValueError, KeyError, TypeError):
        return None


_KINDS = {k.kind: k for k in (k8s.PROMETHEUS_RULE, k8s.CONFIG_MAP)}


async def _remove(kind: k8s.Kind | None, ctx: ProfileContext) -> None:
    """Delete the rules object of this profile (never one it does not own)."""
    if kind is None:
        return
    name = rules_object_name(ctx.name)
    observed = await k8s.get_object(kind, ctx.namespace, name)
    if observed and k8s.owned_by(observed, ctx.uid):
        if await k8s.delete_owned(kind, ctx.namespace, name, observed["metadata"]["uid"]):
            ctx.events.normal("Deleted", f"deleted {kind.kind} {name}")


# --- Prometheus's number formatting, for values in annotations ------------------------------

def promql_number(value: float) -> str:
    """A threshold as PromQL reads it: 5000, not 5000.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _go_g4(value: float) -> str:
    """Go's ``%.4g`` (Python's is the same for finite numbers: shortest form, no trailing
    zeros, two-digit exponent)."""
    return f"{value:.4g}"


def humanize(value: float) -> str:
    """Prometheus's ``humanize`` template function (SI prefixes, 4 significant digits)."""
    if value == 0:
        return _go_g4(value)
    if abs(value) >= 1:
        prefix = ""
        for candidate in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = candidate
            value /= 1000
        return f"{_go_g4(value)}{prefix}"
    prefix = ""
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return f"{_go_g4(value)}{prefix}"
