"""Redis clients, one per server and login, shared by every profile and tenant reconcile, and
the cached Secret reads behind them.

Thousands of tenants point at the same Redis through the same Secret: reading the Secret and
opening connections once per reconcile would cost an API request and a TCP handshake per tenant
per resync. So a client is kept per (namespace, Secret, host, port, db, TLS); the Secret is read
again only after ``CREDENTIALS_MAX_AGE`` or when Redis refuses the login (rotated password).
Each client's pool is bounded, so a burst of reconciles queues for a connection instead of
opening thousands.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import AuthenticationError

from ..secrets import read_secret_keys

#: How long a password read from a Secret is trusted before it is read again.
CREDENTIALS_MAX_AGE = 300.0
#: A refused login re-reads the Secret, but not once per waiting tenant.
REFRESH_MIN_AGE = 1.0
#: Connections per client: enough to keep Redis busy, few enough not to matter to maxclients.
POOL_SIZE = 32
TIMEOUT_SECONDS = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class RedisTarget:
    """A Redis server and the Secret that logs in to it, from a profile's ``redis.connection``."""

    namespace: str
    host: str
    port: int
    db: int
    tls: bool
    secret: str | None
    password_key: str | None
    username_key: str | None

    @classmethod
    def from_spec(cls, namespace: str, connection: Any) -> RedisTarget:
        ref = connection.secret_ref
        return cls(namespace=namespace, host=connection.host, port=connection.port,
                   db=connection.db, tls=connection.tls, secret=ref.name if ref else None,
                   password_key=ref.password_key if ref else None,
                   username_key=ref.username_key if ref else None)


@dataclass
class _CachedSecret:
    values: list[str | None]
    read_at: float


_secrets: dict[tuple[str, str, tuple[str | None, ...]], _CachedSecret] = {}
_clients: dict[RedisTarget, tuple[Redis, tuple[str | None, str | None]]] = {}
_locks: dict[object, asyncio.Lock] = {}


async def read_secret_cached(namespace: str, name: str, *keys: str | None,
                             refresh: bool = False) -> list[str | None]:
    """``secrets.read_secret_keys``, read at most once per ``CREDENTIALS_MAX_AGE`` however
    many tenants ask; concurrent askers share one read. ``refresh`` (a refused login) reads
    again unless another caller just did."""
    cache_key = (namespace, name, keys)
    async with _locks.setdefault(cache_key, asyncio.Lock()):
        cached = _secrets.get(cache_key)
        now = time.monotonic()
        age = now - cached.read_at if cached else None
        if age is None or age >= CREDENTIALS_MAX_AGE or (refresh and age >= REFRESH_MIN_AGE):
            cached = _secrets[cache_key] = _CachedSecret(
                await read_secret_keys(namespace, name, *keys), now)
        return cached.values


def _new_client(target: RedisTarget, login: tuple[str | None, str | None]) -> Redis:
    username, password = login
    pool = BlockingConnectionPool(
        connection_class=SSLConnection if target.tls else Connection,
        host=target.host, port=target.port, db=target.db, username=username, password=password,
        max_connections=POOL_SIZE, timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS, decode_responses=True,
        # One immediate retry replaces a connection that died with a restarted server; a server
        # that is really down fails the reconcile at once and is retried on the next resync.
        retry=Retry(ConstantBackoff(0), 1))
    return Redis(connection_pool=pool)


async def client_for(target: RedisTarget, *, refresh: bool = False) -> Redis:
    """The shared client of ``target``, replaced when the Secret's login has changed."""
    login: tuple[str | None, str | None] = (None, None)
    if target.secret is not None:
        username, password = await read_secret_cached(
            target.namespace, target.secret, target.username_key, target.password_key,
            refresh=refresh)
        login = (username, password)
    async with _locks.setdefault(target, asyncio.Lock()):
        current = _clients.get(target)
        if current is not None and current[1] == login:
            return current[0]
        if current is not None:
            await current[0].aclose()
        client = _new_client(target, login)
        _clients[target] = (client, login)
        return client


async def with_client(target: RedisTarget, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` with the target's client; a refused login re-reads the Secret once (the
    password may have been rotated since it was cached)."""
    try:
        return await work(await client_for(target))
    except AuthenticationError:
        return await work(await client_for(target, refresh=True))


async def close_all() -> None:
    """Close every client (operator shutdown, tests)."""
    for client, _ in _clients.values():
        await client.aclose()
    _clients.clear()
    _secrets.clear()
