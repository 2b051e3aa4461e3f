"""What the Kubernetes outputs cost: HPAs, alert rules and the application ConfigMap of many
profiles, reconciled against a real API server (the local control plane).

Prints, for N profiles with 3 scaling rules, alerts and an application ConfigMap each:

* the first reconcile (creates everything): wall time and the API writes it sent, against a
  baseline in the same run: the same objects server-side applied by a bare loop, no observing
  or planning (ratio = operator / baseline);
* steady state (nothing changed): wall time per round over all profiles, the API writes sent
  (goal: zero) and the reads per profile, against a baseline of the same reads by a bare loop;
* the promtool unit tests generated for one profile: generation time and ``promtool test
  rules`` time.

    python bench/kube_outputs.py [--profiles 50] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

from perf_operator.devstack.controlplane import ControlPlane

REPO = pathlib.Path(__file__).resolve().parent.parent
CONCURRENCY = 8  # kopf's max_workers in handlers/startup.py
RESOURCES = ("horizontalpodautoscalers", "configmaps", "prometheusrules", "deployments")


def _spec(index: int) -> dict:
    return {
        "scaling": {"rules": [
            {"name": name, "target": {"name": f"{name}-{index}"}, "maxReplicas": 10,
             "cpuUtilization": 70, "memoryUtilization": 80,
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}}}
            for name in ("api", "worker", "websocket")]},
        "alerts": {"labels": {"team": "platform"}},
        "appConfig": {"configMapName": f"perf-{index}"},
    }


def _request_counts(control_plane: ControlPlane) -> dict[tuple[str, str], int]:
    _, body = control_plane.get("/metrics")
    counts: dict[tuple[str, str], int] = {}
    for line in body.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        key = (labels.get("verb", ""), labels.get("resource", ""))
        counts[key] = counts.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def _delta(before: dict, after: dict, verbs: tuple[str, ...]) -> int:
    return sum(v - before.get(k, 0) for k, v in after.items()
               if k[0] in verbs and (not k[1] or k[1] in RESOURCES))


async def _bounded(coroutines) -> list:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(coroutine):
        async with gate:
            return await coroutine
    return await asyncio.gather(*(run(c) for c in coroutines))


async def _reconcile_all(contexts) -> None:
    from perf_operator.kube import reconcile_alerts, reconcile_app_config, reconcile_scaling

    async def one(ctx):
        outcomes = await asyncio.gather(reconcile_scaling(ctx), reconcile_alerts(ctx),
                                        reconcile_app_config(ctx))
        for outcome in outcomes:
            assert outcome.ready, outcome.message
            ctx.status.update(outcome.status)
    await _bounded(one(ctx) for ctx in contexts)


async def _bare_apply(bodies) -> None:
    from perf_operator.kube import apply as k8s
    await _bounded(k8s.apply(body) for body in bodies)


async def _bare_reads(contexts) -> None:
    from perf_operator.kube import apply as k8s

    async def one(ctx):
        await k8s.list_objects(k8s.HPA, ctx.namespace)
        await k8s.served(k8s.PROMETHEUS_RULE.api_version, k8s.PROMETHEUS_RULE.plural)
        await k8s.get_object(k8s.CONFIG_MAP, ctx.namespace, f"{ctx.name}-alerts")
        await k8s.get_object(k8s.CONFIG_MAP, ctx.namespace, f"perf-{ctx.name[2:]}")
    await _bounded(one(ctx) for ctx in contexts)


def _desired_bodies(contexts, namespace: str) -> list[dict]:
    """What the reconcilers apply, built by the pure builders, in another namespace and without
    owner references (the owners live in the bench namespace)."""
    from perf_operator.kube import apply as k8s
    from perf_operator.kube.alerts import (RuleTarget, alert_signals, desired_rules_object,
                                           rule_group)
    from perf_operator.kube.appconfig import config_data, desired_config_map
    from perf_operator.kube.hpa import desired_hpa

    bodies = []
    for ctx in contexts:
        moved = type(ctx)(**{**ctx.__dict__, "namespace": namespace})
        owner = {**ctx.owner_reference()}
        bodies += [desired_hpa(rule, ctx.name, namespace, owner)
                   for rule in ctx.spec.scaling.rules]
        group = rule_group(alert_signals(ctx.spec), RuleTarget(ctx.name, namespace))
        bodies.append(desired_rules_object(k8s.CONFIG_MAP, moved, group))
        bodies.append(desired_config_map(ctx.spec.app_config.config_map_name,
                                         config_data(ctx.spec), moved))
    for body in bodies:
        del body["metadata"]["ownerReferences"]
    return [k8s.plan_owned(b, None, "", top_level="spec").body for b in bodies]


async def _measure(control_plane: ControlPlane, kubectl: str, profiles: int,
                   rounds: int) -> None:
    from perf_operator.api import PerformanceProfileSpec
    from perf_operator.kube import client
    from perf_operator.reconcile import EventRecorder, ProfileContext

    class Quiet(EventRecorder):
        def normal(self, reason: str, message: str) -> None:
            pass

        def warning(self, reason: str, message: str) -> None:
            pass

    kubeconfig = str(control_plane.kubeconfig)
    for namespace in ("bench", "baseline"):
        subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "create", "namespace",
                        namespace], check=True, capture_output=True)
    manifests = [{"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                  "metadata": {"name": f"p-{i}", "namespace": "bench"}, "spec": _spec(i)}
                 for i in range(profiles)]
    subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "apply", "-f", "-"], check=True,
                   capture_output=True, text=True, input=yaml.safe_dump_all(manifests))
    listed = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "get", "pp", "-n", "bench",
                             "-o", "yaml"], check=True, capture_output=True, text=True)
    logger = logging.getLogger("bench")
    contexts = [ProfileContext(name=o["metadata"]["name"], namespace="bench",
                               uid=o["metadata"]["uid"], generation=1,
                               spec=PerformanceProfileSpec.model_validate(o["spec"]),
                               status={}, events=Quiet(None, logger), logger=logger)
                for o in yaml.safe_load(listed.stdout)["items"]]
    objects = profiles * 5

    before = _request_counts(control_plane)
    started = time.perf_counter()
    await _reconcile_all(contexts)
    first = time.perf_counter() - started
    first_writes = _delta(before, _request_counts(control_plane), ("APPLY", "PATCH", "POST",
                                                                   "PUT"))
    bodies = _desired_bodies(contexts, "baseline")
    started = time.perf_counter()
    await _bare_apply(bodies)
    baseline_first = time.perf_counter() - started

    steady, bare, writes, reads = [], [], 0, 0
    for _ in range(rounds):
        before = _request_counts(control_plane)
        started = time.perf_counter()
        await _reconcile_all(contexts)
        steady.append(time.perf_counter() - started)
        after = _request_counts(control_plane)
        writes += _delta(before, after, ("APPLY", "PATCH", "POST", "PUT", "DELETE"))
        reads += _delta(before, after, ("GET", "LIST"))
        started = time.perf_counter()
        await _bare_reads(contexts)
        bare.append(time.perf_counter() - started)
    await client.close()

    print(f"profiles: {profiles} ({objects} objects: 3 HPAs, a rule ConfigMap and an app "
          f"ConfigMap each), concurrency {CONCURRENCY}")
    print(f"first reconcile: {first:.3f} s, {first_writes} API writes "
          f"({first_writes / objects:.2f} per object); bare server-side apply of the same "
          f"objects: {baseline_first:.3f} s; ratio {first / baseline_first:.2f}")
    print(f"steady state: median {statistics.median(steady) * 1000:.1f} ms per round of "
          f"{profiles} profiles ({statistics.median(steady) / profiles * 1000:.2f} ms per "
          f"profile), {writes} API writes in {rounds} rounds, "
          f"{reads / rounds / profiles:.1f} API reads per profile; bare reads: median "
          f"{statistics.median(bare) * 1000:.1f} ms; ratio "
          f"{statistics.median(steady) / statistics.median(bare):.2f}")


def _promtool_figures() -> None:
    from perf_operator.api import PerformanceProfileSpec
    from perf_operator.kube.alerts import RuleTarget, alert_signals
    from perf_operator.insight.alerttests import write_files

    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        rules, tests, _ = write_files(alert_signals(PerformanceProfileSpec()),
                                      RuleTarget("shop", "prod"), pathlib.Path(directory))
        generated = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(["promtool", "test", "rules", str(tests)], check=True,
                       capture_output=True)
        tested = time.perf_counter() - started
        cases = tests.read_text().count("alert_rule_test:")
    print(f"promtool tests for one profile: {cases} cases generated in {generated * 1000:.1f} "
          f"ms; promtool test rules: {tested:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="perf-operator-bench-"))
    control_plane = ControlPlane(workdir)
    try:
        control_plane.start()
        os.environ["KUBECONFIG"] = str(control_plane.kubeconfig)
        subprocess.run([control_plane.kubectl, f"--kubeconfig={control_plane.kubeconfig}",
                        "apply", "--server-side", "-f", str(REPO / "crds")], check=True,
                       capture_output=True)
        subprocess.run([control_plane.kubectl, f"--kubeconfig={control_plane.kubeconfig}",
                        "wait", "--for=condition=Established", "crd", "--all"], check=True,
                       capture_output=True)
        asyncio.run(_measure(control_plane, control_plane.kubectl, args.profiles, args.rounds))
        _promtool_figures()
    finally:
        control_plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
