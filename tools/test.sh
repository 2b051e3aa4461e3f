#!/usr/bin/env bash
# The whole test suite: the type check of operator/ (mypy, configured in pyproject.toml), then
# unit tests and end-to-end tests against the real local stack that the fixtures start (control
# plane, PostgreSQL, Redis, Prometheus). Installs what is missing first.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/tools/setup.sh"
cd "$repo"
python3 -m mypy
exec python3 -m pytest -q -p no:cacheprovider "$@" tests
