"""Credentials from Kubernetes Secrets in the referencing object's own namespace.

Values are registered with the scrubber as soon as they are read, so no later error message can
carry them; user names (``identity_keys``) are not credentials and stay readable in messages.
Each read replaces what the scrubber holds for that Secret key (a rotated password leaves the
registry), and a Secret found deleted is forgotten.
"""
from __future__ import annotations

import base64
from collections.abc import Collection

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .kube.client import api_client
from .scrub import forget_secrets, register_secret


class SecretError(Exception):
    """A referenced Secret or key is missing; the message names them, never a value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def read_secret_keys(namespace: str, name: str, *keys: str | None,
                           identity_keys: Collection[str | None] = ()) -> list[str | None]:
    """The decoded values of ``keys`` (None for a key asked for as None). Every value is
    registered with the scrubber as a credential but those of ``identity_keys`` (user names)."""
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
    data = secret.data or {}
    values: list[str | None] = []
    for key in keys:
        if key is None:
            values.append(None)
            continue
        if key not in data:
            register_secret(("Secret", namespace, name, key), None)
            raise SecretError("SecretKeyMissing", f"Secret {namespace}/{name} has no key {key!r}")
        value = base64.b64decode(data[key]).decode()
        register_secret(("Secret", namespace, name, key), None if key in identity_keys else value)
        values.append(value)
    return values
