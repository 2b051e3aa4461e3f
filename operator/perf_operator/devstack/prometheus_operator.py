"""The Prometheus Operator, run as a local process against the stack's API server.

It is built from the Go module proxy by ``tools/clients/build.sh`` (its CRDs are copied from
the same module). It reconciles one ``Prometheus`` object whose ``ruleSelector`` selects what
the operator's rules carry (``app.kubernetes.io/managed-by: perf-operator``, as
``docs/gitops.md`` tells users to select). No pod ever runs here, so the Prometheus Operator's
config-reloader sidecar is replaced by :class:`RuleFileSync`: it copies the rule files the
Prometheus Operator renders into ``prometheus-<name>-rulefiles-<n>`` ConfigMaps into the stack's
Prometheus rule directory and reloads it, which is exactly what the sidecar does in a pod.
"""
from __future__ import annotations

import json
import os
import pathlib
import threading
import urllib.parse
from dataclasses import dataclass, field

import yaml

from .controlplane import ControlPlane, built_binaries
from .processes import ManagedProcess, Startable, free_port, wait_until
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


class RuleFileSync:
    """What the config-reloader sidecar does in a Prometheus pod: the rendered rule files of one
    ``Prometheus`` object, copied into a rule directory, with a reload when they change."""

    def __init__(self, control_plane: ControlPlane, prometheus: PrometheusServer,
                 name: str, namespace: str, interval: float = 0.5) -> None:
        self.control_plane, self.prometheus = control_plane, prometheus
        self.name, self.namespace, self.interval = name, namespace, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rule-file-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def rendered(self) -> dict[str, str]:
        """file name -> content of every rule file the Prometheus Operator rendered."""
        selector = urllib.parse.quote(f"prometheus-name={self.name}")
        status, body = self.control_plane.get(
            f"/api/v1/namespaces/{self.namespace}/configmaps?labelSelector={selector}")
        if status != 200:
            raise RuntimeError(f"listing rule ConfigMaps: HTTP {status}")
        files = {}
        for item in json.loads(body)["items"]:
            if item["metadata"]["name"].startswith(f"prometheus-{self.name}-rulefiles-"):
                files.update(item.get("data") or {})
        return files

    def sync_once(self) -> bool:
        """Make the rule directory hold exactly the rendered files; True when it changed."""
        wanted = {SYNCED_PREFIX + name: text for name, text in self.rendered().items()}
        rules_dir = self.prometheus.rules_dir
        changed = False
        for path in rules_dir.glob(SYNCED_PREFIX + "*"):
            if path.name not in wanted:
                path.unlink()
                changed = True
        for name, text in wanted.items():
            path = rules_dir / name
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
                changed = True
        if changed:
            self.prometheus.reload()
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync_once()
            except (OSError, RuntimeError, ValueError):
                continue  # the API server or Prometheus is restarting: try again next tick

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


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
        self.control_plane.run_kubectl("create", "namespace", self.namespace)
        self.control_plane.run_kubectl(
            "apply", "--server-side", "--field-manager=perf-operator-dev", "-f", "-",
            input=yaml.safe_dump(prometheus_object(self.name, self.namespace,
                                                   self.rule_selector)))
        self.process = ManagedProcess("prometheus-operator", [
            str(self.bin_dir / "prometheus-operator"),
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--kubelet-endpoints=false", "--log-level=warn",
        ], self.workdir, env={**os.environ, "KUBECONFIG": str(self.control_plane.kubeconfig)})
        wait_until(lambda: self.process.check_alive() or self._rendered_config(), timeout=120,
                   what="the Prometheus Operator to reconcile its Prometheus")
        self.sync = RuleFileSync(self.control_plane, self.prometheus, self.name, self.namespace)
        self.sync.start()

    def _rendered_config(self) -> bool:
        """The Prometheus Operator has reconciled the Prometheus once it wrote its config
        Secret."""
        status, _ = self.control_plane.get(
            f"/api/v1/namespaces/{self.namespace}/secrets/prometheus-{self.name}")
        return status == 200

    def stop(self) -> None:
        if self.sync:
            self.sync.stop()
            self.sync = None
        if self.process:
            self.process.stop()
            self.process = None
        for path in self.prometheus.rules_dir.glob(SYNCED_PREFIX + "*"):
            path.unlink()

    def uninstall(self) -> None:
        """Stop, and remove the CRDs (and with them every object of theirs): a test session's
        other tests expect no Prometheus Operator."""
        self.stop()
        self.control_plane.run_kubectl("delete", "-f", str(self.crds), "--wait=true",
                                       "--ignore-not-found")
