"""The reference limiter: enforces exactly what the operator wrote in a tenant's table.

Algorithm: GCRA (generic cell rate algorithm, the virtual-scheduling form of a token bucket).
A rule allows ``requests`` per ``windowSeconds`` on average (one request's worth of quota
refills every ``interval = windowSeconds / requests``) and ``requests + burst`` back to back
from an idle bucket. A bucket stores one number, the theoretical arrival time (TAT); a request
at time ``now`` is allowed when ``now >= TAT + interval - (requests + burst) * interval``, and
then moves TAT one interval on. So from idle ``requests + burst`` requests pass at once, the next
is denied with a retry-after of one interval, and after that one passes every interval.

Each check is one atomic Lua script (``gcra.lua``, loaded once per client and called with
EVALSHA) that also verifies the caller's copy of the table is still the current version, so a
changed limit is enforced from the first check after the operator's write. The table itself is
read only when its version changes, and cached per (prefix, tenant) in the :class:`Limiter`.

Speed: a check's EVALSHA command is the same bytes every time for one rule of one table
version, so it is encoded once and remembered with the table, per (path, method) together with
the rule's limit: the client's work per check is then one dict lookup, a reply to parse and a
small tuple (:class:`Decision`). A batch of checks (:meth:`Limiter.check_many`) is one write of
those bytes on one connection of the client's own pool and one read of all the replies: the
socket's bytes go to a ``hiredis.Reader`` as they arrive and every complete reply is taken with
``gets()``, not with a coroutine per reply (redis-py's ``read_response``, over a third of the
client's time per check). ``python bench/limiter.py`` measures it against ``redis-benchmark``.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError

from .layout import LIMITS_FIELD, VERSION_FIELD, bucket_key, record_key
from .rules import EndpointRule, first_match, table_rules

SCRIPT = importlib.resources.files(__package__).joinpath("gcra.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_ALLOWED, _DENIED = 1, 0  # any other status is -1: the caller's table is stale
#: A table that changes under every attempt is a bug somewhere, not something to spin on.
_MAX_ATTEMPTS = 3
#: Distinct (path, method) pairs remembered per table; paths carrying ids are unbounded.
_MATCH_MEMO_SIZE = 4096
#: Bytes asked of the socket per read while a batch's replies come in.
_READ_SIZE = 1 << 16


class TableNotFound(LookupError):
    """The tenant has no limits record (unknown tenant, or not yet restored after a Redis
    restart): the application decides whether to fail open or closed."""


class Decision(NamedTuple):
    """One check's outcome. A tuple, because a batch makes one per check and a tuple is the
    cheapest immutable record to make (``check_many`` builds it with ``tuple.__new__``)."""

    allowed: bool
    #: Requests that may still pass right now (None: no rule applies, nothing is limited).
    remaining: int | None
    #: When the next request may pass; 0 when allowed.
    retry_after_seconds: float
    #: The rule's requests per window (None: no rule applies).
    limit: int | None


UNLIMITED = Decision(allowed=True, remaining=None, retry_after_seconds=0.0, limit=None)
_new_tuple = tuple.__new__


def encode_command(*args: str | int) -> bytes:
    """A command in the Redis protocol (RESP), ready to be written to a connection."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Call(NamedTuple):
    """What a check of one (path, method) sends, and the limit its decision reports."""

    command: bytes
    limit: int


@dataclass
class _Table:
    prefix: str
    tenant: str
    version: str
    rules: tuple[EndpointRule, ...]
    _calls: dict[tuple[str, str], _Call | None] = field(default_factory=dict)
    _commands: dict[EndpointRule, bytes] = field(default_factory=dict)

    def call(self, path: str, method: str) -> _Call | None:
        """The check of a request, None when no rule applies; remembered per (path, method)
        as given, so a repeated request costs one dict lookup."""
        key = (path, method)
        try:
            return self._calls[key]
        except KeyError:
            pass
        if len(self._calls) >= _MATCH_MEMO_SIZE:
            self._calls.clear()
        rule = first_match(self.rules, path, method.upper())
        call = None if rule is None else _Call(self.command(rule), rule.requests)
        self._calls[key] = call
        return call

    def command(self, rule: EndpointRule) -> bytes:
        """The EVALSHA of one check against ``rule`` (see gcra.lua for the arguments)."""
        packed = self._commands.get(rule)
        if packed is None:
            packed = self._commands[rule] = encode_command(
                "EVALSHA", SCRIPT_SHA, 2, record_key(self.prefix, self.tenant),
                bucket_key(self.prefix, self.tenant, rule.bucket_name), self.version,
                repr(rule.emission_interval_us), rule.capacity)
        return packed


class Limiter:
    """Checks against one Redis, caching each tenant's table by version."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        #: prefix -> tenant -> table
        self._tables: dict[str, dict[str, _Table]] = {}
        self._script_loaded = False

    async def check(self, prefix: str, tenant: str, endpoint_path: str, method: str
                    ) -> Decision:
        return (await self.check_many(prefix, [(tenant, endpoint_path, method)]))[0]

    async def check_many(self, prefix: str, requests: Sequence[tuple[str, str, str]]
                         ) -> list[Decision]:
        """Check ``(tenant, path, method)`` requests in order, pipelined (one round trip when
        every table is cached and current); the same decisions as checking them one by one."""
        decisions = [UNLIMITED] * len(requests)
        tables = self._tables.setdefault(prefix, {})
        pending: Sequence[int] = range(len(requests))
        for _ in range(_MAX_ATTEMPTS):
            # Parallel lists rather than a tuple per check: this loop is most of the client's
            # time per check.
            commands: list[bytes] = []
            indexes: list[int] = []
            limits: list[int] = []
            for i in pending:
                tenant, path, method = requests[i]
                table = tables.get(tenant) or await self._load_table(prefix, tenant)
                call = table.call(path, method)
                if call is not None:
                    command, limit = call
                    commands.append(command)
                    indexes.append(i)
                    limits.append(limit)
            replies = await self._execute(b"".join(commands), len(commands))
            retry: list[int] = []
            pending = retry
            for i, limit, reply in zip(indexes, limits, replies):
                if isinstance(reply, list):
                    status = reply[0]
                    if status == _ALLOWED:
                        decisions[i] = _new_tuple(Decision, (True, reply[1], 0.0, limit))
                        continue
                    if status == _DENIED:
                        decisions[i] = _new_tuple(Decision,
                                                  (False, 0, reply[2] / 1_000_000, limit))
                        continue
                    tables.pop(requests[i][0], None)  # stale: read the table again
                elif isinstance(reply, NoScriptError):
                    self._script_loaded = False  # the server restarted or flushed its scripts
                else:
                    raise reply
                retry.append(i)
            if not retry:
                return decisions
        raise RuntimeError(f"the limits table of {requests[pending[0]][0]!r} kept changing "
                           f"during {_MAX_ATTEMPTS} attempts")

    async def _load_table(self, prefix: str, tenant: str) -> _Table:
        version, limits = await self.redis.hmget(record_key(prefix, tenant),
                                                 [VERSION_FIELD, LIMITS_FIELD])
        if version is None or limits is None:
            raise TableNotFound(f"no rate-limit table for tenant {tenant!r} under {prefix!r}")
        if isinstance(version, bytes):
            version = version.decode()
        table = _Table(prefix, tenant, version, table_rules(json.loads(limits)))
        self._tables.setdefault(prefix, {})[tenant] = table
        return table

    async def _execute(self, commands: bytes, count: int) -> list[list[int] | ResponseError]:
        """Write ``count`` encoded commands at once on one pooled connection and read their
        replies; an error reply is returned in its place, not raised."""
        if not count:
            return []
        if not self._script_loaded:
            await self.redis.script_load(SCRIPT)
            self._script_loaded = True
        pool = self.redis.connection_pool
        for attempt in range(2):
            connection = await pool.get_connection()
            replies: list[list[int] | ResponseError] = []
            try:
                await connection.send_packed_command(commands)
                # One deadline for the batch instead of one per reply (a timer each).
                async with asyncio.timeout(connection.socket_timeout):
                    # The pool's connection, with everything redis-py set up on it (TLS or
                    # not, AUTH, SELECT, ...); only its reading is ours, from the stream under
                    # its parser, which holds nothing between two commands.
                    await _read_replies(connection._reader, count, replies)
                return replies
            except RedisConnectionError:
                await connection.disconnect()
                # Nothing read back: a pooled connection the server had closed (it restarted)
                # and nothing ran. Once replies came, retrying could count requests twice.
                if replies or attempt:
                    raise
            except BaseException:
                await connection.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                await pool.release(connection)
        raise AssertionError("unreachable")


async def _read_replies(stream: asyncio.StreamReader, count: int,
                        replies: list[list[int] | ResponseError]) -> None:
    """Read ``count`` replies into ``replies``: each chunk of bytes the socket has is fed to
    hiredis and every reply complete in it taken at once. An error reply is an exception in its
    place; a RESP3 push message is no reply to a command and is skipped."""
    parser = hiredis.Reader(replyError=_reply_error)
    gets, append = parser.gets, replies.append
    while len(replies) < count:
        try:
            data = await stream.read(_READ_SIZE)
        except ConnectionError as err:  # the OS's: reset, aborted
            raise RedisConnectionError(f"Error while reading from Redis: {err}") from err
        if not data:
            raise RedisConnectionError("Connection closed by server.")
        parser.feed(data)
        try:
            reply = gets()
            while reply is not False:
                if reply.__class__ is not hiredis.PushNotification:
                    append(reply)
                reply = gets()
        except hiredis.ProtocolError as err:
            raise InvalidResponse(f"Protocol error from Redis: {err}") from err


def _reply_error(message: str) -> ResponseError:
    """An error reply as redis-py would raise it, as far as the limiter tells them apart."""
    code, _, rest = message.partition(" ")
    return NoScriptError(rest) if code == "NOSCRIPT" else ResponseError(message)


_limiters: weakref.WeakKeyDictionary[Redis, Limiter] = weakref.WeakKeyDictionary()


def limiter_for(redis: Redis) -> Limiter:
    """The :class:`Limiter` (and its table cache) of one Redis client."""
    limiter = _limiters.get(redis)
    if limiter is None:
        limiter = _limiters[redis] = Limiter(redis)
    return limiter


async def check(redis: Redis, prefix: str, tenant: str, endpoint_path: str, method: str
                ) -> Decision:
    """One request of ``tenant`` to ``endpoint_path`` with ``method``: allowed or not, as the
    tenant's table says. Raises :class:`TableNotFound` when the tenant has no table."""
    return await limiter_for(redis).check(prefix, tenant, endpoint_path, method)
