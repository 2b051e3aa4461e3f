"""The webhook's HTTPS server and its startup: one per replica, on the operator's event loop.

The listening socket is opened with ``SO_REUSEPORT``: several replicas on one host (the local
stack, where the configuration names one URL) share the port and the kernel spreads
connections among them, as a Service spreads them among pods in a cluster; when one replica
dies the others keep answering.
"""
from __future__ import annotations

import asyncio
import logging
import pathlib
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..config import CONFIG
from ..validation import off_loop
from .configuration import (PATH_PREFIX, Endpoint, desired_configuration,
                            keep_configuration)
from .review import CHECKS, Check, plan_review, review_response
from .tls import ServingFiles, shared_serving_files

logger = logging.getLogger(__name__)

#: Reviews carry the object twice (old and new); objects are at most 1.5 MiB in etcd.
MAX_REVIEW_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class WebhookOptions:
    """``perf-operator run --webhook-*``: where to listen and how the API server reaches us,
    by ``url`` (the local stack) or by ``service`` (a Service in ``service_namespace``); TLS
    from the given files, or else from the Secret all replicas share (service mode only)."""

    addr: str
    port: int
    configuration: str
    url: str | None = None
    service: str | None = None
    service_namespace: str | None = None
    #: Given (``--webhook-cert``, ``-key``, ``-ca``), else shared through a Secret.
    files: ServingFiles | None = None


@dataclass
class RunningWebhook:
    runner: web.AppRunner
    keeper: asyncio.Task

    async def stop(self) -> None:
        self.keeper.cancel()
        await asyncio.gather(self.keeper, return_exceptions=True)
        await self.runner.cleanup()


def review_app(namespaces: Sequence[str]) -> web.Application:
    async def review(request: web.Request) -> web.Response:
        check = CHECKS.get(request.match_info["plural"])
        if check is None:
            raise web.HTTPNotFound()
        body: dict[str, Any] = await request.json()
        admission = body.get("request") or {}
        plan = plan_review(admission, namespaces)
        errors = await off_loop(check, plan.spec) if isinstance(plan, Check) else []
        if not isinstance(plan, Check):
            logger.debug("admitted %s %s/%s unchecked: %s", admission.get("operation"),
                         admission.get("namespace"), admission.get("name"), plan.why)
        return web.json_response(review_response(admission.get("uid", ""), errors))

    app = web.Application(client_max_size=MAX_REVIEW_BYTES)
    app.router.add_post(PATH_PREFIX + "{plural}", review)
    return app


async def start_webhook(options: WebhookOptions, namespaces: Sequence[str]) -> RunningWebhook:
    """Serve reviews on ``options.addr:port`` and keep the configuration that points the API
    server here in place. Independent of leadership: call it before waiting to lead."""
    files = options.files
    if files is None:
        if options.service is None or options.service_namespace is None:
            raise ValueError("the webhook needs its certificate files or a Service")
        directory = pathlib.Path(tempfile.mkdtemp(prefix="perf-operator-webhook-"))
        files = await shared_serving_files(options.service_namespace, options.service, directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    runner = web.AppRunner(review_app(namespaces), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.addr, options.port, ssl_context=context,
                      reuse_port=True).start()
    endpoint = Endpoint(ca_bundle=files.ca.read_bytes(), url=options.url,
                        service_namespace=options.service_namespace,
                        service_name=options.service)
    desired = desired_configuration(options.configuration, endpoint, namespaces)
    keeper = asyncio.create_task(keep_configuration(desired, interval=1 if CONFIG.test_mode
                                                    else 10), name="webhook-configuration")
    logger.info("serving the admission webhook on %s:%d (%s)", options.addr, options.port,
                options.url or f"service {options.service_namespace}/{options.service}")
    return RunningWebhook(runner, keeper)
