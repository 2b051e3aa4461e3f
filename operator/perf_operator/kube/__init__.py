"""Kubernetes objects the operator owns for a PerformanceProfile (HPAs, alert rules, the
application config), and the shared API client.

Each reconciler builds the desired objects with a pure function, compares them with what the
API server has, and server-side applies only what differs (``apply.py``)."""
from .alerts import reconcile_alerts
from .appconfig import reconcile_app_config
from .hpa import reconcile_scaling

__all__ = ["reconcile_alerts", "reconcile_app_config", "reconcile_scaling"]
