"""The CRD generator: the committed CRDs are current, and the schemas follow Kubernetes'
structural-schema rules and teach the user (descriptions, bounds, defaults, CEL rules)."""
from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import Field

from perf_operator.api import KINDS, PERFORMANCE_PROFILE, REDIS_ALLOWED_SETTINGS, TENANT_QUOTA
from perf_operator.api.crdgen import SchemaError, crd, main_crds, openapi_schema, render_crds
from perf_operator.api.schema import SpecModel

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"


def _schema(kind) -> dict[str, Any]:
    return crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for step in path.split("."):
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


def _rules(node: dict[str, Any]) -> list[str]:
    return [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]


# --------------------------------------------------------------------------- files and CLI

def test_committed_crds_are_current(capsys):
    assert main_crds(CRDS, check=True) == 0, capsys.readouterr().err


def test_check_reports_a_stale_file(tmp_path, capsys):
    main_crds(tmp_path, check=False)
    name = f"{TENANT_QUOTA.crd_name}.yaml"
    (tmp_path / name).write_text((tmp_path / name).read_text().replace("tenantId", "tenant"))
    assert main_crds(tmp_path, check=True) == 1
    err = capsys.readouterr().err
    assert name in err and "-" in err and "tenantId" in err and "perf-operator crds" in err


def test_check_reports_a_missing_file(tmp_path, capsys):
    assert main_crds(tmp_path, check=True) == 1
    assert "out of date" in capsys.readouterr().err


def test_write_then_check_passes(tmp_path):
    assert main_crds(tmp_path / "out", check=False) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(render_crds())
    assert main_crds(tmp_path / "out", check=True) == 0


def test_rendering_is_deterministic():
    assert render_crds() == render_crds()


def test_rendered_yaml_is_the_crd():
    for kind in KINDS:
        text = render_crds()[f"{kind.crd_name}.yaml"]
        assert text.startswith("# Generated")
        assert yaml.safe_load(text) == crd(kind)


# ------------------------------------------------------------------------------- CRD framing

@pytest.mark.parametrize(("kind", "plural", "short"), [
    (PERFORMANCE_PROFILE, "performanceprofiles", "pp"), (TENANT_QUOTA, "tenantquotas", "tq")])
def test_names_scope_and_subresources(kind, plural, short):
    definition = crd(kind)
    assert definition["metadata"]["name"] == f"{plural}.perf.idp.io"
    spec = definition["spec"]
    assert spec["group"] == "perf.idp.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["perf"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert _schema(kind)["required"] == ["spec"]


def test_profile_printer_columns():
    columns = {c["name"]: c for c in crd(PERFORMANCE_PROFILE)["spec"]["versions"][0]
               ["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Reason", "Indexes", "Building", "Tenants", "Latency", "ErrorRate",
                             "CacheHitRate", "Message", "Age"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Indexes"]["jsonPath"] == ".status.database.readyIndexes"
    assert columns["Tenants"]["jsonPath"] == ".status.tenants.count"
    assert columns["Building"]["jsonPath"] == ".status.database.building"
    wide = {name for name, c in columns.items() if c.get("priority") == 1}
    assert wide == {"Latency", "ErrorRate", "CacheHitRate", "Message"}
    assert columns["Latency"]["jsonPath"].startswith(".status.optimization.signals.")


def test_tenant_printer_columns():
    columns = {c["name"]: c for c in crd(TENANT_QUOTA)["spec"]["versions"][0]
               ["additionalPrinterColumns"]}
    assert list(columns) == ["Tenant", "Profile", "Ready", "Reason", "Keys", "Memory", "Age",
                             "Message"]
    assert columns["Keys"]["jsonPath"] == ".status.cache.keys"
    assert columns["Message"]["priority"] == 1


def test_printer_columns_point_at_schema_fields():
    for kind in KINDS:
        schema = _schema(kind)
        for column in crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]:
            path = column["jsonPath"]
            if path.startswith(".metadata") or "[?(" in path or ".signals." in path:
                continue
            assert _at(schema, path.lstrip(".")), path


# ------------------------------------------------------------------------ structural schema

def _offenders(check) -> list[str]:
    """Paths of the nodes of both schemas for which ``check(path, node)`` says something."""
    return [f"{kind.kind}{path}: {problem}" for kind in KINDS
            for path, node in _walk(_schema(kind)) if (problem := check(path, node))]


def _structural_problem(path: str, node: dict[str, Any]) -> str | None:
    for key in ("$ref", "anyOf", "allOf", "oneOf", "not", "nullable", "title", "const",
                "patternProperties", "propertyNames", "uniqueItems", "$defs"):
        if key in node:
            return key
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        return "no type"
    if "properties" in node and "additionalProperties" in node:
        return "properties and additionalProperties"
    if node.get("additionalProperties") in (True, False, {}):
        return "boolean additionalProperties"
    if "exclusiveMinimum" in node and node["exclusiveMinimum"] is not True:
        return "JSON Schema exclusiveMinimum"
    return None


def test_schemas_are_structural():
    assert _offenders(_structural_problem) == []


def test_every_field_is_described():
    """Every field and every object says what it is for (scalar list items and map values are
    described by their field)."""
    def undescribed(path: str, node: dict[str, Any]) -> str | None:
        if path == ".metadata" or (path.endswith(("[]", "{}")) and node.get("type") != "object"):
            return None
        return None if node.get("description") else "no description"

    assert _offenders(undescribed) == []


def test_strings_lists_and_maps_are_bounded():
    """The API server prices CEL rules from these bounds and refuses rules it cannot price."""
    def unbounded(path: str, node: dict[str, Any]) -> str | None:
        if node.get("type") == "string" and path not in (".apiVersion", ".kind") and not (
                "maxLength" in node or "enum" in node or node.get("format") == "date-time"):
            return "string without maxLength"
        if node.get("type") == "array" and "maxItems" not in node:
            return "array without maxItems"
        if "additionalProperties" in node and "maxProperties" not in node:
            return "map without maxProperties"
        return None

    assert _offenders(unbounded) == []


def test_status_keeps_kopf_bookkeeping():
    for kind in KINDS:
        kopf = _at(_schema(kind), "status.kopf")
        assert kopf["type"] == "object" and kopf["x-kubernetes-preserve-unknown-fields"] is True
        assert "properties" not in kopf


def test_conditions_have_the_metav1_shape():
    for kind in KINDS:
        conditions = _at(_schema(kind), "status.conditions")
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        item = conditions["items"]
        assert sorted(item["required"]) == sorted(
            ["type", "status", "lastTransitionTime", "reason", "message"])
        props = item["properties"]
        assert props["status"]["enum"] == ["True", "False", "Unknown"]
        assert props["reason"]["pattern"] == "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        assert props["lastTransitionTime"]["format"] == "date-time"
        assert props["observedGeneration"]["type"] == "integer"
        assert props["message"]["maxLength"] == 32768


# ---------------------------------------------------------------- defaults, bounds and rules

def test_seed_defaults_are_in_the_schema():
    spec = _at(_schema(PERFORMANCE_PROFILE), "spec")
    assert _at(spec, "database.pool")["default"] == {"min": 20, "max": 100}
    assert _at(spec, "database.settings.parameters")["default"]["shared_buffers"] == "256MB"
    assert _at(spec, "redis.keyPrefix")["default"] == "saas-idp:prod:"
    assert _at(spec, "redis.settings")["default"]["maxmemory-policy"] == "allkeys-lru"
    assert _at(spec, "alerts.thresholds.cacheHitRate")["default"] == {
        "warning": 0.85, "critical": 0.6, "for": "5m"}
    assert _at(spec, "websocket.maxConnections")["default"] == 10000
    assert _at(spec, "database.maxConcurrentBuilds")["minimum"] == 1
    assert _at(spec, "database.maxConcurrentBuilds")["maximum"] == 8
    assert _at(spec, "database.connection.sslMode")["enum"] == [
        "disable", "prefer", "require", "verify-ca", "verify-full"]


def test_defaults_carry_no_nulls():
    for kind in KINDS:
        for path, node in _walk(_schema(kind)):
            assert "null" not in yaml.safe_dump(node.get("default", {})), path


def test_tenant_fields_inherit_instead_of_defaulting():
    spec = _at(_schema(TENANT_QUOTA), "spec")
    for path in ("rateLimits", "websocket", "websocket.maxConnections", "cache",
                 "cache.quotaBytes", "cache.ttlSeconds", "cache.ttlSeconds.sessions"):
        assert "default" not in _at(spec, path), path
    assert _at(spec, "plugins.maxPlugins")["default"] == 10000
    assert _at(spec, "tenantId")["pattern"] == "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
    assert "self == oldSelf" in _rules(_at(spec, "tenantId"))


def test_keyed_lists_are_list_maps():
    spec = _at(_schema(PERFORMANCE_PROFILE), "spec")
    for path in ("database.indexes", "scaling.rules"):
        node = _at(spec, path)
        assert node["x-kubernetes-list-type"] == "map", path
        assert node["x-kubernetes-list-map-keys"] == ["name"], path
        assert "name" in node["items"]["required"], path
    assert _at(spec, "database.indexes.[].include")["x-kubernetes-list-type"] == "set"


def test_threshold_rules_follow_the_signal_direction():
    thresholds = _at(_schema(PERFORMANCE_PROFILE), "spec.alerts.thresholds")["properties"]
    for name, node in thresholds.items():
        expected = ("self.warning > self.critical" if name == "cacheHitRate"
                    else "self.warning < self.critical")
        assert expected in _rules(node), name
    ratios = {name for name, node in thresholds.items()
              if "self.warning <= 1.0 && self.critical <= 1.0" in _rules(node)}
    assert ratios == {"errorRate", "poolUtilization", "memoryUsage", "cacheHitRate"}


def test_cross_field_rules_sit_on_their_objects():
    spec = _at(_schema(PERFORMANCE_PROFILE), "spec")
    assert "self.min <= self.max" in _rules(_at(spec, "database.pool"))
    assert "self.minReplicas <= self.maxReplicas" in _rules(_at(spec, "scaling.rules.[]"))
    assert "self.perTenantDefault <= self.maxConnections" in _rules(_at(spec, "websocket"))
    assert "has(self.column) != has(self.expression)" in _rules(
        _at(spec, "database.indexes.[].columns.[]"))
    assert any("hash" in rule for rule in _rules(_at(spec, "database.indexes.[]")))
    assert any("has(self.prometheus)" in rule for rule in _rules(spec))


def test_redis_settings_keys_are_checked_against_the_allow_list():
    settings = _at(_schema(PERFORMANCE_PROFILE), "spec.redis.settings")
    key_rule = _rules(settings)[0]
    assert key_rule.startswith("self.all(k, k in [")
    for key in REDIS_ALLOWED_SETTINGS:
        assert f'"{key}"' in key_rule
    assert '"dir"' not in key_rule and "requirepass" not in key_rule


def test_map_key_patterns_become_rules():
    parameters = _at(_schema(PERFORMANCE_PROFILE), "spec.database.settings.parameters")
    assert parameters["additionalProperties"]["type"] == "string"
    assert 'k.matches("^[a-z_][a-z0-9_.]*$")' in _rules(parameters)[0]


def test_secret_refs_have_no_namespace():
    for kind in KINDS:
        for path, node in _walk(_schema(kind)):
            if path.endswith(("secretRef", "profileRef")):
                assert "namespace" not in node["properties"], path


def test_field_descriptions_reach_explain():
    indexes = _at(_schema(PERFORMANCE_PROFILE), "spec.database.indexes")
    assert "CREATE INDEX CONCURRENTLY" in indexes["items"]["description"]
    assert "unique in the list" in indexes["description"]
    metrics = _at(_schema(PERFORMANCE_PROFILE), "spec.alerts.metrics")
    assert "http_requests_total" in metrics["description"]


# ---------------------------------------------------------------------------- the converter

def test_unions_are_refused():
    class Ambiguous(SpecModel):
        value: int | str = Field(description="either")

    with pytest.raises(SchemaError, match="union"):
        openapi_schema(Ambiguous)


def test_optional_becomes_the_plain_type_and_exclusive_bounds_convert():
    class Sample(SpecModel):
        ratio: float | None = Field(None, gt=0, lt=1, description="r")

    ratio = openapi_schema(Sample)["properties"]["ratio"]
    assert ratio == {"description": "r", "type": "number", "minimum": 0,
                     "exclusiveMinimum": True, "maximum": 1, "exclusiveMaximum": True}
