"""The operator's log output: plain text for a terminal, or one JSON object per line for a log
pipeline (``perf-operator run --log-format json``, which the deployment manifests use).

Every record that names a Kubernetes object (kopf's per-object loggers carry it) says which:
namespace, name and kind, as fields in JSON and as a ``[namespace/name]`` prefix in text. A
record about a condition or Event carries its ``reason`` (``extra={"reason": ...}``).

Levels mean something: ERROR is for failures only. A handler that asks kopf to look again soon
while work goes on in the background (an index build) raises a ``kopf.TemporaryError`` with
:data:`REQUEUE_MESSAGE`, which kopf logs at ERROR; that record is demoted to DEBUG (shown with
``--verbose`` only), and any other temporary failure, which kopf retries, to WARNING.

Credentials are scrubbed when a record is made (``scrub.install_log_scrubbing``), before either
formatter sees it.
"""
from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from .scrub import install_log_scrubbing

#: The message of the TemporaryError a handler raises to be called again soon (not a failure).
REQUEUE_MESSAGE = "requeued: waiting for background work"
FORMATS = ("text", "json")

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _object_ref(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "k8s_ref", None) or {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: timestamp, level, logger, message, the object
    (namespace, name, kind) and reason when known, and the formatted exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.datetime.fromtimestamp(
                record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = _object_ref(record)
        for key in ("namespace", "name", "kind"):
            if ref.get(key):
                entry[key] = ref[key]
        reason = getattr(record, "reason", None)
        if reason:
            entry["reason"] = reason
        exception = record.exc_text or (self.formatException(record.exc_info)
                                        if record.exc_info else None)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the object the record is about as a ``[namespace/name]`` prefix."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        ref = _object_ref(record)
        if ref.get("name"):
            where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else ref["name"]
            record.message = f"[{where}] {record.message}"
        return super().formatMessage(record)


def _demote_retries(record: logging.LogRecord) -> bool:
    """Filter on kopf's per-object logger: a requeue is DEBUG, a retried failure WARNING."""
    if record.levelno != logging.ERROR:
        return True
    message = record.getMessage()
    if " failed temporarily" not in message:
        return True
    level = logging.DEBUG if message.endswith(REQUEUE_MESSAGE) else logging.WARNING
    record.levelno, record.levelname = level, logging.getLevelName(level)
    return logging.getLogger().isEnabledFor(level)


def configure_logging(log_format: str = "text", *, verbose: bool = False) -> None:
    """Send every record to stderr in ``log_format`` (``text`` or ``json``), scrubbed."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf.objects").addFilter(_demote_retries)
    install_log_scrubbing()
