"""Connections to the databases profiles point at.

One small async pool per (namespace, profile, host, port, database, user), opened on first use
and replaced when the Secret's password changes; a profile's previous pool is closed as soon as
its host, port, database or user changes, and any pool nobody asked for in ten resyncs is
closed (its profile is gone). Opening one target never waits for another: each key
has its own lock, so a host that black-holes connections delays only the profiles pointing at
it. A pooled connection is checked before it is handed out, so after a server restart the dead
ones are replaced instead of failing the next reconcile. Pooled connections serve the short catalog
queries and settings changes; every DDL job (an index build can take hours) gets a dedicated
connection of its own, so a long build never starves the reconcile of a pooled connection.

Every connection runs with ``application_name=perf-operator`` (how a restarted operator
recognises builds its previous process left running, see ``index_builds``) and a pinned
``search_path`` of ``pg_catalog, public``: the operator's SQL qualifies tables with their
schema, so the path only decides where unqualified functions and operator classes in index
expressions are looked up, and pg_catalog first means a function created in ``public`` can
never shadow a built-in.

Passwords live only in the connection parameters; they are registered with the scrubber by
``secrets.read_secret_keys`` and every driver error leaves this package through
``scrub.scrub``.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..api.profile import PostgresConnection
from ..config import CONFIG
from ..scrub import register_secret, scrub
from ..secrets import read_secret_keys
from ..targets import secret_namespace
from ..targets.policy import admit

APPLICATION_NAME = "perf-operator"
SEARCH_PATH = "pg_catalog, public"
#: Bound on the operator's own catalog queries and settings statements (not on index builds).
QUERY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 10
#: Pooled connections per target: the reconcile needs one at a time; a few cover the timer and
#: an update of the same profile overlapping, plus a deadline cancelling a build.
POOL_MAX_SIZE = 4
#: A pool nobody asked for this long is closed: every live profile asks for its own at each
#: resync, so this catches pools of profiles gone without a cleanup that closes them (a tenant
#: deleted after its profile opens the profile's pool once more to remove its mirror row).
POOL_IDLE_SECONDS = 10 * CONFIG.resync_seconds


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refuses the login; the message is scrubbed."""


class DatabaseGone(DatabaseUnavailable):
    """The server says the database does not exist (SQLSTATE 3D000: dropped, or never there):
    nothing the operator made in it can be left, so a cleanup of it has nothing to do."""


def _database_missing(err: psycopg.Error, dbname: str) -> bool:
    """libpq reports a refused connection without its SQLSTATE, so the server's own words are
    the evidence too (an English ``lc_messages``, PostgreSQL's default; another language reads
    as an unreachable database, which is retried: the safe side)."""
    return err.sqlstate == "3D000" or f'database "{dbname}" does not exist' in str(err)


#: SQLSTATEs of a server that is going away or not accepting connections yet (admin, crash or
#: immediate shutdown, starting up): the server is unreachable, not the statement wrong.
_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})


def unreachable(err: BaseException) -> bool:
    """Whether a driver error means the server cannot be talked to (connection lost or
    refused, shutting down, no pooled connection within the timeout) rather than a failed
    statement."""
    if isinstance(err, PoolTimeout):
        return True
    if not isinstance(err, psycopg.OperationalError):
        return False
    state = err.sqlstate
    return state is None or state.startswith("08") or state in _SHUTDOWN_STATES


def describe_unreachable(key: TargetKey) -> str:
    return (f"PostgreSQL {key.host}:{key.port}/{key.dbname} is unreachable (connection lost or "
            f"refused); retrying every resync")


@dataclass(frozen=True)
class TargetKey:
    """Which pool a profile uses: one per profile and database login."""

    namespace: str
    profile: str
    host: str
    port: int
    dbname: str
    user: str

    @property
    def owner(self) -> str:
        """The owner recorded in the ownership marker of every index this profile creates."""
        return f"{self.namespace}/{self.profile}"

    @property
    def database(self) -> tuple[str, int, str]:
        """The database itself, shared by every profile pointing at it (build slots)."""
        return (self.host, self.port, self.dbname)


@dataclass
class DatabaseTarget:
    """An open pool to one database plus what is needed for dedicated DDL connections."""

    key: TargetKey
    pool: AsyncConnectionPool
    credential_fingerprint: str
    connect_kwargs: dict[str, Any] = field(repr=False)
    #: When it was last handed out (``time.monotonic``), for ``close_idle_pools``.
    used_at: float = field(default_factory=time.monotonic)

    def connection(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection]:
        """A pooled autocommit connection for a short query."""
        return self.pool.connection()

    @contextlib.asynccontextmanager
    async def ddl_connection(self, *, lock_timeout_ms: int, statement_timeout_ms: int
                             ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A dedicated autocommit connection for concurrent DDL (which refuses transactions).

        ``client_connection_check_interval`` (PostgreSQL 14+) makes the server abandon the
        statement within a second when this process dies, instead of finishing a build nobody
        will mark; ``statement_timeout`` is the server-side backstop of the build deadline."""
        conn = await _connect(self.connect_kwargs)
        try:
            await conn.execute("SELECT set_config('lock_timeout', %s, false), "
                               "set_config('statement_timeout', %s, false)",
                               (str(lock_timeout_ms), str(statement_timeout_ms)))
            if conn.info.server_version >= 140000:
                await conn.execute("SET client_connection_check_interval = 1000")
            yield conn
        finally:
            await conn.close()

    async def close(self) -> None:
        await self.pool.close()


#: The open pools: a profile's go when it is deleted, loses its database section or points
#: elsewhere (``close_profile_pools``), or its server stops answering (a fresh pool next time).
_targets: dict[TargetKey, DatabaseTarget] = {}
#: One lock per key, held while that key's pool is opened (never across other keys' connects),
#: and gone as soon as nobody holds or awaits it.
_locks: weakref.WeakValueDictionary[TargetKey, asyncio.Lock] = weakref.WeakValueDictionary()


async def target_for_profile(namespace: str, profile: str, connection: PostgresConnection, *,
                             refresh: bool = False) -> DatabaseTarget:
    """The pool for a profile's ``spec.database.connection``, with the login read from the
    Secret it references (in the profile's own namespace, or in the operator's for a server a
    PerformanceTarget granted: ``targets.secret_namespace``), through the Secret cache:
    ``refresh`` reads it again (the profile's own reconcile, so a rotation is picked up). A
    connection that fails with a cached login reads the Secret again and, when the login
    changed (a password rotated since it was cached), tries once more with the new one."""
    login = await _login(namespace, connection, refresh=refresh)
    try:
        return await _open_for_login(namespace, profile, connection, login)
    except DatabaseGone:
        raise
    except DatabaseUnavailable:
        if refresh:
            raise
        fresh = await _login(namespace, connection, refresh=True)
        if fresh == login:
            raise
        return await _open_for_login(namespace, profile, connection, fresh)


async def _login(namespace: str, connection: PostgresConnection, *, refresh: bool
                 ) -> tuple[str, str]:
    ref = connection.secret_ref
    username, password = await read_secret_keys(secret_namespace(connection, namespace),
                                                ref.name, ref.username_key, ref.password_key,
                                                identity_keys=(ref.username_key,),
                                                refresh=refresh)
    assert username is not None and password is not None  # both keys are required
    return username, password


async def _open_for_login(namespace: str, profile: str, connection: PostgresConnection,
                          login: tuple[str, str]) -> DatabaseTarget:
    username, password = login
    key = TargetKey(namespace=namespace, profile=profile, host=connection.host,
                    port=connection.port, dbname=connection.database, user=username)
    return await open_target(key, password, sslmode=connection.ssl_mode,
                             granted_by=connection.granted_by)


async def open_target(key: TargetKey, password: str, *, sslmode: str = "prefer",
                      granted_by: str | None = None) -> DatabaseTarget:
    """The pool for ``key``, opened on first use and reopened when the password changed (or
    the address the connection policy vets, ``targets.policy.admit``: checked before every
    use, and the pool connects to exactly that address). ``granted_by`` names who vouches for
    the server (a PerformanceTarget, or a tool's command line); None is a profile's inline
    connection, allowed only by the operator-wide allow-list."""
    register_secret(("login", key), password)
    hostaddr = await admit(key.host, key.port, granted_by=granted_by)
    fingerprint = hashlib.sha256(f"{sslmode}\0{hostaddr}\0{password}".encode()).hexdigest()
    async with _locks.setdefault(key, asyncio.Lock()):
        current = _targets.get(key)
        if current is not None and current.credential_fingerprint == fingerprint:
            current.used_at = time.monotonic()
            target = current
        else:
            target = await _open_pool(key, current, password, sslmode, hostaddr, fingerprint)
    if target is not current:
        await close_profile_pools(key.namespace, key.profile, keep=key)
    await close_idle_pools(target.used_at)
    return target


async def _open_pool(key: TargetKey, current: DatabaseTarget | None, password: str,
                   sslmode: str, hostaddr: str, fingerprint: str) -> DatabaseTarget:
    """Close ``current`` (a changed password or address) and open the key's pool anew."""
    if current is not None:
        del _targets[key]
        await current.close()
    kwargs = {
        "host": key.host, "hostaddr": hostaddr, "port": key.port, "dbname": key.dbname,
        "user": key.user,
        "password": password, "sslmode": sslmode, "application_name": APPLICATION_NAME,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "options": f"-c search_path={SEARCH_PATH.replace(' ', '')} "
                   f"-c statement_timeout={QUERY_TIMEOUT_MS}",
    }
    # One direct connection first: a pool reports only "couldn't get a connection", the
    # driver says why (wrong password, no such database), which the status should show.
    probe = await _connect(kwargs)
    await probe.close()
    pool = AsyncConnectionPool(kwargs={**kwargs, "autocommit": True}, min_size=1,
                               max_size=POOL_MAX_SIZE, open=False,
                               name=f"perf-operator:{key.owner}",
                               timeout=CONNECT_TIMEOUT_SECONDS,
                               check=AsyncConnectionPool.check_connection)
    await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
    target = DatabaseTarget(key=key, pool=pool, credential_fingerprint=fingerprint,
                            connect_kwargs=kwargs)
    _targets[key] = target
    return target


async def close_idle_pools(now: float) -> None:
    """Close every pool nobody asked for within ``POOL_IDLE_SECONDS``."""
    for idle in [t for t in _targets.values() if now - t.used_at >= POOL_IDLE_SECONDS]:
        await forget_target(idle)


async def close_profile_pools(namespace: str, profile: str, *,
                              keep: TargetKey | None = None) -> None:
    """Close the profile's pools (but ``keep``): it is deleted, has no database any more, or
    points at another host, port, database or user now, and idle connections to the old
    database would stay open forever."""
    for old in [t for k, t in _targets.items()
                if (k.namespace, k.profile) == (namespace, profile) and k != keep]:
        await forget_target(old)


async def _connect(kwargs: dict[str, Any]) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(**kwargs, autocommit=True)
    except psycopg.Error as err:
        error = DatabaseGone if _database_missing(err, kwargs["dbname"]) else DatabaseUnavailable
        raise error(
            f"cannot connect to PostgreSQL {kwargs['host']}:{kwargs['port']}/{kwargs['dbname']} "
            f"as {kwargs['user']}: {scrub(err)}") from None


async def forget_target(target: DatabaseTarget) -> None:
    """Close a profile's pool for good (the profile is deleted, or points elsewhere now)."""
    if _targets.get(target.key) is target:
        del _targets[target.key]
        register_secret(("login", target.key), None)
    await target.close()


async def close_all() -> None:
    """Close every pool (operator shutdown, end of a test session)."""
    targets = list(_targets.values())
    _targets.clear()
    for target in targets:
        await target.close()


async def one_row(cursor: psycopg.AsyncCursor[Any]) -> Any:
    """The row of a query that always returns one (an aggregate, a catalog function); a
    missing row fails with what happened rather than with an unpacking error."""
    row = await cursor.fetchone()
    if row is None:
        raise psycopg.DataError("the server returned no row where one was expected")
    return row
