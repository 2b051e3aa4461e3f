"""PerformanceTarget: shared servers declared once by a platform admin, cluster-scoped (the split
cert-manager makes between ClusterIssuer and Issuer).

A team's PerformanceProfile names a target (``spec.targetRef``) instead of writing hosts and
credentials: the target says where PostgreSQL, Redis and Prometheus are, holds their
credentials as Secrets in the operator's own namespace (teams never see them), and sets the
policy of what a namespace may do with them: which namespaces may use it, which PostgreSQL
parameters and scopes, which Redis key prefix, and which one profile owns the server-wide
settings.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .profile import (PgParameterName, PostgresConnection, PrometheusSpec, RedisConnection)
from .schema import ListMap, ListSet, ObjectName, Rule, SpecModel, StatusModel
from .status import Message, Name, ObjectStatus

#: Placeholder for the profile's namespace in a target's database name and key prefix.
NAMESPACE_PLACEHOLDER = "{namespace}"

LabelKey = Annotated[str, StringConstraints(
    pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=317)]
LabelValue = Annotated[str, StringConstraints(
    pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", max_length=63)]


class LabelSelectorRequirement(SpecModel):
    """One requirement of a label selector, as in metav1.LabelSelectorRequirement."""

    __rules__ = (Rule("self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : "
                      "size(self.values) == 0",
                      "In and NotIn need values; Exists and DoesNotExist take none",
                      field_path=".values"),)

    key: LabelKey = Field(description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the label's value is compared with values.")
    values: Annotated[list[LabelValue], ListSet()] = Field(
        default_factory=list, max_length=64, description="Values for In and NotIn.")


class LabelSelector(SpecModel):
    """Namespaces by their labels, as in metav1.LabelSelector: every matchLabels entry and
    every matchExpressions requirement must hold. An empty selector selects every namespace."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=32,
                                                     description="Labels a namespace must have, "
                                                                 "with these values.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Requirements a namespace's labels "
                                                         "must meet.")


class TargetPostgres(PostgresConnection):
    """The shared PostgreSQL server and what profiles may change on it. ``secretRef`` names a
    Secret in the operator's namespace."""

    database: str = Field(
        min_length=1, max_length=63,
        description="Database profiles manage. `{namespace}` is replaced by the profile's "
                    "namespace (e.g. `app_{namespace}`), so that each namespace gets a database "
                    "of its own; without it every selected namespace manages the same one.")
    allowed_parameters: Annotated[list[PgParameterName], ListSet()] | None = Field(
        None, max_length=256,
        description="Parameters profiles may set in database.settings, narrowing the "
                    "operator-wide allow-list. A profile setting any other is not Ready "
                    "(reason ParameterNotAllowed) and sets none. Omit to allow the operator's "
                    "whole list.")
    scopes: Annotated[list[Literal["System", "Database"]], ListSet()] = Field(
        default_factory=lambda: list[Literal["System", "Database"]](["Database"]),
        max_length=2,
        description="Scopes of database.settings profiles may use. System (ALTER SYSTEM) also "
                    "needs the profile to be the serverSettingsOwner.")


class TargetRedis(RedisConnection):
    """The shared Redis server. ``secretRef`` names a Secret in the operator's namespace."""

    key_prefix: Annotated[str, Rule("self.contains('{namespace}:')",
                                    "keyPrefix must contain {namespace}: so that two namespaces "
                                    "never share keys")] = Field(
        "{namespace}:", pattern=r"^[A-Za-z0-9_.:{}-]*$", max_length=64,
        description="Put in front of each profile's redis.keyPrefix, with `{namespace}` "
                    "replaced by the profile's namespace: every key and tenant ID a namespace "
                    "writes lives under a prefix only it gets, so no namespace can squat "
                    "another's tenant IDs. Must contain `{namespace}:`.")


class TargetPrometheus(PrometheusSpec):
    """The Prometheus profiles read their signals from. ``secretRef`` names a Secret in the
    operator's namespace."""


class ProfileName(SpecModel):
    """A PerformanceProfile, by namespace and name."""

    namespace: ObjectName = Field(description="Namespace of the profile.")
    name: ObjectName = Field(description="Name of the profile.")


class PerformanceTargetSpec(SpecModel):
    """Shared servers and the policy of their use."""

    __rules__ = (Rule("has(self.postgres) || has(self.redis) || has(self.prometheus)",
                      "declare at least one of postgres, redis and prometheus"),)

    namespace_selector: LabelSelector = Field(
        description="Namespaces whose profiles may use this target. `{}` selects every "
                    "namespace. A profile elsewhere is not Ready (reason NamespaceNotSelected) "
                    "and nothing is connected.")
    postgres: TargetPostgres | None = Field(None, description="The shared PostgreSQL.")
    redis: TargetRedis | None = Field(None, description="The shared Redis.")
    prometheus: TargetPrometheus | None = Field(None, description="The Prometheus.")
    server_settings_owner: ProfileName | None = Field(
        None, description="The one profile that sets server-wide settings: Redis CONFIG "
                          "(redis.settings) and System-scoped PostgreSQL parameters. Every other "
                          "profile's server-wide settings are left out (reported in its "
                          "TargetResolved condition), so no team can change or veto the "
                          "server for the others. Without it nobody sets them.")


# ------------------------------------------------------------------------------------- Status

class ServerStatus(StatusModel):
    """Whether the operator reaches one of the target's servers."""

    server: Literal["postgres", "redis", "prometheus"] = Field(description="Which server.")
    address: Name = Field(description="Host and port (no credentials).")
    reachable: bool = Field(description="Whether a TCP connection succeeded at the last check, "
                                        "after the connection policy allowed the address.")
    message: Message = Field("", description="Why not, when it is not reachable.")


class TargetStatus(ObjectStatus):
    """What the operator observed of a PerformanceTarget."""

    servers: Annotated[list[ServerStatus], ListMap(("server",))] = Field(
        default_factory=list, max_length=3, description="Reachability of each server.")
    profiles: int = Field(0, ge=0, description="PerformanceProfiles that use the target.")
    namespaces: Annotated[list[Name], ListSet()] = Field(
        default_factory=list, max_length=1000,
        description="Namespaces whose profiles use the target (at most 1000 listed).")
