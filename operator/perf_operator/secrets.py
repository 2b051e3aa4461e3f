"""Credentials from Kubernetes Secrets in the referencing object's own namespace.

Values are registered with the scrubber as soon as they are read, so no later error message can
carry them; user names (``identity_keys``) are not credentials and stay readable in messages.
Each read replaces what the scrubber holds for that Secret key (a rotated password leaves the
registry), and a Secret found deleted is forgotten.
"""
from __future__ import annotations

import base64
import contextlib
import contextvars
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .kube.client import api_client
from .scrub import forget_secrets, register_secret


class SecretError(Exception):
    """A referenced Secret or key is missing, unreadable or refused; the message names them,
    never a value. Every reason is in api.conditions.PERSISTENT_REASONS: retrying cannot help
    until someone creates, fixes or grants the Secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Secrets' data (base64, as the API returns it) last read, by (namespace, name), bounded: what
#: a deferred cleanup copies when namespace teardown has deleted the Secret before the
#: finalizer ran (see handlers/deferred.py).
_last_read: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
LAST_READ_LIMIT = 1024
#: Copies that stand in for Secrets while a deferred cleanup runs (its own task only).
_copies: contextvars.ContextVar[Mapping[tuple[str, str], dict[str, str]] | None] = \
    contextvars.ContextVar("secret_copies", default=None)


@contextlib.contextmanager
def serving_copies(copies: Mapping[tuple[str, str], dict[str, str]]) -> Iterator[None]:
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
        return copies[(namespace, name)]
    api = client.CoreV1Api(await api_client())
    try:
        secret = await api.read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            forget_secrets(lambda source: source[:3] == ("Secret", namespace, name))
            raise SecretError("SecretNotFound", f"Secret {namespace}/{name} not found") from None
        if err.status == 403:
            raise SecretError("SecretForbidden",
                              f"not allowed to read Secret {namespace}/{name}") from None
        raise
    data = dict(secret.data or {})
    _last_read[(namespace, name)] = data
    _last_read.move_to_end((namespace, name))
    while len(_last_read) > LAST_READ_LIMIT:
        _last_read.popitem(last=False)
    return data


async def read_secret_keys(namespace: str, name: str, *keys: str | None,
                           identity_keys: Collection[str | None] = ()) -> list[str | None]:
    """The decoded values of ``keys`` (None for a key asked for as None). Every value is
    registered with the scrubber as a credential but those of ``identity_keys`` (user names)."""
    data = await _read(namespace, name)
    values: list[str | None] = []
    for key in keys:
        if key is None:
            values.append(None)
            continue
        if key not in data:
            register_secret(("Secret", namespace, name, key), None)
            raise SecretError("SecretKeyMissing", f"Secret {namespace}/{name} has no key {key!r}")
        try:
            value = base64.b64decode(data[key]).decode()
        except ValueError:  # not base64, or not UTF-8: the decoder's message quotes the bytes
            register_secret(("Secret", namespace, name, key), None)
            raise SecretError("SecretValueInvalid",
                              f"Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None
        register_secret(("Secret", namespace, name, key), None if key in identity_keys else value)
        values.append(value)
    return values
