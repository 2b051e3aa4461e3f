"""One shared asynchronous Kubernetes API client for the whole operator.

kubernetes_asyncio keeps every call on the event loop (the synchronous client would need a
thread per call), and one client means one connection pool.

Every request has a deadline: kubernetes_asyncio sends without one unless the caller passes
``_request_timeout``, so a call to an API server that stopped answering (a half-open
connection, a partition) would wait forever, holding the reconcile that made it.
"""
from __future__ import annotations

import asyncio
import os

import aiohttp
from kubernetes_asyncio import client, config

#: Deadline of one API request (connect included) unless the call sets its own.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


class BoundedApiClient(client.ApiClient):
    """An ApiClient whose requests carry :data:`REQUEST_TIMEOUT` unless told otherwise."""

    async def request(self, *args, _request_timeout=None, **kwargs):
        return await super().request(*args, _request_timeout=_request_timeout or REQUEST_TIMEOUT,
                                     **kwargs)

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
    return BoundedApiClient(configuration)


async def close() -> None:
    global _client
    if _client is not None:
        await _client.close()
        _client = None
