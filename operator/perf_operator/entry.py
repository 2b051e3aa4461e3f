"""The operator's entry module: importing it registers every kopf handler.

It stays thin on purpose; each resource kind has its own handler module and each target
system its own package.
"""
from .handlers import profiles, startup, targets, tenants  # noqa: F401


def enable_admission_webhooks() -> None:
    """kopf refuses to start with admission handlers but no server, so they are registered
    only when the operator serves them."""
    from .handlers import webhooks  # noqa: F401
