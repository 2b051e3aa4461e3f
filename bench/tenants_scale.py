"""Thousands of TenantQuotas against the real operator, and a plain client as the yardstick.

For each size (``--tenants 1000 10000`` by default) on a fresh local stack (control plane,
PostgreSQL, Redis): 50 namespaces, each with a PerformanceProfile and the Redis Secret; the real
operator (``start_operator`` with production timings, ``--resync`` seconds between re-checks,
60 as in production);
then the TenantQuotas, spread evenly over the namespaces. Prints

* the time from the first create until every TenantQuota is Ready with its table written
  (status Ready and TablesReady, table version >= 1; the Redis records are counted too);
* the operator's peak memory (VmHWM of its process);
* API requests per tenant: the API server's ``apiserver_request_total`` (read with the admin
  client certificate) before and after, minus the benchmark's own requests, by verb and
  resource;
* API writes during ``--steady`` seconds of steady state afterwards (goal: zero);
* then ``--changes`` times, one tenant's limit changed (one spec PATCH, as ``kubectl apply``
  sends it) while all the others exist: the time from the API server's answer until the
  tenant's Redis record holds the new limits (its digest changed), p50 and p99 (goal: p99 at
  most 1 s);
* the time a plain asyncio client (aiohttp, as kopf uses) needs for the same number of status
  patches on the same API server (operator stopped), and the efficiency ratio: the operator's
  time divided by that (goal: at most 2);
* with ``--backlog`` (the default): on a second fresh stack, as many TenantQuotas created
  before any operator runs, then the operator started the same way, and the time from its
  start until every TenantQuota is Ready: the operator-only ratio, the operator's own
  throughput without the benchmark's creates competing for the CPU;
* where the time goes: for each phase (create -> Ready, the backlog, the median baseline
  round, steady state) the wall time, the CPU seconds (user + system from /proc/<pid>/stat,
  children excluded) of kube-apiserver, etcd, the operator, the benchmark process itself and
  the rest of the stack, the rest of the machine's busy time (other jobs share the machine),
  the API writes, and the CPU-bound floor: the CPU seconds of those first four processes
  divided by the cores they share.

    python bench/tenants_scale.py --tenants 1000
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import pathlib
import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import redis
import redis.asyncio as aioredis

from perf_operator.devstack.processes import ManagedProcess
from perf_operator.devstack.stack import LocalStack

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support, when run as a script from anywhere
from tests.support.operator import start_operator  # noqa: E402

GROUP = "/apis/perf.idp.io/v1alpha1"
NAMESPACES = 50
CONCURRENCY = 64
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}
_METRIC = re.compile(r"^apiserver_request_total\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
CORES = len(os.sched_getaffinity(0))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPU_COLUMNS = ("apiserver", "etcd", "operator", "bench")  # the processes a phase is charged with
OTHER_COLUMNS = ("services", "other")  # the rest of the stack; the rest of the machine


@dataclass
class Api:
    """aiohttp against the API server with the admin client certificate, counting its own
    requests so they can be told apart from the operator's."""

    server: str
    session: aiohttp.ClientSession
    own: collections.Counter = field(default_factory=collections.Counter)

    @classmethod
    def connect(cls, stack: LocalStack, limit: int = 100) -> Api:
        cp = stack.control_plane
        context = ssl.create_default_context(cafile=str(cp.ca.pair.cert))
        context.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))
        connector = aiohttp.TCPConnector(ssl=context, limit=limit)
        return cls(cp.server, aiohttp.ClientSession(connector=connector))

    async def request(self, method: str, path: str, body: dict | None = None, *,
                      resource: str, content_type: str = "application/json",
                      count: bool = True) -> dict:
        if count:
            self.own[(method, resource)] += 1
        data = json.dumps(body) if body is not None else None
        async with self.session.request(method, self.server + path, data=data,
                                        headers={"Content-Type": content_type}) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]}")
            return json.loads(text) if text else {}

    async def list_all(self, path: str, resource: str) -> list[dict]:
        return (await self.list_with_version(path, resource))[0]

    async def list_with_version(self, path: str, resource: str) -> tuple[list[dict], str]:
        items, token = [], None
        while True:
            query = "?limit=500" + (f"&continue={token}" if token else "")
            page = await self.request("GET", path + query, resource=resource)
            items.extend(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return items, page["metadata"]["resourceVersion"]

    async def watch(self, path: str, resource: str, version: str):
        """The events of one watch request from ``version`` (the server ends it within 60 s)."""
        self.own[("WATCH", resource)] += 1
        query = f"?watch=1&allowWatchBookmarks=true&timeoutSeconds=60&resourceVersion={version}"
        async with self.session.get(self.server + path + query,
                                    timeout=aiohttp.ClientTimeout(total=None)) as resp:
            async for line in resp.content:
                yield json.loads(line)


def kubectl(stack: LocalStack, *args: str) -> None:
    cp = stack.control_plane
    result = subprocess.run([cp.kubectl, f"--kubeconfig={cp.kubeconfig}", *args],
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")


def request_totals(stack: LocalStack) -> collections.Counter:
    """apiserver_request_total summed by (verb, resource[/subresource])."""
    status, body = stack.control_plane.get("/metrics")
    assert status == 200, body[:200]
    totals: collections.Counter = collections.Counter()
    for line in body.decode().splitlines():
        match = _METRIC.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(1)))
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            totals[(labels.get("verb", ""), resource)] += float(match.group(2))
    return totals


def memory_mib(pid: int, field: str) -> float:
    """VmHWM (peak resident set) or VmRSS of a process, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its children's not included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores together have spent on anything but idling or waiting for I/O (nor
    stolen by the hypervisor) so far."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def process_name(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()


@dataclass
class Phase:
    """One measured stretch of the benchmark: wall time, CPU seconds by process (those of
    ``CPU_COLUMNS`` that ran, ``services``: the rest of the stack, ``other``: the rest of the
    machine's busy time) and the API server's request counters' increase."""

    name: str
    started: float = 0.0  # time.monotonic()
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    requests: collections.Counter = field(default_factory=collections.Counter)

    @property
    def writes(self) -> float:
        return sum(v for (verb, _), v in self.requests.items() if verb in WRITE_VERBS)

    @property
    def object_writes(self) -> float:
        """Writes but the leader Lease's renewals (the election's heartbeat, not work)."""
        return sum(v for (verb, resource), v in self.requests.items()
                   if verb in WRITE_VERBS and resource != "leases")

    def write_breakdown(self, per: int) -> str:
        return summarize(collections.Counter(
            {k: v for k, v in self.requests.items() if k[0] in WRITE_VERBS}), per)

    @property
    def floor_s(self) -> float:
        """The wall time the phase needs at least if it is CPU-bound: the CPU seconds of the
        API server, etcd, the operator and the benchmark, spread perfectly over the cores."""
        return sum(self.cpu_s.get(name, 0.0) for name in CPU_COLUMNS) / CORES

    @property
    def busy(self) -> float:
        """The share of the machine's CPU capacity in use, by anything."""
        return sum(self.cpu_s.values()) / CORES / self.wall_s


class Meter:
    """Measures phases: CPU time of kube-apiserver and etcd (found among the stack's processes
    by name), of the rest of the stack (``services``: controller-manager, PostgreSQL, Redis,
    Prometheus), of the operator while one runs (``operator``) and of this process."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        by_name = {process_name(pid): pid for pid in stack.pids()}
        apiserver, etcd = by_name.pop("kube-apiserver"), by_name.pop("etcd")
        self.pids = {"apiserver": [apiserver], "etcd": [etcd], "bench": [os.getpid()],
                     "services": list(by_name.values())}
        self.operator: ManagedProcess | None = None

    def cpu(self) -> dict[str, float]:
        pids = {**self.pids, **({"operator": [self.operator.pid]} if self.operator else {})}
        return {"machine": machine_busy_seconds(),
                **{name: sum(map(cpu_seconds, group)) for name, group in pids.items()}}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Measures the block. An operator started inside it is charged with all its CPU time;
        the API server's counters are read outside the timed part (a large response)."""
        phase = Phase(name)
        requests = request_totals(self.stack)
        cpu, phase.started = self.cpu(), time.monotonic()
        yield phase
        phase.wall_s = time.monotonic() - phase.started
        after = self.cpu()
        phase.requests = request_totals(self.stack) - requests
        phase.cpu_s = {name: after[name] - cpu.get(name, 0.0) for name in after}
        machine = phase.cpu_s.pop("machine")
        phase.cpu_s["other"] = machine - sum(phase.cpu_s.values())

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None


def profile(namespace: str, stack: LocalStack) -> dict:
    return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
            "metadata": {"name": "platform", "namespace": namespace},
            "spec": {"redis": {"connection": {"host": "127.0.0.1", "port": stack.redis.port,
                                              "secretRef": {"name": "redis-credentials"}},
                               "keyPrefix": f"{namespace}:"}}}


def tenant(namespace: str, index: int) -> dict:
    return {"apiVersion": "perf.idp.io/v1alpha1", "kind": "TenantQuota",
            "metadata": {"name": f"tenant-{index}", "namespace": namespace},
            "spec": {"tenantId": f"tenant-{index}", "profileRef": {"name": "platform"},
                     "websocket": {"maxConnections": 10},
                     "rateLimits": [{"pattern": "/api/search", "requests": 100 + index % 50}]}}


def is_ready(obj: dict, condition_type: str = "Ready") -> bool:
    status = obj.get("status") or {}
    return any(c.get("type") == condition_type and c.get("status") == "True"
               for c in status.get("conditions") or [])


def counted(profile: dict, tenants: int) -> bool:
    """Whether the profile's status counts ``tenants`` tenants, in its summary and in its
    Overcommitted condition (each commits 10 WebSocket connections)."""
    status = profile.get("status") or {}
    overcommitted = next((c for c in status.get("conditions") or []
                          if c.get("type") == "Overcommitted"), {})
    return ((status.get("tenants") or {}).get("count") == tenants
            and f"tenants commit {10 * tenants} of" in overcommitted.get("message", ""))


def tenant_ready(obj: dict) -> bool:
    status = obj.get("status") or {}
    return (is_ready(obj) and is_ready(obj, "TablesReady")
            and (status.get("table") or {}).get("version", 0) >= 1)


async def gather_limited(coroutines, limit: int = CONCURRENCY) -> list:
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine):
        async with semaphore:
            return await coroutine
    return await asyncio.gather(*(one(c) for c in coroutines))


async def wait_for(api: Api, path: str, resource: str, expected: int, ready, what: str,
                   timeout: float, first: list[float] | None = None) -> float:
    """The time at which ``expected`` objects are ``ready``: one LIST, then a WATCH (polling
    10,000 objects would load the API server more than the operator does). ``first``, if
    given, receives the time at which the first one was."""
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    version = None

    def reached(count: int) -> bool:
        if first is not None and count and not first:
            first.append(time.monotonic())
        return count >= expected

    while time.monotonic() < deadline:
        if version is None:
            items, version = await api.list_with_version(path, resource)
            done = {key(item) for item in items if ready(item)}
        if reached(len(done)):
            return time.monotonic()
        async for event in api.watch(path, resource, version):
            obj = event["object"]
            if event["type"] == "ERROR":  # history compacted: list again
                version = None
                break
            version = obj["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                (done.add if ready(obj) else done.discard)(key(obj))
                if reached(len(done)):
                    return time.monotonic()
    raise TimeoutError(f"{what}: {len(done)} of {expected} after {timeout:.0f} s")


def key(obj: dict) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def count_records(stack: LocalStack) -> int:
    client = redis.Redis(port=stack.redis.port, password=stack.redis.password)
    try:
        return sum(1 for _ in client.scan_iter(match="bench-*:{*}:limits", count=5000))
    finally:
        client.close()


def summarize(delta: collections.Counter, per: int) -> str:
    rows = sorted(((v, k) for k, v in delta.items() if v > 0), reverse=True)
    return ", ".join(f"{verb} {resource}: {value / per:.2f}" for value, (verb, resource) in rows)


def launch_operator(stack: LocalStack, args: argparse.Namespace) -> ManagedProcess:
    """The real operator, started the same way for every measurement: production timings (lease
    renewal, retries) except the resync interval asked for. Test mode's 2 s lease deadline is
    not meant for an event loop busy with 10,000 objects."""
    return start_operator(str(stack.control_plane.kubeconfig), stack.root / "operator",
                          extra_args=("--standalone",),
                          env={"PERF_OPERATOR_TEST_MODE": "0",
                               "PERF_OPERATOR_RESYNC_SECONDS": str(args.resync)},
                          verbose=args.verbose)


async def create_tenants(api: Api, namespaces: list[str], indices: range,
                         args: argparse.Namespace, rate: float = 0.0) -> None:
    """TenantQuota ``tenant-<i>`` for each i in ``indices``, in namespace i mod NAMESPACES,
    ``--create-concurrency`` in flight; at most ``rate`` creates per second if given."""
    start = time.monotonic()

    async def create(n: int, i: int) -> None:
        if rate:  # paced: the n-th create not before start + n / rate
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        ns = namespaces[i % NAMESPACES]
        await api.request("POST", f"{GROUP}/namespaces/{ns}/tenantquotas", tenant(ns, i),
                          resource="tenantquotas")
    await gather_limited((create(n, i) for n, i in enumerate(indices)), args.create_concurrency)


async def wait_for_tenants(api: Api, expected: int, timeout: float,
                           first: list[float] | None = None) -> None:
    """Until ``expected`` TenantQuotas are Ready with their table."""
    await wait_for(api, f"{GROUP}/tenantquotas", "tenantquotas", expected, tenant_ready,
                   "tenants Ready", timeout, first)


@dataclass
class Bench:
    """A fresh local stack, ready for TenantQuotas, with what measures it."""

    stack: LocalStack
    api: Api
    meter: Meter
    namespaces: list[str]


@contextlib.asynccontextmanager
async def prepared_stack() -> AsyncIterator[Bench]:
    """A fresh stack with the CRDs and ``NAMESPACES`` namespaces, each with the Redis Secret and
    a PerformanceProfile; the operator (if one runs) and the stack are stopped on exit."""
    stack = LocalStack().start()
    meter: Meter | None = None
    api: Api | None = None
    try:
        stack.control_plane.install_crds(REPO / "crds")
        meter = Meter(stack)
        api = Api.connect(stack)
        namespaces = [f"bench-{i:02d}" for i in range(NAMESPACES)]
        for ns in namespaces:
            await api.request("POST", "/api/v1/namespaces",
                              {"metadata": {"name": ns}}, resource="namespaces")
            await api.request("POST", f"/api/v1/namespaces/{ns}/secrets", {
                "metadata": {"name": "redis-credentials"},
                "stringData": {"password": stack.redis.password}}, resource="secrets")
            await api.request("POST", f"{GROUP}/namespaces/{ns}/performanceprofiles",
                              profile(ns, stack), resource="performanceprofiles")
        yield Bench(stack, api, meter, namespaces)
    finally:
        if meter is not None:
            meter.stop_operator()
        if api is not None:
            await api.session.close()
        stack.stop()


async def run(size: int, args: argparse.Namespace) -> dict:
    async with prepared_stack() as bench:
        api, meter, stack = bench.api, bench.meter, bench.stack
        meter.operator = launch_operator(stack, args)
        await wait_for(api, f"{GROUP}/performanceprofiles", "performanceprofiles", NAMESPACES,
                       lambda o: is_ready(o, "RedisReady"), "profiles RedisReady", 300)
        await asyncio.sleep(2)
        idle_rss = memory_mib(meter.operator.pid, "VmRSS")

        api.own.clear()
        with meter.phase("create -> Ready") as creation:
            await create_tenants(api, bench.namespaces, range(size), args,
                                 rate=args.create_rate)
            created = time.monotonic() - creation.started
            await wait_for_tenants(api, size, args.timeout)
        records = count_records(stack)
        delta = collections.Counter(creation.requests)
        for (verb, resource), n in api.own.items():
            verb = "LIST" if verb == "GET" and resource in ("tenantquotas",) else verb
            delta[(verb, resource)] -= n
        operator_requests = sum(v for v in delta.values() if v > 0)

        # Steady state starts once the profiles have counted their tenants too, and their
        # Overcommitted condition says what they commit (their next resync), so the window
        # measures a converged operator.
        await wait_for(api, f"{GROUP}/performanceprofiles", "performanceprofiles", NAMESPACES,
                       lambda o: counted(o, size // NAMESPACES),
                       "profiles counting their tenants", args.resync * 3 + 60)
        with meter.phase("steady state") as steady:
            await asyncio.sleep(args.steady)
        changes = await limit_changes(api, stack, bench.namespaces, args.changes)
        rss = memory_mib(meter.operator.pid, "VmHWM")
        log_mib = meter.operator.log_path.stat().st_size / 2**20
        meter.stop_operator()

        items = await api.list_all(f"{GROUP}/tenantquotas", "tenantquotas")
        rounds = [await baseline_round(api, meter, items, value) for value in range(1, 4)]
    median = sorted(rounds, key=lambda phase: phase.wall_s)[len(rounds) // 2]
    median.name = "baseline (median round)"
    baseline = median.wall_s
    phases = [creation, median, steady]
    result = {"tenants": size, "created_s": created, "ready_s": creation.wall_s,
              "cpu_s": creation.cpu_s["operator"],
              "steady_cpu_s": steady.cpu_s["operator"],
              "log_mib": log_mib,
              "records": records, "peak_rss_mib": rss, "idle_rss_mib": idle_rss,
              "requests_per_tenant": operator_requests / size,
              "requests_breakdown": summarize(delta, size),
              "steady_writes": steady.object_writes,
              "steady_breakdown": steady.write_breakdown(1),
              "change_p50_s": percentile(changes, 50), "change_p99_s": percentile(changes, 99),
              "baseline_s": baseline, "baselines": [phase.wall_s for phase in rounds],
              "ratio": creation.wall_s / baseline, "phases": phases}
    if args.backlog:
        backlog, first_s, backlog_records = await measure_backlog(size, args)
        phases.insert(1, backlog)
        result.update(backlog_s=backlog.wall_s, backlog_first_s=first_s,
                      backlog_ratio=backlog.wall_s / baseline,
                      backlog_breakdown=backlog.write_breakdown(size),
                      backlog_records=backlog_records)
    report(result, args)
    return result


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def limit_changes(api: Api, stack: LocalStack, namespaces: list[str], count: int
                        ) -> list[float]:
    """Change ``tenant-0``'s limit ``count`` times, one change at a time, each with one spec
    merge patch (what ``kubectl apply`` sends); the seconds from the API server's answer until
    its Redis record's digest changed, polled every 2 ms."""
    client = aioredis.Redis(port=stack.redis.port, password=stack.redis.password,
                            decode_responses=True)
    ns, name = namespaces[0], "tenant-0"
    key = f"{ns}:{{{name}}}:limits"
    delays = []
    try:
        for change in range(count):
            before = await client.hget(key, "digest")
            await api.request("PATCH", f"{GROUP}/namespaces/{ns}/tenantquotas/{name}",
                              {"spec": {"rateLimits": [{"pattern": "/api/search",
                                                        "requests": 1000 + change}]}},
                              resource="tenantquotas",
                              content_type="application/merge-patch+json")
            patched = time.monotonic()
            while await client.hget(key, "digest") == before:
                if time.monotonic() - patched > 60:
                    raise TimeoutError(f"{key} unchanged 60 s after change {change}")
                await asyncio.sleep(0.002)
            delays.append(time.monotonic() - patched)
    finally:
        await client.aclose()
    return delays


async def baseline_round(api: Api, meter: Meter, items: list[dict], value: int) -> Phase:
    with meter.phase(f"baseline round {value}") as phase:
        await patch_statuses(api, items, value)
    return phase


async def patch_statuses(api: Api, items: list[dict], value: int) -> None:
    """The plain client's job: one status merge patch per object, ``CONCURRENCY`` in flight;
    ``value`` differs per round so that every patch is a real write."""
    await gather_limited(
        api.request("PATCH", f"{GROUP}/namespaces/{item['metadata']['namespace']}/"
                             f"tenantquotas/{item['metadata']['name']}/status",
                    {"status": {"cache": {"keys": value}}}, resource="tenantquotas/status",
                    content_type="application/merge-patch+json")
        for item in items)


async def measure_backlog(size: int, args: argparse.Namespace) -> tuple[Phase, float, int]:
    """The operator alone on a backlog: on a fresh stack, ``size`` TenantQuotas created before
    any operator runs, then the operator started as before and timed until all are Ready, so
    that neither the benchmark's creates nor existing tenants (a restarted operator resumes
    each, which costs about as much as handling a new one) compete with it. Returns the phase,
    the seconds until the first tenant was Ready (the operator's startup, mostly) and the
    records in Redis."""
    async with prepared_stack() as bench:
        await create_tenants(bench.api, bench.namespaces, range(size), args)
        first: list[float] = []
        with bench.meter.phase("backlog: start -> Ready") as backlog:
            bench.meter.operator = launch_operator(bench.stack, args)
            await wait_for_tenants(bench.api, size, args.timeout, first)
        return backlog, first[0] - backlog.started, count_records(bench.stack)


def report(r: dict, args: argparse.Namespace) -> None:
    print(f"\n== {r['tenants']} TenantQuotas in {NAMESPACES} namespaces "
          f"(resync {args.resync:g} s) ==")
    print(f"created by the benchmark in      {r['created_s']:8.1f} s")
    print(f"all Ready with tables written in {r['ready_s']:8.1f} s "
          f"({r['records']} records in Redis; {r['ready_s'] - r['created_s']:.1f} s after the "
          f"last create)")
    print(f"operator CPU time until then     {r['cpu_s']:8.1f} s "
          f"(its log: {r['log_mib']:.1f} MiB)")
    print(f"operator peak RSS (VmHWM)        {r['peak_rss_mib']:8.1f} MiB "
          f"({r['idle_rss_mib']:.1f} MiB with the profiles only)")
    print(f"API requests per tenant          {r['requests_per_tenant']:8.2f}  "
          f"({r['requests_breakdown']})")
    print(f"API writes in {args.steady:g} s steady state  {r['steady_writes']:8.0f}  but the "
          f"Lease's renewals "
          f"({r['steady_breakdown'] or 'none'})")
    print(f"one tenant's limit changed {args.changes} times: record updated after p50 "
          f"{1000 * r['change_p50_s']:.0f} ms, p99 {1000 * r['change_p99_s']:.0f} ms "
          f"(goal p99 <= 1000 ms)")
    rounds = ", ".join(f"{b:.1f}" for b in r["baselines"])
    resyncs = r["tenants"] * args.steady / args.resync
    print(f"operator CPU in steady state     {r['steady_cpu_s']:8.1f} s in {args.steady:g} s "
          f"({1000 * r['steady_cpu_s'] / resyncs:.1f} ms per tenant resync)")
    print(f"plain aiohttp: {r['tenants']} status patches in {r['baseline_s']:.1f} s "
          f"(median of {rounds} s, after the operator stopped)")
    if "backlog_s" in r:
        print(f"backlog (fresh stack, {r['tenants']} created before the operator starts): "
              f"all Ready {r['backlog_s']:.1f} s after its start, the first after "
              f"{r['backlog_first_s']:.1f} s ({r['backlog_records']} records in Redis; "
              f"writes per tenant: {r['backlog_breakdown']})")
    print_phases(r["phases"])
    only = (f"; operator-only ratio (backlog / plain client): {r['backlog_ratio']:.2f}"
            if "backlog_ratio" in r else "")
    print(f"efficiency ratio (operator / plain client): {r['ratio']:.2f} (goal <= 2){only}",
          flush=True)


def print_phases(phases: list[Phase]) -> None:
    """Where the time goes: CPU seconds by process per phase, against the wall time."""
    names = (*CPU_COLUMNS, *OTHER_COLUMNS)
    print(f"CPU seconds (user + system, children excluded) by process, {CORES} cores shared:")
    print(f"  {'phase':<25}{'wall s':>7}" + "".join(f"{name:>10}" for name in names)
          + f"{'writes':>8}{'floor s':>9}{'machine busy':>14}")
    for phase in phases:
        cpu = "".join(f"{phase.cpu_s[name]:10.1f}" if name in phase.cpu_s else f"{'-':>10}"
                      for name in names)
        print(f"  {phase.name:<25}{phase.wall_s:7.1f}{cpu}{phase.writes:8.0f}"
              f"{phase.floor_s:9.1f}{phase.busy:14.0%}")
    print("  (floor: the CPU-bound floor, (apiserver + etcd + operator + bench) / cores; "
          "services: controller-manager,\n   PostgreSQL, Redis, Prometheus; other: the rest of "
          "the machine's busy time (kernel, other jobs);\n   machine busy: all of it / (cores x "
          "wall); writes include the benchmark's creates and patches)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--resync", type=float, default=60.0,
                        help="the operator's resync interval, in seconds")
    parser.add_argument("--steady", type=float, default=60.0,
                        help="length of the steady-state window, in seconds")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--changes", type=int, default=50,
                        help="one tenant's limit changes timed until its record holds them")
    parser.add_argument("--create-concurrency", type=int, default=16,
                        help="creates in flight: enough to outpace the operator, few enough to "
                             "leave the API server room for the operator's own requests")
    parser.add_argument("--create-rate", type=float, default=0,
                        help="creates per second at most (0: as fast as the concurrency allows)")
    parser.add_argument("--backlog", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the operator alone on a backlog of as many tenants "
                             "created before it starts, on a second fresh stack")
    parser.add_argument("--verbose", action="store_true",
                        help="run the operator with debug logging (costs it CPU at scale)")
    args = parser.parse_args()
    for size in args.tenants:
        asyncio.run(run(size, args))


if __name__ == "__main__":
    main()
