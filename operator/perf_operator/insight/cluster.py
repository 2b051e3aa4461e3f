"""The plugin's reads from the API server, as the user (their kubeconfig, their RBAC): profiles
and tenants of one namespace or all. The operator's own client module is reused, so Secrets
are read through ``secrets.read_secret_keys`` with the user's rights."""
from __future__ import annotations

import os
from typing import Any

import yaml

from kubernetes_asyncio import client

from .. import API_GROUP, API_VERSION
from ..api.kinds import PERFORMANCE_PROFILE, TENANT_QUOTA
from ..kube import objects
from ..kube.client import api_client


async def list_objects(plural: str, namespace: str | None) -> list[dict[str, Any]]:
    """Every object of ``plural`` in ``namespace`` (None: all namespaces), as the operator
    lists them (page by page)."""
    return [item async for item in objects.list_objects(plural, [namespace] if namespace else ())]


async def profiles(namespace: str | None) -> list[dict[str, Any]]:
    return await list_objects(PERFORMANCE_PROFILE.plural, namespace)


async def tenants(namespace: str | None) -> list[dict[str, Any]]:
    return await list_objects(TENANT_QUOTA.plural, namespace)


async def profile(namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(await api_client())
    return await api.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                  PERFORMANCE_PROFILE.plural, name)


def current_namespace() -> str:
    """The current context's namespace in the kubeconfig, like kubectl (``default`` when it
    names none)."""
    path = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        with open(os.path.expanduser(path.split(os.pathsep)[0])) as file:
            config = yaml.safe_load(file) or {}
    except OSError:
        return "default"
    current = config.get("current-context")
    for entry in config.get("contexts") or []:
        if entry.get("name") == current:
            return (entry.get("context") or {}).get("namespace") or "default"
    return "default"
