"""Every connection goes to the address the connection policy vetted: the name is never
resolved a second time by a client, so a DNS answer that changes after the check (rebinding)
cannot send a request, and the profile's credentials, elsewhere. Prometheus over HTTP
(``optimizer.signals.AdmittedResolver``) against the stack's real Prometheus; Redis over TLS
(``redis.connect.PinnedSSLConnection``: the certificate is still checked against the name)
against a real redis-server serving TLS only."""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import urllib.parse

import pytest

from perf_operator.devstack.certs import CertificateAuthority
from perf_operator.devstack.processes import ManagedProcess, free_port, wait_until
from perf_operator.optimizer.signals import PrometheusEndpoint
from perf_operator.redis import connect as redis_connect
from perf_operator.targets import policy

pytestmark = pytest.mark.e2e

#: A name no DNS server knows (RFC 6761): only the policy's answers below can resolve it.
NAME = "server.perf-operator.invalid"


@pytest.fixture
def dns(monkeypatch):
    """The policy's DNS lookups answer from this list (the answer of the moment), and inline
    hosts named NAME are allowed."""
    answers: list[str] = []
    lookups: list[str] = []

    async def resolve(host: str, port: int):
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in answers[-1:]] if host == NAME else []

    monkeypatch.setattr(policy, "_resolve", resolve)
    policy.configure(policy.ConnectionPolicy.from_settings(True, [NAME]))
    yield answers, lookups
    policy.configure(policy.ConnectionPolicy.from_env())


async def test_requests_go_to_the_vetted_address_and_a_rebound_name_is_refused(stack, dns,
                                                                              monkeypatch):
    answers, lookups = dns
    port = urllib.parse.urlsplit(stack.prometheus.url).port
    url = f"http://{NAME}:{port}"
    now = datetime.datetime.now(datetime.timezone.utc)

    answers.append("127.0.0.1")
    await policy.admit_url(url, granted_by=None)
    client = PrometheusEndpoint(url, 5).connect()
    try:
        (sample,) = await client.query("vector(1)", now)
    finally:
        await client.aclose()
    assert sample["value"][1] == "1"  # reached, though no DNS server knows the name
    assert lookups == [NAME]  # once, by the policy; the HTTP client asked nobody

    # The name now points at the cloud metadata service; once the admission expires, the next
    # connection is checked again and refused before anything is sent.
    answers.append("169.254.169.254")
    monkeypatch.setattr(policy, "ADMISSION_TTL_SECONDS", 0.0)
    policy._admitted.clear()
    client = PrometheusEndpoint(url, 5).connect()
    try:
        with pytest.raises(policy.ConnectionRefused) as refused:
            await client.query("vector(1)", now)
    finally:
        await client.aclose()
    assert "169.254.169.254" in str(refused.value)
    assert lookups == [NAME, NAME]


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks TLS only, with a certificate for NAME from a throw-away CA;
    its port and the CA's certificate."""
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("redis", NAME, server=True, hosts=[NAME])
    port = free_port()
    config = tmp_path / "redis.conf"
    config.write_text("\n".join([
        "bind 127.0.0.1", "port 0", f"tls-port {port}", f"tls-cert-file {pair.cert}",
        f"tls-key-file {pair.key}", f"tls-ca-cert-file {ca.pair.cert}", "tls-auth-clients no",
        f"dir {tmp_path}", 'save ""', "daemonize no", "loglevel warning", ""]))
    process = ManagedProcess("redis-tls", ["redis-server", str(config)], tmp_path)
    trusting = ssl.create_default_context(cafile=str(ca.pair.cert))

    def serving() -> bool:
        process.check_alive()
        try:
            with trusting.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=1),
                                      server_hostname=NAME):
                return True
        except OSError:
            return False

    wait_until(serving, timeout=30, what="Redis with TLS")
    yield port, ca.pair.cert
    process.stop()


async def test_redis_tls_goes_to_the_vetted_address_and_checks_the_name(dns, tls_redis,
                                                                        monkeypatch):
    answers, lookups = dns
    port, ca_cert = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_cert))  # the client trusts the test CA
    answers.append("127.0.0.1")
    target = redis_connect.RedisTarget(namespace="team-a", host=NAME, port=port, db=0,
                                       tls=True, secret=None, password_key=None,
                                       username_key=None)
    try:
        assert await redis_connect.with_client(target, lambda client: client.ping()) is True
    finally:
        await redis_connect.close_all()
    assert lookups == [NAME]  # the policy's lookup only: TLS reached a name DNS does not know
