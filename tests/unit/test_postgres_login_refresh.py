"""A PostgreSQL connection refused with a cached login reads the Secret again, once: the
rotation a user expects to be picked up without waiting for the cache to age out."""
from __future__ import annotations

import pytest

from perf_operator.api.profile import PostgresConnection
from perf_operator.postgres import connect

CONNECTION = PostgresConnection.model_validate({
    "host": "127.0.0.1", "port": 5432, "database": "app",
    "secretRef": {"name": "pg", "usernameKey": "username", "passwordKey": "password"}})


@pytest.fixture
def server(monkeypatch):
    """The Secret's current password and the one the server accepts; the logins tried."""
    state = {"secret": "old", "cached": "old", "accepts": "new", "tried": [], "reads": []}

    async def read(namespace, name, *keys, identity_keys=(), refresh=False):
        if refresh:
            state["cached"] = state["secret"]
        state["reads"].append(refresh)
        return ["operator", state["cached"]]

    async def open_target(key, password, **_):
        state["tried"].append(password)
        if password != state["accepts"]:
            raise connect.DatabaseUnavailable("password authentication failed")
        return password

    monkeypatch.setattr(connect, "read_secret_keys", read)
    monkeypatch.setattr(connect, "open_target", open_target)
    return state


async def test_a_refused_cached_login_is_read_again_and_retried_once(server):
    server["secret"] = "new"  # rotated; the cache still has "old"
    assert await connect.target_for_profile("team-a", "web", CONNECTION) == "new"
    assert server["tried"] == ["old", "new"] and server["reads"] == [False, True]


async def test_an_unchanged_login_is_not_retried(server):
    server["accepts"] = "other"  # the server is the problem, not the Secret
    with pytest.raises(connect.DatabaseUnavailable):
        await connect.target_for_profile("team-a", "web", CONNECTION)
    assert server["tried"] == ["old"] and server["reads"] == [False, True]


async def test_a_refreshed_login_is_not_read_again(server):
    server["accepts"] = "other"
    with pytest.raises(connect.DatabaseUnavailable):
        await connect.target_for_profile("team-a", "web", CONNECTION, refresh=True)
    assert server["tried"] == ["old"] and server["reads"] == [True]
