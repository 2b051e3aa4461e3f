"""The limiter's pre-encoded EVALSHA commands: the Redis protocol, byte for byte."""
from __future__ import annotations

from perf_operator.ratelimit.limiter import SCRIPT_SHA, _Table, encode_command
from perf_operator.ratelimit.rules import EndpointRule


def test_commands_are_encoded_in_resp():
    assert encode_command("GET", "k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert encode_command("SET", "ключ", 42) == (
        b"*3\r\n$3\r\nSET\r\n$8\r\n\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\r\n$2\r\n42\r\n")


def test_a_checks_command_carries_the_version_and_the_gcra_parameters():
    rule = EndpointRule("/api/**", ("GET",), requests=4, window_seconds=2, burst=1)
    table = _Table("p:", "acme", "7", (rule,))
    assert table.command(rule) == encode_command(
        "EVALSHA", SCRIPT_SHA, 2, "p:{acme}:limits", "p:{acme}:rl:GET:/api/**:4/2s+1", "7",
        "500000.0", 5)
    assert table.command(rule) is table.command(rule)  # encoded once per table version


def test_matches_are_remembered_per_table():
    rule = EndpointRule("/api/**", ("GET",), requests=4, window_seconds=2, burst=1)
    table = _Table("p:", "acme", "7", (rule,))
    assert table.match("/api/x", "GET") is rule
    assert table.match("/other", "GET") is None
    assert table.match("/api/x", "POST") is None
