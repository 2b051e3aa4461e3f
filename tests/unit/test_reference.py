"""The field reference: the committed docs/reference.md is current, and it documents every field
(and every CEL rule) of the committed CRDs with the defaults the API server applies."""
from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from perf_operator.api.reference import main_docs, render_reference
from perf_operator.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
CRD_FILES = sorted((ROOT / "crds").glob("*.yaml"))


@pytest.fixture(scope="module")
def reference() -> str:
    return render_reference()


def _rows(text: str, kind: str) -> dict[str, list[str]]:
    """Field path -> [type, default, description] of the tables in ``kind``'s part."""
    part = text.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in part.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[2:-1]]
            rows[match.group(1)] = cells
    return rows


def _properties(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named property under ``node`` (through list items and map values)."""
    for name, prop in node.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from _properties(prop, f"{path}.{name}")
    if "items" in node:
        yield from _properties(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _properties(node["additionalProperties"], f"{path}{{}}")


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for prop in node.get("properties", {}).values():
        yield from _walk(prop)
    if "items" in node:
        yield from _walk(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"])


def _crd_schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in CRD_FILES:
        definition = yaml.safe_load(path.read_text())
        yield (definition["spec"]["names"]["kind"],
               definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


# --------------------------------------------------------------------------- file and CLI

def test_committed_reference_is_current(reference):
    assert REFERENCE.read_text() == reference, "run `perf-operator docs`"


def test_cli_check_passes_on_the_committed_file(capsys):
    assert main(["docs", "--check", "--output", str(REFERENCE)]) == 0
    assert capsys.readouterr().err == ""


def test_cli_writes_then_check_reports_a_stale_file(tmp_path, capsys, reference):
    output = tmp_path / "docs" / "reference.md"
    assert main(["docs", "--check", "--output", str(output)]) == 1
    assert "perf-operator docs" in capsys.readouterr().err
    assert main(["docs", "--output", str(output)]) == 0
    assert output.read_text() == reference
    assert main_docs(output, check=True) == 0
    output.write_text(reference.replace("maxConnections", "maxConns"))
    assert main_docs(output, check=True) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and str(output) in err


def test_rendering_is_deterministic(reference):
    assert render_reference() == reference


# ------------------------------------------------------------------------------ completeness

@pytest.mark.parametrize(("kind", "schema"), list(_crd_schemas()), ids=lambda v: str(v)[:20])
def test_every_property_of_the_crd_has_a_row(kind, schema, reference):
    """Every leaf (and every object on the way to it) of the CRD's spec and status has a row,
    and there is no row for a field the CRD does not have."""
    rows = _rows(reference, kind)
    properties = {path: node for top in ("spec", "status")
                  for path, node in _properties(schema["properties"][top], top)}
    leaves = {path for path, node in properties.items() if "properties" not in node}
    assert "spec.database.indexes[].where" in leaves or kind != "PerformanceProfile"
    assert sorted(leaves - set(rows)) == []
    assert sorted(set(properties) - set(rows)) == []
    assert sorted(set(rows) - set(properties)) == []


@pytest.mark.parametrize(("kind", "schema"), list(_crd_schemas()), ids=lambda v: str(v)[:20])
def test_every_cel_rule_of_the_crd_is_listed(kind, schema, reference):
    part = reference.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    unescaped = re.sub(r"\\(.)", r"\1", part)
    rules = [rule for node in _walk(schema) for rule in node.get("x-kubernetes-validations", [])]
    assert rules
    for rule in rules:
        assert f"`{rule['rule']}`" in part
        assert rule["message"] in unescaped


def test_kopf_internals_are_not_documented(reference):
    rows = _rows(reference, "PerformanceProfile")
    assert "kopf's bookkeeping" in rows["status.kopf"][2]
    assert not [path for path in rows if path.startswith("status.kopf.")]


# ------------------------------------------------------------------------------ spot checks

def test_profile_defaults(reference):
    rows = _rows(reference, "PerformanceProfile")
    assert rows["spec.websocket.maxConnections"][1] == "`10000`"
    assert rows["spec.cache.ttlSeconds.apiResponses"][1] == "`300`"
    assert rows["spec.alerts.thresholds.apiResponseTimeMs"][1] == \
        '`{"warning": 1000, "critical": 5000, "for": "5m"}`'
    assert rows["spec.database.connection.port"][1] == "`5432`"
    assert rows["spec.database.connection.sslMode"][1] == '`"prefer"`'
    assert rows["spec.websocket"][1].startswith("`{}`")
    assert rows["spec.database"][1] == "—"


def test_profile_types(reference):
    rows = _rows(reference, "PerformanceProfile")
    port = rows["spec.database.connection.port"][0]
    assert port.startswith("integer") and "1 to 65535" in port
    sslmode = rows["spec.database.connection.sslMode"][0]
    assert "one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`" in sslmode
    host = rows["spec.database.connection.host"][0]
    assert "**required**" in host and "pattern `^[A-Za-z0-9_.:\\[\\]-]+$`" in host
    indexes = rows["spec.database.indexes"][0]
    assert indexes.startswith("list of object ([fields](#performanceprofile-spec-database-"
                              "indexes))") and "keyed by `name`" in indexes
    assert rows["spec.redis.settings"][0].startswith("map of string to string")
    assert rows["spec.alerts.thresholds.apiResponseTimeMs.for"][0].endswith(
        r"pattern `^([0-9]+(ms\|s\|m\|h\|d\|w\|y))+$`")
    assert "(date-time)" in rows["status.conditions[].lastTransitionTime"][0]
    assert "spec.database.indexes[].where" in rows


def test_sections_carry_their_rules(reference):
    section = reference.split("### `spec.database.pool`", 1)[1].split("### ", 1)[0]
    assert "`spec.database.pool.min`: min must not exceed max — `self.min <= self.max`" in section
    section = reference.split("### `spec.websocket`", 1)[1].split("### ", 1)[0]
    assert "perTenantDefault must not exceed maxConnections" in section


def test_tenant_overrides_have_no_defaults_of_their_own(reference):
    rows = _rows(reference, "TenantQuota")
    assert rows["spec.websocket.maxConnections"][1] == "—"
    assert rows["spec.tenantId"][0].startswith("string; **required**")
