"""What a PerformanceTarget's own status says: whether the operator reaches each server it
declares (after the connection policy vetted the address, so a target pointing at a metadata
address is reported, never connected to), and which namespaces use it."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from ..api.conditions import (POSTGRES_REACHABLE, PROMETHEUS_REACHABLE, REACHABLE, REDIS_REACHABLE,
                              UNREACHABLE, URL_REFUSED)
from ..api.target import PerformanceTargetSpec
from ..reconcile import Outcome
from .policy import ConnectionRefused, admit, check_url

#: A TCP handshake that takes longer than this counts as unreachable.
PROBE_TIMEOUT_SECONDS = 3.0
#: Namespaces listed in status at most (the count is always complete).
NAMESPACES_SHOWN = 1000


@dataclass(frozen=True)
class Server:
    """One declared server: its status key, condition type, host and port."""

    server: str
    condition: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def declared_servers(spec: PerformanceTargetSpec) -> list[Server]:
    servers = []
    if spec.postgres is not None:
        servers.append(Server("postgres", POSTGRES_REACHABLE, spec.postgres.host,
                              spec.postgres.port))
    if spec.redis is not None:
        servers.append(Server("redis", REDIS_REACHABLE, spec.redis.host, spec.redis.port))
    if spec.prometheus is not None:
        try:
            host, port = check_url(spec.prometheus.url)
        except ConnectionRefused:
            host, port = spec.prometheus.url, 0
        servers.append(Server("prometheus", PROMETHEUS_REACHABLE, host, port))
    return servers


async def probe(target: str, server: Server) -> Outcome:
    """A TCP handshake with ``server`` (no login: the profiles' reconciles report that)."""
    try:
        if server.port == 0:
            raise ConnectionRefused(URL_REFUSED, "prometheus.url is not an http(s) URL "
                                                  "without credentials")
        address = await admit(server.host, server.port, granted_by=target)
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, server.port),
                                           PROBE_TIMEOUT_SECONDS)
        writer.close()
    except ConnectionRefused as err:
        return Outcome(server.condition, False, err.reason, str(err))
    except (OSError, asyncio.TimeoutError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else "timed out"
        return Outcome(server.condition, False, UNREACHABLE,
                       f"no TCP connection to {server.address}: {why}")
    return Outcome(server.condition, True, REACHABLE, f"{server.address} accepts connections")


async def observe(target: str, spec: PerformanceTargetSpec
                  ) -> list[tuple[Server, Outcome]]:
    servers = declared_servers(spec)
    outcomes = await asyncio.gather(*(probe(target, server) for server in servers))
    return list(zip(servers, outcomes))


def usage(users: Iterable[tuple[str, str]]) -> dict[str, object]:
    """``status.profiles`` and ``status.namespaces`` from the (namespace, name) of every
    profile naming the target."""
    users = set(users)
    return {"profiles": len(users),
            "namespaces": sorted({namespace for namespace, _ in users})[:NAMESPACES_SHOWN]}


def server_status(observed: list[tuple[Server, Outcome]]) -> list[dict[str, object]]:
    return [{"server": server.server, "address": server.address, "reachable": outcome.ready,
             "message": "" if outcome.ready else outcome.message}
            for server, outcome in observed]
