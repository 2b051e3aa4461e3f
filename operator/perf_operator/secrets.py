"""Credentials from Kubernetes Secrets in the referencing object's own namespace.

Values are registered with the scrubber as soon as they are read, so no later error message can
carry them; user names (``identity_keys``) are not credentials and stay readable in messages.
Each read replaces what the scrubber holds for that Secret key (a rotated password leaves the
registry), and a Secret found deleted is forgotten. The operator's leader sees every read from
the API before its values are used (``set_read_hook``): it keeps a durable copy for cleanups
(handlers/escrow.py).

:func:`read_secret_keys` is the one reader, and it caches: thousands of tenants log in through
their profile's Secret, and an API request per tenant per resync would cost more than the rest
of their reconcile. Values are served for up to ``CREDENTIALS_MAX_AGE``; ``refresh`` reads again
(unless another caller just did). A profile's reconcile refreshes, so a rotated password is
picked up at the profile's next reconcile by everything sharing the Secret, and a refused login
refreshes too (Redis: ``redis.connect.with_client``; PostgreSQL: ``postgres.connect.
target_for_profile``, which retries once when the login changed). Concurrent askers share one read.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .api.conditions import (SECRET_FORBIDDEN, SECRET_KEY_MISSING, SECRET_NOT_FOUND,
                             SECRET_VALUE_INVALID)
from .kube.client import api_client
from .scrub import forget_secrets, register_secret


class SecretError(Exception):
    """A referenced Secret or key is missing, unreadable or refused; the message names them,
    never a value. Every reason is in api.conditions.PERSISTENT_REASONS: retrying cannot help
    until someone creates, fixes or grants the Secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SecretNeverUsed(SecretError):
    """A cleanup needs a Secret that the operator never read: it was missing whenever the
    operator looked and no escrow copy of it exists (see handlers/deferred.gather_copies), so
    nothing was ever done with its credentials and there is nothing to undo with them."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(SECRET_NOT_FOUND, f"Secret {namespace}/{name} not found and never "
                                           "read: nothing was done with its credentials")


#: Secrets' data (base64, as the API returns it) last read, by (namespace, name), bounded: what
#: a deferred cleanup copies when namespace teardown has deleted the Secret before the
#: finalizer ran (see handlers/deferred.py).
_last_read: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
LAST_READ_LIMIT = 1024
#: Copies that stand in for Secrets while a cleanup runs (its own task only); None for a
#: Secret never used (reading it raises SecretNeverUsed).
Copies = Mapping[tuple[str, str], dict[str, str] | None]
_copies: contextvars.ContextVar[Copies | None] = contextvars.ContextVar("secret_copies",
                                                                       default=None)
#: Awaited with (namespace, name, data) after each read from the API, before the values are
#: returned: what the leader logs in with is kept durably first (handlers/escrow.py).
ReadHook = Callable[[str, str, dict[str, str]], Awaitable[None]]
_read_hook: ReadHook | None = None


def set_read_hook(hook: ReadHook | None) -> None:
    """Have ``hook`` see every Secret read from the API before its values are used (the
    operator's leader only; kubectl perf reads with the user's rights and keeps nothing)."""
    global _read_hook
    _read_hook = hook


@contextlib.contextmanager
def serving_copies(copies: Copies) -> Iterator[None]:
    """Within this block (and the tasks it starts), read these copies instead of the API."""
    token = _copies.set(copies)
    try:
        yield
    finally:
        _copies.reset(token)


async def secret_data(namespace: str, name: str) -> dict[str, str]:
    """The Secret's data (base64 values): read now, else as last read by this process.
    Raises SecretError when it is neither."""
    try:
        return await _read(namespace, name)
    except SecretError:
        if (namespace, name) in _last_read:
            return dict(_last_read[(namespace, name)])
        raise


async def _read(namespace: str, name: str) -> dict[str, str]:
    copies = _copies.get()
    if copies is not None and (namespace, name) in copies:
        copy = copies[(namespace, name)]
        if copy is None:
            raise SecretNeverUsed(namespace, name)
        return copy
    api = client.CoreV1Api(await api_client())
    try:
        secret = await api.read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            forget_secrets(lambda source: isinstance(source, tuple)
                           and source[:3] == ("Secret", namespace, name))
            for cached in [key for key in _cache if key[:2] == (namespace, name)]:
                del _cache[cached]
            raise SecretError(SECRET_NOT_FOUND, f"Secret {namespace}/{name} not found") from None
        if err.status == 403:
            raise SecretError(SECRET_FORBIDDEN,
                              f"not allowed to read Secret {namespace}/{name}") from None
        raise
    data = dict(secret.data or {})
    if _read_hook is not None:
        await _read_hook(namespace, name, data)
    _last_read[(namespace, name)] = data
    _last_read.move_to_end((namespace, name))
    while len(_last_read) > LAST_READ_LIMIT:
        _last_read.popitem(last=False)
    return data


#: How long values read from a Secret are served without reading it again.
CREDENTIALS_MAX_AGE = 300.0
#: A refresh within this long of the last read serves that read (many tenants refused at once
#: read the Secret once).
REFRESH_MIN_AGE = 1.0


@dataclass
class _CachedRead:
    values: list[str | None]
    read_at: float


_CacheKey = tuple[str, str, tuple[str | None, ...], tuple[str | None, ...]]
_cache: dict[_CacheKey, _CachedRead] = {}
#: One lock per cache key, gone as soon as nobody holds or awaits it.
_cache_locks: weakref.WeakValueDictionary[_CacheKey, asyncio.Lock] = (
    weakref.WeakValueDictionary())


async def read_secret_keys(namespace: str, name: str, *keys: str | None,
                           identity_keys: tuple[str | None, ...] = (),
                           refresh: bool = False) -> list[str | None]:
    """The decoded values of ``keys`` (None for a key asked for as None), from the cache (see
    the module's docstring) unless ``refresh``. Every value is registered with the scrubber as
    a credential but those of ``identity_keys`` (user names). A cleanup serving copies
    (``serving_copies``) reads only them."""
    if _copies.get() is not None:
        return await _decoded(namespace, name, keys, identity_keys)
    cache_key = (namespace, name, keys, identity_keys)
    async with _cache_locks.setdefault(cache_key, asyncio.Lock()):
        now = time.monotonic()
        for stale in [key for key, entry in _cache.items()
                      if now - entry.read_at >= CREDENTIALS_MAX_AGE]:
            del _cache[stale]
        cached = _cache.get(cache_key)
        if cached is None or (refresh and now - cached.read_at >= REFRESH_MIN_AGE):
            cached = _cache[cache_key] = _CachedRead(
                await _decoded(namespace, name, keys, identity_keys), now)
        return cached.values


async def _decoded(namespace: str, name: str, keys: tuple[str | None, ...],
                   identity_keys: tuple[str | None, ...]) -> list[str | None]:
    data = await _read(namespace, name)
    values: list[str | None] = []
    for key in keys:
        if key is None:
            values.append(None)
            continue
        if key not in data:
            register_secret(("Secret", namespace, name, key), None)
            raise SecretError(SECRET_KEY_MISSING, f"Secret {namespace}/{name} has no key {key!r}")
        try:
            value = base64.b64decode(data[key]).decode()
        except ValueError:  # not base64, or not UTF-8: the decoder's message quotes the bytes
            register_secret(("Secret", namespace, name, key), None)
            raise SecretError(SECRET_VALUE_INVALID,
                              f"Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None
        register_secret(("Secret", namespace, name, key), None if key in identity_keys else value)
        values.append(value)
    return values
