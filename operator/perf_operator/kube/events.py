"""Kubernetes Events, reported by ``perf-operator`` and correlated like client-go's.

kopf posts Events as ``kopf`` and creates a new Event object for every call, so a profile
failing on every resync added one Event a minute. Here a repeat of the same Event (same object,
type, reason and message) seen again within :data:`CORRELATION_WINDOW_SECONDS` of its last
occurrence patches the existing Event's ``count`` and ``lastTimestamp`` instead, as client-go's
``EventCorrelator`` does. Events are posted from a bounded queue by one background task, so a
reconciler never waits on the API server for an Event.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..clock import timestamp
from .client import api_client

#: ``source.component`` and ``reportingComponent`` of every Event the operator posts.
COMPONENT = "perf-operator"
#: A repeat within this many seconds of the last occurrence updates the Event's count
#: (client-go aggregates over the same 10 minutes).
CORRELATION_WINDOW_SECONDS = 600.0
#: Distinct Events remembered for correlation; the least recently seen is forgotten first.
REMEMBERED_EVENTS = 4096
#: Events waiting to be posted; beyond this (an unreachable API server) new ones are dropped.
QUEUE_LIMIT = 1000
#: The API server's limit on an Event message (events.k8s.io/v1 note).
MESSAGE_LIMIT = 1024

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about (its ``involvedObject``)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObjectRef:
        meta = body.get("metadata") or {}
        return cls(api_version=body.get("apiVersion", ""), kind=body.get("kind", ""),
                   name=meta.get("name", ""), namespace=meta.get("namespace", ""),
                   uid=meta.get("uid"))

    @property
    def event_namespace(self) -> str:
        """Where its Events live: its namespace, or for a cluster-scoped object (a
        PerformanceTarget) ``default``, the only one the API server accepts for those (as for
        Nodes; ``kubectl describe`` finds them there)."""
        return self.namespace or "default"

    def as_involved_object(self) -> dict[str, Any]:
        ref = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name,
               "namespace": self.namespace}
        if self.uid:
            ref["uid"] = self.uid
        return ref


@dataclass(frozen=True)
class EventKey:
    """What makes two Events the same Event (client-go's aggregation key, minus the source,
    which is always this operator)."""

    ref: ObjectRef
    type: str
    reason: str
    message: str


@dataclass
class Occurrence:
    """The Event object a key was last posted as."""

    name: str
    count: int
    last_seen: float


class EventCorrelator:
    """Decides whether an Event is new or a repeat (pure: the clock is passed in)."""

    def __init__(self, window: float = CORRELATION_WINDOW_SECONDS,
                 capacity: int = REMEMBERED_EVENTS) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[EventKey, Occurrence] = OrderedDict()

    def repeat_of(self, key: EventKey, now: float) -> Occurrence | None:
        """The occurrence to update (its count already raised), or None: post a new Event."""
        seen = self._seen.get(key)
        if seen is None or now - seen.last_seen > self.window:
            return None
        seen.count += 1
        seen.last_seen = now
        self._seen.move_to_end(key)
        return seen

    def posted(self, key: EventKey, name: str, now: float) -> None:
        self._seen[key] = Occurrence(name=name, count=1, last_seen=now)
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def forget(self, key: EventKey) -> None:
        self._seen.pop(key, None)


def _instance() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


class EventPoster:
    """Posts Events in the background, correlating repeats (one per operator process)."""

    def __init__(self) -> None:
        self.correlator = EventCorrelator()
        self._queue: asyncio.Queue[EventKey] | None = None
        self._task: asyncio.Task[None] | None = None

    def post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Queue an Event (``message`` must already be scrubbed). Never blocks, never raises."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.warning("Event %s not posted: no event loop", reason)
            return
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue(QUEUE_LIMIT)
            self._task = loop.create_task(self._drain(self._queue), name="event-poster")
        assert self._queue is not None
        try:
            self._queue.put_nowait(EventKey(ref, type_, reason, message[:MESSAGE_LIMIT]))
        except asyncio.QueueFull:
            logger.warning("Event %s about %s %s/%s dropped: %d Events wait to be posted",
                           reason, ref.kind, ref.namespace, ref.name, QUEUE_LIMIT,
                           extra={"reason": reason})

    async def flush(self) -> None:
        """Wait until every queued Event is posted (or failed)."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()

    async def send(self, key: EventKey) -> None:
        """Post one Event now: a repeat patches the Event it repeats (recreated if it expired
        meanwhile), anything else creates one. Raises ApiException when the API server refuses
        (a terminating namespace: 403)."""
        api = client.CoreV1Api(await api_client())
        now = time.monotonic()
        stamp = timestamp()
        repeat = self.correlator.repeat_of(key, now)
        if repeat is not None:
            try:
                await api.patch_namespaced_event(
                    repeat.name, key.ref.event_namespace,
                    {"count": repeat.count, "lastTimestamp": stamp},
                    _content_type="application/merge-patch+json")
                return
            except ApiException as err:
                if err.status != 404:
                    raise
                self.correlator.forget(key)
        name = f"{key.ref.name}.{time.time_ns():x}"
        await api.create_namespaced_event(key.ref.event_namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": key.ref.event_namespace},
            "involvedObject": key.ref.as_involved_object(),
            "type": key.type, "reason": key.reason, "message": key.message,
            "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": _instance()[:128],
        })
        self.correlator.posted(key, name, now)

    async def _drain(self, queue: asyncio.Queue[EventKey]) -> None:
        while True:
            key = await queue.get()
            try:
                await self.send(key)
            except Exception as err:  # noqa: BLE001 - an Event is never worth a crash
                status = getattr(err, "status", None)
                logger.warning("Event %s about %s %s/%s not posted: %s", key.reason, key.ref.kind,
                               key.ref.namespace, key.ref.name,
                               f"HTTP {status}" if status else type(err).__name__,
                               extra={"reason": key.reason})
            finally:
                queue.task_done()


#: The operator's one poster.
POSTER = EventPoster()
