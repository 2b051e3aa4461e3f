"""Building blocks shared by every model of the API.

The pydantic models are the one description of both custom resources: they parse what kopf hands
the operator, and ``crdgen`` turns them into the CRDs' OpenAPI schemas. Facts that only the
Kubernetes API server understands (CEL rules, list semantics) are attached to the field they are
about with the small markers below, so a rule is read and changed next to the field it guards.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Optional, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

VALIDATIONS = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """A CEL rule the API server evaluates at apply time (``x-kubernetes-validations``).

    Used either as an ``Annotated`` marker on a field or in a model's ``__rules__``. Cross-field
    rules live only here, not in Python validators: the API server guarantees them for every
    object the operator can see, and a second implementation could disagree with the first.
    ``field_path`` (relative, e.g. ``.min``) makes the error name the offending field.
    """

    rule: str
    message: str
    field_path: str | None = None
    #: A CEL expression giving the message (e.g. naming the offending keys); ``message`` is
    #: the fallback when it cannot be evaluated.
    message_expression: str | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: Any) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault(VALIDATIONS, []).append(self.as_schema())
        return json_schema


@dataclass(frozen=True)
class ListMap:
    """Marks a list as keyed by ``keys``: the API server refuses duplicate keys, and server-side
    apply merges the list item by item instead of replacing it whole."""

    keys: tuple[str, ...]

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: Any) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "map"
        json_schema["x-kubernetes-list-map-keys"] = list(self.keys)
        return json_schema


@dataclass(frozen=True)
class ListSet:
    """Marks a list of scalars as a set: the API server refuses duplicates."""

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: Any) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "set"
        return json_schema


class CamelModel(BaseModel):
    """camelCase on the wire (Kubernetes convention), snake_case in Python; both accepted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True,
                              serialize_by_alias=True)


class SpecModel(CamelModel):
    """A piece of a spec. Unknown fields are errors: a typo must not be silently ignored, and
    a field this version does not know (such as a Secret's namespace) must not be honoured."""

    model_config = ConfigDict(extra="forbid")

    #: Cross-field CEL rules of the object as a whole.
    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: Any) -> JsonSchemaValue:
        json_schema = handler(schema)
        if cls.__rules__:
            target = handler.resolve_ref_schema(json_schema)
            target[VALIDATIONS] = [rule.as_schema() for rule in cls.__rules__]
        return json_schema


class StatusModel(CamelModel):
    """A piece of a status. Unknown fields are ignored so that an older operator can still read a
    status written by a newer one during an upgrade."""

    model_config = ConfigDict(extra="ignore")


class KubernetesJsonSchema(GenerateJsonSchema):
    """Shows defaults given by ``default_factory`` too: the CRD must default what the model does."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return cast(Callable[[], Any], factory)()
        return super().get_default_value(schema)


M = TypeVar("M", bound=BaseModel)


def partial(model: type[SpecModel]) -> type[SpecModel]:
    """The override shape of ``model``: the same fields, constraints and descriptions, each one
    optional without a default (nested models become partial too), so that what a user leaves
    out falls back to another object instead of to a default of its own. ``overlay`` applies it.
    Whole-object rules of ``model`` are not carried over: they need every field present."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, SpecModel):
            annotation = partial(annotation)
        inner = Annotated[annotation, *info.metadata] if info.metadata else annotation
        # Optional[...] rather than ``| None``: the annotation of a field may itself be None
        fields[name] = (Optional[inner],
                        Field(None, alias=info.alias, description=info.description))
    return create_model(f"{model.__name__}Override", __base__=SpecModel,
                        __doc__=f"Overrides of {model.__name__}; what is left out is inherited.",
                        **fields)


def overlay(base: M, override: BaseModel | None) -> M:
    """``base`` with every field that ``override`` (a ``partial`` of its model) sets replaced."""
    if override is None:
        return base
    updates: dict[str, Any] = {}
    for name in type(override).model_fields:
        value = getattr(override, name)
        if value is None:
            continue
        current = getattr(base, name)
        updates[name] = overlay(current, value) if isinstance(current, BaseModel) else value
    return base.model_copy(update=updates)


# Scalar types used across both resources. Every string is bounded: the API server estimates the
# cost of CEL rules from the declared bounds, and refuses rules whose worst case is too expensive.

#: A Kubernetes object name (DNS-1123 subdomain).
ObjectName = Annotated[str, StringConstraints(
    pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253)]
#: A rule or item name inside a resource (DNS-1123 label).
ItemName = Annotated[str, StringConstraints(
    pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
#: A key inside a Secret.
SecretKey = Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]
#: A host name or IP address.
Host = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\[\]-]+$", max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]
#: A Prometheus duration such as ``30s``, ``5m`` or ``1h30m``.
Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$", max_length=32)]

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
             "w": 604_800_000, "y": 31_536_000_000}


def parse_duration(text: str) -> int:
    """A Prometheus duration (``1h30m``, ``500ms``: a ``Duration``) in milliseconds."""
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS_MS[u] for n, u in parts)
#: A fraction between 0 and 1 (utilisation, error rate, hit rate).
Ratio = Annotated[float, Field(ge=0, le=1)]
#: A PromQL expression.
PromQL = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
