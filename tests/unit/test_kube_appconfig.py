"""The application config document and the Deployment stamp planner, without an API server."""
from __future__ import annotations

import json

from perf_operator import FIELD_MANAGER
from perf_operator.api import PerformanceProfileSpec
from perf_operator.kube.appconfig import (DOCUMENT_KEY, HASH_ANNOTATION, StampStep, config_data,
                                          plan_stamps, stamp_body)

DATABASE = {"connection": {"host": "db", "database": "idp",
                           "secretRef": {"name": "pg-credentials"}},
            "pool": {"min": 10, "max": 50}}


def _data(spec: dict | None = None) -> dict[str, str]:
    return config_data(PerformanceProfileSpec.model_validate(spec or {}))


def test_seed_defaults_reach_the_application():
    data = _data()
    document = json.loads(data[DOCUMENT_KEY])
    assert document["api"]["compression"] == {"enabled": True, "minSizeBytes": 1024}
    assert document["api"]["maxRequestSizeBytes"] == 10 << 20
    assert document["api"]["cacheHeaders"]["policy"] == "Smart"
    assert document["api"]["rateLimiting"] == {
        "enabled": True, "perIp": {"requests": 1200, "windowSeconds": 60, "burst": 0}}
    assert document["cache"]["ttlSeconds"]["apiResponses"] == 300
    assert document["websocket"]["maxConnections"] == 10_000
    assert document["featureFlags"] == {
        "compression": True, "rateLimiting": True, "monitoring": True,
        "circuitBreaker": False, "fallbackResponseCaching": False, "loadShedding": False}
    assert "database" not in document and "DB_POOL_MIN" not in data
    assert data["ENABLE_COMPRESSION"] == "true"


def test_the_optimizers_adjustments_switch_the_feature_flags():
    from perf_operator.api.optimization import Adjustments

    spec = PerformanceProfileSpec()
    flags = json.loads(config_data(spec, Adjustments(circuit_breaker=True, load_shedding=0.2))[
        DOCUMENT_KEY])["featureFlags"]
    assert (flags["circuitBreaker"], flags["loadShedding"]) == (True, True)
    assert config_data(spec, Adjustments()) == config_data(spec)


def test_database_pool_and_redis_prefix_when_configured():
    data = _data({"database": DATABASE, "redis": {
        "connection": {"host": "redis"}, "keyPrefix": "idp:test:"}})
    document = json.loads(data[DOCUMENT_KEY])
    assert document["database"] == {"pool": {"min": 10, "max": 50}}
    assert (data["DB_POOL_MIN"], data["DB_POOL_MAX"]) == ("10", "50")
    assert data["REDIS_KEY_PREFIX"] == document["redis"]["keyPrefix"] == "idp:test:"


def test_document_is_canonical():
    assert _data() == _data()
    text = _data()[DOCUMENT_KEY]
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def _deployment(annotation: str | None, manager: str = FIELD_MANAGER) -> dict:
    template: dict = {"metadata": {"annotations": {"owner": "x"}}}
    fields: dict = {}
    if annotation is not None:
        template["metadata"]["annotations"][HASH_ANNOTATION] = annotation
        fields = {"f:spec": {"f:template": {"f:metadata": {"f:annotations": {
            f"f:{HASH_ANNOTATION}": {}}}}}}
    return {"metadata": {"managedFields": [{"manager": manager, "fieldsV1": fields}]},
            "spec": {"template": template}}


def test_stamps_only_what_differs_and_forces_only_to_take_our_annotation_back():
    observed = {"same": _deployment("h1"), "stale": _deployment("h0"), "fresh": _deployment(None),
                "edited": _deployment("hx", manager="kubectl-edit"), "gone": None}
    assert plan_stamps(list(observed), observed, "h1") == [
        StampStep("same", "unchanged"), StampStep("stale", "stamp"), StampStep("fresh", "stamp"),
        StampStep("edited", "stamp", force=True), StampStep("gone", "missing")]


def test_stamp_body_holds_the_annotation_and_nothing_else():
    assert stamp_body("api", "prod", "h1") == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "prod"},
        "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: "h1"}}}}}
