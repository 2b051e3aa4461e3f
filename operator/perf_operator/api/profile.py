"""PerformanceProfile: the desired performance configuration of one installation of the platform
(its PostgreSQL, its Redis, its API and WebSocket limits, its autoscaling, its alerts and the
optimizer that tunes them). Every default is the seed guide's figure, written here once."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, StringConstraints

from .limits import CacheTTLs, EndpointRules, Limit
from .parameters import ALLOWED_PARAMETERS, parameters_rule
from .schema import (Duration, Host, ItemName, ListMap, ListSet, ObjectName, Port, PromQL, Ratio,
                     Rule, SecretKey, SpecModel)
from .signals import SIGNALS

#: A PostgreSQL identifier the operator can use unquoted: lower case, at most 63 bytes.
PgIdentifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_$]{0,62}$",
                                                max_length=63)]
#: An operator class, optionally schema-qualified (``gin_trgm_ops``, ``public.my_ops``).
PgQualifiedName = Annotated[str, StringConstraints(
    pattern=r"^([a-z_][a-z0-9_$]{0,62}\.)?[a-z_][a-z0-9_$]{0,62}$", max_length=127)]
PgParameterName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.]*$", max_length=63)]
SettingValue = Annotated[str, StringConstraints(max_length=256)]


class SecretRef(SpecModel):
    """A Secret in the resource's own namespace. There is deliberately no namespace field: a
    reference into another namespace would hand the operator's read access to anyone allowed to
    create a profile."""

    name: ObjectName = Field(description="Name of a Secret in the same namespace as this "
                                         "resource. Cross-namespace references are refused.")


class ServerEndpoint(SpecModel):
    """A server the operator connects to for a profile: written inline in the profile, or
    granted by a PerformanceTarget (``targets.resolve`` fills it in). Which of the two decides
    where its Secret is read (the profile's namespace, or the operator's) and which connection
    policy applies (``targets.policy``); it is never read from a spec, so a profile cannot
    claim to be granted."""

    _granted_by: str | None = PrivateAttr(None)

    @property
    def granted_by(self) -> str | None:
        """The PerformanceTarget that granted this server; None for an inline connection."""
        return self._granted_by

    def granted(self, target: str) -> ServerEndpoint:
        """A copy marked as granted by the PerformanceTarget ``target``."""
        copy = self.model_copy()
        copy._granted_by = target
        return copy


# --------------------------------------------------------------------------------- PostgreSQL

#: The seed guide's PostgreSQL configuration. Values are strings, as PostgreSQL reports them.
SEED_POSTGRES_PARAMETERS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "256MB",
    "effective_cache_size": "1GB",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "work_mem": "4MB",
    "log_min_duration_statement": "1000",
    "log_checkpoints": "on",
    "log_connections": "on",
    "log_disconnections": "on",
}


class PostgresSecretRef(SecretRef):
    """The Secret holding the PostgreSQL login."""

    username_key: SecretKey = Field("username", description="Key of the user name in the "
                                                             "Secret.")
    password_key: SecretKey = Field("password", description="Key of the password in the Secret.")


class PostgresConnection(ServerEndpoint):
    """Where the database is and how to log in."""

    host: Host = Field(description="Host name or IP address of the PostgreSQL server.")
    port: Port = Field(5432, description="TCP port of the PostgreSQL server.")
    database: str = Field(min_length=1, max_length=63,
                          description="Database whose indexes and settings are managed.")
    secret_ref: PostgresSecretRef = Field(description="Secret with the user name and password. "
                                                      "The login needs no superuser: see "
                                                      "sql/operator-role.sql (member of the "
                                                      "tables' owner, ALTER SYSTEM on the "
                                                      "allowed parameters).")
    ssl_mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq sslmode used to connect.")


class IndexColumn(SpecModel):
    """One key of an index: a column, or an expression over the row."""

    __rules__ = (Rule("has(self.column) != has(self.expression)",
                      "exactly one of column or expression must be set"),)

    column: PgIdentifier | None = Field(None, description="Column name. Exactly one of "
                                                          "column and expression is set.")
    expression: str | None = Field(None, min_length=1, max_length=1024,
                                   description="SQL expression indexed instead of a column, "
                                               "e.g. `lower(email)`. Checked by the operator's "
                                               "admission webhook.")
    order: Literal["Asc", "Desc"] | None = Field(None, description="Sort order (btree only). "
                                                                  "PostgreSQL's default is Asc.")
    nulls: Literal["First", "Last"] | None = Field(None, description="Where NULLs sort (btree "
                                                                    "only).")
    opclass: PgQualifiedName | None = Field(None, description="Operator class, e.g. "
                                                              "`gin_trgm_ops` or "
                                                              "`text_pattern_ops`.")


class Index(SpecModel):
    """An index the operator builds with CREATE INDEX CONCURRENTLY, marks as its own with a
    comment, and rebuilds when its definition changes. The seed's "strategic indexing"
    (multi-tenant composite and partial indexes) is written as a list of these."""

    __rules__ = (
        Rule("self.method != 'hash' || size(self.columns) == 1",
             "a hash index has exactly one column", field_path=".columns"),
        Rule("!self.unique || self.method == 'btree'",
             "only btree indexes can be unique", field_path=".unique"),
        Rule("self.method == 'btree' || self.columns.all(c, !has(c.order) && !has(c.nulls))",
             "order and nulls apply to btree indexes only", field_path=".columns"),
        Rule("!has(self.include) || self.method in ['btree', 'gist']",
             "include columns are supported by btree and gist indexes only",
             field_path=".include"),
    )

    name: PgIdentifier = Field(description="Index name: a lower-case PostgreSQL identifier of "
                                           "at most 63 characters, unique in the profile.")
    schema_: PgIdentifier = Field("public", alias="schema",
                                  description="Schema of the table (the index lives there too).")
    table: PgIdentifier = Field(description="Table to index.")
    columns: list[IndexColumn] = Field(min_length=1, max_length=32,
                                       description="Index keys, in order (at most 32, "
                                                   "PostgreSQL's limit).")
    where: str | None = Field(None, min_length=1, max_length=4096,
                              description="Predicate of a partial index, e.g. "
                                          "`status = 'active'` (without WHERE). Checked by the "
                                          "operator's admission webhook.")
    unique: bool = Field(False, description="Build a unique index (btree only).")
    method: Literal["btree", "gin", "gist", "brin", "hash"] = Field(
        "btree", description="Index access method. hash takes exactly one column.")
    include: Annotated[list[PgIdentifier], Field(max_length=32), ListSet()] | None = Field(
        None, description="Non-key columns stored in the index for index-only "
                                         "scans (INCLUDE; btree and gist only).")
    adopt: bool = Field(False, description="Take ownership of an existing index of this name "
                                           "that the operator did not create. Without it such an "
                                           "index is reported as a Conflict and left alone.")


class PostgresSettings(SpecModel):
    """Server parameters, applied with ALTER SYSTEM or ALTER DATABASE ... SET."""

    scope: Literal["System", "Database"] = Field(
        "System", description="System applies to the whole server (ALTER SYSTEM, needs "
                              "ALTER SYSTEM on the parameter; some parameters only take "
                              "effect after a restart, reported as PendingRestart). Database applies to this database "
                              "only and accepts only parameters a session may set.")
    parameters: Annotated[
        dict[PgParameterName, SettingValue],
        parameters_rule(),
    ] = Field(
        default_factory=lambda: dict(SEED_POSTGRES_PARAMETERS), max_length=64,
        description="Parameter name to value, as strings (quote numbers and on/off in YAML; "
                    "a list-valued parameter such as temp_tablespaces as 'a, b'). Defaults to "
                    "the seed guide's settings; setting this map replaces them, so list every "
                    "parameter the operator should manage. Only performance tunables may be "
                    "set: " + ", ".join(ALLOWED_PARAMETERS) + ". Anything else "
                    "(programs, libraries, files, TLS, replication, authentication, "
                    "search_path, ...) is refused.")


class Pool(SpecModel):
    """The application's connection pool, published to it through the app ConfigMap."""

    __rules__ = (Rule("self.min <= self.max", "min must not exceed max", field_path=".min"),)

    min: int = Field(20, ge=0, le=10_000, description="Connections kept open (seed DB_POOL_MIN).")
    max: int = Field(100, ge=1, le=10_000, description="Connections at most (seed DB_POOL_MAX).")


class IndexHealthSpec(SpecModel):
    """How the indexes of the database are judged (status.database.indexHealth)."""

    unused_after_days: int = Field(7, ge=0, le=3650,
                                   description="An index with no scan is reported unused once "
                                               "the statistics cover this many days (since "
                                               "their last reset or the server's start). "
                                               "Unique and primary-key indexes are never unused.")
    bloat_percent: int = Field(50, ge=10, le=95,
                               description="An index of at least 1 MiB is reported bloated when "
                                           "this share of it is beyond its estimated freshly "
                                           "built size.")


class DatabaseSpec(SpecModel):
    """PostgreSQL: indexes, server settings and the application's connection pool."""

    connection: PostgresConnection | None = Field(
        None, description="How to reach the database. Required without spec.targetRef; "
                          "forbidden with it (the PerformanceTarget says where the database is).")
    indexes: Annotated[list[Index], ListMap(("name",))] = Field(
        default_factory=list, max_length=200,
        description="Indexes the operator creates and keeps as declared. Names are unique in the "
                    "list. Each index is built concurrently, without blocking writes; its state "
                    "is reported in status.database.indexes.")
    settings: PostgresSettings = Field(default_factory=PostgresSettings,
                                       description="Server parameters.")

    @property
    def resolved_connection(self) -> PostgresConnection:
        """The connection, which a profile naming a PerformanceTarget gets from it
        (``targets.resolve``): only resolved profiles are reconciled."""
        if self.connection is None:
            raise ValueError("the profile's PerformanceTarget was not resolved")
        return self.connection
    pool: Pool = Field(default_factory=Pool, description="Application connection pool size.")
    application_role: PgIdentifier | None = Field(
        None, description="PostgreSQL role the application connects as. Under memory pressure "
                          "(optimization.memoryPressure.connectionPruning) the optimizer "
                          "terminates this role's connections to this database that have been "
                          "idle for optimization.idleConnectionSeconds; other roles' and the "
                          "operator's own are never touched. Without it no connection is "
                          "pruned. The index advisor plans only this role's queries, as this "
                          "role (the operator's login must be a member of it); without it "
                          "there is no index advice.")
    index_prune_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="What happens to an index the operator created once it leaves "
                              "the list (or the profile is deleted): Retain keeps it and drops "
                              "the operator's mark, Delete drops it concurrently.")
    max_concurrent_builds: int = Field(1, ge=1, le=8,
                                       description="Index builds run at the same time. Each "
                                                   "build scans its table; more than one at a "
                                                   "time competes with the application for I/O.")
    lock_timeout_seconds: int = Field(5, ge=1, le=600,
                                      description="lock_timeout for the operator's DDL, so a "
                                                  "build never queues behind a long transaction "
                                                  "while blocking others; it is retried later.")
    build_timeout_seconds: int = Field(3600, ge=60, le=86_400,
                                       description="Deadline of one index build, enforced by the "
                                                   "operator (pg_cancel_backend); the build's "
                                                   "left-over INVALID index is then dropped and "
                                                   "the build retried with back-off.")
    index_health: IndexHealthSpec = Field(
        default_factory=IndexHealthSpec,
        description="Every index of the database is checked at each resync: unused, duplicate, "
                    "left-prefix overlap, bloated, invalid (status.database.indexHealth, and a "
                    "Warning Event when a finding appears). Reported only: nothing is dropped "
                    "or rebuilt for it.")


# -------------------------------------------------------------------------------------- Redis

#: Redis CONFIG parameters the operator may set. Anything else (dir, dbfilename, requirepass,
#: masterauth, replicaof, bind, enable-*-command, ...) could move files, change credentials or
#: open the server, and is refused when the profile is applied.
REDIS_ALLOWED_SETTINGS: tuple[str, ...] = (
    "maxmemory", "maxmemory-policy", "maxmemory-samples", "maxmemory-eviction-tenacity",
    "timeout", "tcp-keepalive", "maxclients",
    "save", "appendonly", "appendfsync",
    "hz", "dynamic-hz", "active-expire-effort",
    "activedefrag", "active-defrag-ignore-bytes", "active-defrag-threshold-lower",
    "active-defrag-threshold-upper", "active-defrag-cycle-min", "active-defrag-cycle-max",
    "lazyfree-lazy-eviction", "lazyfree-lazy-expire", "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del", "lazyfree-lazy-user-flush",
    "slowlog-log-slower-than", "slowlog-max-len",
    "latency-monitor-threshold", "latency-tracking",
    "notify-keyspace-events",
    "hash-max-listpack-entries", "hash-max-listpack-value", "list-max-listpack-size",
    "set-max-intset-entries", "zset-max-listpack-entries", "zset-max-listpack-value",
)
RedisSettingName = Literal[REDIS_ALLOWED_SETTINGS]  # type: ignore[valid-type]

MAXMEMORY_POLICIES: tuple[str, ...] = (
    "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
)

#: The seed guide's Redis tuning (its optional ``save`` line is left to the user).
SEED_REDIS_SETTINGS: dict[str, str] = {
    "maxmemory-policy": "allkeys-lru",
    "timeout": "300",
    "tcp-keepalive": "60",
}


class RedisSecretRef(SecretRef):
    """The Secret holding the Redis password (and ACL user, if any)."""

    password_key: SecretKey = Field("password", description="Key of the password in the Secret.")
    username_key: SecretKey | None = Field(None, description="Key of the ACL user name in the "
                                                             "Secret; without it the default "
                                                             "user authenticates.")


class RedisConnection(ServerEndpoint):
    """Where Redis is and how to log in."""

    host: Host = Field(description="Host name or IP address of the Redis server.")
    port: Port = Field(6379, description="TCP port of the Redis server.")
    db: int = Field(0, ge=0, le=15, description="Logical database holding the platform's keys.")
    secret_ref: RedisSecretRef | None = Field(None, description="Secret with the password; "
                                                                "omit for a server without "
                                                                "authentication.")
    tls: bool = Field(False, description="Connect with TLS.")


class RedisSpec(SpecModel):
    """Redis: server configuration, and the tables (rate limits, cache policy) the application
    reads under the key prefix."""

    connection: RedisConnection | None = Field(
        None, description="How to reach Redis. Required without spec.targetRef; forbidden with "
                          "it (the PerformanceTarget says where Redis is).")
    key_prefix: str = Field("saas-idp:prod:", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}:$",
                            max_length=64,
                            description="Prefix of every key the platform and the operator use "
                                        "(seed REDIS_KEY_PREFIX). The operator touches only keys "
                                        "under it. Must end with ':'.")
    settings: Annotated[
        dict[RedisSettingName, SettingValue],
        Rule(f"!('maxmemory-policy' in self) || self['maxmemory-policy'] in "
             f"{list(MAXMEMORY_POLICIES)}",
             "maxmemory-policy must be one of " + ", ".join(MAXMEMORY_POLICIES)),
    ] = Field(
        default_factory=lambda: dict(SEED_REDIS_SETTINGS), max_length=len(REDIS_ALLOWED_SETTINGS),
        description="CONFIG parameters to set, as strings. Only these may be set: "
                    + ", ".join(REDIS_ALLOWED_SETTINGS) + ". Defaults to the seed guide's "
                    "settings; setting this map replaces them.")
    persist_settings: bool = Field(False, description="Run CONFIG REWRITE after a change so it "
                                                      "survives a Redis restart.")


# ---------------------------------------------------------------------------------------- API

    @property
    def resolved_connection(self) -> RedisConnection:
        """The connection, which a profile naming a PerformanceTarget gets from it
        (``targets.resolve``): only resolved profiles are reconciled."""
        if self.connection is None:
            raise ValueError("the profile's PerformanceTarget was not resolved")
        return self.connection


class Compression(SpecModel):
    """Response compression (seed ENABLE_COMPRESSION)."""

    enabled: bool = Field(True, description="Compress responses with gzip.")
    min_size_bytes: int = Field(1024, ge=0, le=1 << 30,
                                description="Smallest response compressed, in bytes; smaller "
                                            "ones cost more CPU than they save.")


class CacheHeaders(SpecModel):
    """Cache-Control headers the API middleware sets."""

    policy: Literal["Smart", "NoStore", "Private", "Public"] = Field(
        "Smart", description="Smart: GET responses get max-age from the TTL of their data kind "
                             "(private when authenticated), others no-store. NoStore, Private and "
                             "Public apply that directive to every response.")
    default_max_age_seconds: int = Field(60, ge=0, le=86_400,
                                         description="max-age when no data kind matches.")
    stale_while_revalidate_seconds: int = Field(30, ge=0, le=86_400,
                                                description="stale-while-revalidate added to "
                                                            "cacheable responses.")


class RateLimits(SpecModel):
    """Rate limiting (seed ENABLE_RATE_LIMITING): per endpoint, per tenant, per client IP."""

    enabled: bool = Field(True, description="Enforce the limits below.")
    default: Limit = Field(default_factory=lambda: Limit(requests=6000, burst=600),
                           description="Budget of each tenant for requests no endpoint rule "
                                       "matches (default 6000 per minute, burst 600).")
    endpoints: EndpointRules = Field(default_factory=list,
                                     description="Per-endpoint budgets, counted per tenant. A "
                                                 "TenantQuota's rules replace the ones they "
                                                 "overlap.")
    per_ip: Limit = Field(default_factory=lambda: Limit(requests=1200),
                          description="Budget of each client IP address across all tenants "
                                      "(default 1200 per minute).")


class ApiSpec(SpecModel):
    """The API performance middleware."""

    compression: Compression = Field(default_factory=Compression,
                                     description="Response compression.")
    max_request_size_bytes: int = Field(10 << 20, ge=1024, le=1 << 30,
                                        description="Largest request body accepted, in bytes "
                                                    "(default 10 MiB).")
    cache_headers: CacheHeaders = Field(default_factory=CacheHeaders,
                                        description="Cache-Control headers.")
    rate_limits: RateLimits = Field(default_factory=RateLimits, description="Rate limiting.")


# ---------------------------------------------------------------------------------- WebSocket

class WebsocketSpec(SpecModel):
    """The WebSocket connection pool shared by all tenants."""

    __rules__ = (Rule("self.perTenantDefault <= self.maxConnections",
                      "perTenantDefault must not exceed maxConnections",
                      field_path=".perTenantDefault"),)

    max_connections: int = Field(10_000, ge=1, le=1_000_000,
                                 description="Connections across all tenants (seed: 10,000).")
    per_tenant_default: int = Field(1000, ge=0, le=1_000_000,
                                    description="Connections of a tenant whose TenantQuota "
                                                "does not say.")
    message_rate_per_minute: int = Field(5000, ge=1, le=100_000_000,
                                         description="Messages per minute a tenant may send "
                                                     "across all its connections, unless its "
                                                     "TenantQuota says otherwise. The default "
                                                     "keeps one tenant at half the seed's "
                                                     "system-wide warning level (10,000/min).")


# -------------------------------------------------------------------------------------- Cache

class CacheSpec(SpecModel):
    """The multi-tenant Redis cache."""

    ttl_seconds: CacheTTLs = Field(default_factory=CacheTTLs,
                                   description="TTL of each kind of cached data, in seconds.")
    compression_threshold_bytes: int = Field(1024, ge=0, le=1 << 30,
                                             description="Cached values larger than this are "
                                                         "compressed, in bytes.")
    default_quota_bytes: int = Field(64 << 20, ge=0, le=1 << 40,
                                     description="Cache memory of a tenant whose TenantQuota "
                                                 "does not say, in bytes (default 64 MiB).")
    default_max_keys: int = Field(100_000, ge=0, le=1_000_000_000,
                                  description="Cache keys of a tenant whose TenantQuota does "
                                              "not say.")


# ------------------------------------------------------------------------------------ Scaling

LabelName = Annotated[str, StringConstraints(
    pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=316)]
LabelValue = Annotated[str, StringConstraints(
    pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", max_length=63)]
Quantity = Annotated[str, StringConstraints(
    pattern=r"^[+]?[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$", max_length=64)]


class ScaleTarget(SpecModel):
    """The workload an autoscaling rule scales."""

    api_version: str = Field("apps/v1", pattern=r"^([a-z0-9.-]+/)?v[0-9]+((alpha|beta)[0-9]+)?$",
                             max_length=253, description="API version of the workload.")
    kind: Literal["Deployment", "StatefulSet"] = Field("Deployment",
                                                       description="Kind of the workload.")
    name: ObjectName = Field(description="Name of the workload, in this namespace.")


class CustomMetric(SpecModel):
    """A metric other than CPU and memory, served by a custom or external metrics adapter."""

    type: Literal["Pods", "External"] = Field(description="Pods: averaged over the workload's "
                                                          "pods. External: a metric not tied "
                                                          "to an object.")
    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=253,
                      description="Metric name.")
    selector: dict[LabelName, LabelValue] | None = Field(None, max_length=16,
                                                         description="Labels the metric's "
                                                                     "series must carry.")
    target_average_value: Quantity = Field(description="Target value per pod, as a quantity "
                                                       "(e.g. `100`, `500m`).")


class ScalingPolicy(SpecModel):
    """One HPA scaling policy."""

    type: Literal["Pods", "Percent"] = Field(description="Change by a number of pods or a "
                                                         "percentage.")
    value: int = Field(ge=1, le=10_000, description="Pods or percent per period.")
    period_seconds: int = Field(ge=1, le=1800, description="Length of the period, in seconds.")


class ScalingRules(SpecModel):
    """How fast to scale in one direction (the HPA's own semantics)."""

    stabilization_window_seconds: int | None = Field(None, ge=0, le=3600,
                                                     description="Recommendations considered "
                                                                 "before changing replicas, in "
                                                                 "seconds.")
    policies: list[ScalingPolicy] | None = Field(None, max_length=10,
                                                 description="Allowed changes per period.")
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        None, description="Which policy wins when several apply; Disabled stops scaling in "
                          "this direction.")


class ScalingBehavior(SpecModel):
    """Scale-up and scale-down behaviour of the HPA."""

    scale_up: ScalingRules | None = Field(None, description="Scaling up.")
    scale_down: ScalingRules | None = Field(None, description="Scaling down.")


class ScalingRule(SpecModel):
    """A HorizontalPodAutoscaler the operator owns for one workload."""

    __rules__ = (
        Rule("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas",
             field_path=".minReplicas"),
        Rule("has(self.cpuUtilization) || has(self.memoryUtilization) || has(self.metrics)",
             "set at least one of cpuUtilization, memoryUtilization and metrics"),
    )

    name: ItemName = Field(description="Name of the rule, unique in the profile; also names "
                                       "the HPA.")
    target: ScaleTarget = Field(description="The workload to scale.")
    min_replicas: int = Field(2, ge=1, le=10_000,
                              description="Fewest replicas (default 2, so one pod failure does "
                                          "not take the service down).")
    max_replicas: int = Field(ge=1, le=10_000, description="Most replicas.")
    cpu_utilization: int | None = Field(None, ge=1, le=1000,
                                        description="Target average CPU use, in percent of the "
                                                    "pods' requests.")
    memory_utilization: int | None = Field(None, ge=1, le=1000,
                                           description="Target average memory use, in percent of "
                                                       "the pods' requests.")
    metrics: list[CustomMetric] | None = Field(None, min_length=1, max_length=8,
                                               description="Custom or external metrics to "
                                                           "scale on.")
    behavior: ScalingBehavior | None = Field(None, description="Scaling speed; the HPA's "
                                                               "defaults when omitted.")
    take_over: bool = Field(False, description="Take over an existing HPA of the same name "
                                               "that the operator did not create. Without it "
                                               "such an HPA is reported as a Conflict.")


class ScalingSpec(SpecModel):
    """Autoscaling of the platform's workloads."""

    rules: Annotated[
        list[ScalingRule],
        ListMap(("name",)),
        Rule("self.all(a, size(self.filter(b, b.target.kind == a.target.kind && "
             "b.target.name == a.target.name)) == 1)",
             "two rules scale the same workload"),
    ] = Field(default_factory=list, max_length=50,
              description="One rule per workload; two HPAs on one workload would fight.")


# ------------------------------------------------------------------------------------- Alerts

class Threshold(SpecModel):
    """Two alert levels for one signal. Which way is bad is the signal's, not the user's,
    choice, so the ordering rule is attached where each threshold is declared."""

    warning: float = Field(ge=0, description="Level at which a warning alert fires.")
    critical: float = Field(ge=0, description="Level at which a critical alert fires.")
    for_: Duration = Field("5m", alias="for", description="How long the signal must stay past "
                                                         "a level before the alert fires "
                                                         "(Prometheus duration, e.g. 5m).")


RISING = Rule("self.warning < self.critical", "warning must be below critical",
              field_path=".warning")
FALLING = Rule("self.warning > self.critical",
               "warning must be above critical (this signal is bad when low)",
               field_path=".warning")
RATIO = Rule("self.warning <= 1.0 && self.critical <= 1.0",
             "a ratio threshold lies between 0 and 1", field_path=".critical")
Rising = Annotated[Threshold, RISING]
RisingRatio = Annotated[Threshold, RISING, RATIO]
FallingRatio = Annotated[Threshold, FALLING, RATIO]


def _threshold(warning: float, critical: float, description: str, **field: Any) -> Any:
    return Field(default_factory=lambda: Threshold(warning=warning, critical=critical),
                 description=description, **field)


class AlertThresholds(SpecModel):
    """The seed guide's alert thresholds. Each signal's unit is in its name; ratios are 0-1."""

    api_response_time_ms: Rising = _threshold(
        1000, 5000, "Average API response time, in milliseconds.")
    error_rate: RisingRatio = _threshold(
        0.05, 0.10, "Share of API responses that are server errors (0-1).")
    db_query_time_ms: Rising = _threshold(
        500, 2000, "Average database query time, in milliseconds.")
    pool_utilization: RisingRatio = _threshold(
        0.8, 0.95, "Share of the database connection pool in use (0-1).")
    memory_usage: RisingRatio = _threshold(
        0.8, 0.9, "Heap in use as a share of the heap limit (0-1).")
    memory_growth_mb: Rising = _threshold(
        100, 500, "Heap growth over the last hour, in MB (leak detection).",
        alias="memoryGrowthMB")
    websocket_connections: Rising = _threshold(8000, 9500, "Open WebSocket connections.")
    message_rate_per_minute: Rising = _threshold(
        10_000, 50_000, "WebSocket messages per minute, across the platform.")
    cache_hit_rate: FallingRatio = _threshold(
        0.85, 0.60, "Cache hits as a share of lookups (0-1); alerts fire when it falls below "
                    "the levels.")


#: Names of the signals that have alerts: the thresholds' fields, as they appear in YAML.
ALERT_SIGNAL_NAMES: tuple[str, ...] = tuple(f.alias or n
                                            for n, f in AlertThresholds.model_fields.items())
#: Names of every signal the operator measures: the alerts' plus the API's 95th percentile
#: (``apiResponseTimeP95Ms``, the optimizer's latency signal, which has a target but no alert).
SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)
assert set(ALERT_SIGNAL_NAMES) <= set(SIGNAL_NAMES), "every alert needs a default query"
SignalName = Literal[SIGNAL_NAMES]  # type: ignore[valid-type]

#: How each signal is measured unless the profile says otherwise: the platform's metrics
#: (prom-client conventions), grouped by (namespace, profile) (see ``api/signals.py``); each
#: query yields one number per profile in the signal's unit.
DEFAULT_SIGNAL_QUERIES: dict[str, str] = {s.name: s.query for s in SIGNALS}

_QUERY_DOCS = "; ".join(f"{name}: `{query}`" for name, query in DEFAULT_SIGNAL_QUERIES.items())

#: PromQL per signal, overriding the defaults key by key.
SignalQueries = Annotated[dict[SignalName, PromQL], Field(max_length=len(SIGNAL_NAMES))]

PromLabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                                                 max_length=63)]


class BurnWindow(SpecModel):
    """One multi-window burn-rate alert: it fires while the error budget burns ``factor``
    times faster than the objective allows over both windows (the long one proves it matters,
    the short one that it still goes on)."""

    severity: Literal["page", "ticket"] = Field(description="Label `severity` of the alert.")
    long_window: Duration = Field(description="Long window, e.g. 1h; at least 5m.")
    short_window: Duration = Field(description="Short window, e.g. 5m; at least 5m (the "
                                               "shortest rule the others are chained from).")
    factor: float = Field(gt=0, le=1000, description="Burn rate: multiple of the rate that "
                                                     "spends exactly the budget.")


def _default_burn_windows() -> list[BurnWindow]:
    return [BurnWindow(severity="page", long_window="1h", short_window="5m", factor=14.4),
            BurnWindow(severity="page", long_window="6h", short_window="30m", factor=6),
            BurnWindow(severity="ticket", long_window="1d", short_window="2h", factor=3),
            BurnWindow(severity="ticket", long_window="3d", short_window="6h", factor=1)]


class BurnRateAlerts(SpecModel):
    """SLO burn-rate alerts on the error rate, in the multi-window multi-burn-rate style
    (Sloth, Pyrra): the objective is ``targets.errorRate`` (the error budget), the SLI the
    share of ``http_requests_total`` with a 5xx status."""

    enabled: bool = Field(False, description="Generate the burn-rate rules.")
    windows: Annotated[list[BurnWindow], Field(min_length=1, max_length=8)] = Field(
        default_factory=_default_burn_windows,
        description="Window pairs (default: page 1h/5m at 14.4 and 6h/30m at 6; ticket "
                    "1d/2h at 3 and 3d/6h at 1).")
    absent_for: Duration = Field("10m", description="How long the SLI's series may be missing "
                                                    "before ErrorRateSLIAbsent fires.")


class AlertsSpec(SpecModel):
    """Prometheus alerting rules generated from the thresholds (seed ENABLE_MONITORING)."""

    enabled: bool = Field(True, description="Generate alerting rules.")
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds,
                                        description="Warning and critical levels per signal. "
                                                    "Overriding a signal takes both levels.")
    labels: dict[PromLabelName, Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        None, max_length=16, description="Labels added to every alert, e.g. team or "
                                         "escalation route.")
    burn_rate: BurnRateAlerts = Field(default_factory=BurnRateAlerts,
                                      description="SLO burn-rate alerts on the error rate.")
    metrics: SignalQueries | None = Field(
        None, description="PromQL measuring a signal, replacing its default, for the alerts "
                          "and the optimizer (apiResponseTimeP95Ms has no alert; only the "
                          "optimizer reads it). The defaults are grouped by the labels namespace "
                          "and profile, which the application's series must carry, and narrowed "
                          "to this profile. An override must yield one number in the signal's "
                          "unit: a single series (the optimizer also accepts series grouped "
                          "like the defaults). Defaults: "
                          + _QUERY_DOCS)


# ------------------------------------------------------------------------------------ Targets

class Targets(SpecModel):
    """The seed guide's performance targets. The optimizer considers the platform healthy while
    every measured signal meets them, and reports how far it is from each."""

    api_response_time_ms: int = Field(100, ge=1, le=600_000,
                                      description="Average API response time, in ms.")
    api_response_time_p95_ms: int = Field(200, ge=1, le=600_000,
                                          description="95th percentile API response time, in ms "
                                                      "(seed: expected with optimization).")
    db_query_time_ms: int = Field(500, ge=1, le=600_000,
                                  description="Average database query time, in ms.")
    db_query_time_p95_ms: int = Field(100, ge=1, le=600_000,
                                      description="95th percentile database query time, in ms "
                                                  "(seed: expected with optimization).")
    memory_usage: Ratio = Field(0.8, description="Heap usage, as a share of the limit.")
    cache_hit_rate: Ratio = Field(0.85, description="Cache hit rate, at least.")
    websocket_connections: int = Field(8000, ge=1, le=1_000_000,
                                       description="Open WebSocket connections, at most.")
    error_rate: Ratio = Field(0.05, description="Share of server errors, at most.")


# ------------------------------------------------------------------------------- Optimization

class MaxStep(SpecModel):
    """The largest change the optimizer makes in one action, so it converges instead of
    oscillating."""

    pool_size: int = Field(10, ge=1, le=1000, description="Connections added to or removed from "
                                                          "the pool maximum.")
    cache_ttl_percent: int = Field(25, ge=1, le=100, description="Percent change of a cache TTL.")
    load_shedding: Ratio = Field(0.1, description="Change of the load shedding factor.")
    replicas: int = Field(2, ge=1, le=100, description="Change of an autoscaling rule's "
                                                       "minReplicas.")


class Bounds(SpecModel):
    """Limits the optimizer never crosses, whatever the signals say."""

    __rules__ = (Rule("self.minCacheTtlSeconds <= self.maxCacheTtlSeconds",
                      "minCacheTtlSeconds must not exceed maxCacheTtlSeconds",
                      field_path=".minCacheTtlSeconds"),)

    max_load_shedding_factor: Ratio = Field(0.5, description="Largest share of non-critical "
                                                             "requests shed.")
    max_pool_size: int = Field(150, ge=1, le=10_000,
                               description="Largest pool maximum it sets; keep it below "
                                           "PostgreSQL's max_connections (seed 200).")
    min_cache_ttl_seconds: int = Field(30, ge=1, le=604_800, description="Shortest cache TTL "
                                                                         "it sets.")
    max_cache_ttl_seconds: int = Field(3600, ge=1, le=604_800, description="Longest cache TTL "
                                                                           "it sets.")


class MemoryPressure(SpecModel):
    """The seed guide's memory-pressure triggers, as shares of the memory limit."""

    __rules__ = (Rule("self.cacheCleanup < self.connectionPruning && "
                      "self.connectionPruning < self.emergency",
                      "levels must rise: cacheCleanup < connectionPruning < emergency"),)

    cache_cleanup: Ratio = Field(0.85, description="Above this, the API-response and search "
                                                   "caches of the tenants over their cache "
                                                   "quota are cleaned (needs redis).")
    connection_pruning: Ratio = Field(0.90, description="Above this, idle connections of "
                                                        "database.applicationRole are "
                                                        "terminated (needs that role).")
    emergency: Ratio = Field(0.95, description="Above this, every scaling rule's minReplicas "
                                               "is raised by maxStep.replicas (up to its "
                                               "maxReplicas).")


class OptimizationSpec(SpecModel):
    """The optimizer: reads the signals from Prometheus and turns knobs of this profile (pool
    size, cache TTLs, load shedding, replicas, indexes) through the same paths as a user edit."""

    mode: Literal["Off", "Recommend", "Auto"] = Field(
        "Recommend", description="Off: no signals are read. Recommend (default): signals and "
                                 "recommendations appear in status, nothing changes. Auto: "
                                 "recommendations are applied within the budget and bounds.")
    interval_seconds: int = Field(60, ge=15, le=3600, description="How often signals are read.")
    cooldown_seconds: int = Field(300, ge=0, le=86_400,
                                  description="Quiet time after a change before the same knob "
                                              "changes again (seed: cooldown periods).")
    change_budget_per_hour: int = Field(6, ge=0, le=60,
                                        description="Changes applied per hour at most.")
    max_step: MaxStep = Field(default_factory=MaxStep, description="Largest single change.")
    bounds: Bounds = Field(default_factory=Bounds, description="Hard limits.")
    memory_pressure: MemoryPressure = Field(default_factory=MemoryPressure,
                                            description="Memory-pressure triggers.")
    allow_index_creation: bool = Field(False, description="In Auto mode, also create indexes "
                                                          "the advisor recommends.")
    allow_index_removal: bool = Field(
        False, description="In Auto mode, take back an index the optimizer added once "
                           "status.database.indexHealth reports it serving nothing (unused "
                           "after database.indexHealth.unusedAfterDays, a duplicate, or a "
                           "left prefix of another index), one per evaluation; "
                           "database.indexPrunePolicy then drops it (Delete) or hands it over "
                           "unmarked (Retain), and it is never added again. Declared indexes "
                           "and indexes the operator does not own are never touched.")
    idle_connection_seconds: int = Field(300, ge=10, le=86_400,
                                         description="How long a connection of "
                                                     "database.applicationRole must have been "
                                                     "idle to be pruned under memory pressure.")
    min_index_saving: Ratio = Field(0.3, description="Share of a query's planner cost an index "
                                                     "must save to be recommended (checked with "
                                                     "a hypothetical index).")
    healthy_window_seconds: int = Field(600, ge=0, le=86_400,
                                        description="How long signals must meet the targets "
                                                    "before a change is undone (hysteresis).")
    signals: SignalQueries | None = Field(None, description="PromQL per signal for the "
                                                            "optimizer only (e.g. a shorter "
                                                            "window), over alerts.metrics and "
                                                            "the defaults.")


# --------------------------------------------------------------------- Prometheus, app config

class PrometheusSecretRef(SecretRef):
    """Credentials for Prometheus: a bearer token, or a user name and password."""

    __rules__ = (Rule("has(self.tokenKey) != (has(self.usernameKey) || has(self.passwordKey))",
                      "set either tokenKey, or usernameKey and passwordKey"),
                 Rule("has(self.usernameKey) == has(self.passwordKey)",
                      "usernameKey and passwordKey go together"))

    token_key: SecretKey | None = Field(None, description="Key of a bearer token.")
    username_key: SecretKey | None = Field(None, description="Key of a basic-auth user name.")
    password_key: SecretKey | None = Field(None, description="Key of a basic-auth password.")


class PrometheusSpec(ServerEndpoint):
    """Where the signals come from."""

    url: Annotated[str, Rule("!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",
                             "the URL must not carry credentials (user:password@); put them "
                             "in secretRef")] = Field(
        pattern=r"^https?://[^\s]+$", max_length=2048,
        description="Base URL of the Prometheus HTTP API (http or https, without credentials "
                    "in it: those go in secretRef).")
    secret_ref: PrometheusSecretRef | None = Field(None, description="Credentials, if "
                                                                     "Prometheus needs them.")
    timeout_seconds: int = Field(10, ge=1, le=120, description="Timeout of one query.")


class AppConfigSpec(SpecModel):
    """The ConfigMap through which the application reads the settings it enforces itself."""

    config_map_name: ObjectName = Field(description="ConfigMap the operator writes (and owns).")
    stamp_deployments: Annotated[list[ObjectName], ListSet()] | None = Field(
        None, max_length=50, description="Deployments whose pod template gets the ConfigMap's "
                                         "hash as an annotation, so they roll when it changes.")


# --------------------------------------------------------------------------------------- Spec

class TargetRef(SpecModel):
    """A PerformanceTarget: shared servers a platform admin declared, cluster-scoped."""

    name: ObjectName = Field(description="Name of the PerformanceTarget (cluster-scoped). It "
                                         "must select this profile's namespace.")


class PerformanceProfileSpec(SpecModel):
    """The desired performance configuration of one installation of the platform."""

    __rules__ = (
        Rule("!has(self.targetRef) || (!has(self.prometheus) && (!has(self.database) || "
             "!has(self.database.connection)) && (!has(self.redis) || "
             "!has(self.redis.connection)))",
             "with targetRef, the PerformanceTarget says where the servers are: remove "
             "database.connection, redis.connection and prometheus", field_path=".targetRef"),
        Rule("has(self.targetRef) || ((!has(self.database) || has(self.database.connection)) "
             "&& (!has(self.redis) || has(self.redis.connection)))",
             "database and redis need a connection, or the profile a targetRef"),
        Rule("self.optimization.mode != 'Auto' || has(self.prometheus) || has(self.targetRef)",
             "Auto optimization needs prometheus (or a targetRef whose PerformanceTarget has "
             "one)", field_path=".optimization.mode"),
        Rule("!self.optimization.allowIndexCreation || has(self.database)",
             "allowIndexCreation needs database", field_path=".optimization.allowIndexCreation"),
    )

    paused: bool = Field(False, description="Stop reconciling (nothing is changed, status is "
                                            "kept) until set back to false.")
    target_ref: TargetRef | None = Field(
        None, description="The PerformanceTarget whose servers (PostgreSQL, Redis, Prometheus) "
                          "this profile configures, with the credentials and the policy a "
                          "platform admin gave them. Exclusive with database.connection, "
                          "redis.connection and prometheus, which only an operator started with "
                          "--allow-inline-connections accepts.")
    database: DatabaseSpec | None = Field(None, description="PostgreSQL; omit to leave the "
                                                            "database alone.")
    redis: RedisSpec | None = Field(None, description="Redis; omit to leave Redis alone.")
    api: ApiSpec = Field(default_factory=ApiSpec, description="API middleware settings.")
    websocket: WebsocketSpec = Field(default_factory=WebsocketSpec,
                                     description="WebSocket connection limits.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Multi-tenant cache.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Autoscaling.")
    alerts: AlertsSpec = Field(default_factory=AlertsSpec, description="Alerting rules.")
    targets: Targets = Field(default_factory=Targets, description="Performance targets.")
    optimization: OptimizationSpec = Field(default_factory=OptimizationSpec,
                                           description="Automatic optimization.")
    prometheus: PrometheusSpec | None = Field(None, description="Prometheus to read signals "
                                                                "from.")
    app_config: AppConfigSpec | None = Field(None, description="Application ConfigMap.")


def signal_queries(spec: PerformanceProfileSpec, *, optimizer: bool = False) -> dict[str, str]:
    """The PromQL of every signal: the defaults, then alerts.metrics, then (for the optimizer)
    optimization.signals."""
    queries = {**DEFAULT_SIGNAL_QUERIES, **(spec.alerts.metrics or {})}
    if optimizer:
        queries.update(spec.optimization.signals or {})
    return queries
