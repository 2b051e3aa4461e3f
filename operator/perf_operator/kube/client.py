"""One shared asynchronous Kubernetes API client for the whole operator.

kubernetes_asyncio keeps every call on the event loop (the synchronous client would need a
thread per call), and one client means one connection pool.
"""
from __future__ import annotations

import asyncio
import os

from kubernetes_asyncio import client, config

_client: client.ApiClient | None = None
_lock = asyncio.Lock()


async def api_client() -> client.ApiClient:
    """The operator's shared client (created on first use, on the operator's event loop)."""
    global _client
    async with _lock:
        if _client is None:
            _client = await new_api_client()
        return _client


async def new_api_client() -> client.ApiClient:
    """A client of its own, bound to the running event loop: in-cluster credentials, else the
    kubeconfig. For code that runs on another loop than the operator's (leader election)."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                       client_configuration=configuration)
    return client.ApiClient(configuration)


async def close() -> None:
    global _client
    if _client is not None:
        await _client.close()
        _client = None
