"""Argo CD, headless, against the stack's API server: its application controller and repo-server
as local processes with a Redis of their own, and local bare git repositories as sources.

Both are built from the Go module proxy by ``tools/clients/build.sh``, which also copies the
Argo CD CRDs and the stock ``argocd-cm`` from the same module. ``ARGOCD_FAKE_IN_CLUSTER``
makes the controller treat the kubeconfig's cluster as the in-cluster one
(``https://kubernetes.default.svc``), as it would be inside a pod. Our health checks are
registered the way users register them: ``kubectl apply --server-side -k
manifests/argocd/health`` onto the installed ``argocd-cm``.
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
from dataclasses import dataclass, field
from typing import Any

import yaml

from .controlplane import ControlPlane, built_binaries, repository_root
from .processes import ManagedProcess, Startable, free_port, port_is_open, wait_until
from .services import RedisServer

ARGOCD_NAMESPACE = "argocd"
#: What Argo CD's own API server creates on start-up; headless, the launcher creates it.
DEFAULT_PROJECT = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
    "metadata": {"name": "default", "namespace": ARGOCD_NAMESPACE},
    "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
             "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]},
}
#: How often the controller compares every Application with git (Argo CD's default is 3 min;
#: the commit tests want seconds).
APP_RESYNC_SECONDS = 5


def argocd_binaries() -> pathlib.Path:
    return built_binaries("clients/build.sh", "PERF_OPERATOR_ARGOCD_BIN", "argocd")


def kustomize_binaries() -> pathlib.Path:
    return built_binaries("clients/build.sh", "PERF_OPERATOR_KUSTOMIZE_BIN", "kustomize")


@dataclass
class GitRepository:
    """A bare repository served as ``file://`` and a work tree that commits and pushes to it."""

    root: pathlib.Path

    @property
    def bare(self) -> pathlib.Path:
        return self.root / "origin.git"

    @property
    def work_tree(self) -> pathlib.Path:
        return self.root / "work"

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def _git(self, *args: str, cwd: pathlib.Path | None = None) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "perf-operator tests",
               "GIT_AUTHOR_EMAIL": "tests@perf-operator.invalid",
               "GIT_COMMITTER_NAME": "perf-operator tests",
               "GIT_COMMITTER_EMAIL": "tests@perf-operator.invalid"}
        return subprocess.run(["git", *args], cwd=cwd or self.work_tree, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def create(self) -> GitRepository:
        self.root.mkdir(parents=True, exist_ok=True)
        self._git("init", "--bare", "--initial-branch=main", str(self.bare), cwd=self.root)
        self._git("init", "--initial-branch=main", str(self.work_tree), cwd=self.root)
        self._git("remote", "add", "origin", self.url)
        return self

    def commit(self, message: str, files: dict[str, str] | None = None,
               remove: tuple[str, ...] = ()) -> str:
        """Write ``files`` (path -> text), delete ``remove``, commit, push; the new revision."""
        for relative, text in (files or {}).items():
            path = self.work_tree / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for relative in remove:
            self._git("rm", "-r", "-q", relative)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        self._git("push", "-q", "origin", "main")
        return self._git("rev-parse", "HEAD")


def application(name: str, repo_url: str, path: str, namespace: str, *,
                sync_options: tuple[str, ...] = ("ServerSideApply=true",),
                finalizer: bool = True) -> dict[str, Any]:
    """An Application as docs/gitops.md shows it: automated sync with prune and self-heal."""
    metadata: dict[str, Any] = {"name": name, "namespace": ARGOCD_NAMESPACE}
    if finalizer:
        metadata["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": metadata,
            "spec": {"project": "default",
                     "source": {"repoURL": repo_url, "targetRevision": "main", "path": path},
                     "destination": {"server": "https://kubernetes.default.svc",
                                     "namespace": namespace},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                                    "syncOptions": list(sync_options)}}}


@dataclass
class ArgoCD(Startable):
    """argocd-application-controller and argocd-repo-server on the stack's API server."""

    workdir: pathlib.Path
    control_plane: ControlPlane
    bin_dir: pathlib.Path = field(default_factory=argocd_binaries)
    kustomize_dir: pathlib.Path = field(default_factory=kustomize_binaries)
    redis: RedisServer | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    repo_server_port: int = field(default_factory=free_port)
    controller_metrics_port: int = field(default_factory=free_port)

    @property
    def manifests(self) -> pathlib.Path:
        return self.bin_dir.parent / "manifests"

    @property
    def argocd(self) -> str:
        return str(self.bin_dir / "argocd")

    def _apply(self, documents: list[dict], field_manager: str) -> None:
        self.control_plane.run_kubectl("apply", "--server-side",
                                       f"--field-manager={field_manager}", "-f", "-",
                                       input=yaml.safe_dump_all(documents))

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("home", "tmp"):
            (self.workdir / sub).mkdir(exist_ok=True)
        self.redis = RedisServer(self.workdir / "redis")
        self.redis.start()
        self.control_plane.run_kubectl("create", "namespace", ARGOCD_NAMESPACE)
        self.control_plane.install_crds(self.manifests / "crds", field_manager="argocd-install")
        config_map = yaml.safe_load((self.manifests / "argocd-cm.yaml").read_text())
        config_map["metadata"]["namespace"] = ARGOCD_NAMESPACE
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "argocd-secret", "namespace": ARGOCD_NAMESPACE,
                               "labels": {"app.kubernetes.io/part-of": "argocd"}},
                  "stringData": {"server.secretkey": secrets.token_urlsafe(32)}}
        self._apply([config_map, secret, DEFAULT_PROJECT], "argocd-install")
        self.register_health_checks()
        env = {**os.environ, "ARGOCD_FAKE_IN_CLUSTER": "true",
               "REDIS_PASSWORD": self.redis.password,
               "KUBECONFIG": str(self.control_plane.kubeconfig),
               "HOME": str(self.workdir / "home"), "TMPDIR": str(self.workdir / "tmp"),
               # kustomize, and the git-verify-wrapper.sh the repo-server runs
               "PATH": f"{self.bin_dir}:{self.kustomize_dir}:"
                       f"{os.environ.get('PATH', '/usr/bin:/bin')}",
               "ARGOCD_GPG_ENABLED": "false"}
        redis = f"127.0.0.1:{self.redis.port}"
        repo_server = self._spawn("argocd-repo-server", [
            str(self.bin_dir / "argocd-repo-server"), "--address=127.0.0.1",
            f"--port={self.repo_server_port}", "--metrics-address=127.0.0.1",
            f"--metrics-port={free_port()}", "--disable-tls", "--client-ca-path=",
            f"--redis={redis}",
            "--revision-cache-expiration=1s", "--loglevel=warn", "--logformat=text",
        ], env)
        wait_until(lambda: port_is_open(self.repo_server_port), process=repo_server,
                   timeout=60, what="argocd-repo-server")
        controller = self._spawn("argocd-application-controller", [
            str(self.bin_dir / "argocd-application-controller"),
            f"--kubeconfig={self.control_plane.kubeconfig}", f"--namespace={ARGOCD_NAMESPACE}",
            f"--repo-server=127.0.0.1:{self.repo_server_port}", "--repo-server-plaintext",
            f"--redis={redis}", f"--metrics-port={self.controller_metrics_port}",
            f"--app-resync={APP_RESYNC_SECONDS}", "--app-resync-jitter=0",
            "--status-processors=4", "--operation-processors=4",
            # each resource's health in the Application's status, where kubectl (and the
            # tests) read it, instead of only in Argo CD's Redis
            "--persist-resource-health",
            "--loglevel=warn", "--logformat=text",
        ], env)
        wait_until(lambda: port_is_open(self.controller_metrics_port), process=controller,
                   timeout=120, what="argocd-application-controller")

    def register_health_checks(self) -> None:
        """What docs/gitops.md tells users: our keys applied server-side onto argocd-cm."""
        root = repository_root()
        if root is None:
            raise RuntimeError("manifests/argocd/health not found")
        self.control_plane.run_kubectl("apply", "--server-side",
                                       "--field-manager=perf-operator-health", "-k",
                                       str(root / "manifests" / "argocd" / "health"))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.workdir, env=env, cwd=self.workdir)
        self.processes.append(proc)
        return proc

    def apply_application(self, app: dict[str, Any]) -> None:
        self._apply([app], "perf-operator-dev")

    def application_status(self, name: str) -> dict[str, Any]:
        """The Application's status as Argo CD computed it (empty before its first pass)."""
        result = self.control_plane.run_kubectl("get", "applications.argoproj.io", name, "-n",
                                                ARGOCD_NAMESPACE, "-o", "json", check=False)
        if result.returncode != 0:
            return {}
        return json.loads(result.stdout).get("status") or {}

    def refresh(self, name: str) -> None:
        """Ask for an immediate comparison with git, as Argo CD's git webhook does."""
        self.control_plane.run_kubectl("annotate", "applications.argoproj.io", name, "-n",
                                       ARGOCD_NAMESPACE, "--overwrite",
                                       "argocd.argoproj.io/refresh=normal")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.redis:
            self.redis.stop()
            self.redis = None

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.processes)
