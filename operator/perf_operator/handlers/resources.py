"""The custom resources this operator serves, as kopf resource selectors.

kopf types a handler's ``namespace`` as ``str | None`` (cluster-scoped resources have none):
the handlers of these namespaced kinds take ``str``, which is what kopf passes them, so their
registrations carry ``# type: ignore[arg-type]``."""
from .. import API_GROUP, API_VERSION

PROFILES = (API_GROUP, API_VERSION, "performanceprofiles")
TENANTS = (API_GROUP, API_VERSION, "tenantquotas")
TARGETS = (API_GROUP, API_VERSION, "performancetargets")
NAMESPACES = ("", "v1", "namespaces")
