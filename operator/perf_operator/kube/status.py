"""Status writes outside a kopf handler call (the profile's batched re-check of its tenants)."""
from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from .. import API_GROUP, API_VERSION
from .client import api_client


async def patch_status(plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """A JSON merge patch of one custom object's status subresource (``patch`` is
    ``{"status": {...}}``, as kopf's patches are)."""
    api = client.CustomObjectsApi(await api_client())
    await api.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, plural, name, patch,
        _content_type="application/merge-patch+json")
