"""Running Lua scripts with a real interpreter from Debian, feeding them Python values."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

HARNESS = pathlib.Path(__file__).with_name("argocd_health.lua")


def lua_literal(value: Any) -> str:
    """A Lua expression for a JSON-like Python value (strings as escaped UTF-8 bytes)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}"
                          for b in value.encode())
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def interpreters() -> list[str]:
    """lua5.1 is what Argo CD's gopher-lua implements; lua5.4 is what the project installs."""
    return [name for name in ("lua5.1", "lua5.4") if shutil.which(name)]


def argocd_health(script: pathlib.Path, obj: dict[str, Any], *, now: int,
                  open_libs: bool = True, interpreter: str = "lua5.4") -> tuple[str, str]:
    """(status, message) that ``script`` returns for ``obj`` at Unix time ``now``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(f"obj = {lua_literal(obj)}\nNOW = {now}\n"
                     f"OPEN_LIBS = {lua_literal(open_libs)}\n")
    try:
        result = subprocess.run([interpreter, str(HARNESS), str(script), handle.name],
                                capture_output=True, text=True, timeout=30)
    finally:
        pathlib.Path(handle.name).unlink()
    if result.returncode != 0:
        raise AssertionError(f"{interpreter} failed: {result.stderr}")
    status, _, message = result.stdout.rstrip("\n").partition("\t")
    return status, message
