"""Rule files from ConfigMaps into the stack's Prometheus, as a config-reloader sidecar would.

Used twice: for the Prometheus Operator's rendered ``prometheus-<name>-rulefiles-<n>``
ConfigMaps (no Prometheus pod runs here), and by the dev stack for the operator's own rule-file
ConfigMaps (its fallback without the Prometheus Operator), so that every profile's alerts are
loaded.
"""
from __future__ import annotations

import json
import threading
import urllib.parse

from .controlplane import ControlPlane
from .services import PrometheusServer


class RuleFileSync:
    """Every data key of the ConfigMaps matching ``label_selector`` (in ``namespace``, or in
    all namespaces), written as ``<prefix><namespace>-<configmap>-<key>`` into the Prometheus's
    rule directory, with a reload when something changed. Files with ``prefix`` that no
    ConfigMap holds any more are removed; other files are left alone."""

    def __init__(self, control_plane: ControlPlane, prometheus: PrometheusServer,
                 label_selector: str, prefix: str, *, namespace: str | None = None,
                 interval: float = 0.5) -> None:
        self.control_plane, self.prometheus = control_plane, prometheus
        self.label_selector, self.prefix, self.namespace = label_selector, prefix, namespace
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rule-file-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def rendered(self) -> dict[str, str]:
        """file name (without the prefix) -> content, from the matching ConfigMaps."""
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        selector = urllib.parse.quote(self.label_selector)
        status, body = self.control_plane.get(
            f"/api/v1{scope}/configmaps?labelSelector={selector}")
        if status != 200:
            raise RuntimeError(f"listing rule ConfigMaps: HTTP {status}")
        files = {}
        for item in json.loads(body)["items"]:
            meta = item["metadata"]
            for key, text in (item.get("data") or {}).items():
                files[f"{meta['namespace']}-{meta['name']}-{key}"] = text
        return files

    def sync_once(self) -> bool:
        """Make the rule directory hold exactly the rendered files; True when it changed."""
        wanted = {self.prefix + name: text for name, text in self.rendered().items()}
        rules_dir = self.prometheus.rules_dir
        changed = False
        for path in rules_dir.glob(self.prefix + "*"):
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

    def stop(self, *, remove_files: bool = False) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if remove_files:
            for path in self.prometheus.rules_dir.glob(self.prefix + "*"):
                path.unlink()
