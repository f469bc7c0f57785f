"""Fixtures for the end-to-end suite: a running server on 127.0.0.1, HTTP, tokens.

A test changes the server's settings with ``@pytest.mark.server_settings(history_size=5)``.
WebSocket clients come from ``_support.connect(server, token)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from rt.server import Server, open_server

from ._support import e2e_settings, make_token


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server_settings(**overrides): settings of the e2e `server` fixture"
    )


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A whole server (both listeners, free ports), stopped gracefully after the test."""
    marker = request.node.get_closest_marker("server_settings")
    overrides: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    async with open_server(e2e_settings(**overrides)) as running:
        yield running


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the server's REST API (closed before the server stops)."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def admin(server: Server) -> dict[str, str]:
    """The headers that authorise admin routes."""
    return {"Authorization": f"Bearer {server.settings.admin_token}"}


@pytest.fixture
def token() -> Callable[..., str]:
    """``token(user_id=1, *, scope=None, ttl_s=600, now_s=None, secret=SECRET)``: a JWT for
    /ws/odds, signed with the e2e server's secret unless told otherwise."""
    return make_token
