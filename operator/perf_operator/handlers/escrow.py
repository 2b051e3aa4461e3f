"""Copies of the Secrets the operator logs in with, kept in its own namespace before it uses them.

A namespace deleted while PostgreSQL was down, at the moment leadership moved to a replica that
had never read the namespace's Secrets, left its profile's indexes and its tenants' mirror rows
behind for ever (the chaos run's 53 orphans): the deferred cleanup (handlers/deferred.py) had
no copy of the credentials, which namespace teardown had deleted, and only the previous leader
had ever held them in memory. What a cleanup needs must be durable before deletion, where
teardown cannot reach it, and readable by any process.

So every Secret the leader reads from a namespace other than its own is escrowed before its
values are used (``secrets.set_read_hook``): a Secret ``perf-operator-escrow-<hash>`` in the
operator's namespace (``PERF_OPERATOR_NAMESPACE``) holding the same data, labelled
:data:`LABEL`, annotated with the source (:data:`SOURCE`, ``namespace/name``, no value). One
escrow per Secret, not per profile: a Secret shared by profiles, and the tenants that log in
with their profile's credentials, need no copies of their own, and the hook sits at the one
place every credential passes. It is written only when the data differs from what this process
escrowed (one read of the escrow per Secret per process, then compared in memory), so the
steady state writes nothing; a rotated Secret replaces it.

A deferred cleanup takes its copies from the escrow when the Secret is gone and this process
never read it (``deferred.gather_copies``). An escrow is deleted (:func:`collect`, on each
ledger pass of the leader) once no profile the operator serves names its Secret, no ledger
entry does, no TenantQuota's status names it (a tenant outliving its profile: its status says
where its tables are, and its cleanup logs in there with that Secret) and no cleanup in
progress holds it (:func:`held_for`: the cleanup of a TenantQuota already gone is retried
while the API server is out of reach, before it is in the ledger). Because the escrow exists
from before the first use of a credential until nothing can need it any more, a Secret that
is neither readable nor escrowed was never used, and a cleanup has nothing to undo with it
(``secrets.SecretNeverUsed``).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..config import operator_namespace
from ..kube.client import api_client
from ..kube.namespaces import serves
from ..tenants.registry import TENANTS_BY_PROFILE
from .profile_registry import profile_index

PREFIX = "perf-operator-escrow-"
LABEL = "perf.idp.io/escrow"
SOURCE = "perf.idp.io/secret"

#: A Secret's identity: (namespace, name).
SecretRef = tuple[str, str]

#: Digest of the data this process knows to be escrowed, by Secret (evicted by collect).
_escrowed: dict[SecretRef, str] = {}
#: The Secrets cleanups in progress log in with, with how many hold each (see held_for).
_held: Counter[SecretRef] = Counter()
#: Set once the registries of profiles and tenants are seeded: before, every escrow would look
#: unneeded, and every tenant's tables orphaned (tenants.orphans.sweep_deleted_profile).
REGISTRY_SEEDED = asyncio.Event()

logger = logging.getLogger(__name__)


def secret_names(spec: Any) -> Iterator[str]:
    """Every ``secretRef.name`` in a spec (the Secrets its cleanup may log in with)."""
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "secretRef" and isinstance(value, dict) and value.get("name"):
                yield value["name"]
            else:
                yield from secret_names(value)
    elif isinstance(spec, list):
        for item in spec:
            yield from secret_names(item)


@profile_index
def secret_users(namespace: str, spec: dict, **_: Any) -> dict:
    """The Secrets each profile names, by (namespace, name): an escrow stays while one does."""
    return {(namespace, name): True for name in secret_names(dict(spec))}


def escrow_name(namespace: str, name: str) -> str:
    return PREFIX + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]


def _digest(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


async def keep(namespace: str, name: str, data: dict[str, str]) -> None:
    """Escrow a Secret's data just read from the API (the read hook), unless it is already.
    Raises when the escrow cannot be written: the credentials are then not used."""
    home = operator_namespace()
    if namespace == home:
        return  # a PerformanceTarget's credentials: namespace teardown never deletes them
    ref, digest = (namespace, name), _digest(data)
    if _escrowed.get(ref) == digest:
        return
    api = client.CoreV1Api(await api_client())
    target = escrow_name(namespace, name)
    if ref not in _escrowed:
        try:
            current = await api.read_namespaced_secret(target, home)
        except ApiException as err:
            if err.status != 404:
                raise
            current = None
        if current is not None and dict(current.data or {}) == data:
            _escrowed[ref] = digest
            return
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": target, "namespace": home,
                         "labels": {"app.kubernetes.io/managed-by": "perf-operator",
                                    LABEL: "true"},
                         "annotations": {SOURCE: f"{namespace}/{name}"}},
            "data": data}
    try:
        await api.replace_namespaced_secret(target, home, body)
    except ApiException as err:
        if err.status != 404:
            raise
        try:
            await api.create_namespaced_secret(home, body)
        except ApiException as conflict:
            if conflict.status != 409:  # created by a concurrent read of the same Secret
                raise
            await api.replace_namespaced_secret(target, home, body)
    _escrowed[ref] = digest
    logger.info("escrowed Secret %s/%s as %s/%s", namespace, name, home, target)


async def copy_of(namespace: str, name: str) -> dict[str, str] | None:
    """The escrowed data of a Secret (base64 values, as the API gives them), or None."""
    api = client.CoreV1Api(await api_client())
    try:
        escrow = await api.read_namespaced_secret(escrow_name(namespace, name),
                                                  operator_namespace())
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return dict(escrow.data or {})


@contextlib.contextmanager
def held_for(entry: Mapping[str, Any]) -> Iterator[None]:
    """Keep the escrows of the Secrets a cleanup ``entry`` names while it runs (and retries)."""
    refs = [(entry.get("namespace", ""), name) for name in set(secret_names(dict(entry)))]
    _held.update(refs)
    try:
        yield
    finally:
        _held.subtract(refs)
        for ref in refs:
            if _held[ref] <= 0:
                del _held[ref]


def unneeded(source: SecretRef, entries: Iterable[Mapping[str, Any]]) -> bool:
    """Whether an escrow can go: no profile names its Secret, no ledger entry, no TenantQuota's
    status (where its tables are) and no cleanup in progress."""
    if secret_users.get(source) or _held.get(source):
        return False
    if any(entry.get("namespace") == source[0] and source[1] in secret_names(dict(entry))
           for entry in entries):
        return False
    return not any(source[1] in secret_names(tenant.status)
                   for tenant in TENANTS_BY_PROFILE.in_namespace(source[0]))


async def collect(entries: Sequence[dict[str, Any]], patterns: Sequence[str]) -> int:
    """Delete the escrows nothing needs any more (see :func:`unneeded`) among those of the
    namespaces this operator serves (``patterns``: another operator may share its namespace).
    Nothing before the profile registry is seeded. Returns how many were deleted."""
    if not REGISTRY_SEEDED.is_set():
        return 0
    home = operator_namespace()
    api = client.CoreV1Api(await api_client())
    escrows = await api.list_namespaced_secret(home, label_selector=f"{LABEL}=true")
    deleted = 0
    for escrow in escrows.items:
        namespace, _, name = (escrow.metadata.annotations or {}).get(SOURCE, "").partition("/")
        if not name or not serves(namespace, patterns) or not unneeded((namespace, name),
                                                                         entries):
            continue
        try:
            await api.delete_namespaced_secret(escrow.metadata.name, home)
        except ApiException as err:
            if err.status != 404:
                raise
        _escrowed.pop((namespace, name), None)
        deleted += 1
        logger.info("escrow of Secret %s/%s deleted: nothing needs it any more", namespace,
                    name)
    return deleted
