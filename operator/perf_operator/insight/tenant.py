"""``kubectl perf tenant <tenantId>``: the limits a tenant is held to (its TenantQuota merged
with its profile's defaults and the optimizer's adjustments in force, computed as the operator
computes them), where its record lives, the record as Redis has it, and its cache use."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from ..api.optimization import adjustments
from ..api.profile import PerformanceProfileSpec
from ..api.tenant import TenantQuotaSpec, effective_limits
from ..ratelimit.layout import (DIGEST_FIELD, LIMITS_FIELD, OWNER_FIELD, VERSION_FIELD,
                                WRITTEN_AT_FIELD)
from ..redis.connect import RedisTarget, with_client
from ..tenants.records import desired_record, record_owner
from ..scrub import scrub
from ..secrets import SecretError

def find_tenant(tenants: Sequence[Mapping[str, Any]], tenant_id: str
                ) -> list[Mapping[str, Any]]:
    return [t for t in tenants if (t.get("spec") or {}).get("tenantId") == tenant_id]


async def describe_tenant(tenant: Mapping[str, Any], profile: Mapping[str, Any]
                          ) -> dict[str, Any]:
    """The tenant's view as data: effective limits, the record's key and server, the record
    as read from Redis (version, digest, owner, written at, whether it matches), cache use."""
    namespace, name = tenant["metadata"]["namespace"], tenant["metadata"]["name"]
    profile_spec = PerformanceProfileSpec.model_validate(profile.get("spec") or {})
    limits = effective_limits(profile_spec, TenantQuotaSpec.model_validate(tenant["spec"]),
                              adjustments(profile.get("status")).load_shedding)
    view: dict[str, Any] = {
        "tenant": f"{namespace}/{name}", "tenantId": limits.tenant_id,
        "profile": profile["metadata"]["name"],
        "effectiveLimits": limits.model_dump(mode="json", by_alias=True),
        "cache": (tenant.get("status") or {}).get("cache"),
    }
    redis = profile_spec.redis
    if redis is None:
        view["record"] = None
        return view
    desired = desired_record(redis.key_prefix, limits, record_owner(namespace, name))

    async def read(client: Any) -> list[str | None]:
        return await client.hmget(desired.key, [VERSION_FIELD, DIGEST_FIELD, OWNER_FIELD,
                                                WRITTEN_AT_FIELD, LIMITS_FIELD])

    if redis.connection is None:  # a PerformanceTarget's server, reached with its credentials
        view["record"] = {"key": desired.key, "redis": "the profile's PerformanceTarget",
                          "error": "read by the operator only (the target's credentials)"}
        return view
    where = f"{redis.connection.host}:{redis.connection.port}/{redis.connection.db}"
    try:
        version, digest, owner, written_at, document = await with_client(
            RedisTarget.from_spec(namespace, redis.connection), read)
    except (SecretError, RedisError) as err:
        view["record"] = {"key": desired.key, "redis": where, "error": scrub(err)}
        return view
    view["record"] = {
        "key": desired.key, "redis": where,
        "exists": digest is not None, "version": int(version or 0), "digest": digest,
        "owner": owner, "writtenAt": written_at, "current": digest == desired.digest,
        "limits": json.loads(document) if document else None,
    }
    return view


def render(view: Mapping[str, Any]) -> str:
    limits = view["effectiveLimits"]
    lines = [f"Tenant {view['tenantId']} (TenantQuota {view['tenant']}, profile "
             f"{view['profile']}, tier {limits['tier']})"]
    record = view.get("record")
    if record is None:
        lines.append("  record: none (the profile has no Redis section)")
    elif "error" in record:
        lines.append(f"  record: {record['key']} on {record['redis']}: not read: "
                     f"{record['error']}")
    elif not record["exists"]:
        lines.append(f"  record: {record['key']} on {record['redis']}: MISSING")
    else:
        state = "current" if record["current"] else "OUT OF DATE (the operator will rewrite it)"
        lines.append(f"  record: {record['key']} on {record['redis']}, version "
                     f"{record['version']}, written {record['writtenAt']} by {record['owner']}, "
                     f"{state}")
    enabled = "on" if limits["rateLimitsEnabled"] else "OFF"
    lines.append(f"  rate limits ({enabled}), first match wins:")
    for rule in limits["endpoints"]:
        lines.append(f"    {','.join(rule['methods']):<8} {rule['pattern']:<32} "
                     f"{_limit(rule)}")
    lines.append(f"    {'*':<8} {'(everything else)':<32} {_limit(limits['defaultLimit'])}")
    lines.append(f"    per client IP: {_limit(limits['perIp'])}")
    ws = limits["websocket"]
    lines.append(f"  websocket: {ws['maxConnections']} connections, "
                 f"{ws['messageRatePerMinute']} messages/min")
    cache = limits["cache"]
    use = view.get("cache") or {}
    used = (f", using {use.get('keys', 0)} keys / {use.get('memoryBytes', 0)} bytes"
            if use else "")
    lines.append(f"  cache: quota {cache['quotaBytes']} bytes, {cache['maxKeys']} keys{used}")
    lines.append(f"  plugins: {limits['plugins']['maxPlugins']}")
    return "\n".join(lines)


def _limit(limit: Mapping[str, Any]) -> str:
    burst = f" + burst {limit['burst']}" if limit.get("burst") else ""
    return f"{limit['requests']}/{limit['windowSeconds']}s{burst}"
