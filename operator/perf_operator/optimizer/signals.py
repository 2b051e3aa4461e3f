"""What the optimizer measures, and the one poller per Prometheus that measures it.

The signals and their default queries are the API's (``api/signals.py``, shared with the
alerting rules). Every default query is grouped ``by (namespace, profile)``: one query answers
for every profile that reads the same Prometheus, so a cycle costs one query per signal (plus
one per distinct override expression) whether one profile or a thousand use it. The
application's series must carry those two labels: ``namespace`` (the profile's namespace) and
``profile`` (its name), for example relabelled from a pod label ``perf.idp.io/profile``.

Missing data is never zero. A signal whose query failed, returned nothing for the profile or
returned NaN is *stale*, with the reason, and the policy freezes what depends on it. Queries
over a rate window would go on answering for the whole window after the application stopped
reporting, so they are joined (``and on``) with the raw series, which Prometheus marks stale
at the first failed scrape.

Reads are bounded, because the URL is the user's and may point at anything: they run on the
event loop (aiohttp, no thread held while waiting), each with a total deadline (the profile's
``timeoutSeconds``, connect and DNS included), a cap on the response body (read in chunks,
abandoned at :data:`MAX_RESPONSE_BYTES`) and at most :data:`MAX_PARALLEL_QUERIES` connections
per endpoint. A Prometheus that never answers or streams forever makes its own profiles' signals
stale and costs nobody else anything.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import aiohttp.abc
from aiohttp.abc import ResolveResult

from ..clock import utc_now
from ..api import signal_queries
from ..api.signals import GROUP_LABELS, SIGNAL_BY_NAME, SIGNALS, SignalDefinition
from ..scrub import scrub
from ..targets.policy import admit

#: Queries of one cycle running at the same time, and connections per endpoint.
MAX_PARALLEL_QUERIES = 4
#: Largest answer read: grouped by (namespace, profile), a thousand profiles' readings take
#: about 150 KB.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: A profile that has not asked for its readings for three of its intervals (and at least this
#: long) is deleted or turned off: its expressions leave the cycle.
MIN_REGISTRATION_SECONDS = 60.0


def profile_queries(spec: Any) -> dict[str, str]:
    """The PromQL of every signal for one profile: the grouped defaults, then the profile's
    ``alerts.metrics``, then ``optimization.signals``. An override is the user's own
    expression; it may be grouped by the same labels or yield a single number for this
    profile."""
    return signal_queries(spec, optimizer=True)


__all__ = ["GROUP_LABELS", "SIGNALS", "SIGNAL_BY_NAME", "PrometheusClient", "PrometheusEndpoint",
           "PrometheusPoller",
           "QueryResult", "SignalDefinition", "SignalReading", "Snapshot", "forget_profile",
           "poller_for", "profile_queries"]


@dataclass(frozen=True)
class SignalReading:
    """One signal of one profile. ``value`` is None exactly when ``stale``; never 0 for
    "no data"."""

    value: float | None
    stale: bool
    reason: str = ""

    @classmethod
    def fresh(cls, value: float) -> SignalReading:
        return cls(value=value, stale=False)

    @classmethod
    def missing(cls, reason: str) -> SignalReading:
        return cls(value=None, stale=True, reason=reason)


@dataclass(frozen=True)
class QueryResult:
    """The series one query returned (labels, value), or the error that replaced them."""

    series: tuple[tuple[Mapping[str, str], str], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """The results of one cycle, every query evaluated at the same instant ``at``."""

    at: datetime
    results: Mapping[str, QueryResult]
    seconds: float = 0.0

    def reading(self, query: str, namespace: str, profile: str) -> SignalReading:
        result = self.results.get(query)
        if result is None:
            return SignalReading.missing("NotQueried")
        if result.error is not None:
            return SignalReading.missing(f"QueryFailed: {result.error}")
        value = _match(result.series, namespace, profile)
        if value is None:
            return SignalReading.missing("NoData")
        try:
            number = float(value)
        except ValueError:
            return SignalReading.missing(f"NotANumber: {value[:40]}")
        if not math.isfinite(number):
            return SignalReading.missing(f"NotANumber: {value}")
        return SignalReading.fresh(number)


def _match(series: tuple[tuple[Mapping[str, str], str], ...], namespace: str,
           profile: str) -> str | None:
    """The value for this profile: the series labelled with it, or the only series of an
    ungrouped override (which then belongs to whoever asked for that expression)."""
    for labels, value in series:
        if labels.get("namespace") == namespace and labels.get("profile") == profile:
            return value
    if len(series) == 1 and "profile" not in series[0][0]:
        return series[0][1]
    return None


@dataclass(frozen=True)
class PrometheusEndpoint:
    """Which poller serves a profile: one per URL, login and timeout."""

    url: str
    timeout_seconds: int
    #: ("bearer", token) or ("basic", "user\\0password"); compared, never shown.
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    #: The PerformanceTarget that granted the URL's host (None: a profile's inline URL), for
    #: the connection policy that vets every connection (``targets.policy.admit``).
    granted_by: str | None = None

    def connect(self) -> PrometheusClient:
        """A bounded client of this Prometheus with its login: the poller's, the report's."""
        return PrometheusClient(self)

    def session(self, *, timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientSession:
        """An HTTP session with the endpoint's login, at most :data:`MAX_PARALLEL_QUERIES`
        connections, each to the address the connection policy vetted for the URL's host."""
        headers: dict[str, str] = {}
        auth = None
        if self.credentials and self.credentials[0] == "bearer":
            headers["Authorization"] = f"Bearer {self.credentials[1]}"
        elif self.credentials:
            user, _, password = self.credentials[1].partition("\0")
            auth = aiohttp.BasicAuth(user, password)
        connector = aiohttp.TCPConnector(limit_per_host=MAX_PARALLEL_QUERIES,
                                         resolver=AdmittedResolver(self.granted_by),
                                         use_dns_cache=False)
        return aiohttp.ClientSession(connector=connector, headers=headers, auth=auth,
                                     timeout=timeout or aiohttp.ClientTimeout())


class AdmittedResolver(aiohttp.abc.AbstractResolver):
    """Host names resolved by the connection policy (``targets.policy.admit``): a connection
    goes to the address that was checked, never to a second DNS answer (a name that resolved
    to an allowed address for the check cannot send the request elsewhere), and a host the
    policy refuses fails the request with ``ConnectionRefused``. aiohttp still verifies TLS
    against the URL's host name. IP literals do not reach a resolver: ``admit_url`` checked
    them and they cannot change."""

    def __init__(self, granted_by: str | None) -> None:
        self.granted_by = granted_by

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        address = await admit(host, port, granted_by=self.granted_by)
        version = ipaddress.ip_address(address).version
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if version == 6 else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


@dataclass
class _Registration:
    queries: frozenset[str]
    expires: float


class PrometheusPoller:
    """Reads every registered profile's signals with one query per distinct expression.

    There is no timer: a profile asks for readings no older than its interval, and the first
    caller that finds the last cycle too old (or missing one of its expressions) starts a new
    cycle that every concurrent caller shares. So the cycle rate is set by the shortest
    interval among the profiles, and the number of queries per cycle by the number of distinct
    expressions, not of profiles. Profiles that stop asking are forgotten.
    """

    def __init__(self, endpoint: PrometheusEndpoint) -> None:
        self.endpoint = endpoint
        self._client = endpoint.connect()
        self._registrations: dict[tuple[str, str], _Registration] = {}
        self._snapshot: Snapshot | None = None
        self._cycle: asyncio.Task[Snapshot] | None = None
        self._limit = asyncio.Semaphore(MAX_PARALLEL_QUERIES)
        #: Queries sent in the last cycle and cycles run, for the benchmark and the logs.
        self.last_query_count = 0
        self.cycles = 0

    async def readings(self, namespace: str, profile: str, queries: Mapping[str, str],
                       max_age: float) -> tuple[Snapshot, dict[str, SignalReading]]:
        """The profile's readings from a cycle at most ``max_age`` seconds old."""
        needed = frozenset(queries.values())
        self._registrations[(namespace, profile)] = _Registration(
            needed, time.monotonic() + max(3 * max_age, MIN_REGISTRATION_SECONDS))
        snapshot = self._snapshot
        age = (utc_now() - snapshot.at).total_seconds() if snapshot else math.inf
        if snapshot is None or age > max_age or not needed <= snapshot.results.keys():
            snapshot = await self._refresh(needed)
        return snapshot, {name: snapshot.reading(query, namespace, profile)
                          for name, query in queries.items()}

    def forget(self, namespace: str, profile: str) -> None:
        self._registrations.pop((namespace, profile), None)

    def expire(self) -> None:
        """Forget the profiles that stopped asking (deleted, or moved to another endpoint)."""
        now = time.monotonic()
        self._registrations = {key: reg for key, reg in self._registrations.items()
                               if reg.expires > now}

    @property
    def idle(self) -> bool:
        """No profile is registered and no cycle is running."""
        return not self._registrations and (self._cycle is None or self._cycle.done())

    async def _refresh(self, needed: frozenset[str]) -> Snapshot:
        # At most two rounds: a cycle already running may have started before this caller
        # registered its expressions; the next one includes them.
        for _ in range(2):
            if self._cycle is None or self._cycle.done():
                self._cycle = asyncio.ensure_future(self._run_cycle())
            snapshot = await asyncio.shield(self._cycle)
            if needed <= snapshot.results.keys():
                return snapshot
        return snapshot

    async def _run_cycle(self) -> Snapshot:
        self.expire()
        queries = sorted(set().union(*(reg.queries for reg in self._registrations.values())))
        at = utc_now().replace(microsecond=0)
        started = time.perf_counter()
        results = await asyncio.gather(*(self._query(query, at) for query in queries))
        snapshot = Snapshot(at=at, results=dict(zip(queries, results, strict=True)),
                            seconds=time.perf_counter() - started)
        self.last_query_count = len(queries)
        self.cycles += 1
        self._snapshot = snapshot
        return snapshot

    async def _query(self, query: str, at: datetime) -> QueryResult:
        async with self._limit:
            try:
                raw = await self._client.query(query, at)
            except Exception as err:  # noqa: BLE001 - any failure makes the signal stale
                return QueryResult(error=_short_error(err))
        return QueryResult(series=tuple((item.get("metric", {}), item["value"][1])
                                        for item in raw if "value" in item))

    def close(self) -> None:
        """Close the connections in the background (pollers are dropped from sync code)."""
        _closing.add(task := asyncio.ensure_future(self._client.aclose()))
        task.add_done_callback(_closing.discard)


class PrometheusClient:
    """Bounded reads of one Prometheus, on the event loop.

    Every read has a total deadline (the endpoint's ``timeoutSeconds``: DNS, connect, headers
    and body together), a body cap (:data:`MAX_RESPONSE_BYTES`, enforced while streaming),
    at most :data:`MAX_PARALLEL_QUERIES` connections and no redirects.
    """

    def __init__(self, endpoint: PrometheusEndpoint) -> None:
        self.endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None

    async def query(self, query: str, at: datetime) -> list[dict[str, Any]]:
        """An instant query evaluated at ``at``: its result vector."""
        return await self._read("/api/v1/query", {"query": query, "time": _timestamp(at)})

    async def query_range(self, query: str, start: datetime, end: datetime,
                          step_seconds: int) -> list[dict[str, Any]]:
        """A range query: its result matrix."""
        return await self._read("/api/v1/query_range", {
            "query": query, "start": _timestamp(start), "end": _timestamp(end),
            "step": str(step_seconds)})

    async def _read(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The only place a Prometheus is read."""
        try:
            return await asyncio.wait_for(self._get(path, params), self.endpoint.timeout_seconds)
        except asyncio.TimeoutError:
            raise PrometheusError(f"no answer within {self.endpoint.timeout_seconds}s") from None

    async def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        if self._session is None or self._session.closed:
            self._session = self.endpoint.session()
        url = self.endpoint.url.rstrip("/") + path
        async with self._session.get(url, params=params, allow_redirects=False) as response:
            body = await read_capped(response, MAX_RESPONSE_BYTES)
            if response.status != 200:
                raise PrometheusError(f"HTTP {response.status} (response body not shown)")
        payload = json.loads(body)
        if payload.get("status") != "success":
            raise PrometheusError(f"query failed: {str(payload.get('errorType'))[:40]}")
        return payload["data"]["result"]

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _timestamp(at: datetime) -> str:
    return f"{at.timestamp():.3f}"


class PrometheusError(Exception):
    """Prometheus answered, but not with a result."""


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The response body, or :class:`PrometheusError` as soon as it exceeds ``limit`` bytes
    (announced or received): a body is never held beyond the cap."""
    if (response.content_length or 0) > limit:
        raise PrometheusError(f"answer larger than {limit} bytes ({response.content_length})")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        if len(body) + len(chunk) > limit:
            raise PrometheusError(f"answer larger than {limit} bytes")
        body += chunk
    return bytes(body)


#: Sessions being closed in the background (a reference keeps the task alive).
_closing: set[asyncio.Future] = set()


def _short_error(err: Exception) -> str:
    """The error for status, scrubbed and bounded: aiohttp's connection errors name the host,
    not the request URL with its whole query, and no response body is ever part of it
    (whatever the server at the URL chose to send must not reach status)."""
    text = scrub(f"{type(err).__name__}: {err}")
    return text if len(text) <= 300 else text[:297] + "..."


_pollers: dict[PrometheusEndpoint, PrometheusPoller] = {}


def poller_for(endpoint: PrometheusEndpoint) -> PrometheusPoller:
    """The operator-wide poller of one Prometheus endpoint (pollers no profile uses any more
    are closed on the way)."""
    _close_idle(keep=endpoint)
    poller = _pollers.get(endpoint)
    if poller is None:
        poller = _pollers[endpoint] = PrometheusPoller(endpoint)
    return poller


def forget_profile(namespace: str, profile: str) -> None:
    """Stop polling for a profile whose optimization is off."""
    for poller in _pollers.values():
        poller.forget(namespace, profile)
    _close_idle()


def _close_idle(keep: PrometheusEndpoint | None = None) -> None:
    for endpoint, poller in list(_pollers.items()):
        poller.expire()
        if endpoint != keep and poller.idle:
            poller.close()
            del _pollers[endpoint]
