"""health.lua through Argo CD's own Lua engine: ``argocd admin settings resource-overrides
health`` with a local argocd-cm rendered from manifests/argocd/health, as users register it."""
from __future__ import annotations

import calendar
import functools
import json
import pathlib
import re
import subprocess
import tempfile
import time
from typing import Any

import yaml

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@functools.cache
def _rendered(health_dir: pathlib.Path) -> str:
    from perf_operator.devstack.argocd import kustomize_binaries

    return subprocess.run([str(kustomize_binaries() / "kustomize"), "build", str(health_dir)],
                          check=True, capture_output=True, text=True).stdout


def argocd_cm(health_dir: pathlib.Path, *, open_libs: bool) -> dict[str, Any]:
    """argocd-cm as users get it: ``kustomize build manifests/argocd/health``; without
    ``open_libs`` the useOpenLibs keys are left out (Argo CD's default)."""
    config_map = yaml.safe_load(_rendered(health_dir))
    if not open_libs:
        config_map["data"] = {k: v for k, v in config_map["data"].items()
                              if not k.startswith("resource.customizations.useOpenLibs.")}
    return config_map


def _shifted(value: Any, seconds: int) -> Any:
    """``value`` with every RFC 3339 UTC timestamp moved by ``seconds``."""
    if isinstance(value, dict):
        return {k: _shifted(v, seconds) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, seconds) for v in value]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        moved = calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) + seconds
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moved))
    return value


def _has_timestamps(value: Any) -> bool:
    return _shifted(value, 1) != value


def argocd_engine_health(argocd: pathlib.Path, health_dir: pathlib.Path, obj: dict[str, Any], *,
                         now: int, open_libs: bool = True, attempts: int = 10
                         ) -> tuple[str, str]:
    """(status, message) that Argo CD computes for ``obj`` as if it were Unix time ``now``.

    Argo CD reads the real clock, so the object's timestamps are moved by (real second - now)
    instead; a run that started and ended within one wall-clock second read that second, and
    only such a run counts (cases sit exactly on the one-second boundaries of the script)."""
    with tempfile.TemporaryDirectory(prefix="argocd-health-") as tmp:
        cm_path = pathlib.Path(tmp) / "argocd-cm.yaml"
        cm_path.write_text(yaml.safe_dump(argocd_cm(health_dir, open_libs=open_libs)))
        obj_path = pathlib.Path(tmp) / "object.json"
        timed = _has_timestamps(obj)
        for _ in range(attempts):
            if timed:
                time.sleep(1.02 - time.time() % 1)  # start just after a second begins
            second = int(time.time())
            obj_path.write_text(json.dumps(_shifted(obj, second - now) if timed else obj))
            result = subprocess.run(
                [str(argocd), "admin", "settings", "resource-overrides", "health",
                 str(obj_path), f"--argocd-cm-path={cm_path}"],
                capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise AssertionError(f"argocd failed ({result.returncode}): {result.stderr}")
            if not timed or int(time.time()) == second:
                return _parse(result.stdout)
    raise AssertionError(f"argocd never ran within one second in {attempts} attempts")


def _parse(output: str) -> tuple[str, str]:
    match = re.match(r"STATUS: (\S*)\nMESSAGE: (.*?)\n?\Z", output, re.S)
    if not match:
        raise AssertionError(f"unexpected argocd output: {output!r}")
    return match.group(1), match.group(2)
