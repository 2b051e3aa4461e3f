"""Redis: the profile's server settings (condition ``RedisReady``). Each tenant's limits record
and its mirror are the ``tenants`` package's; this package also gives everyone their
connections (``connect``).

Each reconcile is level-based: it observes, plans and writes only what differs, so the resync
timer is also what corrects settings changed behind the operator's back.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..api import PerformanceProfileSpec
from ..api.conditions import (CONFIG_REWRITE_FAILED, REDIS_READY, REDIS_UNAVAILABLE,
                              SETTINGS_APPLIED, SETTINGS_CONFLICT, SETTINGS_DRIFTED,
                              SETTINGS_PERSISTED, SETTINGS_REJECTED, condition_reason)
from ..api.profile import REDIS_ALLOWED_SETTINGS
from ..reconcile import Outcome, ProfileContext
from ..scrub import scrub
from ..secrets import SecretError
from ..validation import semantic_errors
from .connect import RedisTarget, with_client
from .settings import (CONFLICT, DRIFTED, REJECTED, SERVER_LOGINS, RedisPeer, SettingsResult,
                       apply_settings, contested_settings, server_id)



def redis_peer(namespace: str, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
               ) -> RedisPeer | None:
    """A profile's claim on its Redis server's CONFIG, for the handlers' index; None when it
    sets nothing: no Redis section, paused, being deleted, or a spec the operator rejects."""
    if (not spec.get("redis") or spec.get("paused") or meta.get("deletionTimestamp")
            or spec.get("targetRef")):
        # A PerformanceTarget's server has one settings owner (its serverSettingsOwner):
        # its profiles never contest CONFIG with one another.
        return None
    try:
        model = PerformanceProfileSpec.model_validate(dict(spec))
    except pydantic.ValidationError:
        return None
    if model.redis is None or semantic_errors(model):
        return None
    connection = model.redis.connection
    if connection is None:  # the CRD requires it without a targetRef
        return None
    return RedisPeer(namespace=namespace, name=name, created=meta.get("creationTimestamp"),
                     host=connection.host, port=connection.port,
                     settings={k: v for k, v in model.redis.settings.items()
                               if k in REDIS_ALLOWED_SETTINGS})


async def reconcile_profile(ctx: ProfileContext) -> Outcome | None:
    """Apply ``spec.redis.settings`` and report each parameter in ``status.redis.settings``."""
    spec = ctx.spec.redis
    if spec is None:
        return None
    assert spec.connection is not None, "targets.resolve fills in a target's connection"
    previous = (ctx.status.get("redis") or {}).get("settings") or []
    persisted_before = condition_reason(ctx.status, REDIS_READY) == SETTINGS_PERSISTED
    me = RedisPeer(namespace=ctx.namespace, name=ctx.name, created=ctx.created,
                   host=spec.connection.host, port=spec.connection.port,
                   settings=dict(spec.settings))

    async def apply(redis: Redis) -> SettingsResult:
        reached = SERVER_LOGINS[me.owner] = await server_id(redis)
        contested = contested_settings(me, ctx.redis_peers, SERVER_LOGINS, reached)
        return await apply_settings(redis, dict(spec.settings), previous,
                                    persist=spec.persist_settings,
                                    persisted_before=persisted_before, events=ctx.events,
                                    contested=contested)

    try:
        result = await with_client(RedisTarget.from_spec(ctx.namespace, spec.connection), apply)
    except SecretError as err:
        SERVER_LOGINS[me.owner] = None
        return Outcome(REDIS_READY, False, err.reason, str(err))
    except RedisError as err:
        SERVER_LOGINS[me.owner] = None
        return Outcome(REDIS_READY, False, REDIS_UNAVAILABLE, scrub(err))
    status = {"redis": {"settings": result.statuses}}
    if result.rewrite_error:
        return Outcome(REDIS_READY, False, CONFIG_REWRITE_FAILED, result.rewrite_error, status)
    rejected = [s["message"] for s in result.statuses if s["state"] == REJECTED]
    if rejected:
        return Outcome(REDIS_READY, False, SETTINGS_REJECTED, "; ".join(rejected), status)
    conflicts = [s["message"] for s in result.statuses if s["state"] == CONFLICT]
    if conflicts:
        return Outcome(REDIS_READY, False, SETTINGS_CONFLICT, "; ".join(conflicts), status)
    drifted = [s["message"] for s in result.statuses if s["state"] == DRIFTED]
    if drifted:
        return Outcome(REDIS_READY, False, SETTINGS_DRIFTED, "; ".join(drifted), status)
    if spec.persist_settings:
        return Outcome(REDIS_READY, True, SETTINGS_PERSISTED,
                       f"{len(result.statuses)} Redis settings applied and persisted with "
                       f"CONFIG REWRITE", status)
    return Outcome(REDIS_READY, True, SETTINGS_APPLIED,
                   f"{len(result.statuses)} Redis settings applied", status)


async def forget_profile(ctx: ProfileContext) -> None:
    """The profile is deleted: its login no longer counts in settings conflicts."""
    SERVER_LOGINS.pop(f"{ctx.namespace}/{ctx.name}", None)
