#!/usr/bin/env bash
# Try perf-operator on a laptop with Docker: creates a kind cluster, builds and loads the
# operator image, installs the operator (cluster-wide overlay, two replicas, one leader),
# PostgreSQL, Redis and Prometheus in namespace perf-demo, and a demo profile with two tenants.
#
# Needs: docker, kind (https://kind.sigs.k8s.io), kubectl >= 1.27, openssl.
#   examples/kind/install.sh            # cluster "perf-operator"
#   CLUSTER_NAME=demo examples/kind/install.sh
#   kind delete cluster --name perf-operator   # remove everything
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cluster="${CLUSTER_NAME:-perf-operator}"
image="perf-operator:dev"
demo_namespace="perf-demo"

log() { printf '==> %s\n' "$*"; }

for tool in docker kind kubectl openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done

if kind get clusters | grep -qx "$cluster"; then
  log "kind cluster $cluster exists; reusing it"
else
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config "$here/cluster.yaml" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

log "building $image"
docker build -t "$image" "$repo"
kind load docker-image "$image" --name "$cluster"

log "installing the operator (CRDs, RBAC, Deployment)"
kubectl apply --server-side -k "$here/operator"
kubectl wait --for=condition=Established --timeout=60s \
  crd/performanceprofiles.perf.idp.io crd/tenantquotas.perf.idp.io
kubectl -n perf-operator-system rollout status deployment/perf-operator --timeout=180s

log "installing PostgreSQL, Redis and Prometheus in $demo_namespace"
kubectl apply -f "$here/services/namespace.yaml"
create_secret() {  # name key=value...: created once, never rotated by a re-run
  local name="$1"; shift
  if ! kubectl -n "$demo_namespace" get secret "$name" >/dev/null 2>&1; then
    local args=()
    for pair in "$@"; do args+=("--from-literal=$pair"); done
    kubectl -n "$demo_namespace" create secret generic "$name" "${args[@]}"
  fi
}
# The server's superuser stays with the server; the operator gets its own login, no superuser
# (sql/operator-role.sql, docs/deploy.md "The PostgreSQL login").
create_secret pg-superuser username=postgres "password=$(openssl rand -hex 16)"
create_secret pg-credentials username=perf_operator "password=$(openssl rand -hex 16)"
create_secret redis-credentials "password=$(openssl rand -hex 16)"
kubectl -n "$demo_namespace" create configmap perf-operator-alerts \
  --from-file=perf-operator-alerts.yaml="$repo/manifests/prometheus/perf-operator-alerts.yaml" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -k "$here/services"
for deployment in postgres redis prometheus; do
  kubectl -n "$demo_namespace" rollout status "deployment/$deployment" --timeout=180s
done

log "creating the operator's PostgreSQL login (no superuser)"
operator_password="$(kubectl -n "$demo_namespace" get secret pg-credentials \
  -o jsonpath='{.data.password}' | base64 -d)"
pg() { kubectl -n "$demo_namespace" exec -i deployment/postgres -- psql -U postgres -v ON_ERROR_STOP=1 "$@"; }
if ! pg -d postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = 'perf_operator'" | grep -q 1; then
  pg -d postgres -c "CREATE ROLE app_owner NOLOGIN" -c "ALTER DATABASE idp OWNER TO app_owner"
  pg -d postgres -v operator=perf_operator -v "password=$operator_password" -v owner=app_owner \
    < "$repo/sql/operator-role.sql"
  pg -d idp -v operator=perf_operator < "$repo/sql/operator-database.sql"
fi

log "applying the demo profile and tenants"
kubectl -n "$demo_namespace" apply -f "$here/demo.yaml"
kubectl -n "$demo_namespace" wait --for=condition=Ready --timeout=120s \
  performanceprofile/platform tenantquota/hobby-labs tenantquota/initech || true

kubectl -n "$demo_namespace" get performanceprofiles,tenantquotas
cat <<NEXT

perf-operator is running in perf-operator-system (2 replicas, one leader):
  kubectl -n perf-operator-system get lease perf-operator-leader
  kubectl -n perf-operator-system logs deployment/perf-operator
Prometheus (operator metrics and alerts):
  kubectl -n $demo_namespace port-forward service/prometheus 9090
  open http://localhost:9090/alerts
Grafana dashboard to import: manifests/grafana/perf-operator-dashboard.json
NEXT
