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
* the time a plain asyncio client (aiohttp, as kopf uses) needs for the same number of status
  patches on the same API server (operator stopped), and the efficiency ratio: the operator's
  time divided by that (goal: at most 2).

    python bench/tenants_scale.py --tenants 1000
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import re
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import redis

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
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
                   timeout: float) -> float:
    """The time at which ``expected`` objects are ``ready``: one LIST, then a WATCH (polling
    10,000 objects would load the API server more than the operator does)."""
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    version = None
    while time.monotonic() < deadline:
        if version is None:
            items, version = await api.list_with_version(path, resource)
            done = {key(item) for item in items if ready(item)}
        if len(done) >= expected:
            return time.monotonic()
        async for event in api.watch(path, resource, version):
            obj = event["object"]
            if event["type"] == "ERROR":  # history compacted: list again
                version = None
                break
            version = obj["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                (done.add if ready(obj) else done.discard)(key(obj))
                if len(done) >= expected:
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


async def run(size: int, args: argparse.Namespace) -> dict:
    stack = LocalStack().start()
    operator = None
    try:
        cp = stack.control_plane
        kubectl(stack, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(stack, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
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
        # Production timings (lease renewal, retries), except the resync interval asked for:
        # test mode's 2 s lease deadline is not meant for an event loop busy with 10,000 objects.
        operator = start_operator(str(cp.kubeconfig), stack.root / "operator",
                                  extra_args=("--standalone",),
                                  env={"PERF_OPERATOR_TEST_MODE": "0",
                                       "PERF_OPERATOR_RESYNC_SECONDS": str(args.resync)})
        await wait_for(api, f"{GROUP}/performanceprofiles", "performanceprofiles", NAMESPACES,
                       lambda o: is_ready(o, "RedisReady"), "profiles RedisReady", 300)
        await asyncio.sleep(2)
        idle_rss = memory_mib(operator.pid, "VmRSS")

        api.own.clear()
        before = request_totals(stack)
        cpu_before = cpu_seconds(operator.pid)
        start = time.monotonic()
        async def create(i: int) -> None:
            if args.create_rate:  # paced: the i-th create not before start + i / rate
                await asyncio.sleep(max(0.0, start + i / args.create_rate - time.monotonic()))
            ns = namespaces[i % NAMESPACES]
            await api.request("POST", f"{GROUP}/namespaces/{ns}/tenantquotas", tenant(ns, i),
                              resource="tenantquotas")
        await gather_limited((create(i) for i in range(size)), args.create_concurrency)
        created = time.monotonic() - start
        ready_at = await wait_for(api, f"{GROUP}/tenantquotas", "tenantquotas", size,
                                  tenant_ready, "tenants Ready", args.timeout)
        elapsed = ready_at - start
        cpu = cpu_seconds(operator.pid) - cpu_before
        after = request_totals(stack)
        records = count_records(stack)
        delta = after - before
        for (verb, resource), n in api.own.items():
            verb = "LIST" if verb == "GET" and resource in ("tenantquotas",) else verb
            delta[(verb, resource)] -= n
        operator_requests = sum(v for v in delta.values() if v > 0)

        # Steady state starts once the profiles have counted their tenants too (on their
        # next resync), so the window measures a converged operator.
        await wait_for(api, f"{GROUP}/performanceprofiles", "performanceprofiles", NAMESPACES,
                       lambda o: ((o.get("status") or {}).get("tenants") or {}).get("count")
                       == size // NAMESPACES, "profiles counting their tenants",
                       args.resync * 3 + 60)
        steady_before = request_totals(stack)
        steady_cpu = cpu_seconds(operator.pid)
        await asyncio.sleep(args.steady)
        steady = request_totals(stack) - steady_before
        steady_cpu = cpu_seconds(operator.pid) - steady_cpu
        steady_writes = {k: v for k, v in steady.items() if k[0] in WRITE_VERBS and v > 0}
        rss = memory_mib(operator.pid, "VmHWM")
        log_mib = operator.log_path.stat().st_size / 2**20
        operator.stop()
        operator = None

        items = await api.list_all(f"{GROUP}/tenantquotas", "tenantquotas")
        baselines = [await patch_statuses(api, items, round_) for round_ in range(1, 4)]
        baseline = statistics.median(baselines)
        await api.session.close()
        result = {"tenants": size, "created_s": created, "ready_s": elapsed, "cpu_s": cpu,
                  "steady_cpu_s": steady_cpu,
                  "log_mib": log_mib,
                  "records": records, "peak_rss_mib": rss, "idle_rss_mib": idle_rss,
                  "requests_per_tenant": operator_requests / size,
                  "requests_breakdown": summarize(delta, size),
                  "steady_writes": sum(steady_writes.values()),
                  "steady_breakdown": summarize(collections.Counter(steady_writes), 1),
                  "baseline_s": baseline, "baselines": baselines, "ratio": elapsed / baseline}
        report(result, args)
        return result
    finally:
        if operator is not None:
            operator.stop()
        stack.stop()


async def patch_statuses(api: Api, items: list[dict], value: int) -> float:
    """The plain client's job: one status merge patch per object, ``CONCURRENCY`` in flight;
    ``value`` differs per round so that every patch is a real write."""
    start = time.monotonic()
    await gather_limited(
        api.request("PATCH", f"{GROUP}/namespaces/{item['metadata']['namespace']}/"
                             f"tenantquotas/{item['metadata']['name']}/status",
                    {"status": {"cache": {"keys": value}}}, resource="tenantquotas/status",
                    content_type="application/merge-patch+json")
        for item in items)
    return time.monotonic() - start


def report(r: dict, args: argparse.Namespace) -> None:
    print(f"\n== {r['tenants']} TenantQuotas in {NAMESPACES} namespaces "
          f"(resync {args.resync:g} s) ==")
    print(f"created by the benchmark in      {r['created_s']:8.1f} s")
    print(f"all Ready with tables written in {r['ready_s']:8.1f} s "
          f"({r['records']} records in Redis; {r['ready_s'] - r['created_s']:.1f} s after the "
          f"last create)")
    print(f"operator CPU time until then     {r['cpu_s']:8.1f} s "
          f"(its log, at --verbose: {r['log_mib']:.0f} MiB)")
    print(f"operator peak RSS (VmHWM)        {r['peak_rss_mib']:8.1f} MiB "
          f"({r['idle_rss_mib']:.1f} MiB with the profiles only)")
    print(f"API requests per tenant          {r['requests_per_tenant']:8.2f}  "
          f"({r['requests_breakdown']})")
    print(f"API writes in {args.steady:g} s steady state  {r['steady_writes']:8.0f}  "
          f"({r['steady_breakdown'] or 'none'})")
    rounds = ", ".join(f"{b:.1f}" for b in r["baselines"])
    resyncs = r["tenants"] * args.steady / args.resync
    print(f"operator CPU in steady state     {r['steady_cpu_s']:8.1f} s in {args.steady:g} s "
          f"({1000 * r['steady_cpu_s'] / resyncs:.1f} ms per tenant resync)")
    print(f"plain aiohttp: {r['tenants']} status patches in {r['baseline_s']:.1f} s "
          f"(median of {rounds} s, after the operator stopped)")
    print(f"efficiency ratio (operator / plain client): {r['ratio']:.2f} (goal <= 2)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--resync", type=float, default=60.0,
                        help="the operator's resync interval, in seconds")
    parser.add_argument("--steady", type=float, default=60.0,
                        help="length of the steady-state window, in seconds")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--create-concurrency", type=int, default=16,
                        help="creates in flight: enough to outpace the operator, few enough to "
                             "leave the API server room for the operator's own requests")
    parser.add_argument("--create-rate", type=float, default=0,
                        help="creates per second at most (0: as fast as the concurrency allows)")
    args = parser.parse_args()
    for size in args.tenants:
        asyncio.run(run(size, args))


if __name__ == "__main__":
    main()
