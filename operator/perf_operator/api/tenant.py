"""TenantQuota: what one tenant of the platform may use. Everything it leaves out comes from the
PerformanceProfile it names, so a tenant only states how it differs; ``effective_limits`` is the
one place where the two are merged."""
from __future__ import annotations

import math
from typing import Annotated, Literal, TypeVar

from pydantic import ConfigDict, Field, StringConstraints

from .limits import CacheQuota, EndpointRateLimit, EndpointRules, Limit, WebsocketQuota
from .profile import PerformanceProfileSpec, WebsocketSpec
from .schema import CamelModel, ObjectName, Rule, SpecModel, overlay, partial

Tier = Literal["Free", "Standard", "Premium", "Enterprise"]

#: The tenant's identifier as the platform knows it; it names the tenant's keys in Redis.
TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                                            max_length=63)]

#: Models made at import by ``partial``: mypy cannot see their fields, so the fields typed
#: with them are Any to it (hence the ignores below).
WebsocketOverride = partial(WebsocketQuota)
CacheOverride = partial(CacheQuota)


class ProfileRef(SpecModel):
    """The PerformanceProfile, in the same namespace, whose defaults the tenant inherits."""

    name: ObjectName = Field(description="Name of a PerformanceProfile in this namespace.")


class PluginQuota(SpecModel):
    """Plugin limits. The profile has no plugin defaults, so this one has its own."""

    max_plugins: int = Field(10_000, ge=0, le=1_000_000,
                             description="Plugins the tenant may install (seed: 10,000+ per "
                                         "tenant).")


class TenantQuotaSpec(SpecModel):
    """The limits of one tenant."""

    tenant_id: Annotated[TenantId, Rule("self == oldSelf", "tenantId is immutable")] = Field(
        description="Tenant identifier (lower-case DNS label). Immutable: it names the tenant's "
                    "keys in Redis.")
    profile_ref: ProfileRef = Field(description="Profile whose defaults apply.")
    tier: Tier = Field("Standard", description="Commercial tier, recorded with the tenant's "
                                               "limits for dashboards and alert routing; it "
                                               "does not change a limit by itself.")
    rate_limits: EndpointRules | None = Field(
        None, description="Per-endpoint budgets of this tenant. A rule replaces the profile's "
                          "rules that have its pattern and a method in common; the profile's "
                          "other rules still apply. Use pattern `/**` to change the budget of "
                          "everything else.")
    websocket: WebsocketOverride | None = Field(  # type: ignore[valid-type]
        None, description="WebSocket limits; omitted fields come from the profile's "
                          "websocket.perTenantDefault and messageRatePerMinute.")
    cache: CacheOverride | None = Field(  # type: ignore[valid-type]
        None, description="Cache quota; omitted fields come from the profile's "
                          "cache.defaultQuotaBytes, defaultMaxKeys and ttlSeconds.")
    plugins: PluginQuota = Field(default_factory=PluginQuota, description="Plugin limits.")


class EffectiveTenantLimits(CamelModel):
    """The limits a tenant is actually held to, after inheriting from its profile: what the
    operator writes to the tenant's Redis table and enforces."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    tier: Tier
    rate_limits_enabled: bool
    #: Tenant rules first: the first rule that matches a request applies.
    endpoints: list[EndpointRateLimit]
    default_limit: Limit
    per_ip: Limit
    websocket: WebsocketQuota
    cache: CacheQuota
    plugins: PluginQuota


def _overlaps(a: EndpointRateLimit, b: EndpointRateLimit) -> bool:
    """Whether one request could match both rules (the CEL rule on EndpointRules, in Python)."""
    return a.pattern == b.pattern and ("*" in a.methods or "*" in b.methods
                                       or bool(set(a.methods) & set(b.methods)))


def websocket_connections(profile: WebsocketSpec, own: int | None) -> int:
    """The WebSocket connections a tenant may hold: its own ``maxConnections`` or, without one,
    the profile's ``perTenantDefault``, capped at the profile's pool (no tenant can hold more
    than the whole pool, whatever its quota says)."""
    return min(profile.per_tenant_default if own is None else own, profile.max_connections)


def shed_requests(requests: int, share: float) -> int:
    """A rate limit after load shedding takes ``share`` of it (at least one request stays
    allowed)."""
    if share <= 0:
        return requests
    return max(1, math.floor(requests * (1 - share)))


_Budget = TypeVar("_Budget", EndpointRateLimit, Limit)


def _shed(limit: _Budget, share: float) -> _Budget:
    return limit.model_copy(update={"requests": shed_requests(limit.requests, share),
                                    "burst": math.floor(limit.burst * (1 - share))})


def effective_limits(profile: PerformanceProfileSpec, tenant: TenantQuotaSpec,
                     load_shedding: float = 0.0) -> EffectiveTenantLimits:
    """Merge a tenant's quota over its profile's defaults, and shed the load the optimizer
    sheds (``load_shedding``, its ``Adjustments.load_shedding`` in force): non-critical endpoint
    rules and the default budget (requests no rule matches) lose that share, critical rules and
    the per-IP limit keep theirs.

    A tenant's WebSocket connections are capped at the profile's pool size: no tenant can hold
    more than the whole pool, whatever its quota says.
    """
    rate = profile.api.rate_limits
    tenant_rules = tenant.rate_limits or []
    inherited = [rule for rule in rate.endpoints
                 if not any(_overlaps(rule, own) for own in tenant_rules)]
    endpoints = [*tenant_rules, *inherited]
    default_limit = rate.default
    if load_shedding > 0:
        endpoints = [rule if rule.critical else _shed(rule, load_shedding) for rule in endpoints]
        default_limit = _shed(default_limit, load_shedding)
    websocket = overlay(WebsocketQuota(max_connections=profile.websocket.per_tenant_default,
                                       message_rate_per_minute=profile.websocket
                                       .message_rate_per_minute), tenant.websocket)
    websocket = websocket.model_copy(update={"max_connections": websocket_connections(
        profile.websocket, websocket.max_connections)})
    cache = overlay(CacheQuota(quota_bytes=profile.cache.default_quota_bytes,
                               max_keys=profile.cache.default_max_keys,
                               ttl_seconds=profile.cache.ttl_seconds), tenant.cache)
    return EffectiveTenantLimits(
        tenant_id=tenant.tenant_id, tier=tenant.tier, rate_limits_enabled=rate.enabled,
        endpoints=endpoints, default_limit=default_limit, per_ip=rate.per_ip,
        websocket=websocket, cache=cache, plugins=tenant.plugins)
