"""Test helpers around the real API server: kubectl, waiting on object state."""
from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def perf_object(kind: str, name: str, spec: dict[str, Any]) -> str:
    """A manifest of one of the operator's kinds, for ``Kubectl.apply`` (JSON is YAML)."""
    return json.dumps({"apiVersion": "perf.idp.io/v1alpha1", "kind": kind,
                       "metadata": {"name": name}, "spec": spec})


@dataclass
class Kubectl:
    binary: str
    kubeconfig: str

    def run(self, *args: str, input: str | None = None, check: bool = True,
            namespace: str | None = None) -> subprocess.CompletedProcess:
        argv = [self.binary, f"--kubeconfig={self.kubeconfig}"]
        if namespace:
            argv.append(f"--namespace={namespace}")
        result = subprocess.run(argv + list(args), input=input, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def apply(self, manifest: str, namespace: str | None = None, *extra: str,
              check: bool = True) -> subprocess.CompletedProcess:
        return self.run("apply", "-f", "-", *extra, input=manifest, namespace=namespace,
                        check=check)

    def get(self, kind: str, name: str, namespace: str | None = None, *,
            managed_fields: bool = False) -> dict[str, Any] | None:
        extra = ("--show-managed-fields",) if managed_fields else ()
        result = self.run("get", kind, name, "-o", "json", *extra, namespace=namespace,
                          check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)


def eventually(check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.25,
               what: str = "condition") -> Any:
    """Poll until check() returns something truthy; return it. Fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None
