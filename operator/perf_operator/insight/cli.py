"""``kubectl perf``: the kubectl plugin (console script ``kubectl-perf``).

    kubectl perf status [profile] [-n NS | -A] [-o json|yaml]
    kubectl perf plan <file-or-profile> [-n NS] [-o json|yaml]
    kubectl perf tenant <tenantId> [-n NS | -A] [-o json|yaml]
    kubectl perf report <profile> [--period hour|day|week] [--html FILE] [-n NS]
    kubectl perf alert-tests <profile.yaml> <output-dir>

It runs as the user: their kubeconfig (``--kubeconfig`` or ``KUBECONFIG``) and their RBAC, also
for the Secrets a profile references when ``plan`` and ``tenant`` read the live servers.
``alert-tests`` is offline: it writes a profile's alert rules with promtool unit tests proving
they fire where its thresholds say.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import sys
from typing import Any

import yaml

from ..api.kinds import PERFORMANCE_PROFILE


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("-A", "--all-namespaces", action="store_true",
                        help="every namespace the user may list")
    common.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser = argparse.ArgumentParser(prog="kubectl perf", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", parents=[common],
                                 help="profiles, their parts and tenants, as a tree")
    status.add_argument("profile", nargs="?")
    plan = commands.add_parser("plan", parents=[common],
                               help="what the operator would do, writing nothing")
    plan.add_argument("source", help="a profile manifest file (- for stdin) or a profile name")
    tenant = commands.add_parser("tenant", parents=[common],
                                 help="a tenant's effective limits and record")
    tenant.add_argument("tenant_id")
    report = commands.add_parser("report", parents=[common],
                                 help="the performance report of a profile")
    report.add_argument("profile")
    report.add_argument("--period", choices=("hour", "day", "week"), default="day")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML "
                                                      "report with charts")
    report.add_argument("--unused-after-days", type=float, default=7.0,
                        help="report an index unused when it has had no scan over this many "
                             "days of statistics (default 7)")
    alert_tests = commands.add_parser("alert-tests",
                                      help="a profile's alert rules with promtool unit tests")
    alert_tests.add_argument("manifest", type=pathlib.Path,
                             help="YAML holding one or more PerformanceProfiles")
    alert_tests.add_argument("output_dir", type=pathlib.Path)
    return parser


def _emit(data: Any, text: str, output: str) -> None:
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
    elif output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        print(text)


async def _status(args: argparse.Namespace, namespace: str | None) -> int:
    from . import cluster, tree

    profiles = await cluster.profiles(namespace)
    if args.profile:
        profiles = [p for p in profiles if p["metadata"]["name"] == args.profile]
        if not profiles:
            print(f"PerformanceProfile {args.profile!r} not found in namespace {namespace}",
                  file=sys.stderr)
            return 1
    tenants = await cluster.tenants(namespace)
    now = datetime.datetime.now(datetime.UTC)
    nodes = [tree.profile_tree(p, [t for t in tenants
                                   if t["metadata"]["namespace"] == p["metadata"]["namespace"]
                                   and (t.get("spec") or {}).get("profileRef", {}).get("name")
                                   == p["metadata"]["name"]], now)
             for p in sorted(profiles, key=lambda p: (p["metadata"]["namespace"],
                                                      p["metadata"]["name"]))]
    text = tree.render(nodes, colour=sys.stdout.isatty()) if nodes else \
        "No PerformanceProfiles found."
    _emit([n.as_data() for n in nodes], text, args.output)
    return 0


async def _plan(args: argparse.Namespace, namespace: str) -> int:
    from . import cluster, plan

    source = args.source
    if source == "-" or pathlib.Path(source).is_file():
        text = sys.stdin.read() if source == "-" else pathlib.Path(source).read_text()
        documents = [d for d in yaml.safe_load_all(text)
                     if d and d.get("kind") == PERFORMANCE_PROFILE.kind]
        if not documents:
            print(f"{source}: no {PERFORMANCE_PROFILE.kind} in it", file=sys.stderr)
            return 1
    else:
        documents = [await cluster.profile(namespace, source)]
    plans = []
    for document in documents:
        meta = document["metadata"]
        where = meta.get("namespace") or namespace
        live = await _live_profile(where, meta["name"])
        tenants = [t for t in await cluster.tenants(where)
                   if (t.get("spec") or {}).get("profileRef", {}).get("name") == meta["name"]]
        peers = await _visible_profiles(where)
        plans.append(await plan.plan_profile(where, meta["name"], document.get("spec") or {},
                                             live, tenants, peers))
    _emit([p.as_data() for p in plans], "\n\n".join(plan.render(p) for p in plans),
          args.output)
    return 0


async def _live_profile(namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes_asyncio.client.exceptions import ApiException

    from . import cluster
    try:
        return await cluster.profile(namespace, name)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


async def _visible_profiles(namespace: str) -> list[dict[str, Any]]:
    """Every profile the user may list (for Redis CONFIG seniority); their namespace's only
    when they may not list across namespaces."""
    from kubernetes_asyncio.client.exceptions import ApiException

    from . import cluster
    try:
        return await cluster.profiles(None)
    except ApiException as err:
        if err.status != 403:
            raise
        return await cluster.profiles(namespace)


async def _tenant(args: argparse.Namespace, namespace: str | None) -> int:
    from . import cluster, tenant

    found = tenant.find_tenant(await cluster.tenants(namespace), args.tenant_id)
    if not found:
        print(f"no TenantQuota with tenantId {args.tenant_id!r} in "
              f"{'any namespace' if namespace is None else 'namespace ' + namespace}",
              file=sys.stderr)
        return 1
    views = []
    for quota in found:
        profile = await cluster.profile(quota["metadata"]["namespace"],
                                        quota["spec"]["profileRef"]["name"])
        views.append(await tenant.describe_tenant(quota, profile))
    _emit(views if len(views) > 1 else views[0], "\n\n".join(tenant.render(v) for v in views),
          args.output)
    return 0


async def _report(args: argparse.Namespace, namespace: str) -> int:
    from . import cluster, report

    profile = await cluster.profile(namespace, args.profile)
    data = await report.gather(profile, args.period,
                               unused_min_age_seconds=args.unused_after_days * 86400)
    if args.html:
        pathlib.Path(args.html).write_text(report.render_html(data))
    _emit(report.as_data(data), report.render_text(data), args.output)
    return 0


async def _run(args: argparse.Namespace) -> int:
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubernetes_asyncio.config import ConfigException

    from ..kube import client as kube_client
    from ..scrub import scrub
    from ..secrets import SecretError
    from ..postgres.connect import close_all as close_databases
    from ..redis.connect import close_all as close_redis
    from ..targets import policy
    from . import cluster

    # The plugin connects with the user's own credentials, not the operator's: the operator's
    # inline allow-list does not apply, the always-refused addresses do.
    policy.configure(policy.ConnectionPolicy.users_own())
    namespace = None if args.all_namespaces else (args.namespace or cluster.current_namespace())
    try:
        if args.command == "status":
            return await _status(args, namespace)
        if args.command == "plan":
            return await _plan(args, namespace or cluster.current_namespace())
        if args.command == "report":
            return await _report(args, namespace or cluster.current_namespace())
        return await _tenant(args, namespace)
    except ApiException as err:
        print(f"Error from server ({err.reason}): {err.status}", file=sys.stderr)
        return 1
    except (ConfigException, SecretError) as err:
        print(f"error: {scrub(err)}", file=sys.stderr)
        return 1
    finally:
        await close_databases()
        await close_redis()
        await kube_client.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "alert-tests":
        from .alerttests import write_manifest_tests
        return write_manifest_tests(args.manifest, args.output_dir)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
