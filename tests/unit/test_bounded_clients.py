"""The deadlines and caps of the operator's clients, against real sockets on loopback that
accept and never answer, or answer too much (pure client behaviour; no service is faked)."""
from __future__ import annotations

import asyncio
import socket
import time

import psycopg
import pytest
from aiohttp import web

from perf_operator.kube import client as kube_client
from perf_operator.optimizer.signals import PrometheusError
from perf_operator.postgres.connect import unreachable


@pytest.fixture
def black_hole():
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


async def test_kubernetes_requests_have_a_deadline(black_hole, monkeypatch):
    import aiohttp
    from kubernetes_asyncio import client

    monkeypatch.setattr(kube_client, "REQUEST_TIMEOUT", aiohttp.ClientTimeout(total=0.5))
    configuration = client.Configuration(host=f"http://127.0.0.1:{black_hole}")
    api = kube_client.BoundedApiClient(configuration)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await client.CoreV1Api(api).list_namespace()
    assert time.monotonic() - started < 2
    await api.close()


async def test_prometheus_bodies_are_capped_while_streaming():
    from perf_operator.optimizer.signals import read_capped
    import aiohttp

    async def endless(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        return response

    app = web.Application()
    app.router.add_get("/", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                with pytest.raises(PrometheusError, match="larger than 1048576"):
                    await read_capped(response, 1024 * 1024)
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert len(await read_capped(response, 8 * 1024 * 1024)) == 64 * 65536
    finally:
        await runner.cleanup()


def test_connection_loss_and_shutdown_are_unreachable_not_statement_errors():
    from psycopg_pool import PoolTimeout

    assert unreachable(PoolTimeout("no connection"))
    assert unreachable(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert unreachable(psycopg.errors.AdminShutdown("terminating connection"))
    assert unreachable(psycopg.errors.ConnectionFailure("gone"))
    assert not unreachable(psycopg.errors.LockNotAvailable("lock timeout"))
    assert not unreachable(psycopg.errors.UndefinedTable("no such table"))
