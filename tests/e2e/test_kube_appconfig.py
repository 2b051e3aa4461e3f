"""The application ConfigMap on the real control plane: owned by the profile, its hash in
status and on the named Deployments' pod templates (the operator owning only that annotation),
rewritten when the spec changes, untouched (no write at all) when it does not, and never
written over a ConfigMap the operator does not own."""
from __future__ import annotations

import json

import pytest


from perf_operator import FIELD_MANAGER
from perf_operator.kube import apply as k8s
from perf_operator.kube import reconcile_app_config
from perf_operator.kube.appconfig import DOCUMENT_KEY, HASH_ANNOTATION
from tests.e2e.kube_outputs import (RecordedEvents, apply_profile, context, remember, respec,
                                    writes_during)

#: The test calls the reconcilers itself; the session operator must not act here too.
pytestmark = pytest.mark.isolated

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: api, annotations: {team: platform}}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}, annotations: {owner: platform}}
    spec: {containers: [{name: api, image: example/api:1}]}
"""

SPEC = {
    "appConfig": {"configMapName": "shop-performance", "stampDeployments": ["api"]},
    "api": {"compression": {"enabled": True, "minSizeBytes": 2048}},
    "websocket": {"maxConnections": 9000},
}


async def _reconcile(ctx):
    return remember(ctx, await reconcile_app_config(ctx))


def _template_annotations(kubectl, namespace):
    deployment = kubectl.get("deployment", "api", namespace)
    return deployment["spec"]["template"]["metadata"]["annotations"]


def _annotation_owners(kubectl, namespace) -> set[str]:
    result = kubectl.run("get", "deployment", "api", "-o", "json", "--show-managed-fields",
                         namespace=namespace)
    owners = set()
    for entry in json.loads(result.stdout)["metadata"]["managedFields"]:
        annotations = (entry["fieldsV1"].get("f:spec", {}).get("f:template", {})
                       .get("f:metadata", {}).get("f:annotations", {}))
        if f"f:{HASH_ANNOTATION}" in annotations:
            owners.add(entry["manager"])
    return owners


async def test_config_map_hash_and_deployment_stamp(stack, kubectl, namespace, crds):
    kubectl.apply(DEPLOYMENT, namespace)
    ctx = context(apply_profile(crds, namespace, "shop", SPEC), RecordedEvents())

    outcome = await _reconcile(ctx)

    assert outcome.ready and outcome.reason == "ConfigApplied"
    config_map = kubectl.get("configmap", "shop-performance", namespace)
    assert k8s.owned_by(config_map, ctx.uid)
    document = json.loads(config_map["data"][DOCUMENT_KEY])
    assert document["api"]["compression"] == {"enabled": True, "minSizeBytes": 2048}
    assert document["websocket"]["maxConnections"] == 9000
    assert document["cache"]["ttlSeconds"]["sessions"] == 3600
    assert document["featureFlags"]["circuitBreaker"] is False
    assert config_map["data"]["ENABLE_COMPRESSION"] == "true"
    config_hash = ctx.status["appConfig"]["hash"]
    assert ctx.status["appConfig"] == {"name": "shop-performance",
                                       "hash": k8s.content_hash(config_map["data"])}
    annotations = _template_annotations(kubectl, namespace)
    assert annotations == {"owner": "platform", HASH_ANNOTATION: config_hash}
    assert _annotation_owners(kubectl, namespace) == {FIELD_MANAGER}
    assert sorted(ctx.events.take()) == ["Created", "Stamped"]

    with writes_during(stack, kubectl, "configmaps", "deployments") as writes:
        for _ in range(3):
            assert (await _reconcile(ctx)).ready
    assert writes == {}
    assert ctx.events.take() == []

    changed = {**SPEC, "api": {"compression": {"enabled": False}}}
    ctx = respec(ctx, kubectl, changed)
    outcome = await _reconcile(ctx)

    assert outcome.ready
    new_hash = ctx.status["appConfig"]["hash"]
    assert new_hash != config_hash
    assert kubectl.get("configmap", "shop-performance", namespace)["data"][
        "ENABLE_COMPRESSION"] == "false"
    assert _template_annotations(kubectl, namespace)[HASH_ANNOTATION] == new_hash
    assert sorted(ctx.events.take()) == ["Stamped", "Updated"]
    deployment = kubectl.get("deployment", "api", namespace)
    assert deployment["spec"]["replicas"] == 1  # nothing else of the Deployment changed
    assert deployment["metadata"]["annotations"].get("team") == "platform"


async def test_hand_edited_config_map_is_restored(kubectl, namespace, crds):
    ctx = context(apply_profile(crds, namespace, "shop", {"appConfig": {
        "configMapName": "shop-performance"}}), RecordedEvents())
    await _reconcile(ctx)
    kubectl.run("patch", "configmap", "shop-performance", "--type=merge",
                "-p", '{"data":{"DB_POOL_MAX":"5","ENABLE_COMPRESSION":"false"}}',
                namespace=namespace)
    ctx.events.take()

    await _reconcile(ctx)

    assert ctx.events.reasons() == ["Restored"]
    data = kubectl.get("configmap", "shop-performance", namespace)["data"]
    assert data["ENABLE_COMPRESSION"] == "true"
    assert data["DB_POOL_MAX"] == "5"  # not a key of ours (no database section): left alone


async def test_config_map_of_someone_else_is_a_conflict(kubectl, namespace, crds):
    kubectl.run("create", "configmap", "shop-performance", "--from-literal=mine=yes",
                namespace=namespace)
    ctx = context(apply_profile(crds, namespace, "shop", {"appConfig": {
        "configMapName": "shop-performance"}}), RecordedEvents())

    outcome = await _reconcile(ctx)
    await _reconcile(ctx)

    assert not outcome.ready and outcome.reason == "ResourceConflict"
    assert ctx.events.reasons() == ["Conflict"]
    assert kubectl.get("configmap", "shop-performance", namespace)["data"] == {"mine": "yes"}


async def test_missing_deployment_is_reported_and_stamped_once_it_exists(kubectl, namespace,
                                                                       crds):
    ctx = context(apply_profile(crds, namespace, "shop", {"appConfig": {
        "configMapName": "shop-performance", "stampDeployments": ["api"]}}), RecordedEvents())

    outcome = await _reconcile(ctx)

    assert outcome.ready and outcome.message.endswith(
        "; Deployment(s) api not found: stamped once they exist")
    assert ctx.status["appConfig"]["name"] == "shop-performance"
    assert kubectl.get("deployment", "api", namespace) is None  # never created by the stamp

    kubectl.apply(DEPLOYMENT, namespace)
    outcome = await _reconcile(ctx)

    assert "stamped on 1 Deployment(s)" in outcome.message and "not found" not in outcome.message
    assert _template_annotations(kubectl, namespace)[HASH_ANNOTATION] == \
        ctx.status["appConfig"]["hash"]


async def test_removed_app_config_deletes_the_config_map(kubectl, namespace, crds):
    ctx = context(apply_profile(crds, namespace, "shop", {"appConfig": {
        "configMapName": "shop-performance"}}), RecordedEvents())
    await _reconcile(ctx)
    ctx = respec(ctx, kubectl, {})

    outcome = await _reconcile(ctx)

    assert outcome.reason == "NoAppConfig" and "appConfig" not in ctx.status
    assert kubectl.get("configmap", "shop-performance", namespace) is None
    assert await reconcile_app_config(ctx) is None
