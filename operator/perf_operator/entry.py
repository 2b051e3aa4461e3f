"""The operator's entry module: importing it registers every kopf handler.

It stays thin on purpose; each resource kind has its own handler module and each target
system its own package.
"""
from .handlers import profiles, startup, targets, tenants  # noqa: F401

