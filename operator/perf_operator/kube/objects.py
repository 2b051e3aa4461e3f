"""Reads and status writes of the operator's own custom objects outside kopf's handler calls
(the tenant registry's startup LIST, the profile's batched re-check of its tenants)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import API_GROUP, API_VERSION
from .client import api_client
from .namespaces import exact_names, serves

PAGE_SIZE = 500
#: Answers of an API server whose storage for a resource is not serving yet.
NOT_SERVING_YET = {404, 429, 503}

logger = logging.getLogger(__name__)


async def patch_status(plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """A JSON merge patch of one custom object's status subresource (``patch`` is
    ``{"status": {...}}``, as kopf's patches are)."""
    api = client.CustomObjectsApi(await api_client())
    await api.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, plural, name, patch,
        _content_type="application/merge-patch+json")


async def list_objects(plural: str, namespaces: Sequence[str] = ()
                       ) -> AsyncIterator[dict[str, Any]]:
    """Every object of ``plural`` in the namespaces the operator watches (``namespaces`` as
    given to ``perf-operator run --namespace``: names or kopf's patterns; empty: all), page by
    page. Plain names are listed one by one (a namespaced operator may list only there);
    patterns are matched with kopf's own matcher on a cluster-wide list, so the result is what
    kopf will watch."""
    api = client.CustomObjectsApi(await api_client())
    if exact_names(namespaces):
        for namespace in namespaces:
            async for item in _pages(api.list_namespaced_custom_object, API_GROUP, API_VERSION,
                                     namespace, plural):
                yield item
        return
    async for item in _pages(api.list_cluster_custom_object, API_GROUP, API_VERSION, plural):
        namespace = item["metadata"]["namespace"]
        if serves(namespace, namespaces):
            yield item


async def list_cluster_objects(plural: str) -> AsyncIterator[dict[str, Any]]:
    """Every object of a cluster-scoped custom resource, page by page."""
    api = client.CustomObjectsApi(await api_client())
    async for item in _pages(api.list_cluster_custom_object, API_GROUP, API_VERSION, plural):
        yield item


async def namespace_labels() -> dict[str, dict[str, str]]:
    """The labels of every namespace."""
    api = client.CoreV1Api(await api_client())
    labels: dict[str, dict[str, str]] = {}
    token = None
    while True:
        page = await api.list_namespace(limit=PAGE_SIZE, _continue=token)
        for item in page.items:
            labels[item.metadata.name] = dict(item.metadata.labels or {})
        token = page.metadata._continue
        if not token:
            return labels


async def wait_until_served(plural: str, namespaces: Sequence[str] = (),
                            interval: float = 0.5) -> None:
    """Wait until the API server serves ``plural`` from its watch cache (a LIST at
    ``resourceVersion=0``). A CRD is Established before that: a watch started in between is
    answered 429 "storage is (re)initializing", which kopf 1.45 does not recover from for that
    resource, so an operator started with its CRDs (a test fixture, an Argo CD sync) would never
    handle it."""
    api = client.CustomObjectsApi(await api_client())
    started = time.monotonic()
    while True:
        try:
            if exact_names(namespaces):
                await api.list_namespaced_custom_object(API_GROUP, API_VERSION, namespaces[0],
                                                        plural, resource_version="0", limit=1)
            else:
                await api.list_cluster_custom_object(API_GROUP, API_VERSION, plural,
                                                     resource_version="0", limit=1)
            return
        except ApiException as err:
            if err.status not in NOT_SERVING_YET:
                raise
            logger.info("waiting for the API server to serve %s (%s) for %.0f s", plural,
                        err.status, time.monotonic() - started)
        await asyncio.sleep(interval)


async def namespace_exists(name: str) -> bool:
    """Whether the namespace exists (terminating or not)."""
    try:
        await client.CoreV1Api(await api_client()).read_namespace(name)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


async def _pages(list_call, *args: str) -> AsyncIterator[dict[str, Any]]:
    token = None
    while True:
        page = await list_call(*args, limit=PAGE_SIZE, _continue=token)
        for item in page.get("items", []):
            yield item
        token = page.get("metadata", {}).get("continue")
        if not token:
            return
