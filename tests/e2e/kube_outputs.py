"""Helpers for the tests of the Kubernetes outputs (HPAs, alert rules, application config):
a real PerformanceProfile to own the objects, a context to call the reconcilers with, and a
count of the API server's writes read from its own metrics."""
from __future__ import annotations

import contextlib
import json
import pathlib
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import yaml

from perf_operator.reconcile import Outcome, ProfileContext
from perf_operator.status import merge_patch
from tests.support.contexts import apply_merge_patch, profile_context
from tests.support.events import RecordedEvents

FIXTURES = pathlib.Path(__file__).parent / "kube_fixtures"
PROMETHEUS_RULE_CRD = FIXTURES / "monitoring.coreos.com_prometheusrules.yaml"


def apply_profile(kubectl, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Create or update a real PerformanceProfile (the API server validates it) and return it.

    Tests that call the reconcilers themselves are marked ``isolated``: the session operator
    ignores their namespace, so they see only their own reconciles."""
    manifest = {"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    kubectl.apply(yaml.safe_dump(manifest), namespace)
    return kubectl.get("performanceprofile", name, namespace)


def context(profile: dict[str, Any], events: RecordedEvents,
            status: dict[str, Any] | None = None) -> ProfileContext:
    meta = profile["metadata"]
    return profile_context(meta["namespace"], profile.get("spec") or {}, name=meta["name"],
                           uid=meta["uid"], generation=meta.get("generation", 1),
                           status=status, events=events)


def respec(ctx: ProfileContext, kubectl, spec: dict[str, Any]) -> ProfileContext:
    """The same profile with a new spec, keeping the status the handler would have kept."""
    profile = apply_profile(kubectl, ctx.namespace, ctx.name, spec)
    return context(profile, ctx.events, ctx.status)


def remember(ctx: ProfileContext, outcome: Outcome | None) -> Outcome | None:
    """Keep what the handler would write to status: the outcome's fragment (merge-patch
    semantics, None removes) and its condition's reason."""
    if outcome is None:
        return None
    merged = apply_merge_patch(ctx.status, merge_patch(ctx.status, outcome.status))
    ctx.status.clear()
    ctx.status.update(merged)
    conditions = [c for c in ctx.status.get("conditions", []) if c["type"] != outcome.condition]
    ctx.status["conditions"] = conditions + [{"type": outcome.condition,
                                              "status": outcome.condition_status,
                                              "reason": outcome.reason}]
    return outcome


#: Creating and changing verbs. Deletes are left out: the namespace controller empties the
#: namespaces of earlier tests in the background, and the counter has no namespace label.
WRITE_VERBS = ("APPLY", "PATCH", "POST", "PUT")
_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def api_writes(stack, *resources: str) -> dict[str, int]:
    """Successful write requests the API server has served so far, per ``resource:verb``, from
    its own ``apiserver_request_total`` counter. It counts requests that changed nothing too (a
    no-op apply is still a request), which is what "writes nothing" must rule out."""
    status, body = stack.control_plane.get("/metrics")
    assert status == 200, body[:200]
    counts: dict[str, int] = {}
    for line in body.decode().splitlines():
        match = _REQUEST.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("resource") in resources and labels.get("verb") in WRITE_VERBS \
                and labels.get("code", "").startswith("2"):
            key = f"{labels['resource']}:{labels['verb']}"
            counts[key] = counts.get(key, 0) + int(float(match["value"]))
    return counts


def writes_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after
            if after[key] != before.get(key, 0)}


#: The operator's cleanup ledger (handlers/deferred.py). A deferred cleanup that keeps failing
#: (an earlier test's namespace, deleted with credentials the operator never read) patches it
#: on every retry: cluster-wide ConfigMap writes that are not the subject of any test here.
LEDGER = ("perf-operator-system", "perf-operator-cleanup")


@contextlib.contextmanager
def writes_during(stack, kubectl, *resources: str) -> Iterator[dict[str, int]]:
    """The writes to ``resources`` while the block runs, less the ledger's own patches, in the
    yielded dict once the block is over. A watch spanning the whole window counts the ledger's
    patches (it can only count more of them: a second of margin on each side)."""
    watch = subprocess.Popen(
        [kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}", "get", "configmap", LEDGER[1],
         "-n", LEDGER[0], "--watch-only", "-o", "name"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    writes: dict[str, int] = {}
    try:
        time.sleep(1)  # the watch is established
        before = api_writes(stack, *resources)
        yield writes
        writes.update(writes_between(before, api_writes(stack, *resources)))
        time.sleep(1)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    ledger = sum(1 for line in out.splitlines() if line.strip())
    if "configmaps" in resources and ledger:
        left = writes.pop("configmaps:PATCH", 0) - ledger
        if left > 0:
            writes["configmaps:PATCH"] = left


def managers(kubectl, kind: str, name: str, namespace: str) -> dict[str, str]:
    """manager -> operation from the object's managedFields (which ``kubectl get`` hides
    unless asked), status subresource entries left out."""
    result = kubectl.run("get", kind, name, "-o", "json", "--show-managed-fields",
                         namespace=namespace)
    return {entry["manager"]: entry["operation"]
            for entry in json.loads(result.stdout)["metadata"].get("managedFields") or []
            if not entry.get("subresource")}
