"""Which servers a profile configures, and with what: its PerformanceTarget's, narrowed by the
target's policy, or (only where the operator allows it) the connections written in the profile.

:func:`resolve` is pure: given the profile, its namespace's labels, the target it names and
whether inline connections are allowed, it returns the *effective* spec every reconciler
reads (connections filled in from the target and marked as granted by it, the Redis key
prefix under the namespace's own prefix, server-wide settings only for the target's
``serverSettingsOwner``), or refuses with a reason before anything is connected.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from ..api.conditions import (INLINE_CONNECTIONS_REFUSED, NAMESPACE_NOT_SELECTED,
                              PARAMETER_NOT_ALLOWED, REJECTED, TARGET_LACKS_SERVER,
                              TARGET_NOT_FOUND)
from ..api.profile import (PerformanceProfileSpec, PostgresConnection, PrometheusSpec,
                           RedisConnection)
from ..api.target import NAMESPACE_PLACEHOLDER, LabelSelector, PerformanceTargetSpec
from .policy import Refused

ModelT = TypeVar("ModelT", bound=BaseModel)

#: The condition a profile reports about its target (or its inline connections).


class TargetRefused(Refused):
    """The profile may not use what it names; nothing is connected."""


@dataclass(frozen=True)
class Resolution:
    """The effective spec, the target it came from (None: inline) and what the target's
    policy left out of it (for the TargetResolved condition)."""

    spec: PerformanceProfileSpec
    target: str | None = None
    left_out: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.target is None:
            return "inline connections (allowed by the operator)"
        text = f"servers of PerformanceTarget {self.target}"
        return text + "".join(f"; {note}" for note in self.left_out)


def selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether a namespace with ``labels`` matches ``selector`` (metav1.LabelSelector
    semantics; an empty selector matches everything)."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        match requirement.operator:
            case "In":
                ok = present and value in requirement.values
            case "NotIn":
                ok = not present or value not in requirement.values
            case "Exists":
                ok = present
            case _:  # DoesNotExist
                ok = not present
        if not ok:
            return False
    return True


def resolve(namespace: str, name: str, spec: PerformanceProfileSpec, *,
            target: PerformanceTargetSpec | None, namespace_labels: Mapping[str, str] | None,
            allow_inline: bool) -> Resolution:
    """The effective spec of profile ``namespace/name`` (see the module docstring). ``target``
    is the PerformanceTarget ``spec.targetRef`` names (None: it does not exist);
    ``namespace_labels`` None means the namespace is not known (yet)."""
    if spec.target_ref is None:
        return _inline(spec, allow_inline)
    target_name = spec.target_ref.name
    if target is None:
        raise TargetRefused(TARGET_NOT_FOUND, f"PerformanceTarget {target_name} does not exist")
    if namespace_labels is None or not selects(target.namespace_selector, namespace_labels):
        raise TargetRefused(NAMESPACE_NOT_SELECTED,
                            f"PerformanceTarget {target_name} does not select namespace "
                            f"{namespace}; nothing is connected")
    owner = (target.server_settings_owner is not None
             and (target.server_settings_owner.namespace, target.server_settings_owner.name)
             == (namespace, name))
    left_out: list[str] = []
    updates: dict[str, Any] = {}
    if spec.database is not None:
        updates["database"] = _database(
            namespace, spec.database, _declared(target.postgres, "database", target_name),
            target_name, owner, left_out)
    if spec.redis is not None:
        updates["redis"] = _redis(namespace, spec.redis,
                                  _declared(target.redis, "redis", target_name), target_name,
                                  owner, left_out)
    if target.prometheus is not None:
        updates["prometheus"] = _copy(target.prometheus, PrometheusSpec).granted(target_name)
    elif spec.optimization.mode == "Auto":
        raise TargetRefused(TARGET_LACKS_SERVER,
                            f"optimization.mode is Auto, but PerformanceTarget {target_name} "
                            f"declares no prometheus")
    return Resolution(spec.model_copy(update=updates), target_name, tuple(left_out))


def check_inline(spec: PerformanceProfileSpec, allow_inline: bool) -> None:
    """Refuse a profile without targetRef that configures servers, unless the operator allows
    inline connections (also asked by the admission webhook, at ``kubectl apply``)."""
    if spec.target_ref is not None or allow_inline:
        return
    written = [section for section, present in (
        ("database.connection", spec.database is not None),
        ("redis.connection", spec.redis is not None),
        ("prometheus", spec.prometheus is not None)) if present]
    if written:
        raise TargetRefused(INLINE_CONNECTIONS_REFUSED,
                            f"{', '.join(written)}: this operator accepts no inline "
                            f"connections; name a PerformanceTarget in spec.targetRef")


def _inline(spec: PerformanceProfileSpec, allow_inline: bool) -> Resolution:
    check_inline(spec, allow_inline)
    missing = [f"{section}.connection" for section, value in (
        ("database", spec.database), ("redis", spec.redis))
        if value is not None and value.connection is None]
    if missing:
        raise TargetRefused(REJECTED, f"{', '.join(missing)} is required without targetRef")
    return Resolution(spec)


def _declared(server: Any, section: str, target_name: str) -> Any:
    """The target's server for the profile's ``section``; refused when it declares none."""
    if server is None:
        raise TargetRefused(TARGET_LACKS_SERVER,
                            f"spec.{section} is set, but PerformanceTarget {target_name} "
                            f"declares no {'postgres' if section == 'database' else section}")
    return server


def _database(namespace: str, database: Any, postgres: Any, target_name: str, owner: bool,
              left_out: list[str]) -> Any:
    dbname = postgres.database.replace(NAMESPACE_PLACEHOLDER, namespace)
    if len(dbname.encode()) > 63:
        raise TargetRefused(TARGET_LACKS_SERVER, f"database name {dbname!r} of PerformanceTarget "
                                                 f"{target_name} is longer than 63 bytes")
    connection = _copy(postgres, PostgresConnection).model_copy(
        update={"database": dbname}).granted(target_name)
    settings = database.settings
    scope = settings.scope
    if settings.parameters and (scope not in postgres.scopes
                                or (scope == "System" and not owner)):
        why = ("is not among the target's scopes" if scope not in postgres.scopes
               else "is server-wide, set only by the target's serverSettingsOwner")
        left_out.append(f"database.settings left out (scope {scope} {why})")
        settings = settings.model_copy(update={"parameters": {}})
    allowed = postgres.allowed_parameters
    if allowed is not None:
        refused = sorted(set(settings.parameters) - set(allowed))
        if refused:
            raise TargetRefused(PARAMETER_NOT_ALLOWED,
                                f"PerformanceTarget {target_name} does not allow "
                                f"{', '.join(refused)} in database.settings")
    return database.model_copy(update={"connection": connection, "settings": settings})


def _redis(namespace: str, redis: Any, declared: Any, target_name: str, owner: bool,
           left_out: list[str]) -> Any:
    settings, persist = redis.settings, redis.persist_settings
    if (settings or persist) and not owner:
        left_out.append("redis.settings left out (Redis CONFIG is server-wide, set only by the "
                        "target's serverSettingsOwner)")
        settings, persist = {}, False
    prefix = declared.key_prefix.replace(NAMESPACE_PLACEHOLDER, namespace) + redis.key_prefix
    return redis.model_copy(update={
        "connection": _copy(declared, RedisConnection).granted(target_name),
        "settings": settings, "persist_settings": persist, "key_prefix": prefix})


def _copy(source: Any, model: type[ModelT]) -> ModelT:
    """The fields of ``model`` out of ``source`` (a target's server, which has more: its
    policy), as an instance of ``model``."""
    return model.model_validate({field: getattr(source, field) for field in model.model_fields})


