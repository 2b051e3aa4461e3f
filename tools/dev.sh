#!/usr/bin/env bash
# Bring up the local stack (control plane, PostgreSQL, Redis, Prometheus), install the CRDs, apply
# examples/ and run the operator on them until Ctrl-C. Prints how to point kubectl at it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/tools/setup.sh"
cd "$repo"
exec perf-operator dev --examples examples "$@"
