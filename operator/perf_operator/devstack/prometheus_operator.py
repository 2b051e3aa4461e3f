"""The Prometheus Operator, run as a local process against the stack's API server.

It is built from the Go module proxy by ``tools/clients/build.sh`` (its CRDs are copied from
the same module). It reconciles one ``Prometheus`` object whose ``ruleSelector`` selects what
the operator's rules carry (``app.kubernetes.io/managed-by: perf-operator``, as
``docs/gitops.md`` tells users to select). No pod ever runs here, so the Prometheus Operator's
config-reloader sidecar is replaced by :class:`~.rulesync.RuleFileSync`: it copies the rule
files the Prometheus Operator renders into ``prometheus-<name>-rulefiles-<n>`` ConfigMaps into
the stack's Prometheus rule directory and reloads it, which is what the sidecar does in a pod.
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

import yaml

from .controlplane import ControlPlane, built_binaries
from .processes import ManagedProcess, Startable, free_port, wait_until
from .rulesync import RuleFileSync
from .services import PrometheusServer

MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_NAME = "perf-operator"
#: The label every rules object of the operator carries, which a Prometheus selects.
RULE_SELECTOR = {"matchLabels": {"app.kubernetes.io/managed-by": "perf-operator"}}
#: Prefix of the files the sync writes into the rule directory (it removes only those).
SYNCED_PREFIX = "prometheus-operator-"


def prometheus_operator_binaries() -> pathlib.Path:
    return built_binaries("clients/build.sh", "PERF_OPERATOR_PROMETHEUS_OPERATOR_BIN",
                          "prometheus-operator")


def prometheus_object(name: str, namespace: str, rule_selector: dict) -> dict:
    """A ``Prometheus`` selecting rules in every namespace by ``rule_selector``."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "evaluationInterval": "1s", "scrapeInterval": "1s",
                     "ruleSelector": rule_selector, "ruleNamespaceSelector": {}}}


@dataclass
class PrometheusOperator(Startable):
    """The Prometheus Operator on the stack's API server, its CRDs, one ``Prometheus`` object
    and the rule-file sync into the stack's Prometheus."""

    workdir: pathlib.Path
    control_plane: ControlPlane
    prometheus: PrometheusServer
    name: str = PROMETHEUS_NAME
    namespace: str = MONITORING_NAMESPACE
    rule_selector: dict = field(default_factory=lambda: dict(RULE_SELECTOR))
    bin_dir: pathlib.Path = field(default_factory=prometheus_operator_binaries)
    process: ManagedProcess | None = None
    sync: RuleFileSync | None = None
    port: int = field(default_factory=free_port)

    @property
    def crds(self) -> pathlib.Path:
        return self.bin_dir.parent / "crds"

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.control_plane.install_crds(self.crds, field_manager="prometheus-operator-install")
        # apply, not create: a module before may have installed and uninstalled it already
        self.control_plane.run_kubectl("apply", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}))
        self.control_plane.run_kubectl(
            "apply", "--server-side", "--field-manager=perf-operator-dev", "-f", "-",
            input=yaml.safe_dump(prometheus_object(self.name, self.namespace,
                                                   self.rule_selector)))
        self.process = ManagedProcess("prometheus-operator", [
            str(self.bin_dir / "prometheus-operator"),
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--kubelet-endpoints=false", "--log-level=warn",
        ], self.workdir, env={**os.environ, "KUBECONFIG": str(self.control_plane.kubeconfig)})
        wait_until(self._rendered_config, process=self.process, timeout=120,
                   what="the Prometheus Operator to reconcile its Prometheus")
        self.sync = RuleFileSync(self.control_plane, self.prometheus,
                                 f"prometheus-name={self.name}", SYNCED_PREFIX,
                                 namespace=self.namespace)
        self.sync.start()

    def _rendered_config(self) -> bool:
        """The Prometheus Operator has reconciled the Prometheus once it wrote its config
        Secret."""
        status, _ = self.control_plane.get(
            f"/api/v1/namespaces/{self.namespace}/secrets/prometheus-{self.name}")
        return status == 200

    def stop(self) -> None:
        if self.sync:
            self.sync.stop(remove_files=True)
            self.sync = None
        if self.process:
            self.process.stop()
            self.process = None

    def uninstall(self) -> None:
        """Stop, and remove the CRDs (and with them every object of theirs) and the namespace:
        a test session's other tests expect no Prometheus Operator, and the next install
        creates them again."""
        self.stop()
        self.control_plane.run_kubectl("delete", "-f", str(self.crds), "--wait=true",
                                       "--ignore-not-found", "--timeout=120s")
        self.control_plane.run_kubectl("delete", "namespace", self.namespace, "--wait=true",
                                       "--ignore-not-found", "--timeout=120s")
