"""The API of perf-operator: models of both custom resources (spec and status), the conditions
helper, and the CRD generator that turns the models into CustomResourceDefinitions."""
from .conditions import PAUSED, PROGRESS_REASONS, READY, set_condition
from .kinds import KINDS, KOPF_STATUS_FIELD, PERFORMANCE_PROFILE, TENANT_QUOTA, ResourceKind
from .profile import (ALERT_SIGNAL_NAMES, DEFAULT_SIGNAL_QUERIES, REDIS_ALLOWED_SETTINGS,
                      SIGNAL_NAMES, PerformanceProfileSpec, signal_queries)
from .status import Condition, ProfileStatus, TenantStatus
from .tenant import EffectiveTenantLimits, TenantQuotaSpec, effective_limits

__all__ = [
    "ALERT_SIGNAL_NAMES", "DEFAULT_SIGNAL_QUERIES", "KINDS", "KOPF_STATUS_FIELD",
    "PAUSED", "PERFORMANCE_PROFILE", "PROGRESS_REASONS", "READY", "REDIS_ALLOWED_SETTINGS",
    "SIGNAL_NAMES", "TENANT_QUOTA",
    "Condition",
    "EffectiveTenantLimits", "PerformanceProfileSpec", "ProfileStatus", "ResourceKind",
    "TenantQuotaSpec", "TenantStatus", "effective_limits", "set_condition", "signal_queries",
]
