"""The API of perf-operator: models of both custom resources (spec and status), the conditions
helper, and the CRD generator that turns the models into CustomResourceDefinitions."""
from .conditions import (PAUSED, PERSISTENT_REASONS, PROGRESS_REASONS, READY, set_condition,
                         severity)
from .kinds import (KINDS, KOPF_STATUS_FIELD, PERFORMANCE_PROFILE, PERFORMANCE_TARGET,
                    TENANT_QUOTA, ResourceKind)
from .profile import (ALERT_SIGNAL_NAMES, DEFAULT_SIGNAL_QUERIES, REDIS_ALLOWED_SETTINGS,
                      SIGNAL_NAMES, PerformanceProfileSpec, signal_queries)
from .status import Condition, ProfileStatus, TenantStatus
from .target import PerformanceTargetSpec, TargetStatus
from .tenant import EffectiveTenantLimits, TenantQuotaSpec, effective_limits

__all__ = [
    "ALERT_SIGNAL_NAMES", "DEFAULT_SIGNAL_QUERIES", "KINDS", "KOPF_STATUS_FIELD",
    "PAUSED", "PERFORMANCE_PROFILE", "PERFORMANCE_TARGET", "PERSISTENT_REASONS",
    "PROGRESS_REASONS", "READY",
    "REDIS_ALLOWED_SETTINGS", "SIGNAL_NAMES", "TENANT_QUOTA",
    "Condition",
    "EffectiveTenantLimits", "PerformanceProfileSpec", "PerformanceTargetSpec", "ProfileStatus",
    "ResourceKind", "TargetStatus", "TenantQuotaSpec", "TenantStatus", "effective_limits",
    "set_condition", "severity", "signal_queries",
]
