"""perf-operator: declarative performance configuration for a multi-tenant SaaS platform."""

API_GROUP = "perf.idp.io"
API_VERSION = "v1alpha1"
FIELD_MANAGER = "perf-operator"
