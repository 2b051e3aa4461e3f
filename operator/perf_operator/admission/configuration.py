"""The ValidatingWebhookConfiguration: what it should be (pure), and a keeper that puts it back.

The operator owns this cluster-scoped object outright, so the keeper creates or replaces it
whole (not a server-side apply, which would keep webhooks another version registered under
other names). Every replica runs the keeper: whichever notices first restores a deleted or
altered configuration; a replace that loses a race to another replica (409) is simply retried
at the next look, when there is nothing left to do.
"""
from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import API_GROUP, API_VERSION
from ..kube.client import api_client
from ..scrub import scrub
from .review import CHECKS

logger = logging.getLogger(__name__)

PATH_PREFIX = "/validate/"

#: Evaluated by the API server before it calls the webhook: updates that leave the spec alone
#: (finalizers, labels, kopf's bookkeeping) and updates of objects being deleted never reach
#: it, so they need no replica to be up. ``review.plan_review`` makes the same decision.
SPEC_CHANGED = ("request.operation == 'CREATE' || (!has(object.metadata.deletionTimestamp) && "
                "(!has(oldObject.spec) || !has(object.spec) || oldObject.spec != object.spec))")


@dataclass(frozen=True)
class Endpoint:
    """How the API server reaches the webhook: at ``url`` (the local stack) or through the
    Service ``service_namespace/service_name`` (a cluster, every replica behind it), trusting
    ``ca_bundle`` (PEM)."""

    ca_bundle: bytes
    url: str | None = None
    service_namespace: str | None = None
    service_name: str | None = None
    service_port: int = 443

    def client_config(self, path: str) -> dict[str, Any]:
        config: dict[str, Any] = {"caBundle": base64.b64encode(self.ca_bundle).decode()}
        if self.url is not None:
            config["url"] = self.url.rstrip("/") + path
        else:
            config["service"] = {"namespace": self.service_namespace, "name": self.service_name,
                                 "path": path, "port": self.service_port}
        return config


def desired_configuration(name: str, endpoint: Endpoint, namespaces: Sequence[str] = ()
                          ) -> dict[str, Any]:
    """One webhook per kind. An operator restricted to plain namespace names (the
    single-namespace install) is asked about those namespaces only; patterns cannot be
    expressed as a selector, so the server admits what it does not serve (``plan_review``)."""
    selector: dict[str, Any] = {}
    if namespaces and not any(c in p for p in namespaces for c in "*?[]!,"):
        selector = {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                          "operator": "In", "values": sorted(namespaces)}]}
    webhooks = [{
        "name": f"{plural}.{API_GROUP}",
        "rules": [{"apiGroups": [API_GROUP], "apiVersions": [API_VERSION],
                   "resources": [plural], "operations": ["CREATE", "UPDATE"],
                   "scope": "Namespaced"}],
        "clientConfig": endpoint.client_config(PATH_PREFIX + plural),
        "matchConditions": [{"name": "spec-changed", "expression": SPEC_CHANGED}],
        "namespaceSelector": selector,
        "objectSelector": {},
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 10,
        "admissionReviewVersions": ["v1"],
    } for plural in sorted(CHECKS)]
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "perf-operator",
                                                  "app.kubernetes.io/managed-by": "perf-operator"}},
            "webhooks": webhooks}


def drifted(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether the live configuration lacks, adds or changes a webhook. Every field the
    desired one sets is compared exactly; fields it leaves to the API server's defaults are
    not looked at."""
    have = {w.get("name"): w for w in live.get("webhooks") or ()}
    want = {w["name"]: w for w in desired["webhooks"]}
    if have.keys() != want.keys():
        return True
    return any(have[name].get(key) != value
               for name, webhook in want.items() for key, value in webhook.items())


async def keep_configuration(desired: dict[str, Any], *, interval: float) -> None:
    """Create the configuration, then look every ``interval`` seconds and put it back when it
    is gone or altered. Runs until cancelled; API errors are logged and retried."""
    api = client.AdmissionregistrationV1Api(await api_client())
    name = desired["metadata"]["name"]
    while True:
        try:
            await _ensure(api, name, desired)
        except (ApiException, OSError, asyncio.TimeoutError) as err:
            logger.warning("ValidatingWebhookConfiguration %s: %s", name,
                           scrub(getattr(err, "reason", None) or repr(err)))
        except Exception:  # noqa: BLE001 - a keeper that dies silently restores nothing
            logger.exception("ValidatingWebhookConfiguration %s could not be kept", name)
        await asyncio.sleep(interval)


async def _ensure(api: client.AdmissionregistrationV1Api, name: str,
                  desired: dict[str, Any]) -> None:
    try:
        live = api.api_client.sanitize_for_serialization(
            await api.read_validating_webhook_configuration(name))
    except ApiException as err:
        if err.status != 404:
            raise
        live = None
    try:
        if live is None:
            await api.create_validating_webhook_configuration(desired)
            logger.info("ValidatingWebhookConfiguration %s created", name)
        elif drifted(live, desired):
            body = {**desired, "metadata": {**desired["metadata"],
                                            "resourceVersion": live["metadata"]["resourceVersion"]}}
            await api.replace_validating_webhook_configuration(name, body)
            logger.info("ValidatingWebhookConfiguration %s restored", name)
    except ApiException as err:
        if err.status != 409:  # another replica wrote it first: look again next time
            raise
