"""examples/profile-indexes.yaml: the seed's strategic index set, as the model reads it.
(tests/e2e/test_postgres_schema.py builds it on the reference schema.)"""
from __future__ import annotations

import pathlib

import yaml

from perf_operator.api import PerformanceProfileSpec
from perf_operator.postgres.indexes import IndexDefinition, definition_from_spec

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "profile-indexes.yaml"


def test_the_example_declares_the_seed_scale_index_set():
    spec = PerformanceProfileSpec.model_validate(yaml.safe_load(EXAMPLE.read_text())["spec"])
    declared = spec.database.indexes
    assert len(declared) >= 50
    tenant_leading = [i for i in declared if i.columns[0].column == "tenant_id"]
    partial = [i for i in declared if i.where]
    assert len(tenant_leading) >= 30 and len(partial) >= 25
    assert {i.method for i in declared} >= {"btree", "gin", "brin", "hash"}
    assert any(i.unique for i in declared) and any(i.include for i in declared)
    assert any(c.expression for i in declared for c in i.columns)
    assert spec.database.settings.parameters == {}
    assert all(isinstance(definition_from_spec(i), IndexDefinition) for i in declared)
