"""Where the operator may connect: policy, not free text.

Every place that opens a connection for a profile (``postgres/connect.py``,
``redis/connect.py``, the Prometheus endpoint in ``optimizer``) asks :func:`admit` first, with
the server's host and port and whether a PerformanceTarget granted it. Before any connection
attempt, the host is resolved (in the loop's resolver thread, never blocking the loop) and:

- an address that is link-local or a cloud metadata endpoint (169.254.0.0/16, fe80::/10,
  fd00:ec2::254, 100.100.100.200, ...) or unspecified/multicast/broadcast is always refused,
  whoever declared it, and so are the well-known metadata host names;
- a server a PerformanceTarget granted is otherwise allowed (a platform admin declared it);
- an inline server (written in a profile) is allowed only when the operator was started with
  ``--allow-inline-connections``, and only on a host the operator-wide allow-list
  (``--inline-hosts``: IP addresses, CIDRs, host names, ``*.suffix``, each optionally
  ``:port``) matches.

:func:`admit` returns the vetted address, so the caller connects to exactly what was checked
(no second DNS answer in between). Prometheus URLs are http or https and carry no
credentials (:func:`admit_url`).
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..api.conditions import (ADDRESS_REFUSED, HOST_NOT_ALLOWED, HOST_NOT_FOUND,
                              INLINE_CONNECTIONS_REFUSED, URL_REFUSED)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Never connected to, whatever a target or the allow-list says: link-local (where cloud
#: metadata services answer), the metadata endpoints themselves, and addresses that are not a
#: single server.
ALWAYS_REFUSED_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",       # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata
    "fe80::/10",            # IPv6 link-local
    "fd00:ec2::254/128",    # AWS metadata over IPv6
    "100.100.100.200/32",   # Alibaba Cloud metadata
    "0.0.0.0/8", "::/128",  # "this host": unspecified
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32",  # multicast, broadcast
))
ALWAYS_REFUSED_NAMES: frozenset[str] = frozenset({
    "metadata.google.internal", "metadata", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal",
})

#: How long an admitted host's address is reused before it is resolved and checked again
#: (thousands of tenant reconciles share one Redis: one lookup each would flood the resolver).
ADMISSION_TTL_SECONDS = 30.0


class Refused(Exception):
    """A refusal of the trust boundary, with the CamelCase ``reason`` status reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectionRefused(Refused):
    """The policy refuses a server; no connection was attempted."""


@dataclass(frozen=True)
class HostRule:
    """One entry of the inline allow-list: an address, a network, a host name or a
    ``*.suffix``; ``port`` None allows every port."""

    network: IPNetwork | None = None
    name: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostRule:
        """``10.0.0.0/8``, ``127.0.0.1:6379``, ``[::1]:5432``, ``db.internal``,
        ``*.svc.cluster.local:5432``."""
        text = text.strip()
        host, port = text, None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text)
        try:
            return cls(network=ipaddress.ip_network(host, strict=False), port=port)
        except ValueError:
            if not host or any(c.isspace() or c in "/@" for c in host):
                raise ValueError(f"not a host, address or network: {text!r}") from None
            return cls(name=host.lower().rstrip("."), port=port)

    def allows(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        name = _normal(host)
        assert self.name is not None
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name


@dataclass(frozen=True)
class ConnectionPolicy:
    """The operator-wide policy, from ``perf-operator run`` flags (or their environment
    variables, for the Deployment)."""

    allow_inline: bool = False
    inline_hosts: tuple[HostRule, ...] = ()

    @classmethod
    def from_settings(cls, allow_inline: bool, inline_hosts: Iterable[str]) -> ConnectionPolicy:
        return cls(allow_inline=allow_inline,
                   inline_hosts=tuple(HostRule.parse(h) for h in inline_hosts if h.strip()))

    @classmethod
    def from_env(cls) -> ConnectionPolicy:
        """``PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS`` (1/true/yes) and
        ``PERF_OPERATOR_INLINE_HOSTS`` (comma-separated)."""
        return cls.from_settings(env_flag(ALLOW_INLINE_ENV), env_list(INLINE_HOSTS_ENV))


    @classmethod
    def users_own(cls) -> ConnectionPolicy:
        """For tools that connect with their user's own credentials from the user's machine
        (``kubectl perf``): any host, but still never a link-local or metadata address."""
        return cls(allow_inline=True, inline_hosts=(HostRule(ipaddress.ip_network("0.0.0.0/0")),
                                                    HostRule(ipaddress.ip_network("::/0"))))


ALLOW_INLINE_ENV = "PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS"
INLINE_HOSTS_ENV = "PERF_OPERATOR_INLINE_HOSTS"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def env_list(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item.strip()]


#: The policy in force: from the environment, replaced by ``perf-operator run``'s flags.
POLICY = ConnectionPolicy.from_env()


def configure(policy: ConnectionPolicy) -> None:
    global POLICY
    POLICY = policy
    _admitted.clear()


# ------------------------------------------------------------------------------ pure checks

def refused_address(address: IPAddress) -> str | None:
    """Why ``address`` is never connected to, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in ALWAYS_REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return f"{address} is in {network} (link-local, metadata or not a single host)"
    return None


def choose_address(host: str, port: int, addresses: Sequence[IPAddress], *,
                   granted_by: str | None, policy: ConnectionPolicy) -> IPAddress:
    """The address to connect to, among what ``host`` resolved to; raises
    :class:`ConnectionRefused` when the policy allows none. Any always-refused address refuses
    the host outright (a name that also points at a metadata address is not trusted)."""
    if _normal(host) in ALWAYS_REFUSED_NAMES:
        raise ConnectionRefused(ADDRESS_REFUSED, f"{host} is a cloud metadata host name")
    if not addresses:
        raise ConnectionRefused(ADDRESS_REFUSED, f"{host} resolves to no address")
    for address in addresses:
        if (why := refused_address(address)) is not None:
            raise ConnectionRefused(ADDRESS_REFUSED, f"{host}:{port} refused: {why}")
    if granted_by is not None:
        return addresses[0]
    if not policy.allow_inline:
        raise ConnectionRefused(
            INLINE_CONNECTIONS_REFUSED,
            f"{host}:{port} is an inline connection, and this operator accepts only servers "
            f"of a PerformanceTarget (spec.targetRef)")
    for address in addresses:
        if any(rule.allows(host, port, address) for rule in policy.inline_hosts):
            return address
    raise ConnectionRefused(
        HOST_NOT_ALLOWED, f"{host}:{port} ({', '.join(map(str, addresses))}) is not on the "
                          f"operator's allow-list of inline hosts")


def check_url(url: str) -> tuple[str, int]:
    """(host, port) of a Prometheus URL: http or https, no credentials in it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ConnectionRefused(URL_REFUSED, f"not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise ConnectionRefused(URL_REFUSED, "only http and https URLs are allowed")
    if "@" in parts.netloc:
        raise ConnectionRefused(URL_REFUSED,
                                "the URL carries credentials (user:password@); use secretRef")
    if not parts.hostname:
        raise ConnectionRefused(URL_REFUSED, "the URL has no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _normal(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


# ------------------------------------------------------------------------------ admission

@dataclass
class _Admitted:
    address: str
    expires: float = field(default=0.0)


#: Vetted addresses, each for ``ADMISSION_TTL_SECONDS``; expired ones are dropped on the way,
#: so the map holds only the servers admitted within the last TTL.
_admitted: dict[tuple[str, int, str | None], _Admitted] = {}


async def admit(host: str, port: int, *, granted_by: str | None) -> str:
    """The address to connect to for ``host:port``, checked against the policy before any
    connection (see the module docstring); raises :class:`ConnectionRefused`."""
    key = (host, port, granted_by)
    now = time.monotonic()
    for expired in [k for k, entry in _admitted.items() if entry.expires <= now]:
        del _admitted[expired]
    cached = _admitted.get(key)
    if cached is not None and cached.expires > now:
        return cached.address
    addresses = await _resolve(host, port)
    address = choose_address(host, port, addresses, granted_by=granted_by, policy=POLICY)
    _admitted[key] = _Admitted(str(address), now + ADMISSION_TTL_SECONDS)
    return str(address)


async def admit_url(url: str, *, granted_by: str | None) -> str:
    """Check a Prometheus URL and its host; returns the vetted address."""
    host, port = check_url(url)
    return await admit(host, port, granted_by=granted_by)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    if _normal(host) in ALWAYS_REFUSED_NAMES:
        return []  # choose_address refuses it by name, without asking DNS
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConnectionRefused(HOST_NOT_FOUND, f"cannot resolve {host}: {err.strerror}") from None
    seen: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen
