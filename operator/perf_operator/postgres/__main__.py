"""``python -m perf_operator.postgres``: reconcile the indexes of a PerformanceProfile YAML
against one database until they are all Ready, without Kubernetes.

The same observe/plan/job code the operator runs, in a process of its own: the crash tests
SIGKILL it in the middle of a build and check that the next run converges. The connection
comes from the command line and the password from ``PGPASSWORD`` (never from argv, which any
local user can read); Events are printed as JSON lines, one line of phases per reconcile.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from ..api import PerformanceProfileSpec
from ..scrub import scrub
from .connect import TargetKey, close_all, open_target
from .index_builds import BuildOptions, reconcile_indexes, wait_for_jobs
from .indexes import Phase


class PrintedEvents:
    """Events as JSON lines on stdout."""

    def __init__(self, write: Callable[[str], Any]) -> None:
        self.write = write

    def normal(self, reason: str, message: str) -> None:
        self.write(json.dumps({"event": reason, "type": "Normal", "message": scrub(message)}))

    def warning(self, reason: str, message: str) -> None:
        self.write(json.dumps({"event": reason, "type": "Warning", "message": scrub(message)}))


async def converge(args: argparse.Namespace) -> int:
    with open(args.profile, encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    database = PerformanceProfileSpec.model_validate(document["spec"]).database
    if database is None:
        raise SystemExit(f"{args.profile}: the profile has no database section")
    options = BuildOptions.from_spec(database)
    namespace, _, profile = args.owner.partition("/")
    # The server is the command line's, vouched for by whoever runs it (not a profile's inline
    # connection): only the connection policy's always-refused addresses apply.
    target = await open_target(TargetKey(namespace, profile, args.host, args.port, args.dbname,
                                         args.user), os.environ.get("PGPASSWORD", ""),
                               granted_by="command line")
    events = PrintedEvents(lambda line: print(line, flush=True))
    try:
        while True:
            result = await reconcile_indexes(target, database.indexes, options, events)
            phases = {r.name: r.phase.value for r in result.plan.reports}
            print(json.dumps({"phases": phases, "jobs": len(result.plan.jobs),
                              "running": result.running}), flush=True)
            if args.once or (set(phases.values()) <= {Phase.READY.value}
                             and not result.running and not result.plan.jobs):
                await wait_for_jobs(target)
                return 0
            await asyncio.sleep(args.interval)
    finally:
        await close_all()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf_operator.postgres",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, help="PerformanceProfile YAML file")
    parser.add_argument("--owner", required=True, help="namespace/name recorded as the owner")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--interval", type=float, default=0.2,
                        help="seconds between reconciles")
    parser.add_argument("--once", action="store_true", help="one reconcile, then wait for jobs")
    return asyncio.run(converge(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
