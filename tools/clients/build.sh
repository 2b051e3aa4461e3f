#!/usr/bin/env bash
# Build the clients the launcher can add (Argo CD, kustomize for its repo-server, the Prometheus
# Operator) from the Go module proxy and cache them per version outside the clone, with Argo CD's
# own manifests (CRDs, argocd-cm) beside its binaries. Usage: build.sh [argocd|kustomize|
# prometheus-operator]... (default: all); prints one bin directory per client. A second run with
# the same versions does nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/clients/versions.env
source "$here/versions.env"
root="${PERF_OPERATOR_CACHE:-$HOME/.cache/perf-operator}/clients"
export CGO_ENABLED=0

# Argo CD is one main package that dispatches on the name it is run as.
build_argocd() {
  local dir="$root/argocd-${ARGOCD_VERSION}" bin="$root/argocd-${ARGOCD_VERSION}/bin"
  if [[ -x "$bin/argocd" && -x "$bin/git-verify-wrapper.sh" && -d "$dir/manifests/crds" ]]; then
    echo "$bin"; return
  fi
  mkdir -p "$bin"
  if [[ ! -x "$bin/argocd" ]]; then
    echo "building argocd ${ARGOCD_VERSION} with ${ARGOCD_TOOLCHAIN}" >&2
    (cd "$here/argocd" && GOTOOLCHAIN="$ARGOCD_TOOLCHAIN" go build -trimpath \
      -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" \
      -o "$bin/argocd.tmp" github.com/argoproj/argo-cd/v3/cmd)
    mv "$bin/argocd.tmp" "$bin/argocd"
  fi
  local n src
  for n in argocd-application-controller argocd-repo-server; do ln -sf argocd "$bin/$n"; done
  src="$(cd "$here/argocd" && GOTOOLCHAIN="$ARGOCD_TOOLCHAIN" go list -m -f '{{.Dir}}' \
    github.com/argoproj/argo-cd/v3)"
  # The repo-server runs these scripts (its image has them in /usr/local/bin).
  install -m 0755 "$src/hack/git-verify-wrapper.sh" "$src/hack/gpg-wrapper.sh" "$bin/"
  rm -rf "$dir/manifests.tmp"; mkdir -p "$dir/manifests.tmp/crds"
  cp "$src"/manifests/crds/*-crd.yaml "$dir/manifests.tmp/crds/"
  cp "$src/manifests/base/config/argocd-cm.yaml" "$dir/manifests.tmp/"
  chmod -R u+w "$dir/manifests.tmp"
  rm -rf "$dir/manifests"; mv "$dir/manifests.tmp" "$dir/manifests"
  echo "$bin"
}

build_one() {  # name version package binary
  local bin="$root/$1-$2/bin"
  if [[ -x "$bin/$4" ]]; then return; fi
  mkdir -p "$bin"
  echo "building $1 $2 ($3)" >&2
  (cd "$here/$1" && go build -trimpath -ldflags "-s -w" -o "$bin/$4.tmp" "$3")
  mv "$bin/$4.tmp" "$bin/$4"
}

# The operator's CRDs (monitoring.coreos.com) come from the same module, next to the binary.
build_prometheus_operator() {
  local module=github.com/prometheus-operator/prometheus-operator
  local dir="$root/prometheus-operator-${PROMETHEUS_OPERATOR_VERSION}"
  build_one prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" "$module/cmd/operator" \
    prometheus-operator
  if [[ ! -d "$dir/crds" ]]; then
    local src
    src="$(cd "$here/prometheus-operator" && go list -m -f '{{.Dir}}' "$module")"
    mkdir -p "$dir/crds.tmp"
    cp "$src"/example/prometheus-operator-crd/*.yaml "$dir/crds.tmp/"
    chmod -R u+w "$dir/crds.tmp"
    mv "$dir/crds.tmp" "$dir/crds"
  fi
  echo "$dir/bin"
}

clients=("$@"); [[ ${#clients[@]} -gt 0 ]] || clients=(kustomize prometheus-operator argocd)
for c in "${clients[@]}"; do
  case "$c" in
    argocd) build_argocd ;;
    kustomize)
      build_one kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 kustomize
      echo "$root/kustomize-${KUSTOMIZE_VERSION}/bin" ;;
    prometheus-operator) build_prometheus_operator ;;
    *) echo "unknown client: $c" >&2; exit 2 ;;
  esac
done
