"""The webhook's serving certificate in a cluster, shared by every replica through a Secret.

The API server must trust whichever replica the Service routes a review to, so all replicas
serve one certificate, and the ValidatingWebhookConfiguration carries its CA. The first
replica to start generates both and creates the Secret; a replica that loses that race (409)
reads the winner's. Only the CA certificate is kept, not its key: nothing else is ever signed.
No cert-manager needed; one who runs it can pass ``--webhook-cert/--webhook-key/--webhook-ca``
instead.
"""
from __future__ import annotations

import base64
import datetime
import pathlib
import tempfile
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..kube.client import api_client

#: Ten years: rotating means deleting the Secret and restarting the replicas.
VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class ServingFiles:
    cert: pathlib.Path
    key: pathlib.Path
    ca: pathlib.Path


def service_hosts(namespace: str, service: str) -> tuple[str, ...]:
    """The names the API server may call a Service by."""
    return (f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}", service)


async def shared_serving_files(namespace: str, service: str, directory: pathlib.Path
                               ) -> ServingFiles:
    """Write the shared certificate, its key and CA into ``directory`` (created first by
    whichever replica gets there first, as the Secret ``<service>-tls``)."""
    api = client.CoreV1Api(await api_client())
    name = f"{service}-tls"
    try:
        secret = await api.read_namespaced_secret(name, namespace)
        data = secret.data
    except ApiException as err:
        if err.status != 404:
            raise
        data = _generate(service_hosts(namespace, service))
        try:
            await api.create_namespaced_secret(namespace, {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "perf-operator"}},
                "data": data})
        except ApiException as err:
            if err.status != 409:
                raise
            data = (await api.read_namespaced_secret(name, namespace)).data
    files = ServingFiles(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    for path, key in ((files.cert, "tls.crt"), (files.key, "tls.key"), (files.ca, "ca.crt")):
        path.write_bytes(base64.b64decode(data[key]))
        path.chmod(0o600)
    return files


def _generate(hosts: tuple[str, ...]) -> dict[str, str]:
    from ..devstack.certs import CertificateAuthority

    with tempfile.TemporaryDirectory() as scratch:
        ca = CertificateAuthority(pathlib.Path(scratch), "perf-operator-webhook-ca",
                                  validity=VALIDITY)
        pair = ca.issue("webhook", hosts[0], server=True, hosts=hosts)
        return {key: base64.b64encode(path.read_bytes()).decode()
                for key, path in (("tls.crt", pair.cert), ("tls.key", pair.key),
                                  ("ca.crt", ca.pair.cert))}
