"""Fixtures for the operator tests: a running server on 127.0.0.1, HTTP, admin headers.

A test changes the server's settings with ``@pytest.mark.ops_settings(idle_timeout_s=0.3)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rt.server import Server, open_server
from tests.rt.e2e._support import e2e_settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ops_settings(**overrides): settings of the operator tests' `server` fixture"
    )


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A whole server (both listeners, free ports, no demo feed), stopped after the test."""
    marker = request.node.get_closest_marker("ops_settings")
    overrides: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    async with open_server(e2e_settings(**overrides)) as running:
        yield running


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def admin(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.settings.admin_token}"}
