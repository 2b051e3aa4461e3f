"""Cleanup that outlives the deleted object: remembered in the operator's own namespace.

A profile or tenant deleted while its server is down (a namespace deleted during a PostgreSQL
outage) used to hold its finalizer for ten retries, then release with the work undone: its
index (policy ``Delete``) and mirror rows stayed forever, the stated cause was the Secret that
namespace teardown had deleted meanwhile, and the ``CleanupAbandoned`` Event was refused by the
terminating namespace. Deletion must not depend on what teardown removes first, so when a
cleanup fails the object is released at once and the work is written down where teardown
cannot reach it, in the operator's namespace (``PERF_OPERATOR_NAMESPACE``):

* ConfigMap :data:`LEDGER`: one key per object, the JSON of what its cleanup needs (kind,
  namespace, name, uid, spec, status; a tenant's profile spec too);
* a Secret per entry (``perf-operator-cleanup-<hash>``, owned by the ConfigMap): copies of the
  Secrets the spec references, read at finalization time (or, if teardown deleted them first,
  as this process last read them, else from their escrow: :func:`gather_copies`). A Secret
  with no copy at all was never used (handlers/escrow.py), so the entry lists it under
  ``neverRead`` and what would log in with it has nothing to undo (:func:`clean`): a profile
  or tenant applied without its Secret and deleted is released at once, not retried for ever.

The leader replays the ledger every resync with those copies standing in for the deleted
Secrets (``secrets.serving_copies``), running the same cleanup functions; when one finishes its
entry and Secret are removed and a ``CleanupFinished`` Event is posted on the ConfigMap, in the
operator's namespace (``CleanupDeferred`` when it was written down).

An entry may also wait rather than fail: its replayer raises :class:`Waiting` while what it
watches goes on (a deleted profile's location that its tenants still name, written by
:func:`watch`: ``tenants.orphans``); it is tried on every pass and never counted as failing.

Retries are bounded in rate, never in number: an entry is the only record of work on an object
the operator owned, so it is never dropped by the operator (a person may delete its key, see
docs/troubleshooting.md). Each failure is written into the entry (``attempts``, ``lastError``,
``lastAttemptAt``, ``nextAttemptAt``) and the next attempt waits one resync, doubling per
failure up to ``RETRY_CAP_SECONDS`` (:func:`record_failure`, pure). From the
``STUCK_AFTER_ATTEMPTS``-th failure on, each failure is a ``CleanupFailing`` Warning Event on
the ledger (repeats of one error are counted on one Event) and the entry counts as ``failing``
in the ``perf_operator_deferred_cleanups`` gauge, which the shipped ``PerfOperatorCleanupStuck``
alert watches.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..config import CONFIG, operator_namespace
from ..kube.client import api_client
from ..kube.events import POSTER, EventKey, ObjectRef
from ..metrics import DEFERRED_CLEANUPS
from ..reconcile import EventRecorder
from ..scrub import scrub
from ..secrets import SecretError, SecretNeverUsed, secret_data, serving_copies
from . import escrow
from .escrow import secret_names

LEDGER = "perf-operator-cleanup"
SECRET_PREFIX = "perf-operator-cleanup-"
COPIES_KEY = "secrets.json"

#: The first retry waits one resync; each failure doubles the wait, up to this cap.
RETRY_BASE_SECONDS = CONFIG.resync_seconds
RETRY_CAP_SECONDS = 10 * CONFIG.resync_seconds
#: Failed attempts (the one that deferred the cleanup included) from which an entry is
#: reported as failing: about a quarter of an hour of failures at the production resync.
STUCK_AFTER_ATTEMPTS = 5
#: ``lastError`` is cut to this length (the ConfigMap holds every entry).
ERROR_LIMIT = 500

#: What replays one kind's entry: ``async fn(entry, events) -> None``, raising while it cannot.
Replayer = Callable[[dict[str, Any], EventRecorder], Awaitable[None]]
REPLAYERS: dict[str, Replayer] = {}

logger = logging.getLogger(__name__)


def replayer(kind: str) -> Callable[[Replayer], Replayer]:
    """Register the function that replays ``kind``'s deferred cleanups."""
    def register(function: Replayer) -> Replayer:
        REPLAYERS[kind] = function
        return function
    return register


def entry_key(entry: dict[str, Any]) -> str:
    """The ledger key of an object's entry (a valid ConfigMap key)."""
    return f"{entry['kind']}.{entry['namespace']}.{entry['name']}.{entry['uid'][:8]}"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling from one resync, capped."""
    return min(RETRY_BASE_SECONDS * 2 ** (max(attempts, 1) - 1), RETRY_CAP_SECONDS)


def record_failure(entry: dict[str, Any], error: str, now: datetime) -> dict[str, Any]:
    """The entry after one more failed attempt at ``now``: counted, its error kept (cut to
    ``ERROR_LIMIT``), the next attempt scheduled by :func:`retry_delay`."""
    attempts = int(entry.get("attempts") or 0) + 1
    if len(error) > ERROR_LIMIT:
        error = error[:ERROR_LIMIT - 3] + "..."
    return {**entry, "attempts": attempts, "lastError": error, "lastAttemptAt": _timestamp(now),
            "nextAttemptAt": _timestamp(now + timedelta(seconds=retry_delay(attempts)))}


def due(entry: dict[str, Any], now: datetime) -> bool:
    """Whether the entry's next attempt is due (an entry without a schedule always is)."""
    scheduled = entry.get("nextAttemptAt")
    if not scheduled:
        return True
    return datetime.strptime(scheduled, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc) <= now


def failing(entry: dict[str, Any]) -> bool:
    """Whether the entry has failed often enough to be reported (Event, gauge, alert)."""
    return int(entry.get("attempts") or 0) >= STUCK_AFTER_ATTEMPTS


async def gather_copies(entry: dict[str, Any]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Copies of the Secrets the entry's cleanup may log in with, by ``namespace/name``: as
    read now, else as this process last read them, else from their escrow; and the Secrets
    with no copy anywhere, which were never used (see handlers/escrow.py)."""
    namespace = entry["namespace"]
    copies: dict[str, dict[str, str]] = {}
    never_read: list[str] = []
    for name in sorted(set(secret_names(entry))):
        try:
            copies[f"{namespace}/{name}"] = await secret_data(namespace, name)
            continue
        except SecretError:
            pass
        kept = await escrow.copy_of(namespace, name)
        if kept is None:
            never_read.append(f"{namespace}/{name}")
        else:
            copies[f"{namespace}/{name}"] = kept
    return copies, never_read


def never_used(never_read: Collection[str]) -> dict[tuple[str, str], None]:
    """What ``secrets.serving_copies`` serves for Secrets never used: reading one raises
    ``SecretNeverUsed`` instead of asking the API."""
    return {(ref.split("/", 1)[0], ref.split("/", 1)[1]): None for ref in never_read}


async def clean(cleanups: Sequence[Callable[[Any], Awaitable[None]]], ctx: Any) -> None:
    """Run each cleanup; one that needs a Secret never used (``SecretNeverUsed``, served by
    :func:`never_used`) has nothing to undo: no process of the operator ever logged in with
    it, because every credential is escrowed before its first use and the escrow outlives
    every profile and ledger entry naming the Secret. This rule reads only what is durable
    (the escrow, not a status a crash may not have written): an index whose build was
    launched just before a crash had its credentials escrowed first, so it is cleaned up."""
    for cleanup in cleanups:
        try:
            await cleanup(ctx)
        except SecretNeverUsed as err:
            logger.info("nothing to clean up with credentials never used: %s", err)


async def defer(entry: dict[str, Any], error: str, copies: dict[str, dict[str, str]]) -> None:
    """Write the entry and the copies of its Secrets (:func:`gather_copies`) to the ledger,
    then say so in an Event in the operator's namespace. Raises when the ledger cannot be
    written (the caller keeps its finalizer and retries)."""
    # ``error``: why it was deferred; the failure fields change with every later attempt.
    entry = record_failure({**entry, "error": error}, error, datetime.now(timezone.utc))
    ledger = await _write(entry, copies)
    await _event(ledger, "CleanupDeferred",
                 f"{entry['kind']} {entry['namespace']}/{entry['name']} was deleted before its "
                 f"cleanup could finish ({error}); it is retried from ConfigMap {LEDGER} until "
                 f"the server is back")


class Waiting(Exception):
    """Raised by a replayer whose entry is not finished but did not fail: it waits for
    something else to happen first (a watched location, ``tenants.orphans``), is tried again
    on the next pass and is never counted as failing."""


async def watch(entry: dict[str, Any], why: str) -> None:
    """Write an entry whose replays wait (raising :class:`Waiting`) until what it watches is
    over, with copies of its Secrets, and say so in an Event. Raises when the ledger cannot be
    written."""
    copies, never_read = await gather_copies(entry)
    ledger = await _write({**entry, "neverRead": never_read}, copies)
    await _event(ledger, "CleanupWatching",
                 f"{entry['kind']} {entry['namespace']}/{entry['name']} is watched from "
                 f"ConfigMap {LEDGER}: {why}")


async def _write(entry: dict[str, Any], copies: dict[str, dict[str, str]]) -> Any:
    """Write the entry and a Secret with the copies to the ledger; returns the ledger."""
    namespace = operator_namespace()
    api = client.CoreV1Api(await api_client())
    key = entry_key(entry)
    ledger = await _ledger(api, namespace, create=True)
    secret_name = SECRET_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:12]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": secret_name, "namespace": namespace,
                           "labels": {"app.kubernetes.io/managed-by": "perf-operator"},
                           "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                                                "name": LEDGER, "uid": ledger.metadata.uid}]},
              "data": {COPIES_KEY: base64.b64encode(json.dumps(copies).encode()).decode()}}
    try:
        await api.create_namespaced_secret(namespace, secret)
    except ApiException as err:
        if err.status != 409:
            raise
        await api.replace_namespaced_secret(secret_name, namespace, secret)
    await api.patch_namespaced_config_map(
        LEDGER, namespace, {"data": {key: json.dumps({**entry, "secret": secret_name})}},
        _content_type="application/merge-patch+json")
    return ledger


async def replay_forever(patterns: Sequence[str]) -> None:
    """Replay the ledger every resync until cancelled (the leader runs it), then delete the
    escrows nothing needs any more among those of the namespaces served (``patterns``)."""
    while True:
        try:
            await replay_once(patterns)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the ledger is retried next time
            logger.warning("cleanup ledger not replayed: %s", scrub(err))
        await asyncio.sleep(CONFIG.resync_seconds)


async def replay_once(patterns: Sequence[str] = ()) -> int:
    """Delete the escrows no entry or profile needs (``escrow.collect``; an entry finished in
    this pass keeps its escrows until the next), then try every entry that is due once;
    returns how many entries are left (due or not)."""
    namespace = operator_namespace()
    api = client.CoreV1Api(await api_client())
    ledger = await _ledger(api, namespace, create=False)
    entries = [json.loads(text) for text in ((ledger.data or {}) if ledger else {}).values()]
    await escrow.collect(entries, patterns)
    if ledger is None:
        _count(0, 0)
        return 0
    left = stuck = 0
    for key, text in sorted((ledger.data or {}).items()):
        entry = json.loads(text)
        if not due(entry, datetime.now(timezone.utc)):
            left += 1
            stuck += failing(entry)
            continue
        try:
            await _replay(api, namespace, ledger, entry)
        except Waiting:
            left += 1
            continue
        except Exception as err:  # noqa: BLE001 - retried when due again
            left += 1
            stuck += await _record_failure(api, namespace, ledger, key, entry, scrub(err))
            continue
        await api.patch_namespaced_config_map(LEDGER, namespace, {"data": {key: None}},
                                              _content_type="application/merge-patch+json")
        try:
            await api.delete_namespaced_secret(entry["secret"], namespace)
        except ApiException as err:
            if err.status != 404:
                raise
        await _event(ledger, "CleanupFinished",
                     f"the deferred cleanup of {entry['kind']} {entry['namespace']}/"
                     f"{entry['name']} is done")
    _count(left - stuck, stuck)
    return left


async def _record_failure(api: client.CoreV1Api, namespace: str, ledger: Any, key: str,
                          entry: dict[str, Any], error: str) -> bool:
    """Write the failed attempt into the entry; from ``STUCK_AFTER_ATTEMPTS`` on, say so in a
    Warning Event (the same error again is counted on the same Event). Whether it is failing."""
    entry = record_failure(entry, error, datetime.now(timezone.utc))
    await api.patch_namespaced_config_map(LEDGER, namespace, {"data": {key: json.dumps(entry)}},
                                          _content_type="application/merge-patch+json")
    described = f"{entry['kind']} {entry['namespace']}/{entry['name']}"
    if not failing(entry):
        logger.info("deferred cleanup of %s failed (attempt %d, next at %s): %s", described,
                    entry["attempts"], entry["nextAttemptAt"], entry["lastError"])
        return False
    logger.warning("deferred cleanup of %s keeps failing (attempt %d, next at %s): %s",
                   described, entry["attempts"], entry["nextAttemptAt"], entry["lastError"],
                   extra={"reason": "CleanupFailing"})
    await _event(ledger, "CleanupFailing",
                 f"the deferred cleanup of {described} keeps failing: {entry['lastError']}; "
                 f"retried at least every {RETRY_CAP_SECONDS:g}s, attempts in ConfigMap "
                 f"{LEDGER}", type_="Warning")
    return True


def _count(waiting: int, stuck: int) -> None:
    DEFERRED_CLEANUPS.labels("waiting").set(waiting)
    DEFERRED_CLEANUPS.labels("failing").set(stuck)


async def _replay(api: client.CoreV1Api, namespace: str, ledger: Any,
                  entry: dict[str, Any]) -> None:
    secret = await api.read_namespaced_secret(entry["secret"], namespace)
    copies = json.loads(base64.b64decode((secret.data or {})[COPIES_KEY]))
    stand_ins = {tuple(ref.split("/", 1)): data for ref, data in copies.items()}
    events = EventRecorder(_ledger_body(ledger), logger)
    with serving_copies({**stand_ins, **never_used(entry.get("neverRead") or ())}):
        await REPLAYERS[entry["kind"]](entry, events)


async def _ledger(api: client.CoreV1Api, namespace: str, *, create: bool) -> Any:
    try:
        return await api.read_namespaced_config_map(LEDGER, namespace)
    except ApiException as err:
        if err.status != 404 or not create:
            if err.status == 404:
                return None
            raise
    try:
        return await api.create_namespaced_config_map(namespace, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": LEDGER, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "perf-operator"}},
            "data": {}})
    except ApiException as err:
        if err.status != 409:
            raise
        return await api.read_namespaced_config_map(LEDGER, namespace)


def _ledger_body(ledger: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": LEDGER, "namespace": ledger.metadata.namespace,
                         "uid": ledger.metadata.uid}}


async def _event(ledger: Any, reason: str, message: str, *, type_: str = "Normal") -> None:
    """An Event on the ledger, posted now (the caller's namespace may be terminating)."""
    await POSTER.send(EventKey(ObjectRef.from_body(_ledger_body(ledger)), type_, reason,
                               scrub(message)))
