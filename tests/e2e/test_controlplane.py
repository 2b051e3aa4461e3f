"""The control plane is a real one: SSA, schema validation, RBAC, garbage collection,
namespace deletion; and the stack leaves nothing behind when it stops."""
from __future__ import annotations

import json
import os
import secrets

import pytest

from perf_operator.devstack.processes import port_is_open
from perf_operator.devstack.stack import LocalStack
from tests.support.kube import eventually

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.perf.idp.io
spec:
  group: smoke.perf.idp.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""


def test_server_reports_the_pinned_version(kubectl):
    version = json.loads(kubectl.run("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert version["serverVersion"]["minor"] == "36"


def test_server_side_apply_records_the_field_manager_and_detects_conflicts(kubectl, namespace):
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {key: one}\n"
    kubectl.apply(manifest, namespace, "--server-side", "--field-manager=alice")
    obj = kubectl.get("configmap", "ssa", namespace, managed_fields=True)
    assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["alice"]

    conflicting = manifest.replace("one", "two")
    result = kubectl.apply(conflicting, namespace, "--server-side", "--field-manager=bob",
                           check=False)
    assert result.returncode != 0
    assert "conflict" in result.stderr.lower() and "alice" in result.stderr


def test_openapi_schema_rejects_with_the_servers_message(kubectl, namespace):
    kubectl.apply(WIDGET_CRD)
    kubectl.run("wait", "--for=condition=Established", "crd/widgets.smoke.perf.idp.io")
    bad = "apiVersion: smoke.perf.idp.io/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 0}\n"
    result = kubectl.apply(bad, namespace, check=False)
    assert result.returncode != 0
    assert "spec.size" in result.stderr and "greater than or equal to 1" in result.stderr


def test_rbac_denies_a_service_account_without_rights(kubectl, namespace):
    kubectl.run("create", "serviceaccount", "nobody", namespace=namespace)
    token = kubectl.run("create", "token", "nobody", namespace=namespace).stdout.strip()
    result = kubectl.run("get", "secrets", f"--token={token}", "--kubeconfig=/dev/null",
                         f"--server={_server(kubectl)}",
                         f"--certificate-authority={_ca(kubectl)}",
                         namespace=namespace, check=False)
    assert result.returncode != 0
    assert f"system:serviceaccount:{namespace}:nobody" in result.stderr
    assert "cannot list resource \"secrets\"" in result.stderr


def test_owner_reference_garbage_collection(kubectl, namespace):
    kubectl.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n", namespace)
    uid = kubectl.get("configmap", "owner", namespace)["metadata"]["uid"]
    kubectl.apply(f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: child
  ownerReferences:
  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}
""", namespace)
    kubectl.run("delete", "configmap", "owner", namespace=namespace)
    eventually(lambda: kubectl.get("configmap", "child", namespace) is None, timeout=60,
               what="the garbage collector to delete the child")


def test_namespace_deletion_completes(kubectl):
    name = f"gone-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", name)
    kubectl.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", name)
    kubectl.run("delete", "namespace", name, "--wait=false")
    eventually(lambda: kubectl.get("namespace", name) is None, timeout=90,
               what="the namespace controller to finish deleting")


@pytest.mark.timeout(300)
def test_stack_leaves_no_process_port_or_directory_behind(stack):
    """A second, independent stack: started, used, stopped, and nothing of it remains."""
    other = LocalStack().start()
    pids, ports, root = other.pids(), other.ports(), other.root
    assert all(_pid_alive(pid) for pid in pids) and all(port_is_open(p) for p in ports)
    other.stop()
    assert not [pid for pid in pids if _pid_alive(pid)]
    assert not [port for port in ports if port_is_open(port)]
    assert not root.exists()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: ask /proc.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _server(kubectl) -> str:
    return kubectl.run("config", "view", "--minify", "-o",
                       "jsonpath={.clusters[0].cluster.server}").stdout


def _ca(kubectl) -> str:
    return kubectl.run("config", "view", "--minify", "-o",
                       "jsonpath={.clusters[0].cluster.certificate-authority}").stdout
