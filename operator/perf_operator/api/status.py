"""Status of both resources: what the operator observed and did, for users (``kubectl get``,
printer columns) and for the next reconcile. Only the operator writes it."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .optimization import OptimizerState
from .profile import PostgresConnection, RedisConnection
from .schema import ListMap, StatusModel

Message = Annotated[str, StringConstraints(max_length=32_768)]
#: A CamelCase reason, the metav1.Condition convention.
Reason = Annotated[str, StringConstraints(
    pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", min_length=1, max_length=1024)]
Name = Annotated[str, StringConstraints(max_length=253)]
#: A condition type, optionally prefixed by a DNS subdomain (``example.com/Synced``).
ConditionType = Annotated[str, StringConstraints(
    pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$", max_length=316)]


class Condition(StatusModel):
    """A condition in the exact shape of metav1.Condition, so generic tools (kubectl wait,
    Argo CD health checks) understand it."""

    type: ConditionType = Field(description="Type of condition in CamelCase, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    observed_generation: int | None = Field(None, ge=0,
                                            description="metadata.generation the condition was "
                                                        "set for.")
    last_transition_time: datetime = Field(description="Last time the status changed.")
    reason: Reason = Field(description="Programmatic identifier of the last transition's "
                                       "cause, in CamelCase.")
    message: Message = Field(description="Human-readable details of the transition.")


Conditions = Annotated[list[Condition], Field(max_length=32), ListMap(("type",))]


class ObjectStatus(StatusModel):
    """What both resources report."""

    observed_generation: int | None = Field(None, ge=0, description="metadata.generation last "
                                                                    "reconciled.")
    conditions: Conditions = Field(default_factory=list, description="Current state; Ready "
                                                                     "sums it up.")


# ------------------------------------------------------------------- PerformanceProfile status

class IndexBuildProgress(StatusModel):
    """A running build as ``pg_stat_progress_create_index`` reports it."""

    phase: Name = Field(description="PostgreSQL's phase, e.g. `building index: scanning "
                                     "table`.")
    blocks_done: int = Field(0, ge=0, description="Blocks processed in this phase.")
    blocks_total: int = Field(0, ge=0, description="Blocks to process in this phase.")
    tuples_done: int = Field(0, ge=0, description="Tuples processed in this phase.")
    tuples_total: int = Field(0, ge=0, description="Tuples to process in this phase.")
    percent: int = Field(0, ge=0, le=100, description="Estimate of the whole build done.")


class IndexStatus(StatusModel):
    """One declared index as found in the database."""

    name: Name = Field(description="Index name.")
    phase: Literal["Pending", "Building", "Ready", "Invalid", "Failed", "Conflict"] = Field(
        description="Pending: not built yet. Building: CREATE INDEX CONCURRENTLY is running. "
                    "Ready: valid and used as declared. Invalid: a build left an invalid index "
                    "(it is rebuilt). Failed: the build failed (see lastError). Conflict: an "
                    "index of this name exists that the operator does not own (see adopt).")
    size_bytes: int | None = Field(None, ge=0, description="Size on disk.")
    scans: int | None = Field(None, ge=0, description="Index scans since statistics were reset.")
    last_error: Message | None = Field(None, description="Last error building the index.")
    definition_hash: Name | None = Field(None, description="Hash of the definition the index "
                                                           "was built from.")
    progress: IndexBuildProgress | None = Field(None, description="The running build "
                                                                  "(Building only).")


class SettingStatus(StatusModel):
    """One managed setting, desired against actual."""

    name: Name = Field(description="Parameter name.")
    desired: Message = Field(description="Value in the spec.")
    actual: Message | None = Field(None, description="Value the server reports.")
    state: Literal["Applied", "PendingRestart", "Drifted", "Rejected", "Conflict"] = Field(
        description="Applied: in effect. PendingRestart: set, effective after a server "
                    "restart. Drifted: changed outside the operator since it was applied (it is "
                    "re-applied). Rejected: the server refused the value (see message). "
                    "Conflict: an older PerformanceProfile using the same server (Redis, or "
                    "PostgreSQL with System scope) sets another value; its value wins and this "
                    "one is not sent (the message names that profile).")
    message: Message | None = Field(None, description="Details, e.g. the server's error.")


Settings = Annotated[list[SettingStatus], Field(max_length=128), ListMap(("name",))]


class IndexFinding(StatusModel):
    """One index that costs writes or space without serving reads."""

    kind: Literal["unused", "duplicate", "overlap", "bloated", "invalid"] = Field(
        description="unused: no scan in spec.database.indexHealth.unusedAfterDays of "
                    "statistics; duplicate: same definition as another index; overlap: its "
                    "keys lead another btree index; bloated: larger than freshly built (an "
                    "estimate); invalid: left by an interrupted concurrent build.")
    index: Annotated[str, StringConstraints(max_length=130)] = Field(
        description="schema.index")
    table: Annotated[str, StringConstraints(max_length=130)] = Field(description="schema.table")
    detail: Message = Field(description="Why, in words (figures rounded, so that the status "
                                        "does not change with every query).")
    owner: Annotated[str, StringConstraints(max_length=317)] | None = Field(
        None, description="namespace/name of the profile whose marker the index carries; "
                          "absent for an index the operator does not own.")


class IndexHealthStatus(StatusModel):
    """What the database's indexes cost without serving reads."""

    unused: int = Field(0, ge=0, description="Unused indexes.")
    duplicate: int = Field(0, ge=0, description="Duplicate indexes.")
    overlap: int = Field(0, ge=0, description="Indexes whose keys lead another one's.")
    bloated: int = Field(0, ge=0, description="Bloated indexes (estimate).")
    invalid: int = Field(0, ge=0, description="INVALID indexes.")
    findings: list[IndexFinding] = Field(
        default_factory=list, max_length=50,
        description="The findings, largest index first (at most 50; the counts are complete).")


class DatabaseStatus(StatusModel):
    """PostgreSQL state."""

    indexes: Annotated[list[IndexStatus], ListMap(("name",))] = Field(
        default_factory=list, max_length=256, description="Declared indexes.")
    settings: Settings = Field(default_factory=list, description="Managed parameters.")
    ready_indexes: int = Field(0, ge=0, description="Indexes in phase Ready.")
    building: Message | None = Field(None, description="The builds running, with their "
                                                       "progress (`orders_idx 42%`), for "
                                                       "`kubectl get`.")
    server_id: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="system_identifier of the PostgreSQL server at the last login; absent "
                          "while the login fails. Profiles whose status names the same server "
                          "share its System-scoped parameters (the oldest owns each).")
    index_health: IndexHealthStatus | None = Field(
        None, description="Index health of the whole database (every schema but the system's), "
                          "for the monthly \"review and tune indexes\"; see `kubectl perf "
                          "report` for sizes.")


class RedisStatus(StatusModel):
    """Redis state."""

    settings: Settings = Field(default_factory=list, description="Managed CONFIG parameters.")


class TenantsStatus(StatusModel):
    """The TenantQuotas that reference the profile."""

    count: int = Field(0, ge=0, description="TenantQuotas referencing this profile.")
    websocket_committed: int = Field(0, ge=0,
                                     description="Sum of their WebSocket connection limits (a "
                                                 "tenant without its own counts the profile's "
                                                 "websocket.perTenantDefault); above "
                                                 "websocket.maxConnections the pool is "
                                                 "overcommitted.")


class ScalingRuleStatus(StatusModel):
    """One autoscaling rule's HPA."""

    name: Name = Field(description="Rule name.")
    state: Literal["Applied", "Conflict", "Failed"] = Field(
        description="Applied: the HPA matches the rule. Conflict: an HPA of that name exists "
                    "that the operator does not own (see takeOver). Failed: see message.")
    message: Message | None = Field(None, description="Details.")


class ScalingStatus(StatusModel):
    """Autoscaling state."""

    rules: Annotated[list[ScalingRuleStatus], ListMap(("name",))] = Field(
        default_factory=list, max_length=64, description="Per rule.")


class AlertsStatus(StatusModel):
    """Where the generated alerting rules are."""

    kind: Literal["PrometheusRule", "ConfigMap"] = Field(
        description="PrometheusRule when the Prometheus Operator's CRD is installed, else a "
                    "ConfigMap holding a Prometheus rule file.")
    name: Name = Field(description="Name of that object, in this namespace.")


class AppConfigStatus(StatusModel):
    """The application ConfigMap as last written."""

    name: Name = Field(description="ConfigMap name.")
    hash: Name = Field(description="Hash of its data, stamped on the Deployments' pod template.")


class ProfileStatus(ObjectStatus):
    """Observed state of a PerformanceProfile."""

    database: DatabaseStatus | None = Field(None, description="PostgreSQL.")
    redis: RedisStatus | None = Field(None, description="Redis.")
    tenants: TenantsStatus | None = Field(None, description="Tenants using the profile.")
    scaling: ScalingStatus | None = Field(None, description="Autoscaling.")
    alerts: AlertsStatus | None = Field(None, description="Alerting rules.")
    app_config: AppConfigStatus | None = Field(None, description="Application ConfigMap.")
    optimization: OptimizerState | None = Field(None, description="Optimizer: signals, "
                                                                  "adjustments, decisions and "
                                                                  "recommendations.")


# -------------------------------------------------------------------------- TenantQuota status

class MirrorLocation(StatusModel):
    """Where a tenant's row in the PostgreSQL mirror (``perf_operator.tenant_limits``) is."""

    profile: Name = Field(description="PerformanceProfile the row is filed under (column "
                                      "profile_name; profile_namespace is the TenantQuota's "
                                      "namespace).")
    connection: PostgresConnection = Field(description="The database holding the row: that "
                                                       "profile's spec.database.connection when "
                                                       "the row was written.")


class StaleRecord(StatusModel):
    """A record or mirror row at a location the tenant has left (another profile, keyPrefix,
    Redis or database) that the operator could not delete yet. It is retried on every
    reconcile and given up after a day (Event ``StaleTableAbandoned``)."""

    key: Name | None = Field(None, description="Redis key of the old record.")
    redis: RedisConnection | None = Field(None, description="Redis holding the old record.")
    mirror: MirrorLocation | None = Field(None, description="The old mirror row.")
    since: datetime = Field(description="When deleting it first failed.")
    message: Message = Field(description="Why it is not deleted yet (last attempt).")


class TableStatus(StatusModel):
    """The tenant's limits table in Redis, as last written, and where it is: when the tenant
    moves (another profile, keyPrefix or Redis), the operator deletes the record (and mirror
    row) found here, if this TenantQuota owns it."""

    version: int = Field(ge=0, description="Version counter, raised on every write; the "
                                           "application reloads when it changes.")
    written_at: datetime = Field(description="When it was written.")
    hash: Name = Field(description="Hash of its content.")
    profile: Name | None = Field(None, description="PerformanceProfile whose keyPrefix and Redis "
                                                   "the record was written under.")
    key: Name | None = Field(None, description="Redis key of the record, "
                                               "`<keyPrefix>{<tenantId>}:limits`.")
    redis: RedisConnection | None = Field(None, description="Redis holding the record: that "
                                                            "profile's spec.redis.connection "
                                                            "when the record was written.")
    mirror: MirrorLocation | None = Field(None, description="The record's PostgreSQL mirror "
                                                            "row, when the profile has a "
                                                            "database section.")
    stale_records: list[StaleRecord] | None = Field(
        None, max_length=8,
        description="Records and mirror rows left at former locations because their Redis or "
                    "database was unreachable; applications still reading there see old "
                    "limits.")


class TenantCacheStatus(StatusModel):
    """The tenant's use of the cache."""

    keys: int = Field(ge=0, description="Keys under the tenant's prefix.")
    memory_bytes: int = Field(ge=0, description="Memory they use, in bytes.")
    sampled: bool = Field(description="Whether memoryBytes is extrapolated from a sample "
                                      "(large tenants) rather than summed over every key.")
    quota_bytes: int | None = Field(None, ge=0, description="Effective quota, in bytes.")


class TenantStatus(ObjectStatus):
    """Observed state of a TenantQuota."""

    table: TableStatus | None = Field(None, description="Limits table in Redis.")
    cache: TenantCacheStatus | None = Field(None, description="Cache use.")
