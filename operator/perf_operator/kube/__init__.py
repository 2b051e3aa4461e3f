"""Kubernetes objects the operator owns: HPAs, alert rules, the application config; and the
shared API client."""
