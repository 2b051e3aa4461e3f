"""Conditions: every condition type and reason the operator writes (users read them in
``kubectl get``, Argo CD's health script matches them, docs/troubleshooting.md explains
them), the one way a condition changes (lastTransitionTime moves only when the status does),
and the one way a condition is looked up in a status.

Reasons are CamelCase, as metav1.Condition requires. Renaming one is a user-visible change:
manifests/argocd/health/health.lua and docs/ name them too.
"""
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

#: PerformanceTarget: a TCP handshake with each server it declares (targets.servers).
POSTGRES_REACHABLE = "PostgresReachable"
REDIS_REACHABLE = "RedisReachable"
PROMETHEUS_REACHABLE = "PrometheusReachable"

# The reasons, by the condition that reports them (tests/unit/test_condition_names.py fails on
# a reason written as a literal anywhere else).
# Any resource
RECONCILED = "Reconciled"              # Ready: every part matches the spec
RECONCILE_ERROR = "ReconcileError"     # a part raised something unexpected (logged)
REJECTED = "Rejected"                  # the spec is invalid
#: Not-ready on purpose: ``spec.paused`` (or the tenant's profile is paused).
PAUSED = "Paused"
# Credentials (secrets.SecretError)
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_MISSING = "SecretKeyMissing"
SECRET_VALUE_INVALID = "SecretValueInvalid"
SECRET_FORBIDDEN = "SecretForbidden"
# TargetResolved and the connection policy (targets.TargetRefused, policy.ConnectionRefused)
TARGET_GRANTED = "TargetGranted"
SETTINGS_LEFT_OUT = "SettingsLeftOut"
TARGET_NOT_FOUND = "TargetNotFound"
TARGET_LACKS_SERVER = "TargetLacksServer"
NAMESPACE_NOT_SELECTED = "NamespaceNotSelected"
INLINE_CONNECTIONS_REFUSED = "InlineConnectionsRefused"
PARAMETER_NOT_ALLOWED = "ParameterNotAllowed"
HOST_NOT_ALLOWED = "HostNotAllowed"
HOST_NOT_FOUND = "HostNotFound"
ADDRESS_REFUSED = "AddressRefused"
URL_REFUSED = "URLRefused"
# DatabaseReady
DATABASE_IN_SYNC = "DatabaseInSync"
DATABASE_UNAVAILABLE = "DatabaseUnavailable"
DATABASE_ERROR = "DatabaseError"
INDEX_BUILDING = "IndexBuilding"
INDEX_PENDING = "IndexPending"
INDEX_CONFLICT = "IndexConflict"
INDEX_FAILED = "IndexFailed"
INDEX_INVALID = "IndexInvalid"
SETTING_REJECTED = "SettingRejected"
SETTING_CONFLICT = "SettingConflict"
SETTING_OVERRIDDEN = "SettingOverridden"
# RedisReady
SETTINGS_APPLIED = "SettingsApplied"
#: The settings are in Redis's config file too: a profile whose last pass ended otherwise gets
#: one CONFIG REWRITE even when no value changed.
SETTINGS_PERSISTED = "SettingsPersisted"
SETTINGS_REJECTED = "SettingsRejected"
SETTINGS_CONFLICT = "SettingsConflict"
SETTINGS_DRIFTED = "SettingsDrifted"
CONFIG_REWRITE_FAILED = "ConfigRewriteFailed"
REDIS_UNAVAILABLE = "RedisUnavailable"
# ScalingReady, AlertsReady, AppConfigReady (objects applied in Kubernetes)
HPAS_APPLIED = "HPAsApplied"
NO_RULES = "NoRules"
RULES_APPLIED = "RulesApplied"
RULES_NOT_LOADED = "RulesNotLoaded"
ALERTS_DISABLED = "AlertsDisabled"
BURN_RATE_WINDOWS_INVALID = "BurnRateWindowsInvalid"
CONFIG_APPLIED = "ConfigApplied"
NO_APP_CONFIG = "NoAppConfig"
STAMP_FAILED = "StampFailed"
RESOURCE_CONFLICT = "ResourceConflict"
APPLY_FAILED = "ApplyFailed"
# Optimizing (besides the mode: Recommend, Auto) and MetricsStale
TURNED_OFF = "TurnedOff"
ACTION_FAILED = "ActionFailed"
SIGNALS_FRESH = "SignalsFresh"
SIGNALS_STALE = "SignalsStale"
# Overcommitted; a rate-limit rule
WITHIN_CAPACITY = "WithinCapacity"
WEBSOCKET_OVERCOMMITTED = "WebSocketOvercommitted"
RULE_SHADOWED = "RuleShadowed"
# ProfileResolved, TablesReady
PROFILE_FOUND = "ProfileFound"
PROFILE_NOT_FOUND = "ProfileNotFound"
TABLES_WRITTEN = "TablesWritten"
NO_TABLES = "NoTables"
TABLE_CONFLICT = "TableConflict"
MIRROR_SCHEMA_NOT_OWNED = "MirrorSchemaNotOwned"
MIRROR_FAILED = "MirrorFailed"
MIRROR_CONFLICT = "MirrorConflict"
# PostgresReachable, RedisReachable, PrometheusReachable
REACHABLE = "Reachable"
UNREACHABLE = "Unreachable"

#: Not-ready reasons that mean work is under way, or waiting for data from outside the operator,
#: rather than a failure: they are not counted as reconcile errors, get no Warning Event, and
#: Argo CD shows them as Progressing however long they last (manifests/argocd/health/health.lua
#: keeps the same list; a unit test compares the two).
PROGRESS_REASONS = frozenset({
    INDEX_BUILDING,              # a CREATE INDEX CONCURRENTLY runs (hours on a large table)
    INDEX_PENDING,               # an index waits for its turn (one build per table at a time)
    SIGNALS_STALE,               # the application's metrics are not (yet) in Prometheus
})
#: Not-ready reasons that retrying cannot fix: they last until a person acts (a new spec, a
#: Secret created or granted, a platform admin's change), so Argo CD shows them as Degraded at
#: once (health.lua keeps the same list; a unit test compares the two), and they name Ready
#: when a transient failure or work under way is reported at the same time.
PERSISTENT_REASONS = frozenset({
    REJECTED,                    # the spec is invalid
    RULE_SHADOWED,               # a rate-limit rule can never match
    SETTING_REJECTED,            # PostgreSQL refused a parameter value
    SETTINGS_REJECTED,           # Redis refused a CONFIG value
    SETTINGS_CONFLICT,           # another profile owns a Redis parameter on the same server
    SETTING_CONFLICT,            # another profile owns a PostgreSQL parameter on the server
    SETTING_OVERRIDDEN,          # the server's command line overrides a PostgreSQL parameter
    MIRROR_SCHEMA_NOT_OWNED,     # another role owns the schema perf_operator
    INDEX_CONFLICT,              # an index of that name exists and is not the operator's
    TABLE_CONFLICT,              # another tenant owns the tenant ID's record
    PROFILE_NOT_FOUND,           # the tenant names a profile that does not exist
    RESOURCE_CONFLICT,           # another field manager owns what the operator must set
    WEBSOCKET_OVERCOMMITTED,     # the tenants commit more connections than the profile has
    # the credentials (secrets.SecretError): only creating, fixing or granting the Secret helps
    SECRET_NOT_FOUND,            # the Secret does not exist
    SECRET_KEY_MISSING,          # it has no such key
    SECRET_VALUE_INVALID,        # the key's value is not UTF-8 text
    SECRET_FORBIDDEN,            # the operator may not read Secrets in that namespace
    # the trust boundary (docs/security.md): a platform admin or a new spec must act
    NAMESPACE_NOT_SELECTED,      # the PerformanceTarget does not select the namespace
    INLINE_CONNECTIONS_REFUSED,  # inline connections, and the operator accepts none
    PARAMETER_NOT_ALLOWED,       # a parameter the PerformanceTarget does not allow
    HOST_NOT_ALLOWED,            # an inline host not on the operator's allow-list
    ADDRESS_REFUSED,             # a link-local or metadata address
    URL_REFUSED,                 # a Prometheus URL that is not http(s) or carries credentials
})
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
