"""Redis clients, one per server and login, shared by every profile and tenant reconcile.

Thousands of tenants point at the same Redis through the same Secret: opening connections once
per reconcile would cost a TCP handshake per tenant per resync (and the Secret is read through
the cache of ``secrets.read_secret_keys``, again when Redis refuses the login: a rotated
password). So a client is kept per server and login (host, port, db, TLS, username,
password): profiles in fifty namespaces, each with its own copy of the Secret, share one pool.
Each pool is bounded, so a burst of reconciles queues for a connection instead of opening
thousands.

Nothing here outlives what uses it: a target (a profile's or tenant's view of a server) no
reconcile has used for ``TARGET_IDLE_SECONDS`` is forgotten (its profile was deleted or points
elsewhere), a client no remembered target uses is closed at once, and a per-key lock exists
only while it is held or awaited.
"""
from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import AuthenticationError

from ..config import CONFIG
from ..secrets import read_secret_keys
from ..targets import secret_namespace
from ..targets.policy import admit

#: Connections per client: enough to keep Redis busy, few enough not to matter to maxclients.
POOL_SIZE = 32
TIMEOUT_SECONDS = 5.0
#: A target unused for this long is forgotten: every live profile uses its own at each resync.
TARGET_IDLE_SECONDS = 10 * CONFIG.resync_seconds

T = TypeVar("T")


@dataclass(frozen=True)
class RedisTarget:
    """A Redis server and the Secret that logs in to it, from a profile's ``redis.connection``."""

    #: Where the Secret is: the profile's namespace, or the operator's for a server a
    #: PerformanceTarget granted (``targets.secret_namespace``).
    namespace: str
    host: str
    port: int
    db: int
    tls: bool
    secret: str | None
    password_key: str | None
    username_key: str | None
    #: The PerformanceTarget that granted the server (None: inline), for the connection policy.
    granted_by: str | None = None

    @classmethod
    def from_spec(cls, namespace: str, connection: Any) -> RedisTarget:
        ref = connection.secret_ref
        return cls(namespace=secret_namespace(connection, namespace), host=connection.host,
                   port=connection.port, db=connection.db, tls=connection.tls,
                   secret=ref.name if ref else None,
                   password_key=ref.password_key if ref else None,
                   username_key=ref.username_key if ref else None,
                   granted_by=connection.granted_by)


Login = tuple[str | None, str | None]
#: (host, port, db, tls, login): what makes two targets the same server seen the same way.
ClientKey = tuple[str, int, int, bool, Login]

_clients: dict[ClientKey, Redis] = {}


@dataclass
class _TargetUse:
    """The client a target used last, and when."""

    key: ClientKey
    at: float


#: Every target used within ``TARGET_IDLE_SECONDS``: a client none of them uses is closed.
_target_uses: dict[RedisTarget, _TargetUse] = {}
#: One lock per client key, gone as soon as nobody holds or awaits it.
_locks: weakref.WeakValueDictionary[object, asyncio.Lock] = weakref.WeakValueDictionary()


class PinnedSSLConnection(SSLConnection):
    """TLS to the address the connection policy vetted, with the certificate checked against
    the host name the profile wrote: connecting by name would ask DNS again, and a changed
    answer (rebinding) would reach a server nobody checked."""

    def __init__(self, *, server_hostname: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_hostname = server_hostname

    def _connection_arguments(self) -> Mapping[str, Any]:
        return {**super()._connection_arguments(), "server_hostname": self.server_hostname}


def _new_client(target: RedisTarget, login: Login, address: str) -> Redis:
    """A client connecting to ``address``, the one the connection policy vetted for
    ``target.host`` (with TLS too: see :class:`PinnedSSLConnection`)."""
    username, password = login
    tls: dict[str, Any] = ({"connection_class": PinnedSSLConnection,
                            "server_hostname": target.host} if target.tls
                           else {"connection_class": Connection})
    pool = BlockingConnectionPool(
        **tls, host=address, port=target.port, db=target.db,
        username=username, password=password,
        # timeout=None: a reconcile waits its turn for a connection however many queue (10,000
        # tenants created at once would otherwise report "No connection available"); a Redis
        # that is down or hung still fails each command within the socket timeouts.
        max_connections=POOL_SIZE, timeout=None, socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS, decode_responses=True,
        # One immediate retry replaces a connection that died with a restarted server; a server
        # that is really down fails the reconcile at once and is retried on the next resync.
        retry=Retry(ConstantBackoff(0), 1))
    return Redis(connection_pool=pool)


async def client_for(target: RedisTarget, *, refresh: bool = False) -> Redis:
    """The shared client of ``target``'s server and login (a changed Secret gives a new one;
    the old one is closed when no other recently used target still uses it). The connection
    policy (``targets.policy.admit``) vets the server before anything is read or connected."""
    address = await admit(target.host, target.port, granted_by=target.granted_by)
    login: Login = (None, None)
    if target.secret is not None:
        username, password = await read_secret_keys(
            target.namespace, target.secret, target.username_key, target.password_key,
            identity_keys=(target.username_key,), refresh=refresh)
        login = (username, password)
    key: ClientKey = (target.host, target.port, target.db, target.tls, login)
    async with _locks.setdefault(key, asyncio.Lock()):
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(target, login, address)
    now = time.monotonic()
    _target_uses[target] = _TargetUse(key, now)
    await close_unused(now)
    return client


async def close_unused(now: float) -> None:
    """Forget the targets unused for ``TARGET_IDLE_SECONDS`` and close every client that no
    remaining target uses (a rotated password's, a deleted or re-pointed profile's)."""
    for target in [t for t, use in _target_uses.items() if now - use.at >= TARGET_IDLE_SECONDS]:
        del _target_uses[target]
    in_use = {use.key for use in _target_uses.values()}
    unused = [_clients.pop(key) for key in list(_clients) if key not in in_use]
    for client in unused:
        await client.aclose()


async def with_client(target: RedisTarget, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` with the target's client; a refused login re-reads the Secret once (the
    password may have been rotated since it was cached)."""
    try:
        return await work(await client_for(target))
    except AuthenticationError:
        return await work(await client_for(target, refresh=True))


async def close_all() -> None:
    """Close every client (operator shutdown, tests)."""
    for client in _clients.values():
        await client.aclose()
    _clients.clear()
    _target_uses.clear()
