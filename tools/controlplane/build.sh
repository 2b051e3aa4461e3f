#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy and cache
# them per version outside the clone. Prints the bin directory. A second run with the same versions
# does nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/controlplane/versions.env
source "$here/versions.env"
cache="${PERF_OPERATOR_CACHE:-$HOME/.cache/perf-operator}/controlplane/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
bin="$cache/bin"
commands=(kube-apiserver kube-controller-manager kubectl etcd)
missing=()
for c in "${commands[@]}"; do [[ -x "$bin/$c" ]] || missing+=("$c"); done
if [[ ${#missing[@]} -eq 0 ]]; then echo "$bin"; exit 0; fi

mkdir -p "$bin"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ver_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver_flags+=" -X $pkg.gitVersion=${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  ver_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
cd "$here"
for c in "${missing[@]}"; do
  case "$c" in
    etcd) pkg=./cmd/etcd ;;
    *) pkg="k8s.io/kubernetes/cmd/$c" ;;
  esac
  echo "building $c ($pkg)" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ver_flags" -o "$bin/$c.tmp" "$pkg"
  mv "$bin/$c.tmp" "$bin/$c"
done
echo "$bin"
