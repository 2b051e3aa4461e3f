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
version, so it is encoded once and cached with the table; a batch of checks
(:meth:`Limiter.check_many`) is one write of those bytes and one read of the replies on one
pooled connection. Client-side cost per check is then a dict lookup and a reply to parse.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from .layout import LIMITS_FIELD, VERSION_FIELD, bucket_key, record_key
from .rules import EndpointRule, first_match, table_rules

SCRIPT = importlib.resources.files(__package__).joinpath("gcra.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_STALE, _DENIED = -1, 0
#: A table that changes under every attempt is a bug somewhere, not something to spin on.
_MAX_ATTEMPTS = 3
#: Distinct (path, method) pairs remembered per table; paths carrying ids are unbounded.
_MATCH_MEMO_SIZE = 4096


class TableNotFound(LookupError):
    """The tenant has no limits record (unknown tenant, or not yet restored after a Redis
    restart): the application decides whether to fail open or closed."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Requests that may still pass right now (None: no rule applies, nothing is limited).
    remaining: int | None
    #: When the next request may pass; 0 when allowed.
    retry_after_seconds: float
    #: The rule's requests per window (None: no rule applies).
    limit: int | None


UNLIMITED = Decision(allowed=True, remaining=None, retry_after_seconds=0.0, limit=None)


def encode_command(*args: str | int) -> bytes:
    """A command in the Redis protocol (RESP), ready to be written to a connection."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@dataclass
class _Table:
    prefix: str
    tenant: str
    version: str
    rules: tuple[EndpointRule, ...]
    _matches: dict[tuple[str, str], EndpointRule | None] = field(default_factory=dict)
    _commands: dict[EndpointRule, bytes] = field(default_factory=dict)

    def match(self, path: str, method: str) -> EndpointRule | None:
        key = (path, method)
        if key not in self._matches:
            if len(self._matches) >= _MATCH_MEMO_SIZE:
                self._matches.clear()
            self._matches[key] = first_match(self.rules, path, method)
        return self._matches[key]

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
        self._tables: dict[tuple[str, str], _Table] = {}
        self._script_loaded = False

    async def check(self, prefix: str, tenant: str, endpoint_path: str, method: str
                    ) -> Decision:
        return (await self.check_many(prefix, [(tenant, endpoint_path, method)]))[0]

    async def check_many(self, prefix: str, requests: Sequence[tuple[str, str, str]]
                         ) -> list[Decision]:
        """Check ``(tenant, path, method)`` requests in order, pipelined (one round trip when
        every table is cached and current); the same decisions as checking them one by one."""
        decisions: list[Decision | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for _ in range(_MAX_ATTEMPTS):
            calls: list[tuple[int, EndpointRule, bytes]] = []
            for i in pending:
                tenant, path, method = requests[i]
                table = self._tables.get((prefix, tenant)) or await self._load_table(prefix,
                                                                                     tenant)
                rule = table.match(path, method.upper())
                if rule is None:
                    decisions[i] = UNLIMITED
                else:
                    calls.append((i, rule, table.command(rule)))
            replies = await self._execute(b"".join(command for _, _, command in calls),
                                          len(calls))
            pending = []
            for (i, rule, _), reply in zip(calls, replies):
                if isinstance(reply, NoScriptError):
                    self._script_loaded = False  # the server restarted or flushed its scripts
                    pending.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                elif reply[0] == _STALE:
                    self._tables.pop((prefix, requests[i][0]), None)
                    pending.append(i)
                elif reply[0] == _DENIED:
                    decisions[i] = Decision(False, 0, reply[2] / 1_000_000, rule.requests)
                else:
                    decisions[i] = Decision(True, reply[1], 0.0, rule.requests)
            if not pending:
                return decisions  # type: ignore[return-value]
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
        self._tables[(prefix, tenant)] = table
        return table

    async def _execute(self, commands: bytes, count: int) -> list[list[int] | Exception]:
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
            replies: list[list[int] | Exception] = []
            try:
                await connection.send_packed_command(commands)
                # One deadline for the batch instead of one per reply (a timer each).
                async with asyncio.timeout(connection.socket_timeout):
                    for _ in range(count):
                        try:
                            replies.append(await connection.read_response(timeout=math.inf))
                        except ResponseError as err:
                            replies.append(err)
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
