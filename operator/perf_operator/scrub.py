"""Credentials never reach a log line, an Event or a status message.

Two layers:

* At the source, :func:`quiet_body_loggers` keeps the loggers that print raw HTTP bodies (the
  Kubernetes client's ``response body: ...``, which for a Secret is its base64 data) at INFO
  even when the operator runs with ``--verbose``.
* As a backstop, every message that leaves a reconciler, and every log record, goes through
  :func:`scrub`: it masks the *current* value of every registered credential (passwords and
  tokens read from Secrets, never user names) in the forms it can take in text: plain, JSON- or
  repr-escaped, URL-encoded (either hex case, ``+`` for spaces) and base64 (standard and
  URL-safe, with or without padding); plus what looks like a credential by its context
  (``password=...``, ``"token": "..."``, ``Authorization: Basic ...``, the password of a URL's
  ``user:password@``), and the ``data`` of anything that looks like a Secret body.

Short credentials: a value of fewer than ``MIN_FREE_TEXT_LENGTH`` characters is masked only in
those contexts, not wherever its characters happen to appear (a password ``ab`` would otherwise
turn every ``ab`` of every log line into ``***`` and make the logs useless, while telling a
reader which letters the password has). Such a password is weak anyway; docs/deploy.md says so.

The registry holds one value per source (a Secret key, or a login): a rotated value replaces
the old one, and a deleted Secret's values are forgotten, so the registry does not grow with
every rotation and masks only what is still a credential.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Hashable

#: Shorter registered values are masked only in key=value / URL / Secret-body contexts.
MIN_FREE_TEXT_LENGTH = 4

#: Loggers that print whole HTTP response bodies at DEBUG (a Secret's data among them).
BODY_LOGGERS = ("kubernetes_asyncio.client.rest", "kubernetes.client.rest")

_MASK = "***"
_KEY_WORDS = (r"password|passwd|pwd|token|secret|requirepass|masterauth|api[-_]?key|"
              r"credentials?")

#: (pattern, its replacement, only applied when this matches too). The replacements are
#: functions, not templates: ``re`` expands a template through a Python helper it imports at
#: that moment, which fails once the interpreter is shutting down, when aiohttp still logs the
#: sessions left unclosed.
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str],
                      re.Pattern[str] | None]] = [
    # a Secret's body (JSON text or the client's repr of it): its data values are credentials
    (re.compile(r"""(["']?(?:data|string_?[dD]ata)["']?\s*[:=]\s*\{)[^{}]*(\})"""),
     lambda m: f"{m[1]}{_MASK}{m[2]}",
     re.compile(r"""["']?kind["']?\s*[:=]\s*["']?Secret\b""")),
    # key=value, key: value, "key": "value" (JSON), 'key': 'value' (repr)
    (re.compile(rf"""((?:{_KEY_WORDS})["']?\s*[=:]\s*)(?:(["'])(?:(?!\2)[^\\]|\\.)*\2|"""
                r"""[^\s,;&}\]"']+)""", re.I),
     lambda m: f"{m[1]}{m[2] or ''}{_MASK}{m[2] or ''}", None),
    (re.compile(r"(authorization[\"']?\s*[=:]\s*[\"']?(?:basic|bearer)\s+)[-A-Za-z0-9._~+/=]+",
                re.I), lambda m: f"{m[1]}{_MASK}", None),
    # scheme://user:password@host: the user name stays readable
    (re.compile(r"(\w+://[^:/@\s]*:)[^@\s/]+@"), lambda m: f"{m[1]}{_MASK}@", None),
]

_current: dict[Hashable, str] = {}
_lock = threading.Lock()
_masker: re.Pattern[str] | None = None


def register_secret(source: Hashable, value: str | None) -> None:
    """Remember ``value`` as the current credential of ``source`` (e.g. ``(namespace, secret,
    key)``), replacing the value registered for it before: a rotated password stops being
    masked (it is no longer a credential), the new one is masked from now on."""
    global _masker
    with _lock:
        if value:
            if _current.get(source) == value:
                return
            _current[source] = value
        elif _current.pop(source, None) is None:
            return
        _masker = None


def forget_secrets(match: Callable[[Hashable], bool]) -> None:
    """Drop the values of every source ``match`` accepts (a deleted Secret)."""
    global _masker
    with _lock:
        gone = [source for source in _current if match(source)]
        for source in gone:
            del _current[source]
        if gone:
            _masker = None


def encoded_forms(value: str) -> set[str]:
    """The ways ``value`` can be written in a log line, an error or a serialized object."""
    raw = value.encode()
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             repr(value)[1:-1], value.replace("\\", "\\\\")}
    for quoted in (urllib.parse.quote(value, safe=""), urllib.parse.quote(value),
                   urllib.parse.quote_plus(value)):
        forms |= {quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted)}
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {encoded, encoded.rstrip("=")}
    return {form for form in forms if len(form) >= MIN_FREE_TEXT_LENGTH}


def _current_masker() -> re.Pattern[str] | None:
    global _masker
    with _lock:
        if _masker is None and _current:
            forms: set[str] = set()
            for value in _current.values():
                if len(value) >= MIN_FREE_TEXT_LENGTH:
                    forms |= encoded_forms(value)
            if forms:  # longest first: a form containing another is masked whole
                _masker = re.compile("|".join(
                    re.escape(form) for form in sorted(forms, key=len, reverse=True)))
        return _masker


def scrub(message: object) -> str:
    text = str(message)
    masker = _current_masker()
    if masker is not None:
        text = masker.sub(_MASK, text)
    for pattern, replacement, only_if in _PATTERNS:
        if only_if is None or only_if.search(text):
            text = pattern.sub(replacement, text)
    return text


def quiet_body_loggers() -> None:
    """Keep the loggers that dump HTTP bodies at INFO, whatever the root level: a Secret read
    at DEBUG would otherwise be logged whole before its values could be registered."""
    for name in BODY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


def install_log_scrubbing() -> None:
    """Scrub every log record when it is made, so neither a log line nor an Event that kopf
    posts from a handler's log message can carry a credential."""
    quiet_body_loggers()
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
