"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server (started on first use, stopped at the end)."""
    yield RedisServer.shared()


@pytest.fixture(scope="session", autouse=True)
def _stop_the_shared_redis() -> Iterator[None]:
    yield
    if RedisServer._shared is not None:
        RedisServer._shared.stop()
        RedisServer._shared = None
