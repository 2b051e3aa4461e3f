"""The limiter's wire work without a Redis: pre-encoded EVALSHA commands (the Redis protocol,
byte for byte), replies read in bulk from a stream, and which failures of a batch are retried."""
from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from perf_operator.ratelimit.limiter import (SCRIPT_SHA, Decision, Limiter, _read_replies, _Table,
                                             encode_command)
from perf_operator.ratelimit.rules import EndpointRule

RULE = EndpointRule("/api/**", ("GET",), requests=4, window_seconds=2, burst=1)
ALLOWED = b"*3\r\n:1\r\n:4\r\n:0\r\n"
DENIED = b"*3\r\n:0\r\n:0\r\n:250000\r\n"


def test_commands_are_encoded_in_resp():
    assert encode_command("GET", "k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert encode_command("SET", "ключ", 42) == (
        b"*3\r\n$3\r\nSET\r\n$8\r\n\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\r\n$2\r\n42\r\n")


def test_a_checks_command_carries_the_version_and_the_gcra_parameters():
    table = _Table("p:", "acme", "7", (RULE,))
    assert table.command(RULE) == encode_command(
        "EVALSHA", SCRIPT_SHA, 2, "p:{acme}:limits", "p:{acme}:rl:GET:/api/**:4/2s+1", "7",
        "500000.0", 5)
    assert table.command(RULE) is table.command(RULE)  # encoded once per table version


def test_calls_are_remembered_per_path_and_method():
    table = _Table("p:", "acme", "7", (RULE,))
    call = table.call("/api/x", "get")
    assert call == (table.command(RULE), 4)
    assert table.call("/api/x", "get") is call
    assert table.call("/api/y", "GET").command is call.command  # one command per rule
    assert table.call("/other", "GET") is None
    assert table.call("/api/x", "POST") is None


def test_decisions_are_named_tuples_built_without_their_constructor():
    fast = tuple.__new__(Decision, (True, 3, 0.0, 5))
    assert fast == Decision(allowed=True, remaining=3, retry_after_seconds=0.0, limit=5)
    assert (fast.allowed, fast.remaining, fast.limit) == (True, 3, 5)
    assert repr(fast) == "Decision(allowed=True, remaining=3, retry_after_seconds=0.0, limit=5)"


def stream(*chunks: bytes, eof: bool = False) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


async def test_replies_split_anywhere_across_reads_are_parsed_in_order():
    data = ALLOWED + b"-NOSCRIPT No matching script\r\n" + DENIED + b"-ERR boom\r\n"
    reader = asyncio.StreamReader()
    replies: list = []
    reading = asyncio.ensure_future(_read_replies(reader, 4, replies))
    for i in range(0, len(data), 5):  # chunks that end mid-reply, mid-number, mid-line
        reader.feed_data(data[i:i + 5])
        await asyncio.sleep(0)
    await reading
    assert replies[0] == [1, 4, 0] and replies[2] == [0, 0, 250000]
    assert isinstance(replies[1], NoScriptError)
    assert type(replies[3]) is ResponseError and str(replies[3]) == "ERR boom"


async def test_push_messages_are_not_replies():
    replies: list = []
    await _read_replies(stream(b">2\r\n$10\r\ninvalidate\r\n*0\r\n" + ALLOWED), 1, replies)
    assert replies == [[1, 4, 0]]


async def test_a_closed_connection_keeps_the_replies_that_came():
    replies: list = []
    with pytest.raises(RedisConnectionError):
        await _read_replies(stream(ALLOWED, eof=True), 2, replies)
    assert replies == [[1, 4, 0]]


class FakeConnection:
    """A pooled connection whose server answers from a script of byte strings."""

    socket_timeout = 5

    def __init__(self, answer: bytes, close: bool) -> None:
        self.answer, self.close = answer, close
        self.sent: list[bytes] = []
        self.disconnected = False

    async def send_packed_command(self, command: bytes) -> None:
        self.sent.append(command)
        self._reader = stream(self.answer, eof=self.close)

    async def disconnect(self) -> None:
        self.disconnected = True


class FakeRedis:
    def __init__(self, *answers: tuple[bytes, bool]) -> None:
        self.connections = [FakeConnection(answer, close) for answer, close in answers]
        self.connection_pool = self
        self.released: list[FakeConnection] = []

    async def script_load(self, script: str) -> str:
        return SCRIPT_SHA

    async def get_connection(self) -> FakeConnection:
        return self.connections[len(self.released)]

    async def release(self, connection: FakeConnection) -> None:
        self.released.append(connection)


async def test_a_batch_on_a_connection_the_server_had_closed_is_sent_again():
    redis = FakeRedis((b"", True), (ALLOWED + DENIED, False))
    replies = await Limiter(redis)._execute(b"two commands", 2)
    assert replies == [[1, 4, 0], [0, 0, 250000]]
    stale, fresh = redis.connections
    assert stale.disconnected and not fresh.disconnected
    assert redis.released == [stale, fresh] and fresh.sent == [b"two commands"]


async def test_a_batch_cut_after_some_replies_is_not_sent_again():
    """The first replies prove the server ran the batch: sending it again would count twice."""
    redis = FakeRedis((ALLOWED, True), (ALLOWED + ALLOWED, False))
    with pytest.raises(RedisConnectionError):
        await Limiter(redis)._execute(b"two commands", 2)
    assert redis.released == redis.connections[:1] and redis.connections[0].disconnected
