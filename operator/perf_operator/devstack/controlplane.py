"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries are built from the Go module proxy by ``tools/controlplane/build.sh`` (cached per
version outside the clone); ``PERF_OPERATOR_CONTROLPLANE_BIN`` points at a directory that
already holds them.
"""
from __future__ import annotations

import os
import pathlib
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import yaml

from .certs import CertificateAuthority, CertPair, service_account_keys
from .processes import ManagedProcess, Startable, free_port, wait_until

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")

#: Controllers that make the API behave like a cluster's: namespaces are really deleted, owned
#: objects are garbage-collected, every namespace gets its default ServiceAccount, aggregated
#: ClusterRoles are filled in.
CONTROLLERS = ",".join([
    "namespace-controller", "garbage-collector-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
])


def repository_root() -> pathlib.Path | None:
    for parent in pathlib.Path(__file__).resolve().parents:
        if (parent / "tools" / "controlplane" / "build.sh").is_file():
            return parent
    return None


def built_binaries(script: str, preset_variable: str, *args: str) -> pathlib.Path:
    """The bin directory that ``tools/<script> args`` prints last (it builds on first use and
    caches per version); the environment variable ``preset_variable`` may name one instead."""
    preset = os.environ.get(preset_variable)
    if preset:
        return pathlib.Path(preset)
    root = repository_root()
    if root is None:
        raise RuntimeError(f"set {preset_variable}: no tools/{script} found")
    out = subprocess.run(["bash", str(root / "tools" / script), *args],
                         check=True, stdout=subprocess.PIPE, text=True)
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


def control_plane_binaries() -> pathlib.Path:
    """The directory with the control-plane binaries, building them on first use."""
    return built_binaries("controlplane/build.sh", "PERF_OPERATOR_CONTROLPLANE_BIN")


@dataclass
class ControlPlane(Startable):
    """etcd + kube-apiserver + kube-controller-manager, with an admin kubeconfig."""

    workdir: pathlib.Path
    bin_dir: pathlib.Path = field(default_factory=control_plane_binaries)
    processes: list[ManagedProcess] = field(default_factory=list)
    api_port: int = 0
    kubeconfig: pathlib.Path = field(init=False)

    def __post_init__(self) -> None:
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.pki.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubectl(self) -> str:
        return str(self.bin_dir / "kubectl")

    def _start(self) -> None:
        ca = CertificateAuthority(self.pki)
        self.ca = ca
        serving = ca.issue("apiserver", "kube-apiserver", server=True)
        admin = ca.issue("admin", "perf-operator-admin", organization="system:masters", client=True)
        kcm = ca.issue("controller-manager", "system:kube-controller-manager", client=True)
        etcd_client = ca.issue("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True)
        sa = service_account_keys(self.pki)
        self.admin = admin

        etcd_port, etcd_peer = free_port(), free_port()
        etcd_dir = self.workdir / "etcd"
        etcd = self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name", "devstack", "--data-dir", str(etcd_dir),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"devstack=http://127.0.0.1:{etcd_peer}",
            "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
            "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3),
            "--log-level", "warn",
        ])
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), process=etcd,
                   timeout=60, what="etcd health")
        del etcd_client  # etcd listens on plain loopback HTTP; the client cert is not needed

        self.api_port = free_port()
        apiserver = self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={self.pki}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.pair.cert}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=0",
        ])
        wait_until(self._readyz, process=apiserver, timeout=120,
                   what="kube-apiserver /readyz")
        self._write_kubeconfig(self.kubeconfig, admin, "admin")
        kcm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
        self._write_kubeconfig(kcm_kubeconfig, kcm, "controller-manager")
        controller_manager = self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={ca.pair.cert}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--cert-dir={self.pki / 'kcm'}",
            "--concurrent-gc-syncs=5", "--concurrent-namespace-syncs=5",
            "--v=0",
        ])
        wait_until(self._controller_manager_active, process=controller_manager,
                   timeout=60, what="kube-controller-manager")

    def restart_apiserver(self) -> None:
        """SIGKILL kube-apiserver, then start it again in place: the same argv (port, etcd and
        its data, certificates, flags), so every client's kubeconfig stays valid; returns once
        it is ready again. For fault-injection runs (bench/chaos.py)."""
        old = next(p for p in self.processes if p.name == "kube-apiserver")
        old.kill()
        old.stop()  # reaps it and closes its log; the new one appends to the same file
        new = ManagedProcess(old.name, old.argv, self.logs)
        self.processes[self.processes.index(old)] = new
        wait_until(self._readyz, process=new, timeout=120,
                   what="kube-apiserver /readyz after a restart")

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.logs)
        self.processes.append(proc)
        return proc

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.pair.cert))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return ctx

    def run_kubectl(self, *args: str, input: str | None = None, check: bool = True
                    ) -> subprocess.CompletedProcess:
        """kubectl as the admin, output captured."""
        return subprocess.run([self.kubectl, f"--kubeconfig={self.kubeconfig}", *args],
                              input=input, text=True, check=check, capture_output=True)

    def install_crds(self, directory: pathlib.Path, field_manager: str = "perf-operator-dev"
                     ) -> None:
        """Apply every CRD in ``directory`` server-side and wait until all are Established.
        ``kubectl wait`` fails outright on a CRD whose status has no conditions yet, so it is
        retried until the API server has filled them in."""
        kubectl = [self.kubectl, f"--kubeconfig={self.kubeconfig}"]
        subprocess.run(kubectl + ["apply", "--server-side", f"--field-manager={field_manager}",
                                  "-f", str(directory)], check=True, capture_output=True)
        wait_until(lambda: subprocess.run(
            kubectl + ["wait", "--for=condition=Established", "--timeout=10s", "crd", "--all"],
            capture_output=True).returncode == 0, timeout=60, what="CRDs to be Established",
            interval=0.5)

    def serving_certificate(self, stem: str, common_name: str) -> CertPair:
        """A TLS serving certificate for 127.0.0.1 signed by the stack's CA (for webhooks the
        API server calls); the CA is ``self.ca.pair.cert``."""
        return self.ca.issue(stem, common_name, server=True)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl_context(),
                                        timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _readyz(self) -> bool:
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def _controller_manager_active(self) -> bool:
        """The default ServiceAccount appears once the serviceaccount controller runs."""
        try:
            return self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
        except OSError:
            return False

    def _write_kubeconfig(self, path: pathlib.Path, pair: CertPair, user: str) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "devstack", "cluster": {
                "server": self.server, "certificate-authority": str(self.ca.pair.cert)}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(pair.cert), "client-key": str(pair.key)}}],
            "contexts": [{"name": "devstack", "context": {"cluster": "devstack", "user": user}}],
            "current-context": "devstack",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def token_kubeconfig(self, path: pathlib.Path, token: str, namespace: str = "default") -> None:
        """A kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "devstack", "cluster": {
                "server": self.server, "certificate-authority": str(self.ca.pair.cert)}}],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": "devstack", "context": {
                "cluster": "devstack", "user": "token", "namespace": namespace}}],
            "current-context": "devstack",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
