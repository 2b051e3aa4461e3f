#!/usr/bin/env bash
# Install everything the local stack and the tests need, idempotently: Debian packages
# (PostgreSQL 15 with hypopg, Redis 7, Prometheus, Lua 5.1 (Argo CD's) and 5.4, shellcheck),
# the Python package with its test extra, and the control-plane binaries built from the Go
# module proxy (cached per version).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

packages=(postgresql-15 postgresql-contrib postgresql-15-hypopg redis-server redis-tools
          prometheus lua5.1 lua5.4 shellcheck git
          chromium)  # chromium: renders kubectl perf's HTML report in its screenshot test
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e "$repo[test]"
bash "$repo/tools/controlplane/build.sh" >/dev/null
bash "$repo/tools/clients/build.sh" >/dev/null
