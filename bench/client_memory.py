"""Which Kubernetes client: memory and event-loop blocking of the official client vs its asyncio
twin, measured against a real API server (the local stack).

Prints, per client, the process's RSS growth after importing the client and listing namespaces
100 times, and how long the event loop was blocked during those calls. Needs the ``kubernetes``
package too (``pip install kubernetes``), which the operator itself does not use.

    python bench/client_memory.py
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from perf_operator.devstack.controlplane import ControlPlane

CHILD = r"""
import asyncio, json, os, resource, sys, time

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

async def heartbeat(stop, gaps):
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now

async def main(kind):
    base = rss_kib()
    gaps, stop = [], asyncio.Event()
    if kind == "kubernetes_asyncio":
        from kubernetes_asyncio import client, config
        await config.load_kube_config()
        api = client.CoreV1Api(client.ApiClient())
        beat = asyncio.create_task(heartbeat(stop, gaps))
        t = time.perf_counter()
        for _ in range(100):
            await api.list_namespace()
    else:
        from kubernetes import client, config
        config.load_kube_config()
        api = client.CoreV1Api()
        beat = asyncio.create_task(heartbeat(stop, gaps))
        await asyncio.sleep(0)
        t = time.perf_counter()
        for _ in range(100):
            api.list_namespace()  # what a handler calling the sync client directly does
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - t
    stop.set(); await beat
    print(json.dumps({"client": kind, "rss_growth_mib": (rss_kib() - base) / 1024,
                      "seconds_100_calls": elapsed, "max_loop_block_ms": max(gaps) * 1000}))

asyncio.run(main(sys.argv[1]))
"""


def main() -> int:
    root = pathlib.Path(tempfile.mkdtemp(prefix="client-bench-"))
    cp = ControlPlane(root)
    cp.start()
    try:
        env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
        for kind in ("kubernetes", "kubernetes_asyncio"):
            runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, kind], env=env,
                                              check=True, capture_output=True,
                                              text=True).stdout) for _ in range(3)]
            runs.sort(key=lambda r: r["rss_growth_mib"])
            med = runs[1]
            print(f"{kind:20s} median of 3: RSS +{med['rss_growth_mib']:.1f} MiB, "
                  f"100 list calls {med['seconds_100_calls']:.2f} s, "
                  f"longest event-loop block {med['max_loop_block_ms']:.1f} ms")
    finally:
        cp.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
