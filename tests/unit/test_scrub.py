"""Credential scrubbing (pure: the registry and the masking of text)."""
from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import textwrap
import urllib.parse

import pytest

from perf_operator import scrub as scrubbing
from perf_operator.scrub import forget_secrets, register_secret, scrub

PASSWORD = 'p@ss:w/rd"\\ %&?#\'é+'
SOURCE = ("Secret", "team-a", "pg-credentials", "password")


@pytest.fixture(autouse=True)
def empty_registry():
    scrubbing._current.clear()
    scrubbing._masker = None
    yield
    scrubbing._current.clear()
    scrubbing._masker = None


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {"plain": value,
            "json": json.dumps(value)[1:-1],
            "json-ascii-off": json.dumps(value, ensure_ascii=False)[1:-1],
            "repr": repr(value)[1:-1],
            "url": urllib.parse.quote(value, safe=""),
            "url-lower": urllib.parse.quote(value, safe="").lower(),
            "url-plus": urllib.parse.quote_plus(value),
            "base64": base64.b64encode(raw).decode(),
            "base64-urlsafe": base64.urlsafe_b64encode(raw).decode(),
            "base64-unpadded": base64.b64encode(raw).decode().rstrip("=")}


@pytest.mark.parametrize("form", sorted(encodings(PASSWORD)))
def test_every_encoding_of_a_registered_password_is_masked(form):
    register_secret(SOURCE, PASSWORD)
    encoded = encodings(PASSWORD)[form]
    text = scrub(f"connecting to db failed: got <{encoded}> back")
    assert encoded not in text
    assert text == "connecting to db failed: got <***> back"


def test_user_names_are_not_masked():
    register_secret(SOURCE, PASSWORD)
    register_secret(("Secret", "team-a", "pg-credentials", "username"), None)
    text = scrub('FATAL: password authentication failed for user "postgres"')
    assert text == 'FATAL: password authentication failed for user "postgres"'
    assert scrub("postgresql://postgres:hunter22@db:5432/app") == \
        "postgresql://postgres:***@db:5432/app"


def test_a_rotated_password_leaves_the_registry():
    register_secret(SOURCE, "first-password")
    register_secret(SOURCE, "second-password")
    assert scrub("first-password second-password") == "first-password ***"
    assert list(scrubbing._current.values()) == ["second-password"]


def test_a_deleted_secret_is_forgotten():
    register_secret(SOURCE, "first-password")
    register_secret(("Secret", "team-b", "other", "password"), "kept-password")
    forget_secrets(lambda source: source[:3] == ("Secret", "team-a", "pg-credentials"))
    assert scrub("first-password kept-password") == "first-password ***"


def test_one_value_registered_twice_stays_masked_while_one_source_holds_it():
    register_secret(SOURCE, "shared-password")
    register_secret(("login", "x"), "shared-password")
    register_secret(SOURCE, None)
    assert scrub("shared-password") == "***"


@pytest.mark.parametrize("text, expected", [
    ("password=ab host=db", "password=*** host=db"),
    ('{"password": "ab", "user": "app"}', '{"password": "***", "user": "app"}'),
    ("{'password': 'a\\'b', 'user': 'app'}", "{'password': '***', 'user': 'app'}"),
    ("redis://app:ab@127.0.0.1:6379/0", "redis://app:***@127.0.0.1:6379/0"),
    ("Authorization: Basic YWI6Y2Q=", "Authorization: Basic ***"),
    ("requirepass ab", "requirepass ab"),
])
def test_short_passwords_are_masked_in_credential_contexts(text, expected):
    register_secret(SOURCE, "ab")
    assert scrub(text) == expected


def test_short_passwords_are_not_masked_in_free_text():
    """A 2-character password masked everywhere would wreck every log line (and tell which
    letters it has): it is masked only where the context says it is a credential."""
    register_secret(SOURCE, "ab")
    assert scrub("table abc: about 3 rows") == "table abc: about 3 rows"


def test_a_secret_body_has_its_data_masked_even_before_registration():
    body = ('response body: b\'{"kind":"Secret","apiVersion":"v1","metadata":{"name":"x"},'
            '"data":{"password":"cDRzcw==","username":"cG9zdGdyZXM="},"type":"Opaque"}\'')
    text = scrub(body)
    assert "cDRzcw==" not in text and '"data":{***}' in text
    as_repr = "{'api_version': 'v1', 'data': {'password': 'cDRzcw=='}, 'kind': 'Secret'}"
    assert "cDRzcw==" not in scrub(as_repr)
    config_map = '{"kind":"ConfigMap","data":{"mode":"fast"}}'
    assert scrub(config_map) == config_map


def test_the_kubernetes_client_does_not_log_bodies_at_debug():
    logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.NOTSET)
    scrubbing.quiet_body_loggers()
    rest = logging.getLogger("kubernetes_asyncio.client.rest")
    assert not rest.isEnabledFor(logging.DEBUG)
    assert rest.isEnabledFor(logging.INFO)


def test_log_records_are_scrubbed(caplog):
    factory = logging.getLogRecordFactory()
    try:
        scrubbing.install_log_scrubbing()
        register_secret(SOURCE, PASSWORD)
        with caplog.at_level(logging.DEBUG, logger="scrub-test"):
            logging.getLogger("scrub-test").debug("dsn %s", f"password={PASSWORD!r}")
            logging.getLogger("scrub-test").info("url %s",
                                                 urllib.parse.quote(PASSWORD, safe=""))
    finally:
        logging.setLogRecordFactory(factory)
    assert PASSWORD not in caplog.text
    assert urllib.parse.quote(PASSWORD, safe="") not in caplog.text
    assert caplog.text.count("***") == 2


async def test_a_secret_value_that_is_not_text_is_named_not_quoted():
    """A key whose value is not UTF-8 is a SecretError naming the Secret and key; the
    decoder's message (which quotes the bytes) goes nowhere. Read from copies, as a deferred
    cleanup reads them: no API server involved."""
    from perf_operator.secrets import SecretError, read_secret_keys, serving_copies

    raw = "pässwörd".encode("latin-1")
    copies = {("team-a", "pg"): {"password": base64.b64encode(raw).decode()}}
    with serving_copies(copies), pytest.raises(SecretError) as caught:
        await read_secret_keys("team-a", "pg", "password")
    assert caught.value.reason == "SecretValueInvalid"
    assert str(caught.value) == "Secret team-a/pg key 'password' is not UTF-8 text"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_record_made_while_the_interpreter_shuts_down_is_still_scrubbed():
    """aiohttp logs the sessions left unclosed from ``__del__`` at interpreter exit, when
    nothing can be imported any more: the scrubbing record factory must not fail then."""
    script = textwrap.dedent("""
        import logging, sys
        from perf_operator.scrub import install_log_scrubbing
        logging.basicConfig()
        install_log_scrubbing()
        class Late:
            def __del__(self):
                logging.getLogger("late").error("Unclosed client session https://u:pw@host/")
        sys.modules["late_holder"] = Late()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert "ImportError" not in done.stderr
    assert "Unclosed client session https://u:***@host/" in done.stderr
