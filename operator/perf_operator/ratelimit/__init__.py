"""The reference rate limiter: what an application runs to enforce the tables the operator
writes. See ``limiter`` for the algorithm, ``rules`` for endpoint matching and ``layout`` for
the Redis keys; docs/rate-limit-tables.md describes all three for other languages."""
from .limiter import Decision, Limiter, TableNotFound, check, limiter_for
from .rules import EndpointRule

__all__ = ["Decision", "EndpointRule", "Limiter", "TableNotFound", "check", "limiter_for"]
