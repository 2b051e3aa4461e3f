"""Platform-owned targets: PerformanceTargets (shared servers, cluster-scoped), what a profile
may do with one (``resolve``), where the operator may connect at all (``policy``), and the
namespace a server's credentials are read from."""
from __future__ import annotations

from typing import Any

from ..api.profile import PerformanceProfileSpec
from ..config import operator_namespace
from . import policy
from .registry import REGISTRY
from .resolve import Resolution, TargetRefused, check_inline, resolve

__all__ = ["REGISTRY", "Resolution", "TargetRefused", "inline_errors",
           "resolve", "resolve_profile", "secret_namespace"]


def resolve_profile(namespace: str, name: str, spec: PerformanceProfileSpec) -> Resolution:
    """``resolve`` with what the operator knows now: the watched targets and namespace labels
    and the operator-wide policy. Raises :class:`TargetRefused`."""
    target = REGISTRY.targets.get(spec.target_ref.name) if spec.target_ref else None
    return resolve(namespace, name, spec, target=target,
                   namespace_labels=REGISTRY.namespace_labels.get(namespace),
                   allow_inline=policy.POLICY.allow_inline)


def secret_namespace(server: Any, profile_namespace: str) -> str:
    """Where the Secret of ``server`` (an api ServerEndpoint) lives: the operator's namespace
    for a server a PerformanceTarget granted (teams never see those credentials), the
    profile's own namespace for an inline one."""
    return operator_namespace() if server.granted_by else profile_namespace


def inline_errors(spec: PerformanceProfileSpec) -> list[str]:
    """For the admission webhook: a profile writing its own connections, refused at
    ``kubectl apply`` by an operator that accepts none (the reconciler refuses it too)."""
    try:
        check_inline(spec, policy.POLICY.allow_inline)
    except TargetRefused as err:
        return [str(err)]
    return []
