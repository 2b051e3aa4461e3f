"""What the schema and CEL cannot judge is refused at ``kubectl apply`` by the operator's
admission webhook, which parses SQL with PostgreSQL's own parser; and what got in while the
webhook was not running is Rejected in status by the reconciler."""
from __future__ import annotations

import pytest
import yaml

from tests.support.kube import condition, eventually
from tests.support.rbac import lease_election_in, operator_kubeconfig, start_operator_as_deployed


@pytest.fixture
def operator_without_webhook(stack, kubectl, crds, namespace, tmp_path):
    """An operator of the test's own for its isolated namespace, serving no webhook: objects
    created there pass no webhook of this operator, as during an outage (the session
    operator's webhook admits namespaces it does not serve unchecked). A deleted webhook
    configuration no longer stands for an outage: every replica puts it back."""
    kubeconfig = operator_kubeconfig(stack, kubectl, tmp_path / "kubeconfig")
    lease_election_in(kubectl, namespace)
    proc = start_operator_as_deployed(kubeconfig, tmp_path, name="operator", namespace=namespace)
    yield proc
    proc.stop()


def profile(expression: str, where: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "sql"},
        "spec": {"database": {
            "connection": {"host": "127.0.0.1", "database": "idp",
                           "secretRef": {"name": "pg-credentials"}},
            "indexes": [{"name": "idx_plugins_active", "table": "plugins",
                         "columns": [{"expression": expression}], "where": where}],
        }},
    })


@pytest.mark.parametrize(("field", "expression", "where", "message"), [
    ("where", "lower(name)", "status = 'active'; DROP TABLE plugins", "where"),
    ("where", "lower(name)", "tenant_id IN (SELECT id FROM tenants)", "where"),
    ("where", "lower(name)", "status = ", "where"),
    ("expression", "lower(name)) WITH (fillfactor=10", "status = 'active'", "expression"),
    ("expression", "name, (SELECT 1)", "status = 'active'", "expression"),
])
def test_sql_that_is_not_one_expression_is_refused_at_apply(operator, kubectl, namespace, field,
                                                            expression, where, message):
    manifest = profile(expression, where)
    result = kubectl.apply(manifest, namespace, check=False)
    assert result.returncode != 0, result.stdout
    assert "admission webhook" in result.stderr
    assert "spec.database.indexes[0]" in result.stderr and message in result.stderr
    assert kubectl.get("pp", "sql", namespace) is None


def test_valid_sql_is_admitted(operator, kubectl, namespace):
    manifest = profile("lower(name)", "status = 'active' AND NOT deleted")
    kubectl.apply(manifest, namespace)
    assert kubectl.get("pp", "sql", namespace) is not None


@pytest.mark.isolated
@pytest.mark.parametrize(("where", "message"), [
    ("1 = 1; DROP TABLE plugins", "spec.database.indexes[0].where"),
    # Deep SQL used to raise RecursionError in the reconciler, which then never wrote status.
    ("+".join(["a"] * 2000), "spec.database.indexes[0].where: expression is nested too deeply"),
], ids=["injection", "deep"])
def test_reconciler_rejects_what_got_past_a_missing_webhook(operator_without_webhook, kubectl,
                                                            namespace, where, message):
    result = kubectl.apply(profile("lower(name)", where), namespace, check=False)
    if result.returncode != 0:
        pytest.fail(f"expected the apply to pass without the webhook: {result.stderr}")

    def rejected():
        ready = condition(kubectl.get("pp", "sql", namespace), "Ready")
        return ready if ready and ready["reason"] == "Rejected" else None

    ready = eventually(rejected, timeout=30, what="a Rejected Ready condition")
    assert ready["status"] == "False"
    assert message in ready["message"]


DEEP_EXPRESSION = "f(" * 340 + "1" + ")" * 340


def test_deeply_nested_sql_is_refused_at_apply_with_a_clear_message(operator, kubectl, namespace):
    """Nesting within the CRD's length limit used to raise RecursionError in the validator:
    the webhook answered 500. It is a validation error like any other."""
    result = kubectl.apply(profile(DEEP_EXPRESSION, "status = 'active'"), namespace, check=False)
    assert result.returncode != 0, result.stdout
    assert "admission webhook" in result.stderr
    assert "spec.database.indexes[0].columns[0].expression" in result.stderr
    assert "nested more than 32 brackets deep" in result.stderr
    assert "Internal" not in result.stderr and "500" not in result.stderr


def test_deleted_webhook_configuration_is_restored(operator, kubectl):
    kubectl.run("delete", "validatingwebhookconfiguration", "perf-operator.perf.idp.io")
    eventually(lambda: kubectl.get("validatingwebhookconfiguration",
                                   "perf-operator.perf.idp.io"), timeout=15,
               what="the webhook configuration restored")
