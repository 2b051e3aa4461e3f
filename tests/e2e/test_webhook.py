"""What the schema and CEL cannot judge is refused at ``kubectl apply`` by the operator's
admission webhook, which parses SQL with PostgreSQL's own parser; and what got in while the
webhook was not running is Rejected in status by the reconciler."""
from __future__ import annotations

import pytest
import yaml

from tests.support.kube import condition, eventually

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


def test_reconciler_rejects_what_got_past_a_missing_webhook(operator, kubectl, namespace):
    """Dry-run=server skips nothing, so bypass the webhook the way an outage would: delete the
    webhook configuration the operator manages, create the object, and expect Rejected."""
    kubectl.run("delete", "validatingwebhookconfiguration", "perf-operator.perf.idp.io")
    manifest = profile("lower(name)", "1 = 1; DROP TABLE plugins")
    result = kubectl.apply(manifest, namespace, check=False)
    if result.returncode != 0:
        pytest.fail(f"expected the apply to pass without the webhook: {result.stderr}")

    def rejected():
        ready = condition(kubectl.get("pp", "sql", namespace), "Ready")
        return ready if ready and ready["reason"] == "Rejected" else None

    ready = eventually(rejected, timeout=30, what="a Rejected Ready condition")
    assert ready["status"] == "False"
    assert "spec.database.indexes[0].where" in ready["message"]
