"""Signals that mean something, from the real operator as deployed (``--log-format json``):
failures are Warning Events reported by perf-operator, one Event per repeated failure with a
growing count; progress (an index build, an application without metrics yet) is neither a
reconcile error in the metrics nor an ERROR log line; every log line is JSON naming the object
and the reason."""
from __future__ import annotations

import json

import pytest

from tests.e2e.optimizer_support import optimized_profile
from tests.e2e.postgres_support import database_section
from tests.support.kube import condition, eventually
from tests.support.metrics import scrape, total
from tests.support.rbac import lease_election_in, operator_kubeconfig, start_operator_as_deployed

pytestmark = pytest.mark.isolated


@pytest.fixture
def deployed(stack, kubectl, crds, namespace, credentials, tmp_path):
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(kubeconfig, tmp_path, name="operator", namespace=namespace,
                                      extra_args=("--log-format", "json"))
    yield proc
    proc.stop()


def apply_profile(kubectl, namespace: str, name: str, spec: dict) -> None:
    kubectl.apply(json.dumps({"apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
                              "metadata": {"name": name}, "spec": spec}), namespace)


def events(kubectl, namespace: str, name: str | None = None) -> list[dict]:
    items = json.loads(kubectl.run("get", "events", "-o", "json",
                                   namespace=namespace).stdout)["items"]
    return [e for e in items if name is None or e["involvedObject"]["name"] == name]


def log_records(proc) -> list[dict]:
    lines = [line for line in proc.log_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return records


def test_failures_are_counted_warnings_and_progress_is_not_an_error(
        deployed, kubectl, stack, namespace, pg_database, psql):
    psql(pg_database["database"], "CREATE TABLE orders AS SELECT g AS id, g % 100 AS tenant "
                                  "FROM generate_series(1, 200000) g")
    missing = database_section(pg_database)
    missing["connection"]["secretRef"]["name"] = "no-such-secret"
    apply_profile(kubectl, namespace, "broken", {"database": missing})
    apply_profile(kubectl, namespace, "building", {"database": database_section(
        pg_database, indexes=[{"name": "orders_tenant_idx", "table": "orders",
                               "columns": [{"column": "tenant"}]}])})
    apply_profile(kubectl, namespace, "no-app-metrics", optimized_profile(stack, rules=[]))

    def warnings_counted(count: int):
        found = [e for e in events(kubectl, namespace, "broken") if e["reason"] ==
                 "SecretNotFound"]
        return found if found and found[0]["count"] >= count else None

    found = eventually(lambda: warnings_counted(3), timeout=60,
                       what="the SecretNotFound Warning repeated 3 times")
    assert len(found) == 1, found  # one Event, its count raised, not one Event per resync
    event = found[0]
    assert event["type"] == "Warning"
    assert event["source"]["component"] == "perf-operator"
    assert event["reportingComponent"] == "perf-operator"
    assert event["lastTimestamp"] >= event["firstTimestamp"]
    assert "no-such-secret" in event["message"]

    eventually(lambda: (condition(kubectl.get("pp", "building", namespace), "Ready") or {}
                        ).get("status") == "True", timeout=90, what="the index built")
    stale = eventually(lambda: (condition(kubectl.get("pp", "no-app-metrics", namespace),
                                          "MetricsStale") or {}).get("reason") == "SignalsStale",
                       timeout=60, what="MetricsStale=True without application metrics")
    assert stale
    samples = scrape(deployed.metrics_port)
    errors = "perf_operator_reconcile_errors_total"
    for reason in ("IndexBuilding", "IndexPending", "SignalsStale"):
        assert total(samples, errors, reason=reason) == 0, reason
    assert total(samples, errors, reason="SecretNotFound") >= 3
    assert total(samples, "perf_operator_reconciliations_total", result="progressing") >= 1

    assert all(e["source"].get("component") != "kopf" for e in events(kubectl, namespace))
    assert not [e for e in events(kubectl, namespace) if e["reason"] == "Logging"]

    records = log_records(deployed)
    assert {"timestamp", "level", "logger", "message"} <= set(records[0])
    named = [r for r in records if r.get("reason") == "SecretNotFound"]
    assert named and named[0]["namespace"] == namespace and named[0]["name"] == "broken"
    assert named[0]["kind"] == "PerformanceProfile" and named[0]["level"] == "WARNING"
    requeues = [r for r in records if "waiting for background work" in r["message"]]
    assert requeues, "the build was requeued at least once"
    assert all(r["level"] == "DEBUG" for r in requeues), requeues
    assert not [r for r in records if r["level"] == "ERROR"], \
        [r for r in records if r["level"] == "ERROR"][:5]
