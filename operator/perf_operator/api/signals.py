"""The signals the operator measures, and the PromQL that measures each one by default.

One copy, used by the alerting rules (``kube/alerts.py``) and the optimizer
(``optimizer/signals.py``); a profile overrides a query with ``alerts.metrics`` or
``optimization.signals``.

Every default query is grouped ``by (namespace, profile)``: one query answers for every profile
that reads the same Prometheus, so a cycle of the optimizer costs one query per signal whether
one profile or a thousand use it, and an alerting rule picks its own profile's series. The
application's series must carry those two labels: ``namespace`` (the profile's namespace) and
``profile`` (its name), for example relabelled from a pod label ``perf.idp.io/profile``.

Missing data is never zero. Queries over a rate window would go on answering for the whole
window after the application stopped reporting, so they are joined (``and on``) with the raw
series, which Prometheus marks stale at the first failed scrape.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: The labels every default query groups by, and by which a result is matched to a profile.
GROUP_LABELS = ("namespace", "profile")
_BY = ", ".join(GROUP_LABELS)


def _by(expression: str) -> str:
    return f"sum by ({_BY}) ({expression})"


def _while_reported(expression: str, raw_series: str) -> str:
    """``expression`` only for the profiles whose ``raw_series`` are currently scraped."""
    return f"({expression}) and on ({_BY}) group by ({_BY}) ({raw_series})"


def _ratio_or_zero(part: str, whole: str) -> str:
    """part / whole, where a missing ``part`` (no error was ever counted) is 0, not missing."""
    return f"({_by(part)} or {_by(whole)} * 0) / {_by(whole)}"


@dataclass(frozen=True)
class SignalDefinition:
    name: str
    #: Default PromQL, grouped by GROUP_LABELS, in the unit the name states.
    query: str
    #: Which direction is bad: most signals hurt when high, the cache hit rate when low.
    worse: Literal["higher", "lower"]


_REQUESTS = "http_request_duration_seconds"
_QUERIES = "db_query_duration_seconds"

def latency_quantile_query(quantile: float) -> str:
    """The API's latency at ``quantile``, in ms: the p95 signal's query, and the report's p50
    and p99."""
    return _while_reported(f"1000 * histogram_quantile({quantile:g}, sum by ({_BY}, le) "
                           f"(rate({_REQUESTS}_bucket[5m])))", f"{_REQUESTS}_count")


#: The signals, named as in the profile's thresholds (``spec.alerts.thresholds``), plus the
#: API's 95th percentile the targets name (``targets.apiResponseTimeP95Ms``; no alert, the
#: optimizer's latency signal). Metric names follow prom-client's conventions.
SIGNALS: tuple[SignalDefinition, ...] = (
    SignalDefinition("apiResponseTimeP95Ms", latency_quantile_query(0.95), "higher"),
    SignalDefinition(
        "apiResponseTimeMs",
        _while_reported(f"1000 * {_by(f'rate({_REQUESTS}_sum[5m])')} / "
                        f"{_by(f'rate({_REQUESTS}_count[5m])')}", f"{_REQUESTS}_count"),
        "higher"),
    SignalDefinition(
        "errorRate",
        _while_reported(_ratio_or_zero('rate(http_requests_total{status=~"5.."}[5m])',
                                       "rate(http_requests_total[5m])"),
                        "http_requests_total"),
        "higher"),
    SignalDefinition(
        "dbQueryTimeMs",
        _while_reported(f"1000 * {_by(f'rate({_QUERIES}_sum[5m])')} / "
                        f"{_by(f'rate({_QUERIES}_count[5m])')}", f"{_QUERIES}_count"),
        "higher"),
    SignalDefinition(
        "poolUtilization",
        f"{_by('db_pool_connections_in_use')} / {_by('db_pool_connections_max')}",
        "higher"),
    SignalDefinition(
        "memoryUsage",
        f"{_by('nodejs_heap_size_used_bytes')} / {_by('nodejs_heap_size_total_bytes')}",
        "higher"),
    SignalDefinition(
        "memoryGrowthMB",
        _while_reported(f"{_by('delta(nodejs_heap_size_used_bytes[1h])')} / 1048576",
                        "nodejs_heap_size_used_bytes"),
        "higher"),
    SignalDefinition(
        "websocketConnections", _by("websocket_connections_active"), "higher"),
    SignalDefinition(
        "messageRatePerMinute",
        _while_reported(f"60 * {_by('rate(websocket_messages_total[5m])')}",
                        "websocket_messages_total"),
        "higher"),
    SignalDefinition(
        "cacheHitRate",
        _while_reported(f"{_by('rate(cache_hits_total[5m])')} / "
                        f"({_by('rate(cache_hits_total[5m])')} + "
                        f"({_by('rate(cache_misses_total[5m])')} or "
                        f"{_by('rate(cache_hits_total[5m])')} * 0))",
                        "cache_hits_total"),
        "lower"),
)
SIGNAL_BY_NAME: Mapping[str, SignalDefinition] = {s.name: s for s in SIGNALS}


def for_profile(query: str, namespace: str, profile: str) -> str:
    """A grouped query narrowed to one profile's series, without the grouping labels: one
    number, as an alerting rule of that profile wants it (the names are DNS labels, so they
    need no escaping)."""
    selector = (f'label_replace(label_replace(vector(1), "namespace", "{namespace}", "", ""), '
                f'"profile", "{profile}", "", "")')
    return f"sum without ({_BY}) (({query}) and on ({_BY}) {selector})"
