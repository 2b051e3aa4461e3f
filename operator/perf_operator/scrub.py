"""Credentials never reach a log line, an Event or a status message.

Driver errors can echo connection strings ("password=...", "redis://user:pass@host"), so every
message that leaves a reconciler goes through :func:`scrub` once, here.
"""
from __future__ import annotations

import logging
import re
import threading

_known_secrets: set[str] = set()
_lock = threading.Lock()

_PATTERNS = [
    (re.compile(r"(password|passwd|pwd|token|secret)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)", re.I),
     r"\1\2***"),
    (re.compile(r"(\w+://[^:/@\s]*:)[^@\s]+@"), r"\1***@"),
]


def register_secret(value: str) -> None:
    """Remember a secret value read from a Kubernetes Secret so it is masked wherever it shows."""
    if value and len(value) >= 4:
        with _lock:
            _known_secrets.add(value)


def scrub(message: object) -> str:
    text = str(message)
    with _lock:
        known = sorted(_known_secrets, key=len, reverse=True)
    for value in known:
        text = text.replace(value, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def install_log_scrubbing() -> None:
    """Scrub every log record when it is made, so neither a log line nor an Event that kopf
    posts from a handler's log message can carry a credential."""
    make_record = logging.getLogRecordFactory()

    def scrubbed_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if record.args:
            record.msg, record.args = record.getMessage(), ()
        record.msg = scrub(record.msg)
        if record.exc_info:  # tracebacks quote driver errors: format and scrub them here
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(scrubbed_record)
