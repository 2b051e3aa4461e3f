"""The custom resources this operator serves, as kopf resource selectors."""
from .. import API_GROUP, API_VERSION

PROFILES = (API_GROUP, API_VERSION, "performanceprofiles")
TENANTS = (API_GROUP, API_VERSION, "tenantquotas")
TARGETS = (API_GROUP, API_VERSION, "performancetargets")
NAMESPACES = ("", "v1", "namespaces")
