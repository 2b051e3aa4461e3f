"""Running a set of target-system reconcilers for one object and writing one status patch."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import kopf

from ..api.conditions import READY, RECONCILED, RECONCILE_ERROR
from .. import metrics
from ..config import CONFIG
from ..api import PAUSED, PROGRESS_REASONS, Condition, set_condition, severity
from ..reconcile import EventRecorder, Outcome
from ..scrub import scrub
from ..secrets import serving_copies
from . import deferred, escrow
from ..status import apply_to_kopf_patch
from ..targets.policy import ConnectionRefused

Part = Callable[[Any], Awaitable[Outcome | None]]
Cleanup = Callable[[Any], Awaitable[None]]


#: How long the cleanup of an object already gone (a TenantQuota) keeps being tried when neither
#: it nor its deferral can reach the API server (a restart of it, seen in the chaos run), and
#: the longest wait between two attempts (the first waits ``CONFIG.retry_backoff_seconds``).
GONE_RETRY_SECONDS = 300.0
GONE_RETRY_MAX_WAIT = 30.0


async def run_cleanups(cleanups: Sequence[Cleanup], ctx: Any, retry: int | None,
                       entry: dict[str, Any], lock: asyncio.Lock | None = None) -> None:
    """Undo what an object configured, before its finalizer is removed (``retry``: kopf's
    retry count) or once it is gone (``retry`` None: a TenantQuota, which has no finalizer).
    When that fails (a server down), the work is written to the operator's cleanup ledger with
    copies of the credentials it needs (``deferred.defer``; ``entry`` is what a replay needs)
    and the object is released at once: deleting a namespace never waits on a server, nor
    depends on the Secrets its teardown deletes. What would log in with a Secret the operator
    never used has nothing to undo (``deferred.clean``). Only when the ledger itself cannot be
    written is the deletion retried, and after a bounded number of retries released with a
    warning Event. An object already gone has nothing that would retry it (its profile may be
    gone too, and with it the orphan sweep of its location), so it is retried here, for up to
    ``GONE_RETRY_SECONDS``, before that Event; ``lock`` is held by each attempt, not between
    them (a TenantQuota created again under the same name waits for one attempt at most), and
    the escrows of the Secrets it names are kept throughout (``escrow.held_for``)."""
    if retry is not None:
        error = await _clean_or_defer(cleanups, ctx, entry)
        if error is None:
            return
        if retry + 1 < CONFIG.finalizer_retries:
            raise kopf.TemporaryError(error, delay=CONFIG.retry_backoff_seconds)
        ctx.events.warning("CleanupAbandoned", f"cleanup not finished after {retry + 1} "
                                               f"attempts, releasing: {error}")
        return
    deadline = time.monotonic() + GONE_RETRY_SECONDS
    wait = CONFIG.retry_backoff_seconds
    with escrow.held_for(entry):  # its credentials' escrows stay until it is done or deferred
        while True:
            async with lock or contextlib.nullcontext():
                error = await _clean_or_defer(cleanups, ctx, entry)
            if error is None:
                return
            if time.monotonic() + wait > deadline:
                ctx.events.warning("CleanupAbandoned", f"cleanup not finished: {error}")
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, GONE_RETRY_MAX_WAIT)


async def _clean_or_defer(cleanups: Sequence[Cleanup], ctx: Any, entry: dict[str, Any]
                          ) -> str | None:
    """Clean up now, else write the work to the ledger; None when either was done, else why
    neither could be (the API server, for the ledger or the Secrets, is out of reach)."""
    error = ""
    try:
        copies, never_read = await deferred.gather_copies(entry)
        try:
            with serving_copies(deferred.never_used(never_read)):
                await deferred.clean(cleanups, ctx)
            return None
        except Exception as err:  # noqa: BLE001 - deferred, else retried, then released
            error = scrub(err)
        await deferred.defer({**entry, "neverRead": never_read}, error, copies)
        ctx.logger.warning("cleanup deferred to the operator's ledger: %s", error,
                           extra={"reason": "CleanupDeferred"})
        return None
    except Exception as err:  # noqa: BLE001 - the API server (ledger, Secrets) is out of reach
        return f"{error}; not deferred either: {scrub(err)}" if error else (
            f"cleanup not run: {scrub(err)}")


async def run_part(kind: str, condition: str, part: Part, ctx: Any) -> Outcome | None:
    """Run one part, timed in the reconciliation metrics (None: the spec has no section for
    it). A part that raises reports its condition as failed (the exception scrubbed, logged
    with its traceback)."""
    try:
        with metrics.reconciliation(kind, condition) as observed:
            observed.outcome = await part(ctx)
        return observed.outcome
    except ConnectionRefused as err:  # the connection policy: nothing was connected
        return Outcome(condition=condition, ready=False, reason=err.reason, message=str(err))
    except Exception as err:  # noqa: BLE001 - reported in status, logged with traceback
        ctx.logger.exception("%s failed", condition)
        return Outcome(condition=condition, ready=False, reason=RECONCILE_ERROR,
                       message=scrub(err))


async def run_parts(kind: str, parts: Sequence[tuple[str, Part]], ctx: Any
                    ) -> list[tuple[str, Outcome | None]]:
    """Run every part concurrently (:func:`run_part`), pairing each condition type with its
    outcome: one part that fails does not hide the other parts' results."""
    results = await asyncio.gather(*(run_part(kind, cond, part, ctx) for cond, part in parts))
    return [(cond, result) for (cond, _), result in zip(parts, results)]


def write_status(*, patch: kopf.Patch, current: dict[str, Any], generation: int,
                 results: Sequence[tuple[str, Outcome | None]], events: EventRecorder,
                 extra: dict[str, Any] | None = None,
                 ready_override: tuple[str, str] | None = None) -> bool:
    """Merge the outcomes into conditions (plus ``Ready``) and their status fragments, and put
    only what differs from ``current`` into kopf's patch. Returns True when something changed.
    The condition of a part whose section left the spec is removed.

    ``ready_override`` (reason, message) forces Ready=False, e.g. for a paused or rejected spec.
    Otherwise Ready's reason is that of the most severe failing part (``api.severity``: what
    only a person can fix, then failures being retried, then work under way), and its message
    lists the failing parts in that order.
    A Ready=False that is a failure (not progress, not a pause) is also a Warning Event with
    Ready's reason and message, on every reconcile while it lasts: the EventRecorder counts the
    repeats on one Event, so ``kubectl describe`` shows how long and how often.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    absent = {cond for cond, outcome in results if outcome is None}
    outcomes = [outcome for _, outcome in results if outcome is not None]
    conditions = [Condition.model_validate(c) for c in current.get("conditions") or []
                  if c.get("type") not in absent]
    desired: dict[str, Any] = {"observedGeneration": generation}
    for outcome in outcomes:
        conditions = set_condition(conditions, outcome.condition, outcome.condition_status,
                                   outcome.reason,
                                   scrub(outcome.message), generation, now)
        desired.update(outcome.status)
    if ready_override:
        reason, message = ready_override
        ready, ready_message = False, message
    else:
        failing = sorted((o for o in outcomes if not o.ready and o.affects_ready),
                         key=lambda o: severity(o.reason))
        ready = not failing
        reason = failing[0].reason if failing else RECONCILED
        ready_message = "; ".join(f"{o.condition}: {scrub(o.message)}" for o in failing) or (
            "all targets match the spec")
    conditions = set_condition(conditions, READY, "True" if ready else "False", reason,
                               ready_message, generation, now)
    if not ready and reason not in PROGRESS_REASONS and reason != PAUSED:
        events.warning(reason, ready_message)
    desired["conditions"] = [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                             for c in conditions]
    desired.update(extra or {})
    return apply_to_kopf_patch(patch, current, desired)


def next_requeue(results: Sequence[tuple[str, Outcome | None]]) -> float | None:
    delays = [o.requeue_after for _, o in results if o is not None and o.requeue_after is not None]
    return min(delays) if delays else None
