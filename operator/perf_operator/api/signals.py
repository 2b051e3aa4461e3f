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
#: The per-tenant view of the Grafana dashboard groups by the tenant too, for an application
#: whose series carry a ``tenant`` label (the operator itself never reads them per tenant).
TENANT_GROUP_LABELS = (*GROUP_LABELS, "tenant")
_BY = ", ".join(GROUP_LABELS)


@dataclass(frozen=True)
class SignalDefinition:
    name: str
    #: Default PromQL, grouped by GROUP_LABELS, in the unit the name states.
    query: str
    #: Which direction is bad: most signals hurt when high, the cache hit rate when low.
    worse: Literal["higher", "lower"]


_REQUESTS = "http_request_duration_seconds"
_QUERIES = "db_query_duration_seconds"


class _Grouping:
    """The PromQL building blocks of the signals, grouped by ``labels``."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.by = ", ".join(labels)

    def sum(self, expression: str) -> str:
        return f"sum by ({self.by}) ({expression})"

    def while_reported(self, expression: str, raw_series: str) -> str:
        """``expression`` only for the groups whose ``raw_series`` are currently scraped."""
        return f"({expression}) and on ({self.by}) group by ({self.by}) ({raw_series})"

    def ratio_or_zero(self, part: str, whole: str) -> str:
        """part / whole, where a missing ``part`` (no error was ever counted) is 0, not
        missing."""
        return f"({self.sum(part)} or {self.sum(whole)} * 0) / {self.sum(whole)}"

    def latency_quantile(self, quantile: float) -> str:
        return self.while_reported(f"1000 * histogram_quantile({quantile:g}, sum by "
                                   f"({self.by}, le) (rate({_REQUESTS}_bucket[5m])))",
                                   f"{_REQUESTS}_count")

    def mean(self, metric: str) -> str:
        return self.while_reported(f"1000 * {self.sum(f'rate({metric}_sum[5m])')} / "
                                   f"{self.sum(f'rate({metric}_count[5m])')}",
                                   f"{metric}_count")


def latency_quantile_query(quantile: float) -> str:
    """The API's latency at ``quantile``, in ms: the p95 signal's query, and the report's p50
    and p99."""
    return _Grouping(GROUP_LABELS).latency_quantile(quantile)


def signals_grouped_by(labels: tuple[str, ...]) -> tuple[SignalDefinition, ...]:
    """The signals, named as in the profile's thresholds (``spec.alerts.thresholds``), plus
    the API's 95th percentile the targets name (``targets.apiResponseTimeP95Ms``; no alert, the
    optimizer's latency signal), each grouped by ``labels``. Metric names follow prom-client's
    conventions."""
    g = _Grouping(labels)
    hits = g.sum("rate(cache_hits_total[5m])")
    return (
        SignalDefinition("apiResponseTimeP95Ms", g.latency_quantile(0.95), "higher"),
        SignalDefinition("apiResponseTimeMs", g.mean(_REQUESTS), "higher"),
        SignalDefinition(
            "errorRate",
            g.while_reported(g.ratio_or_zero('rate(http_requests_total{status=~"5.."}[5m])',
                                             "rate(http_requests_total[5m])"),
                             "http_requests_total"),
            "higher"),
        SignalDefinition("dbQueryTimeMs", g.mean(_QUERIES), "higher"),
        SignalDefinition(
            "poolUtilization",
            f"{g.sum('db_pool_connections_in_use')} / {g.sum('db_pool_connections_max')}",
            "higher"),
        SignalDefinition(
            "memoryUsage",
            f"{g.sum('nodejs_heap_size_used_bytes')} / {g.sum('nodejs_heap_size_total_bytes')}",
            "higher"),
        SignalDefinition(
            "memoryGrowthMB",
            g.while_reported(f"{g.sum('delta(nodejs_heap_size_used_bytes[1h])')} / 1048576",
                             "nodejs_heap_size_used_bytes"),
            "higher"),
        SignalDefinition("websocketConnections", g.sum("websocket_connections_active"),
                         "higher"),
        SignalDefinition(
            "messageRatePerMinute",
            g.while_reported(f"60 * {g.sum('rate(websocket_messages_total[5m])')}",
                             "websocket_messages_total"),
            "higher"),
        SignalDefinition(
            "cacheHitRate",
            g.while_reported(f"{hits} / ({hits} + "
                             f"({g.sum('rate(cache_misses_total[5m])')} or {hits} * 0))",
                             "cache_hits_total"),
            "lower"),
    )


SIGNALS: tuple[SignalDefinition, ...] = signals_grouped_by(GROUP_LABELS)
SIGNAL_BY_NAME: Mapping[str, SignalDefinition] = {s.name: s for s in SIGNALS}


def for_profile(query: str, namespace: str, profile: str) -> str:
    """A grouped query narrowed to one profile's series, without the grouping labels: one
    number, as an alerting rule of that profile wants it (the names are DNS labels, so they
    need no escaping)."""
    selector = (f'label_replace(label_replace(vector(1), "namespace", "{namespace}", "", ""), '
                f'"profile", "{profile}", "", "")')
    return f"sum without ({_BY}) (({query}) and on ({_BY}) {selector})"
