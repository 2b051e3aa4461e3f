"""Running the operator with the permissions the manifests give it, not as cluster admin."""
from __future__ import annotations

import pathlib

import yaml

from tests.support.kube import Kubectl

REPO = pathlib.Path(__file__).resolve().parents[2]
OVERLAY = REPO / "manifests" / "overlays" / "cluster-wide"
OPERATOR_NAMESPACE = "perf-operator-system"
SERVICE_ACCOUNT = "perf-operator"
#: What the overlay grants, without the CRDs (the `crds` fixture) or the Deployment.
RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
              "ClusterRoleBinding"}


def rbac_documents(kubectl: Kubectl) -> list[dict]:
    """The overlay's RBAC."""
    rendered = kubectl.run("kustomize", str(OVERLAY)).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] in RBAC_KINDS]


def operator_kubeconfig(stack, kubectl: Kubectl, path: pathlib.Path | str) -> str:
    """Apply the cluster-wide overlay's ServiceAccount, roles and bindings, and write a
    kubeconfig at ``path`` that authenticates with a token of that ServiceAccount (its
    context namespace is the operator's, where the leader Lease lives). Returns the path."""
    kubectl.run("apply", "--server-side", "--field-manager=perf-operator-tests", "-f", "-",
                input=yaml.safe_dump_all(rbac_documents(kubectl)))
    token = kubectl.run("create", "token", SERVICE_ACCOUNT, "--duration=24h",
                        namespace=OPERATOR_NAMESPACE).stdout.strip()
    path = pathlib.Path(path)
    stack.control_plane.token_kubeconfig(path, token, namespace=OPERATOR_NAMESPACE)
    return str(path)


def lease_election_in(kubectl: Kubectl, namespace: str) -> None:
    """The manifests' leader-election Role and RoleBinding, placed in ``namespace``: operators
    started with ``PERF_OPERATOR_NAMESPACE=namespace`` elect among themselves only, apart from
    any other operator the test session runs."""
    for doc in rbac_documents(kubectl):
        if doc["metadata"]["name"] == "perf-operator-leader-election":
            doc["metadata"]["namespace"] = namespace
            kubectl.apply(yaml.safe_dump(doc))


def operator_namespace_roles_in(kubectl: Kubectl, namespace: str) -> None:
    """Every Role the manifests give the operator in its own namespace (the leader Lease, the
    cleanup ledger and the escrows), placed in ``namespace``, for operators started with
    ``PERF_OPERATOR_NAMESPACE=namespace``."""
    for doc in rbac_documents(kubectl):
        if doc["kind"] in {"Role", "RoleBinding"} and \
                doc["metadata"].get("namespace") == OPERATOR_NAMESPACE:
            doc["metadata"]["namespace"] = namespace
            kubectl.apply(yaml.safe_dump(doc))


def start_operator_as_deployed(kubeconfig: str, log_dir: pathlib.Path, *, name: str,
                               namespace: str, extra_args: tuple[str, ...] = ()):
    """The real operator as the Deployment runs it (``--standalone``, ``POD_NAME``, its own
    metrics port), with the ServiceAccount ``kubeconfig`` from :func:`operator_kubeconfig`,
    electing in and watching only ``namespace`` (call :func:`lease_election_in` first).
    The process has ``metrics_port``; ``extra_args`` go to ``perf-operator run``."""
    from perf_operator.devstack.processes import free_port
    from tests.support.operator import start_operator

    port = free_port()
    proc = start_operator(kubeconfig, log_dir, name=name,
                          extra_args=("--standalone", f"--namespace={namespace}", *extra_args),
                          env={"POD_NAME": name, "PERF_OPERATOR_NAMESPACE": namespace,
                               "PERF_OPERATOR_METRICS_PORT": str(port)})
    proc.metrics_port = port
    return proc
