"""A profile's ``status.tenants``: how many tenants use it and the WebSocket connections they
commit, kept current as tenants come and go.

The profile's reconcile writes the summary, but it runs only on the profile's own changes and
its resync timer: a deleted tenant stayed counted for up to a resync (60 s), and tenants
created after their profile for as long. So every tenant event also schedules a refresh of its
profile's summary, written straight to the profile's status when it differs from what the
status shows. Refreshes are coalesced per profile (``REFRESH_DELAY_SECONDS``): deleting 10,000
tenants writes each profile's status every 30 seconds, not 10,000 times, and the pending
map holds only profiles with a refresh under way. ``Overcommitted`` follows at the profile's
next reconcile (it is a condition, written with the others).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pydantic
from kubernetes_asyncio.client.exceptions import ApiException

from ..api import PerformanceProfileSpec
from ..api.profile import WebsocketSpec
from ..api.tenant import websocket_connections
from ..kube.objects import patch_status
from ..scrub import scrub
from ..tenants.registry import TENANTS_BY_PROFILE
from .profile_registry import ProfileRef, profile_index
from .resources import PROFILES

#: A refresh waits this long after its profile's first tenant event, and again as long as
#: more events of that profile came meanwhile, up to ``REFRESH_MAX_SECONDS``: a lone change
#: shows within a second or two, while tenants created by the thousand cost each profile a
#: write every 30 seconds, not every second (at 10 s, 10,000 tenants created at once in 50
#: namespaces cost 0.09 profile writes per tenant on top of the tenant's own, bench/
#: tenants_scale.py, against a goal of 0.05 for both).
REFRESH_DELAY_SECONDS = 1.0
REFRESH_MAX_SECONDS = 30.0

logger = logging.getLogger(__name__)


def tenant_summary(namespace: str, profile: str, websocket: WebsocketSpec | None
                   ) -> dict[str, int]:
    """How many tenants use the profile, and the WebSocket connections they commit: a tenant's
    own ``maxConnections`` or, without one, the profile's ``perTenantDefault``, each capped at
    the pool (``api.tenant.websocket_connections``, as ``effective_limits`` counts it). Without a valid profile (``websocket`` None) only
    the tenants' own limits are known."""
    members = TENANTS_BY_PROFILE.of_profile(namespace, profile)
    if websocket is None:
        committed = sum(m.websocket_limit or 0 for m in members)
    else:
        committed = sum(websocket_connections(websocket, m.websocket_limit) for m in members)
    return {"count": len(members), "websocketCommitted": committed}


@profile_index
def shown_summaries(namespace: str, name: str, meta: dict, spec: dict, status: dict, **_
                    ) -> dict:
    """Each profile not being deleted: its WebSocket section (None for a spec that does not
    validate, as its reconcile counts) and the summary its status shows."""
    if meta.get("deletionTimestamp"):
        return {}
    try:
        websocket: WebsocketSpec | None = PerformanceProfileSpec.model_validate(
            dict(spec)).websocket
    except pydantic.ValidationError:
        websocket = None
    return {(namespace, name): (websocket, status.get("tenants"))}


#: Profiles with a refresh scheduled (an entry leaves when its refresh starts writing).
_pending: dict[ProfileRef, asyncio.Task] = {}
#: Profiles of ``_pending`` with tenant events since their refresh last went to sleep.
_more: set[ProfileRef] = set()


def summary_follows(namespace: str, body: Mapping[str, Any]) -> None:
    """A tenant was created, changed or deleted (called on each of its watch events): its
    profile's summary is refreshed shortly, by a task, so that the tenant's event waits for
    nothing."""
    profile = ((body.get("spec") or {}).get("profileRef") or {}).get("name")
    if profile is None:
        return
    ref = (namespace, profile)
    if ref in _pending:
        _more.add(ref)
    else:
        _pending[ref] = asyncio.create_task(_refresh(ref),
                                            name=f"tenant summary {namespace}/{profile}")


async def _refresh(ref: ProfileRef) -> None:
    try:
        waited = 0.0
        while waited < REFRESH_MAX_SECONDS:
            _more.discard(ref)
            await asyncio.sleep(REFRESH_DELAY_SECONDS)
            waited += REFRESH_DELAY_SECONDS
            if ref not in _more:
                break
    finally:
        del _pending[ref]
        _more.discard(ref)
    try:
        await publish_tenant_summary(*ref)
    except ApiException as err:
        if err.status != 404:  # 404: the profile is gone meanwhile
            logger.warning("tenant summary of %s/%s not written: %s", *ref, scrub(err))


async def publish_tenant_summary(namespace: str, name: str) -> None:
    """Write the profile's tenant summary if its status shows another one (nothing for a
    profile that does not exist or is being deleted)."""
    shown = shown_summaries.get((namespace, name))
    if not shown:
        return
    websocket, current = shown[0]
    summary = tenant_summary(namespace, name, websocket)
    if summary != current:
        await patch_status(PROFILES[2], namespace, name, {"status": {"tenants": summary}})
