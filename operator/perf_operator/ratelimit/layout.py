"""Where a tenant's data lives in Redis: the one definition shared by the operator (which writes
the limits record) and the reference limiter (which reads it and keeps its buckets next to it).

Every key of a tenant carries the tenant in a hash tag, ``<prefix>{<tenant>}:...``, so that on
Redis Cluster all of them hash to one slot: the limiter's script may touch the record and a
bucket in one call, and a tenant's keys can be found without touching another tenant's.
"""
from __future__ import annotations

#: Version of the record's JSON document; bumped only for changes old readers cannot read.
RECORD_SCHEMA = 1

#: Fields of the limits record (a Redis hash).
VERSION_FIELD = "version"
DIGEST_FIELD = "digest"
OWNER_FIELD = "owner"
#: The owner's metadata.creationTimestamp: the oldest TenantQuota claiming a record owns it.
OWNER_SINCE_FIELD = "ownerSince"
WRITTEN_AT_FIELD = "writtenAt"
LIMITS_FIELD = "limits"


def tenant_tag(prefix: str, tenant: str) -> str:
    """``<prefix>{<tenant>}``: the start of every key of one tenant."""
    return f"{prefix}{{{tenant}}}"


def record_key(prefix: str, tenant: str) -> str:
    """The tenant's effective-limits record, written only by the operator."""
    return f"{tenant_tag(prefix, tenant)}:limits"


def bucket_key(prefix: str, tenant: str, bucket_name: str) -> str:
    """The limiter's state for one endpoint rule of one tenant (expires when idle);
    ``bucket_name`` is ``<METHODS>:<pattern>:<requests>/<window>s+<burst>``."""
    return f"{tenant_tag(prefix, tenant)}:rl:{bucket_name}"


def cache_prefix(prefix: str, tenant: str) -> str:
    """The tenant's cache namespace: the application's cached data lives under it."""
    return f"{tenant_tag(prefix, tenant)}:cache:"


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern (SCAN MATCH, KEYS)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
