"""The limits a tenant is held to. A PerformanceProfile gives the defaults, a TenantQuota may
override them, and both speak through these shapes so the two can be merged field by field
(see ``tenant.effective_limits``)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .schema import ListSet, Rule, SpecModel

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "*"]

#: A URL path pattern: ``*`` matches one path segment, ``**`` any number of them.
PathPattern = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$",
                                               max_length=128)]

Methods = Annotated[
    list[HttpMethod],
    Field(min_length=1, max_length=6),
    ListSet(),
    Rule("!('*' in self) || size(self) == 1", "'*' already covers every method: list it alone"),
]


class Limit(SpecModel):
    """A request budget enforced by GCRA (a token bucket) in Redis, so that every replica
    shares it: on average `requests` per `windowSeconds`, with `requests + burst` allowed back to
    back (see docs/rate-limit-tables.md)."""

    requests: int = Field(ge=1, le=1_000_000_000,
                          description="Requests allowed per window, on average (GCRA).")
    window_seconds: int = Field(60, ge=1, le=86_400,
                                description="Length of the window the average is taken over, "
                                            "in seconds.")
    burst: int = Field(0, ge=0, le=1_000_000_000,
                       description="Extra requests allowed back to back above `requests` "
                                   "(the bucket's depth beyond one window; absorbs spikes).")


class EndpointRateLimit(Limit):
    """A per-endpoint budget. Endpoint rules are counted per tenant; the first rule whose pattern
    and method match a request applies, and tenant rules are tried before the profile's."""

    pattern: PathPattern = Field(
        description="URL path the rule applies to, starting with '/'. `*` matches one path "
                    "segment and `**` any number of segments, e.g. `/api/plugins/**`.")
    methods: Methods = Field(
        default_factory=lambda: list[HttpMethod](["*"]),
        description="HTTP methods the rule applies to; `*` means every method.")
    critical: bool = Field(
        False, description="Critical endpoints (health checks, authentication) are never shed "
                           "by the optimizer's load shedding, even under pressure.")


#: CEL: rule ``a`` is listed before ``b`` and matches every request ``b`` does, so ``b`` never
#: applies. CEL can only judge the common case, a prefix ``<literal path>/**`` before a path
#: under it; any other shadowing (``*`` segments) is refused by the admission webhook and
#: reported by the reconciler as RuleShadowed (``validation.shadowed_rule_errors``).
_SHADOWS = ("(self.indexOf(a) < self.indexOf(b) && a.pattern.endsWith('/**') && "
            "!a.pattern.substring(0, size(a.pattern) - 3).contains('*') && "
            "(b.pattern + '/').startsWith(a.pattern.substring(0, size(a.pattern) - 2)) && "
            "('*' in a.methods || (!('*' in b.methods) && b.methods.all(m, m in a.methods))))")

#: No two rules may match the same request: same pattern and a method in common ('*' overlaps
#: every method). Otherwise which budget applies would depend on list order.
EndpointRules = Annotated[
    list[EndpointRateLimit],
    Field(max_length=32),
    Rule("self.all(a, size(self.filter(b, b.pattern == a.pattern && ('*' in a.methods || "
         "'*' in b.methods || a.methods.exists(m, m in b.methods)))) == 1)",
         "two rules have the same pattern and a method in common"),
    # Static message: a messageExpression naming both patterns exceeds the API server's cost
    # budget for the CRD; the webhook and reconciler name them (validation.py).
    Rule(f"self.all(b, !self.exists(a, {_SHADOWS}))",
         "RuleShadowed: a rule <prefix>/** is listed before a narrower rule under <prefix> "
         "with the same methods or fewer, which would never apply (the first matching rule "
         "wins); list the narrower rule first"),
]

TtlSeconds = Annotated[int, Field(ge=1, le=604_800)]


class CacheTTLs(SpecModel):
    """How long each kind of cached data lives. The defaults sit inside the ranges the seed
    guide gives for each kind of data."""

    sessions: TtlSeconds = Field(3600, description="User sessions, in seconds (seed range "
                                                   "5 min - 1 h).")
    permissions: TtlSeconds = Field(900, description="Resolved user permissions, in seconds "
                                                     "(seed range 5 min - 1 h).")
    plugin_metadata: TtlSeconds = Field(1800, description="Plugin metadata, in seconds (seed "
                                                          "range 5 min - 1 h).")
    catalogs: TtlSeconds = Field(600, description="Catalog entities, in seconds (seed range "
                                                  "5 min - 1 h).")
    api_responses: TtlSeconds = Field(300, description="Cached API responses, in seconds (seed "
                                                       "range 3 - 5 min).")
    search_results: TtlSeconds = Field(180, description="Search results, in seconds (seed "
                                                        "range 3 - 5 min).")
    health_checks: TtlSeconds = Field(30, description="Health check results, in seconds (seed "
                                                      "range 30 s - 5 min).")
    metrics: TtlSeconds = Field(60, description="Metric snapshots, in seconds (seed range "
                                                "30 s - 5 min).")


class WebsocketQuota(SpecModel):
    """What one tenant may hold of the shared WebSocket capacity."""

    max_connections: int = Field(ge=0, le=1_000_000,
                                 description="Concurrent WebSocket connections of the tenant.")
    message_rate_per_minute: int = Field(ge=1, le=100_000_000,
                                         description="Messages per minute across all of the "
                                                     "tenant's connections.")


class CacheQuota(SpecModel):
    """What one tenant may hold of the shared Redis cache."""

    quota_bytes: int = Field(ge=0, le=1 << 40,
                             description="Memory the tenant's cache keys may use, in bytes.")
    max_keys: int = Field(ge=0, le=1_000_000_000,
                          description="Number of cache keys the tenant may hold.")
    ttl_seconds: CacheTTLs = Field(description="TTL of each kind of cached data, in seconds.")
