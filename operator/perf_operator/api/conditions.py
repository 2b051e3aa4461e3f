"""Conditions: the one way status conditions change, so every reconciler keeps the
metav1.Condition contract (lastTransitionTime moves only when the status does)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from .status import Condition

#: The condition that sums up a resource; the printer columns show it.
READY = "Ready"

# The condition types, one per part a resource's status reports on (each reconciler returns
# Outcomes of its own; the Argo CD health check and ``kubectl perf`` read them by these names).
#: PerformanceProfile: indexes and parameters (postgres).
DATABASE_READY = "DatabaseReady"
#: PerformanceProfile: Redis CONFIG settings (redis).
REDIS_READY = "RedisReady"
#: PerformanceProfile: the HorizontalPodAutoscalers (kube.hpa).
SCALING_READY = "ScalingReady"
#: PerformanceProfile: the alert rules (kube.alerts).
ALERTS_READY = "AlertsReady"
#: PerformanceProfile: the application's ConfigMap (kube.appconfig).
APP_CONFIG_READY = "AppConfigReady"
#: PerformanceProfile: the auto-optimizer's state (optimizer).
OPTIMIZING = "Optimizing"
#: PerformanceProfile: the application's metrics are missing or old (optimizer); True is bad.
METRICS_STALE = "MetricsStale"
#: PerformanceProfile: its tenants commit more WebSocket connections than it allows; True is bad.
OVERCOMMITTED = "Overcommitted"
#: PerformanceProfile and TenantQuota: the servers its PerformanceTarget grants (targets).
TARGET_RESOLVED = "TargetResolved"
#: TenantQuota: the profile it names exists.
PROFILE_RESOLVED = "ProfileResolved"
#: TenantQuota: its limits record and mirror row (tenants.tables).
TABLES_READY = "TablesReady"

#: Not-ready reasons that mean work is under way, or waiting for data from outside the operator,
#: rather than a failure: they are not counted as reconcile errors, get no Warning Event, and
#: Argo CD shows them as Progressing however long they last (manifests/argocd/health/health.lua
#: keeps the same list; a unit test compares the two).
PROGRESS_REASONS = frozenset({
    "IndexBuilding",  # a CREATE INDEX CONCURRENTLY runs (hours on a large table)
    "IndexPending",   # an index waits for its turn (one build per table at a time)
    "SignalsStale",   # the application's metrics are not (yet) in Prometheus
})
#: Not-ready reasons that retrying cannot fix: they last until a person acts (a new spec, a
#: Secret created or granted, a platform admin's change), so Argo CD shows them as Degraded at
#: once (health.lua keeps the same list; a unit test compares the two), and they name Ready
#: when a transient failure or work under way is reported at the same time.
PERSISTENT_REASONS = frozenset({
    "Rejected",                  # the spec is invalid
    "RuleShadowed",              # a rate-limit rule can never match
    "SettingRejected",           # PostgreSQL refused a parameter value
    "SettingsRejected",          # Redis refused a CONFIG value
    "SettingsConflict",          # another profile owns a Redis parameter on the same server
    "SettingConflict",           # another profile owns a PostgreSQL parameter on the server
    "SettingOverridden",         # the server's command line overrides a PostgreSQL parameter
    "MirrorSchemaNotOwned",      # another role owns the schema perf_operator
    "IndexConflict",             # an index of that name exists and is not the operator's
    "TableConflict",             # another tenant owns the tenant ID's record
    "ProfileNotFound",           # the tenant names a profile that does not exist
    "ResourceConflict",          # another field manager owns what the operator must set
    "WebSocketOvercommitted",    # the tenants commit more connections than the profile has
    # the credentials (secrets.SecretError): only creating, fixing or granting the Secret helps
    "SecretNotFound",            # the Secret does not exist
    "SecretKeyMissing",          # it has no such key
    "SecretValueInvalid",        # the key's value is not UTF-8 text
    "SecretForbidden",           # the operator may not read Secrets in that namespace
    # the trust boundary (docs/security.md): a platform admin or a new spec must act
    "NamespaceNotSelected",      # the PerformanceTarget does not select the namespace
    "InlineConnectionsRefused",  # inline connections, and the operator accepts none
    "ParameterNotAllowed",       # a parameter the PerformanceTarget does not allow
    "HostNotAllowed",            # an inline host not on the operator's allow-list
    "AddressRefused",            # a link-local or metadata address
    "URLRefused",                # a Prometheus URL that is not http(s) or carries credentials
})
#: Not-ready on purpose: ``spec.paused`` (or the tenant's profile is paused).
PAUSED = "Paused"

#: metav1.Condition's limit on a message; longer ones would be refused by the API server.
MAX_MESSAGE = 32_768


def condition_of(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    """The condition ``type_`` of a status as the API server has it (None: not reported)."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def condition_reason(status: Mapping[str, Any], type_: str) -> str | None:
    """The reason the condition had at the last status write (to announce transitions once)."""
    return (condition_of(status, type_) or {}).get("reason")


def set_condition(conditions: Sequence[Condition], type: str,
                  status: Literal["True", "False", "Unknown"], reason: str, message: str,
                  generation: int | None, now: datetime) -> list[Condition]:
    """A copy of ``conditions`` with the condition ``type`` set (appended if absent).

    lastTransitionTime becomes ``now`` (to the second, as the API server stores it) only when
    the status changes; a new reason or message alone keeps it, so "since when" stays true.
    """
    updated = Condition(type=type, status=status, reason=reason, message=message[:MAX_MESSAGE],
                        observed_generation=generation,
                        last_transition_time=now.replace(microsecond=0))
    previous = next((c for c in conditions if c.type == type), None)
    if previous is None:
        return [*conditions, updated]
    if previous.status == status:
        updated = updated.model_copy(
            update={"last_transition_time": previous.last_transition_time})
    return [updated if c.type == type else c for c in conditions]


def severity(reason: str) -> int:
    """How much a failing reason says about the object, most first: one that only a person
    can fix (0), a failure being retried (1), work under way (2). Ready takes the reason of
    the first failing part in this order, so a missing Secret is not hidden behind an index
    that is still building, and Ready agrees with what Argo CD shows."""
    if reason in PERSISTENT_REASONS:
        return 0
    return 2 if reason in PROGRESS_REASONS else 1
