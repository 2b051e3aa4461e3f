"""At most one acting replica: a gate on a ``coordination.k8s.io/v1`` Lease.

Why not kopf's peering? It pauses an operator only after it has *seen* a peer of higher
priority in the peering object, and peers of the *same* priority pause each other (every
replica of a Deployment has the same arguments, so two replicas both stop, or, during the
window before the first peering event, both act). Either way it is a liveness mechanism, not
mutual exclusion. This operator runs DDL (``CREATE INDEX CONCURRENTLY``), ``CONFIG SET`` and
table rewrites: two replicas planning against the same catalog would race and, worse, a
``DROP`` decided by a stale replica could follow a ``CREATE`` by the other. So the operator
must never run twice, which needs a compare-and-swap lock:

* Acquisition and renewal are ``PUT``s carrying the Lease's ``resourceVersion``, so the API
  server lets exactly one writer win; the loser sees 409 Conflict.
* A standby never compares clocks across machines: it considers the lease expired only after
  it has seen the same Lease record, unchanged, for ``lease_duration`` of its *own* monotonic
  time (the rule client-go's leader election uses).
* The leader gives up when it has not renewed for ``renew_deadline`` (< ``lease_duration``),
  measured from the moment it *sent* its last successful renewal. It then stops the process
  at once (``on_lost``): a kopf graceful shutdown would let in-flight handlers finish while the
  new leader may already be acting. Kubernetes restarts the container, which becomes a standby.

The gate is meant to block kopf's startup (``@kopf.on.startup`` awaits :attr:`LeaderGate.elected`):
kopf starts no watcher, index, timer or daemon before every startup handler has returned, so a
standby reads and writes nothing about the user's objects. On a graceful stop the leader
releases the Lease (kopf's cleanup runs after every handler has finished), so a rolling update
hands over within one ``retry_period`` instead of a whole ``lease_duration``.

The election runs on a thread of its own with its own event loop and API client. A leader's
event loop may be saturated for a while (10,000 TenantQuotas arriving at once): that is work,
not death, and renewals queued behind it would miss their deadline and stop a healthy leader.
A loop that is really stuck must still lose the lease, so the operator's loop beats a
heartbeat and the election thread gives up leading when it has not beaten for
``loop_stall_limit``.

Takeover after a leader dies without releasing: at most ``lease_duration + 2 * retry_period``
(15 + 2 * 2 = 19 s; 6 + 2 * 0.5 = 7 s in test mode) plus kopf's start.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .clock import micro_timestamp
from . import metrics
from .config import CONFIG, operator_namespace
from .kube.client import new_api_client
from .scrub import scrub

logger = logging.getLogger(__name__)

LEASE_NAME = "perf-operator-leader"


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's defaults; test mode shrinks them so that takeover tests take seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    #: How long the operator's event loop may go without running before the leader steps down.
    loop_stall_limit: float = 60.0

    @classmethod
    def for_config(cls, test_mode: bool) -> LeaseTiming:
        # Test mode: fast takeovers, yet a leader rides out a 4 s stall of a loaded test
        # machine's API server (2 s made the session's operator exit under load).
        return cls(6.0, 4.0, 0.5, 10.0) if test_mode else cls()


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease the election looks at."""

    holder: str | None
    resource_version: str
    transitions: int


@dataclass(frozen=True)
class Create:
    """No Lease yet: create it holding it."""


@dataclass(frozen=True)
class Renew:
    """We hold it: bump renewTime."""


@dataclass(frozen=True)
class Acquire:
    """Free or expired: take it over (one more transition)."""


@dataclass(frozen=True)
class Wait:
    """Someone else holds a live lease."""

    holder: str


@dataclass(frozen=True)
class Lost:
    """We have not renewed within the deadline, or the operator's event loop is stuck: stop
    acting now."""

    reason: str


@dataclass(frozen=True)
class Stalled:
    """Not leading, and the operator's event loop is stuck: a replica that cannot act must not
    take the lease."""


Step = Create | Renew | Acquire | Wait | Lost | Stalled


def plan_lease_step(*, record: LeaseRecord | None, identity: str, leading: bool,
                    now: float, observed_at: float, last_renewed: float,
                    timing: LeaseTiming, loop_beat: float | None = None) -> Step:
    """What to do next, from the last Lease read and local monotonic times only.

    ``observed_at`` is when this replica first saw the current ``resourceVersion``;
    ``last_renewed`` is when it sent its last successful write of the Lease; ``loop_beat`` is
    when the operator's event loop last ran its heartbeat (None: not watched).
    """
    if leading and now - last_renewed > timing.renew_deadline:
        return Lost(f"not renewed for {timing.renew_deadline:g}s")
    if loop_beat is not None and now - loop_beat > timing.loop_stall_limit:
        if leading:
            return Lost(f"the operator's event loop has not run for {now - loop_beat:.0f}s")
        return Stalled()
    if record is None:
        return Create()
    if record.holder == identity:
        return Renew()
    if not record.holder or now - observed_at >= timing.lease_duration:
        return Acquire()
    return Wait(record.holder)


def exit_process(reason: str) -> None:
    """Leave at once, without kopf's graceful shutdown: in-flight handlers must not go on
    changing databases after another replica may have become the leader."""
    logger.critical("leadership lost (%s): exiting so that only the new leader acts", reason)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


@dataclass(frozen=True)
class _Election:
    """What the election loop creates on its own event loop and uses only there."""

    stop: asyncio.Event
    #: Serialises a step and a release.
    lock: asyncio.Lock
    api: client.CoordinationV1Api


def _settle(finished: asyncio.Future) -> None:
    if not finished.done():
        finished.set_result(None)


class LeaderGate:
    """A Lease-based leader election loop on a thread of its own.

    :attr:`elected` (an event of the loop that awaited :meth:`run`) is set while this replica
    leads; :attr:`is_leader` says the same. Await :meth:`run` in a background task; call
    :meth:`release` on a graceful stop. Cancelling :meth:`run` stops renewing without
    releasing, as a crash would.
    """

    def __init__(self, *, namespace: str, identity: str, name: str = LEASE_NAME,
                 timing: LeaseTiming | None = None,
                 on_lost: Callable[[str], None] = exit_process) -> None:
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or LeaseTiming.for_config(CONFIG.test_mode)
        self.on_lost = on_lost
        self.elected = asyncio.Event()
        #: Monotonic time of the last successful round trip to the API server (for readiness).
        self.last_contact: float | None = None
        self._leading = False
        self._record: LeaseRecord | None = None
        self._observed_at = 0.0
        self._last_renewed = 0.0
        self._acquired_at: str | None = None
        self._released = False
        self._loop_beat: float | None = None
        self._operator_loop: asyncio.AbstractEventLoop | None = None
        self._election_loop: asyncio.AbstractEventLoop | None = None
        #: Exists while the election loop runs (it owns the API client).
        self._election: _Election | None = None

    @classmethod
    async def from_environment(cls, **kwargs: Any) -> LeaderGate:
        """The Lease lives in the operator's namespace: ``PERF_OPERATOR_NAMESPACE`` (the
        downward API in the Deployment), else the in-cluster ServiceAccount's namespace, else
        the kubeconfig context's namespace, else ``default``. The identity is the pod name
        (``POD_NAME``) or the host name, plus a random suffix so that a restarted container
        never mistakes its predecessor's lease for its own."""
        namespace = await asyncio.to_thread(operator_namespace)
        base = os.environ.get("POD_NAME") or socket.gethostname()
        return cls(namespace=namespace, identity=f"{base}_{secrets.token_hex(4)}", **kwargs)

    @property
    def is_leader(self) -> bool:
        return self._leading

    def in_contact(self) -> bool:
        """True while the API server answered within the renew deadline: this replica could
        take over. Readiness, for leader and standby alike (a rollout waits on it)."""
        return (self.last_contact is not None
                and time.monotonic() - self.last_contact <= self.timing.renew_deadline)

    async def run(self) -> None:
        """Run the election on its own thread until :meth:`release`, beating the heartbeat of
        the calling (the operator's) event loop meanwhile."""
        self._operator_loop = asyncio.get_running_loop()
        finished = self._operator_loop.create_future()
        thread = threading.Thread(target=self._election_thread, args=(finished,),
                                  name="leader-election", daemon=True)
        heartbeat = asyncio.create_task(self._beat())
        thread.start()
        try:
            await asyncio.shield(finished)
        except asyncio.CancelledError:
            self._signal_stop()
            await asyncio.to_thread(thread.join)
            raise
        finally:
            heartbeat.cancel()

    async def release(self) -> None:
        """Hand the Lease over now (graceful stop): clear the holder if it is still ours."""
        loop = self._election_loop
        if loop is None or loop.is_closed():
            self._released = True
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._release(), loop))
        except RuntimeError:  # the election loop closed meanwhile: nothing left to release
            self._released = True

    async def _beat(self) -> None:
        while True:
            self._loop_beat = time.monotonic()
            await asyncio.sleep(self.timing.retry_period)

    def _election_thread(self, finished: asyncio.Future) -> None:
        loop = self._election_loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._elect())
        finally:
            loop.close()
            operator_loop = self._operator_loop
            if operator_loop is not None and not operator_loop.is_closed():
                operator_loop.call_soon_threadsafe(_settle, finished)

    def _signal_stop(self) -> None:
        loop, election = self._election_loop, self._election
        if loop is not None and election is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(election.stop.set)
            except RuntimeError:
                pass  # closed between the check and the call: it has stopped anyway

    async def _elect(self) -> None:
        """Acquire or renew every ``retry_period`` until released or stopped."""
        api_client = await new_api_client()
        election = self._election = _Election(
            asyncio.Event(), asyncio.Lock(), client.CoordinationV1Api(api_client))
        try:
            while not election.stop.is_set():  # set by a release once it has finished
                async with election.lock:
                    if not self._released:
                        await self._step()
                try:
                    await asyncio.wait_for(election.stop.wait(), self.timing.retry_period)
                except asyncio.TimeoutError:
                    pass
        except Exception as err:  # noqa: BLE001 - restart rather than lead, or wait, blindly
            logger.exception("leader election loop failed")
            self._lose(f"election loop failed: {scrub(err)}")
        finally:
            await api_client.close()

    @property
    def _running(self) -> _Election:
        """The election loop's state; only its coroutines use it, while it runs."""
        assert self._election is not None, "the election loop is not running"
        return self._election

    async def _release(self) -> None:
        async with self._running.lock:
            await self._release_locked()

    async def _release_locked(self) -> None:
        self._released = True
        try:
            if not self.is_leader or self._record is None:
                return
            self._set_leading(False)
            body = self._body(holder=None, transitions=self._record.transitions)
            await self._running.api.replace_namespaced_lease(self.name, self.namespace, body)
            logger.info("released leadership lease %s/%s", self.namespace, self.name)
        except ApiException as err:
            logger.warning("could not release lease %s/%s: %s", self.namespace, self.name,
                           scrub(err.reason))
        finally:
            self._running.stop.set()  # only now may the election loop close its client

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        metrics.set_leader(leading)
        elected = self.elected.set if leading else self.elected.clear
        loop = self._operator_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(elected)

    async def _step(self) -> None:
        started = time.monotonic()
        timeout = self.timing.retry_period
        if self.is_leader:
            timeout = max(0.1, self.timing.renew_deadline - (started - self._last_renewed))
        try:
            await asyncio.wait_for(self._observe(), timeout)
            step = plan_lease_step(record=self._record, identity=self.identity,
                                   leading=self.is_leader, now=time.monotonic(),
                                   observed_at=self._observed_at, last_renewed=self._last_renewed,
                                   timing=self.timing, loop_beat=self._loop_beat)
            if isinstance(step, Lost):
                self._lose(step.reason)
            elif isinstance(step, Stalled):
                logger.warning("not taking lease %s/%s: the event loop is stuck",
                               self.namespace, self.name)
            elif isinstance(step, Wait):
                if self.is_leader:  # someone took it over while we could not see it
                    self._lose(f"lease taken over by {step.holder}")
            else:
                await asyncio.wait_for(self._write(step), timeout)
                self._last_renewed = started
                if not self.is_leader:
                    logger.info("acquired leadership lease %s/%s as %s",
                                self.namespace, self.name, self.identity)
                    self._set_leading(True)
        except (ApiException, OSError, asyncio.TimeoutError) as err:
            if isinstance(err, ApiException) and err.status == 409:
                logger.debug("lease %s/%s changed under us; retrying", self.namespace, self.name)
            else:
                logger.warning("lease %s/%s: %s", self.namespace, self.name,
                               scrub(getattr(err, "reason", None) or repr(err)))
            deadline = self.timing.renew_deadline
            if self.is_leader and time.monotonic() - self._last_renewed > deadline:
                self._lose(f"not renewed for {deadline:g}s")

    def _lose(self, reason: str) -> None:
        self._set_leading(False)
        self.on_lost(reason)

    async def _observe(self) -> None:
        try:
            lease = await self._running.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            self.last_contact = time.monotonic()
            self._record = None
            return
        self.last_contact = time.monotonic()
        record = LeaseRecord(holder=lease.spec.holder_identity if lease.spec else None,
                             resource_version=lease.metadata.resource_version,
                             transitions=(lease.spec.lease_transitions or 0) if lease.spec else 0)
        if self._record is None or record.resource_version != self._record.resource_version:
            self._observed_at = self.last_contact
        self._record = record

    async def _write(self, step: Create | Renew | Acquire) -> None:
        api = self._running.api
        if isinstance(step, Create):
            body = self._body(holder=self.identity, transitions=0, acquired=True)
            lease = await api.create_namespaced_lease(self.namespace, body)
        else:
            assert self._record is not None
            transitions = self._record.transitions + (1 if isinstance(step, Acquire) else 0)
            body = self._body(holder=self.identity, transitions=transitions,
                              acquired=isinstance(step, Acquire))
            lease = await api.replace_namespaced_lease(self.name, self.namespace, body)
        self._record = LeaseRecord(holder=self.identity,
                                   resource_version=lease.metadata.resource_version,
                                   transitions=lease.spec.lease_transitions or 0)
        self._observed_at = time.monotonic()

    def _body(self, *, holder: str | None, transitions: int, acquired: bool = False
              ) -> dict[str, Any]:
        now = micro_timestamp()
        if acquired:
            self._acquired_at = now
        spec: dict[str, Any] = {"holderIdentity": holder,
                                "leaseDurationSeconds": max(1, round(self.timing.lease_duration)),
                                "renewTime": now, "leaseTransitions": transitions}
        if holder is not None and self._acquired_at is not None:
            spec["acquireTime"] = self._acquired_at
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                    "labels": {"app.kubernetes.io/name": "perf-operator"}}
        if self._record is not None:
            metadata["resourceVersion"] = self._record.resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": metadata, "spec": spec}
