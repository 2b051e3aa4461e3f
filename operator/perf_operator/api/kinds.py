"""The custom resources: names, models and printer columns, i.e. everything a CRD says
besides the schema the models give. Handlers register on these names too."""
from __future__ import annotations

from dataclasses import dataclass

from .. import API_GROUP
from .conditions import READY
from .profile import PerformanceProfileSpec
from .schema import SpecModel, StatusModel
from .status import ProfileStatus, TenantStatus
from .target import PerformanceTargetSpec, TargetStatus
from .tenant import TenantQuotaSpec

#: kopf keeps its progress and diff-base under status.<this>, not in annotations (see the
#: operator's kopf settings); the CRDs let it keep whatever it wants there.
KOPF_STATUS_FIELD = "kopf"

CATEGORY = "perf"


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` (priority 1: only with ``-o wide``)."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class ResourceKind:
    """One custom resource: its names, its models and its columns."""

    kind: str
    plural: str
    short_name: str
    description: str
    spec: type[SpecModel]
    status: type[StatusModel]
    columns: tuple[PrinterColumn, ...]
    #: Namespaced, or Cluster for what only platform admins declare.
    scope: str = "Namespaced"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"



def _ready(field: str) -> str:
    return f'.status.conditions[?(@.type=="{READY}")].{field}'


READY_COLUMN = PrinterColumn("Ready", "string", _ready("status"), "Whether the resource is "
                                                                  "fully reconciled.")
REASON_COLUMN = PrinterColumn("Reason", "string", _ready("reason"), "Why it is (not) ready.")
MESSAGE_COLUMN = PrinterColumn("Message", "string", _ready("message"), "Details.", priority=1)
AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Age.")


def _signal(name: str, signal: str) -> PrinterColumn:
    return PrinterColumn(name, "number", f".status.optimization.signals.{signal}.value",
                         f"Last reading of {signal}.", priority=1)


PERFORMANCE_PROFILE = ResourceKind(
    kind="PerformanceProfile", plural="performanceprofiles", short_name="pp",
    description="PerformanceProfile declares the performance configuration of one installation "
                "of the platform: PostgreSQL indexes and settings, Redis settings, API and "
                "WebSocket limits, cache TTLs, autoscaling, alerts and the optimizer. Defaults "
                "are the figures of the platform's performance optimization guide.",
    spec=PerformanceProfileSpec, status=ProfileStatus,
    columns=(
        READY_COLUMN, REASON_COLUMN,
        PrinterColumn("Indexes", "integer", ".status.database.readyIndexes",
                      "Declared indexes that are ready."),
        PrinterColumn("Building", "string", ".status.database.building",
                      "Index builds running, with their progress."),
        PrinterColumn("Tenants", "integer", ".status.tenants.count",
                      "TenantQuotas referencing the profile."),
        _signal("Latency", "apiResponseTimeP95Ms"),
        _signal("ErrorRate", "errorRate"),
        _signal("CacheHitRate", "cacheHitRate"),
        MESSAGE_COLUMN, AGE_COLUMN,
    ))

TENANT_QUOTA = ResourceKind(
    kind="TenantQuota", plural="tenantquotas", short_name="tq",
    description="TenantQuota declares the limits of one tenant of the platform: rate limits, "
                "WebSocket connections, cache quota and TTLs, plugins. What it leaves out comes "
                "from the PerformanceProfile it references.",
    spec=TenantQuotaSpec, status=TenantStatus,
    columns=(
        PrinterColumn("Tenant", "string", ".spec.tenantId", "Tenant identifier."),
        PrinterColumn("Profile", "string", ".spec.profileRef.name", "PerformanceProfile."),
        READY_COLUMN, REASON_COLUMN,
        PrinterColumn("Keys", "integer", ".status.cache.keys", "Cache keys of the tenant."),
        PrinterColumn("Memory", "integer", ".status.cache.memoryBytes",
                      "Cache memory of the tenant, in bytes."),
        AGE_COLUMN, MESSAGE_COLUMN,
    ))

PERFORMANCE_TARGET = ResourceKind(
    kind="PerformanceTarget", plural="performancetargets", short_name="ptgt",
    description="PerformanceTarget declares shared servers (PostgreSQL, Redis, Prometheus) once, "
                "cluster-scoped, for platform admins: where they are, credentials as Secrets in "
                "the operator's namespace, and the policy of their use (which namespaces, which "
                "PostgreSQL parameters and scopes, which Redis key prefix, who owns server-wide "
                "settings). Profiles reference it by name in spec.targetRef.",
    spec=PerformanceTargetSpec, status=TargetStatus, scope="Cluster",
    columns=(
        READY_COLUMN, REASON_COLUMN,
        PrinterColumn("Profiles", "integer", ".status.profiles",
                      "PerformanceProfiles using the target."),
        MESSAGE_COLUMN, AGE_COLUMN,
    ))

KINDS: tuple[ResourceKind, ...] = (PERFORMANCE_PROFILE, TENANT_QUOTA, PERFORMANCE_TARGET)
