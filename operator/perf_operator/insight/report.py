"""``kubectl perf report <profile> --period hour|day|week [--html FILE]``: the performance
guide's report for one profile, from Prometheus and PostgreSQL.

Gathering (``gather``) reads: each signal's series over the period (the optimizer's queries,
narrowed to the profile, plus the API's p50 and p99), the top queries of
``pg_stat_statements``, the index catalog (``postgres.health``), the advisor's recommendations
(hypothetical indexes only, as the optimizer runs it), and the optimizer's decisions from the
profile's status. Summarising (``summarise``) and rendering are pure; the HTML is one file
with inline SVG charts and no script, and every text from a database is escaped.
"""
from __future__ import annotations

import datetime
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.profile import DatabaseSpec, PerformanceProfileSpec, signal_queries
from ..api.signals import SIGNAL_BY_NAME, for_profile, latency_quantile_query
from ..optimizer import advisor, prometheus_endpoint
from ..optimizer.policy import beyond, signal_targets
from ..postgres.connect import target_for_profile
from ..postgres.health import Finding, index_health, observe_index_facts
from ..scrub import scrub

PERIODS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
#: Points per chart (a point every 10 s over an hour).
POINTS = 360
TOP_QUERIES = 10
#: The report's extra latency quantiles (the p95 is a signal).
EXTRA_SERIES = {"apiResponseTimeP50Ms": (latency_quantile_query(0.5), "apiResponseTimeP95Ms"),
                "apiResponseTimeP99Ms": (latency_quantile_query(0.99), "apiResponseTimeP95Ms")}
#: An index with no scan is reported unused once the statistics cover this long.
DEFAULT_UNUSED_MIN_AGE_SECONDS = 7 * 86400.0


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]
    target: float | None
    critical: float | None
    #: The signal whose direction (which side is bad) the series shares.
    signal: str = "apiResponseTimeP95Ms"


@dataclass(frozen=True)
class SeriesSummary:
    name: str
    last: float | None
    mean: float | None
    peak: float | None
    target: float | None
    #: Seconds the series was on the bad side of its target within the period.
    seconds_over: float


@dataclass
class ReportData:
    profile: str
    period: str
    generated_at: datetime.datetime
    series: list[Series] = field(default_factory=list)
    slow_queries: list[dict[str, Any]] = field(default_factory=list)
    index_findings: list[Finding] = field(default_factory=list)
    index_usage: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- gathering

async def gather(profile: Mapping[str, Any], period: str, *,
                 unused_min_age_seconds: float = DEFAULT_UNUSED_MIN_AGE_SECONDS) -> ReportData:
    meta = profile["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = PerformanceProfileSpec.model_validate(profile.get("spec") or {})
    now = datetime.datetime.now(datetime.UTC)
    data = ReportData(profile=f"{namespace}/{name}", period=period, generated_at=now)
    status = profile.get("status") or {}
    optimization = status.get("optimization") or {}
    data.decisions = list(optimization.get("history") or [])
    data.recommendations = list(optimization.get("recommendations") or [])
    if spec.prometheus is not None:
        try:
            data.series = await _series(namespace, name, spec, now, PERIODS[period])
        except Exception as err:  # noqa: BLE001 - a report without the part, saying why
            data.problems.append(f"Prometheus not read: {scrub(err)}")
    else:
        data.problems.append("no spec.prometheus: no signals")
    if spec.database is not None:
        try:
            await _database(data, namespace, name, spec, spec.database, unused_min_age_seconds)
        except Exception as err:  # noqa: BLE001
            data.problems.append(f"PostgreSQL not read: {scrub(err)}")
    return data


async def _series(namespace: str, name: str, spec: PerformanceProfileSpec,
                  now: datetime.datetime, seconds: int) -> list[Series]:
    connection = (await prometheus_endpoint(namespace, spec.prometheus)).connect()
    targets = signal_targets(spec)
    thresholds = spec.alerts.thresholds
    queries = {n: (q, n) for n, q in signal_queries(spec, optimizer=True).items()}
    queries.update(EXTRA_SERIES)
    start = now - datetime.timedelta(seconds=seconds)
    step = max(1, seconds // POINTS)

    async def read(query: str) -> list[tuple[float, float]]:
        result = await connection.query_range(for_profile(query, namespace, name), start, now,
                                              step)
        if not result:
            return []
        return [(float(t), float(v)) for t, v in result[0]["values"] if math.isfinite(float(v))]

    series = []
    try:
        for signal, (query, like) in queries.items():
            points = await read(query)
            threshold = getattr(thresholds, _snake(like), None)
            series.append(Series(signal, tuple(points), targets.get(like),
                                 threshold.critical if threshold is not None else None,
                                 like if like in SIGNAL_BY_NAME else "apiResponseTimeP95Ms"))
    finally:
        await connection.aclose()
    return series


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


_SLOW_QUERIES = r"""
SELECT query, calls, mean_exec_time, total_exec_time, rows
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND calls > 0
  -- not the catalog reads of the operator, the advisor or this report
  AND query !~* '^\s*(EXPLAIN|PREPARE|DEALLOCATE|SET|SHOW)\M'
  AND query !~* '\m(pg_stat_statements|pg_stat_\w+|pg_index|pg_class|pg_namespace|pg_settings|pg_extension|set_config|hypopg\w*)\M'
ORDER BY mean_exec_time DESC LIMIT %s
"""


async def _database(data: ReportData, namespace: str, name: str, spec: PerformanceProfileSpec,
                    database: DatabaseSpec, unused_min_age_seconds: float) -> None:
    target = await target_for_profile(namespace, name, database.resolved_connection)
    async with target.connection() as conn:
        facts = await observe_index_facts(conn)
        if "pg_stat_statements" not in await advisor.missing_extensions(conn):
            rows = await (await conn.execute(_SLOW_QUERIES, (TOP_QUERIES,))).fetchall()
            data.slow_queries = [{"query": q, "calls": c, "meanMs": m, "totalMs": t, "rows": r}
                                 for q, c, m, t, r in rows]
        else:
            data.problems.append("pg_stat_statements is not installed in the database: no "
                                 "slow queries")
    data.index_findings = index_health(facts, unused_min_age_seconds=unused_min_age_seconds)
    data.index_usage = [{"index": f.qualified, "scans": f.scans, "sizeBytes": f.size_bytes}
                        for f in sorted(facts, key=lambda f: -f.size_bytes)[:20]]
    try:
        async with target.ddl_connection(lock_timeout_ms=advisor.LOCK_TIMEOUT_MS,
                                         statement_timeout_ms=advisor.STATEMENT_TIMEOUT_MS
                                         ) as conn:
            found = await advisor.advise(conn, application_role=database.application_role,
                                         min_saving=spec.optimization.min_index_saving)
        data.recommendations = [r.model_dump(mode="json", by_alias=True) for r in found]
    except advisor.AdvisorUnavailable as err:
        data.problems.append(str(err))


# ---------------------------------------------------------------------------- summarising

def summarise(series: Series) -> SeriesSummary:
    values = [v for _, v in series.points]
    over = 0.0
    if series.target is not None:
        for (t0, v0), (t1, _) in zip(series.points, series.points[1:]):
            if beyond(series.signal, v0, series.target):
                over += t1 - t0
    return SeriesSummary(series.name, values[-1] if values else None,
                         sum(values) / len(values) if values else None,
                         (min(values) if SIGNAL_BY_NAME[series.signal].worse == "lower"
                          else max(values))
                         if values else None, series.target, over)


def advice(data: ReportData) -> list[str]:
    """Recommendations in words, from the findings."""
    lines = []
    for summary in map(summarise, data.series):
        if summary.seconds_over > 0:
            lines.append(f"{summary.name} missed its target ({summary.target:g}) for "
                         f"{_duration(summary.seconds_over)} of the {data.period}")
    for finding in data.index_findings:
        act = {"unused": "drop it if nothing seasonal needs it",
               "duplicate": "drop it", "overlap": "drop it unless it is much smaller",
               "bloated": "REINDEX CONCURRENTLY it", "invalid": "drop it"}[finding.kind]
        lines.append(f"index {finding.index} is {finding.kind}: {act}")
    for rec in data.recommendations:
        lines.append(f"create index {rec['name']} on {rec['table']} "
                     f"({', '.join(rec['columns'])}): saves {rec['saving']:.0%} of the cost "
                     f"of: {rec['query']}")
    return lines


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


# ------------------------------------------------------------------------------- text

def render_text(data: ReportData) -> str:
    out = [f"Performance report for {data.profile}, last {data.period} "
           f"(generated {data.generated_at:%Y-%m-%d %H:%M} UTC)", "", "Signals:"]
    out.append(f"  {'signal':<24} {'last':>10} {'mean':>10} {'worst':>10} {'target':>10}  "
               f"time over target")
    for s in map(summarise, data.series):
        out.append(f"  {s.name:<24} {_num(s.last):>10} {_num(s.mean):>10} {_num(s.peak):>10} "
                   f"{_num(s.target):>10}  {_duration(s.seconds_over)}")
    out += ["", "Slowest queries (pg_stat_statements, mean time):"]
    for q in data.slow_queries:
        out.append(f"  {q['meanMs']:10.2f} ms x {q['calls']:<8} {_one_line(q['query'])}")
    out += ["", "Index health:"]
    out += [f"  {f.kind:<9} {f.index} ({f.size_bytes} bytes): {f.detail}"
            for f in data.index_findings] or ["  nothing to report"]
    out += ["", "Missing indexes (advisor, hypothetical indexes):"]
    out += [f"  {r['name']} on {r['table']} ({', '.join(r['columns'])}): saves "
            f"{r['saving']:.0%}" for r in data.recommendations] or ["  none"]
    out += ["", "Optimizer actions:"]
    out += [f"  {d.get('at')} {d.get('action')} {d.get('direction')}: {d.get('change')} "
            f"({'applied' if d.get('applied') else 'recommended'}; {d.get('result') or '-'})"
            for d in data.decisions] or ["  none"]
    out += ["", "Recommendations:"] + [f"  - {line}" for line in advice(data)]
    out += [f"  ! {p}" for p in data.problems]
    return "\n".join(out)


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# -------------------------------------------------------------------------------- HTML

def _chart(series: Series, width: int = 440, height: int = 150) -> str:
    """An SVG line chart of the series with its target (orange) and critical (red) lines."""
    points = series.points
    levels = [v for v in (series.target, series.critical) if v is not None]
    values = [v for _, v in points] + levels
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        high = low + 1
    t0, t1 = (points[0][0], points[-1][0]) if len(points) > 1 else (0.0, 1.0)
    pad = 30

    def x(t: float) -> float:
        return pad + (t - t0) / ((t1 - t0) or 1) * (width - 2 * pad)

    def y(v: float) -> float:
        return height - pad - (v - low) / (high - low) * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(series.name)}">',
             f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>',
             f'<text x="{pad}" y="16" font-size="12">{html.escape(series.name)}</text>']
    for level, colour in ((series.target, "#e69500"), (series.critical, "#d00")):
        if level is not None:
            parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y(level):.1f}" '
                         f'y2="{y(level):.1f}" stroke="{colour}" stroke-dasharray="4 3"/>')
    if len(points) > 1:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" '
                     f'points="{path}"/>')
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" font-size="12" '
                     f'text-anchor="middle">no data</text>')
    parts.append(f'<text x="2" y="{y(high) + 4:.1f}" font-size="10">{_num(high)}</text>'
                 f'<text x="2" y="{y(low):.1f}" font-size="10">{_num(low)}</text></svg>')
    return "".join(parts)


def _bars(usage: Sequence[Mapping[str, Any]], width: int = 560) -> str:
    """Index size bars, scans as labels: the large indexes nobody scans stand out."""
    row = 18
    height = row * len(usage) + 10
    biggest = max((u["sizeBytes"] for u in usage), default=1) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="index usage">']
    for i, u in enumerate(usage):
        bar = max(1.0, u["sizeBytes"] / biggest * (width - 260))
        colour = "#d00" if u["scans"] == 0 else "#2da44e"
        parts.append(f'<text x="0" y="{i * row + 13}" font-size="11">'
                     f'{html.escape(u["index"][:34])}</text>'
                     f'<rect x="200" y="{i * row + 3}" width="{bar:.1f}" height="12" '
                     f'fill="{colour}"/><text x="{204 + bar:.1f}" y="{i * row + 13}" '
                     f'font-size="10">{u["scans"]} scans</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: ReportData) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s.name)}</td><td>{_num(s.last)}</td><td>{_num(s.mean)}</td>"
        f"<td>{_num(s.peak)}</td><td>{_num(s.target)}</td><td>{_duration(s.seconds_over)}</td>"
        f"</tr>" for s in map(summarise, data.series))
    charts = "".join(f"<div class=chart>{_chart(s)}</div>" for s in data.series if s.points)
    silent = ", ".join(s.name for s in data.series if not s.points)
    if silent:
        charts += f"<p>No data over the period: {e(silent)}.</p>"
    slow = "".join(f"<tr><td>{q['meanMs']:.2f}</td><td>{q['calls']}</td>"
                   f"<td><code>{e(_one_line(q['query'], 300))}</code></td></tr>"
                   for q in data.slow_queries)
    findings = "".join(f"<tr><td>{e(f.kind)}</td><td>{e(f.index)}</td><td>{f.size_bytes}</td>"
                       f"<td>{e(f.detail)}</td></tr>" for f in data.index_findings)
    recs = "".join(f"<li>{e(line)}</li>" for line in advice(data))
    decisions = "".join(f"<li>{e(str(d.get('at')))} {e(str(d.get('action')))}: "
                        f"{e(str(d.get('change')))}</li>" for d in data.decisions)
    problems = "".join(f"<li>{e(p)}</li>" for p in data.problems)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Performance report {e(data.profile)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}}
.chart{{display:inline-block;margin:4px}}code{{font-size:12px}}</style></head><body>
<h1>Performance report: {e(data.profile)}</h1>
<p>Last {e(data.period)}, generated {data.generated_at:%Y-%m-%d %H:%M} UTC.</p>
<h2>Signals against targets</h2>
<table><tr><th>signal</th><th>last</th><th>mean</th><th>worst</th><th>target</th>
<th>time over target</th></tr>{rows}</table>
<div id="charts">{charts}</div>
<h2>Slowest queries</h2><table><tr><th>mean ms</th><th>calls</th><th>query</th></tr>{slow}</table>
<h2>Index health</h2><table><tr><th>finding</th><th>index</th><th>bytes</th><th>detail</th></tr>
{findings}</table>
<h3>Index usage (largest)</h3><div id="usage">{_bars(data.index_usage)}</div>
<h2>Optimizer actions</h2><ul>{decisions or '<li>none</li>'}</ul>
<h2>Recommendations</h2><ul>{recs or '<li>none</li>'}</ul>
<ul class=problems>{problems}</ul>
</body></html>
"""


def as_data(data: ReportData) -> dict[str, Any]:
    return {"profile": data.profile, "period": data.period,
            "generatedAt": data.generated_at.isoformat(),
            "signals": [{"name": s.name, "last": s.last, "mean": s.mean, "worst": s.peak,
                         "target": s.target, "secondsOver": s.seconds_over}
                        for s in map(summarise, data.series)],
            "slowQueries": data.slow_queries,
            "indexHealth": [f.as_data() for f in data.index_findings],
            "indexUsage": data.index_usage, "recommendations": data.recommendations,
            "optimizerActions": data.decisions, "advice": advice(data),
            "problems": data.problems}
