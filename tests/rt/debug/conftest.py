"""Fixtures for the operator routes: a real server on free ports and an HTTP client.

A test changes the server's settings with ``@pytest.mark.debug_settings(demo_feed=True)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rt.server import Server, open_server
from tests.rt.harness import settings

from ._support import TIMEOUT_S


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "debug_settings(**overrides): settings of the debug tests' `server` fixture"
    )


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A whole server on 127.0.0.1 (both listeners on free ports), without the demo feed."""
    marker = request.node.get_closest_marker("debug_settings")
    overrides: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    options: dict[str, Any] = {"port": 0, "demo_feed": False}
    async with open_server(settings(**(options | overrides))) as running:
        yield running


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture
def admin(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.settings.admin_token}"}
